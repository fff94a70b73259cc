"""Running a trained D2-Net over videos: TCAMs, bottom-up attention, detections and mAP.

`video_outputs` runs the network (jit, one compilation per padded length bucket) over
`batching.eval_batches` and returns, per video, the TCAM T (s, C) and lambda' (s,) of Eq. 8 as
NumPy, trimmed to the video's s valid snippets. `detect` turns them into detections (Sec. 3.3,
`localize.localize_video`) and `evaluate` scores those (`evaluation.evaluate_detections`).
Training's periodic evaluation and `d2net-jax localize` both call `evaluate`.
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import jax
import numpy as np

from d2net_jax import evaluation
from d2net_jax import localize
from d2net_jax import losses
from d2net_jax.data import batching
from d2net_jax.data.records import Dataset, VideoRecord


def make_forward(model):
  """jit fn(params, x_ref (D/2,), features (B, T, D), mask (B, T)).

  Returns (tcam (B, T, C), lambda' (B, T)), both zero at padded snippets.
  """

  @jax.jit
  def forward(params, x_ref, features, mask):
    outputs = model.apply({'params': params}, features, mask, train=False)
    attention = losses.bottom_up_attention(outputs['embeddings'], x_ref) * mask
    return outputs['tcam'], attention

  return forward


def video_outputs(forward, params, x_ref, videos: Sequence[VideoRecord], data_config,
                  num_classes: int) -> List[Tuple[np.ndarray, np.ndarray]]:
  """[(tcam (s, C), attention (s,))] per video, in the order of `videos` (NumPy, float32)."""
  results: List = [None] * len(videos)
  batches = batching.eval_batches(videos, data_config.eval_bucket, data_config.eval_batch_size,
                                  num_classes)
  for batch in batches:
    tcam, attention = jax.device_get(forward(params, x_ref, batch['features'], batch['mask']))
    lengths = np.asarray(batch['mask']).sum(axis=1).astype(int)
    for row, index in enumerate(np.asarray(batch['video_index'])):
      if index >= 0:
        s = lengths[row]
        results[index] = (np.asarray(tcam[row, :s]), np.asarray(attention[row, :s]))
  missing = [videos[i].video_id for i, r in enumerate(results) if r is None]
  if missing:
    raise RuntimeError(f'eval_batches left out {len(missing)} videos, e.g. {missing[:3]}')
  return results


def detect(outputs, videos: Sequence[VideoRecord], localize_config
           ) -> Dict[str, localize.Detections]:
  """{video_id: Detections} from `video_outputs`."""
  found = localize.localize_videos(
      ((tcam, attention, video.seconds_per_snippet) for (tcam, attention), video
       in zip(outputs, videos)), localize_config, names=[v.video_id for v in videos])
  return {video.video_id: d for video, d in zip(videos, found)}


def score(dataset: Dataset, videos: Sequence[VideoRecord], detections, config
          ) -> evaluation.EvaluationResult:
  """mAP of `detections` ({video_id: Detections}) against the ground truth of `videos` only."""
  scored = dataclasses.replace(dataset, videos=list(videos))
  ambiguous = dataset.ambiguous if config.evaluation.use_ambiguous else None
  return evaluation.evaluate_detections(
      scored, detections, config.evaluation.tiou_thresholds,
      subset=sorted({v.subset for v in videos}), ambiguous=ambiguous or None,
      class_names=list(dataset.class_names), unknown_videos=config.evaluation.unknown_videos)


def evaluate(forward, params, x_ref, dataset: Dataset, videos: Sequence[VideoRecord], config
             ) -> Tuple[evaluation.EvaluationResult, Dict[str, localize.Detections]]:
  """(mAP result, detections) of the network on `videos` (the whole of Sec. 3.3 + scoring)."""
  outputs = video_outputs(forward, params, x_ref, videos, config.data, dataset.num_classes)
  detections = detect(outputs, videos, config.localize)
  return score(dataset, videos, detections, config), detections


def selection_value(result: evaluation.EvaluationResult, iou: float) -> Tuple[str, float]:
  """(name, value) of the checkpoint-selection metric: mAP@iou, or the mean for iou < 0."""
  if iou < 0:
    return 'average_mAP', float(result.average_mAP)
  hits = np.flatnonzero(np.isclose(result.tiou, iou))
  if not hits.size:
    raise ValueError(f'train.selection_iou={iou} is not among evaluation.tiou_thresholds '
                     f'{tuple(float(t) for t in result.tiou)}')
  return f'mAP@{iou:g}', float(result.mAP[hits[0]])
