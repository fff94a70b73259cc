"""Running a trained model of any method over videos: per-snippet outputs, detections and mAP.

`make_forward(model, config)` jit-compiles the method's `inference_outputs`; `video_outputs` runs it
over `batching.eval_batches` (one compilation per padded length bucket) and returns, per video, a
`VideoOutputs`: the per-snippet arrays (s, ...) trimmed to the s snippets fed (D2-Net: the TCAM
and lambda' of Eq. 8), the per-video arrays, and the seconds each fed snippet covers (the
feature timing, scaled by v_len / s when videos were resampled to a fixed length). `detect` turns
them into detections with the method's localizer and `evaluate` scores those
(`evaluation.evaluate_detections`). Training's periodic evaluation and `d2net-jax localize` both
call `evaluate`.
"""

import dataclasses
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from d2net_jax import localize
from d2net_jax import methods
from d2net_jax.data import batching
from d2net_jax.data.records import DataError, Dataset, VideoRecord
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax.evaluation import official as evaluation_official
from d2net_jax.methods import layers
from d2net_jax.utils import progress as progress_lib


@dataclasses.dataclass
class VideoOutputs:
  """One video's network outputs, NumPy float32.

  Attributes:
    snippet: {name: (s, ...)} per-snippet arrays, s the snippets fed (all of them unless the
      video was resampled), e.g. 'tcam' (s, C) and 'attention' (s,).
    video: {name: (...)} per-video arrays (e.g. video-level class scores).
    seconds_per_snippet: seconds one fed snippet covers.
  """
  snippet: Dict[str, np.ndarray]
  video: Dict[str, np.ndarray]
  seconds_per_snippet: float

  # D2-Net's two arrays under their old names.
  @property
  def tcam(self) -> np.ndarray:
    return self.snippet['tcam']

  @property
  def attention(self) -> np.ndarray:
    return self.snippet['attention']


def make_forward(model, config):
  """jit fn(params, method_state, features (B, T, D), mask (B, T)) -> (snippet, video) dicts of
  `config.method`'s `inference_outputs`."""
  method = methods.get(config.method)
  dtype = jnp.bfloat16 if config.train.compute_dtype == 'bfloat16' else jnp.float32

  def forward(params, state, features, mask):
    if dtype == jnp.float32:
      return method.inference_outputs(model, params, state, features, mask, config)
    params, features = layers.cast_floats(params, dtype), features.astype(dtype)
    return layers.cast_floats(method.inference_outputs(model, params, state, features, mask, config),
                        jnp.float32)

  return jax.jit(forward)


def eval_batches(videos: Sequence[VideoRecord], config, num_classes: int):
  """`batching.eval_batches` as `config.data` asks (whole videos in buckets, or resampled:
  `methods.resolve_test_sampling`)."""
  data = config.data
  resample = methods.resolve_test_sampling(config) == 'resample'
  return batching.eval_batches(
      videos, data.eval_bucket, data.eval_batch_size, num_classes, data.eval_bucket_mode,
      max_programs=data.eval_max_programs,
      resample_to=(data.num_segments or data.max_seqlen) if resample else None,
      resample_short=data.resample_short)


def video_outputs(forward, params, state, videos: Sequence[VideoRecord], config,
                  num_classes: int, progress: Optional[bool] = None) -> List[VideoOutputs]:
  """A `VideoOutputs` per video, in the order of `videos`.

  progress: a bar on stderr for a pass over 2 s (None: when stderr is a terminal; `utils/progress.py`).
  """
  results: List[Any] = [None] * len(videos)
  with progress_lib.progress_bar(desc='network outputs', total=len(videos), enable=progress) as bar:
    for batch in eval_batches(videos, config, num_classes):
      snippet, video = jax.device_get(forward(params, state, batch['features'], batch['mask']))
      bar.update(int((np.asarray(batch['video_index']) >= 0).sum()))
      fed = np.asarray(batch['mask']).sum(axis=1).astype(int)
      for row, index in enumerate(np.asarray(batch['video_index'])):
        if index < 0:
          continue
        s, record = fed[row], videos[index]
        seconds = record.seconds_per_snippet
        if s != record.num_snippets:  # Resampled: s fed snippets span the video's num_snippets.
          seconds = seconds * record.num_snippets / s
        arrays = {k: np.asarray(v[row, :s]) for k, v in snippet.items()}
        _check_finite(arrays, record, np.asarray(batch['features'][row, :s]))
        results[index] = VideoOutputs(
            snippet=arrays,
            video={k: np.asarray(v[row]) for k, v in video.items()},
            seconds_per_snippet=seconds)
  missing = [videos[i].video_id for i, r in enumerate(results) if r is None]
  if missing:
    raise RuntimeError(f'eval_batches left out {len(missing)} videos, e.g. {missing[:3]}')
  return results


def _check_finite(arrays: Dict[str, np.ndarray], video: VideoRecord, features: np.ndarray):
  """DataError naming the video (and the likely cause) when a per-snippet output is not finite:
  the localizers cannot place an action on NaN or inf (their error was a traceback)."""
  bad = sorted(k for k, v in arrays.items() if not np.isfinite(v).all())
  if bad:
    largest = float(np.max(np.abs(features))) if features.size else 0.0
    raise DataError(f'video {video.video_id!r}: the network outputs {bad} are not finite (the '
                    f'features reach |x| = {largest:.3g}; float32 overflows past ~1e19 when '
                    'squared: rescale very large features)')


def detect(outputs: Sequence[VideoOutputs], videos: Sequence[VideoRecord], config,
           progress: Optional[bool] = None) -> Dict[str, localize.Detections]:
  """{video_id: Detections} from `video_outputs`, by `config.method`'s localizer (progress: as
  `video_outputs`)."""
  name = methods.resolve_localizer(config)
  found = {}
  for out, video in progress_lib.progress_bar(zip(outputs, videos), 'localizing', total=len(videos),
                                         enable=progress):
    try:
      found[video.video_id] = localize.localize_outputs(name, out.snippet, out.video,
                                                        out.seconds_per_snippet, config)
    except ValueError as e:
      raise ValueError(f'video {video.video_id}: {e}') from e
  return found


def score(dataset: Dataset, videos: Sequence[VideoRecord], detections, config
          ) -> evaluation.EvaluationResult:
  """mAP of `detections` ({video_id: Detections}) against the ground truth of `videos` only, by
  `config.evaluation.protocol` ('activitynet' or 'd2net_official')."""
  if config.evaluation.protocol == 'd2net_official':
    return evaluation_official.score_dataset(dataset, videos, detections, config)
  if config.evaluation.protocol != 'activitynet':
    raise ValueError(f"evaluation.protocol={config.evaluation.protocol!r}: must be one of "
                     f"{evaluation_official.PROTOCOLS}")
  scored = dataclasses.replace(dataset, videos=list(videos))
  ids = {v.video_id for v in videos}
  source = f'the ground truth of dataset {dataset.name!r}'
  ambiguous, note = evaluation.choose_ambiguous(
      {v: r for v, r in (dataset.ambiguous or {}).items() if v in ids},
      config.evaluation.use_ambiguous, source, 'evaluation.use_ambiguous=False')
  return evaluation.evaluate_detections(
      scored, detections, config.evaluation.tiou_thresholds,
      subset=sorted({v.subset for v in videos}), ambiguous=ambiguous, ambiguous_source=source,
      ambiguous_note=note, class_names=list(dataset.class_names),
      unknown_videos=config.evaluation.unknown_videos)


def process_videos(videos: Sequence[VideoRecord], process_index: int, process_count: int
                   ) -> List[VideoRecord]:
  """The videos process `process_index` of `process_count` evaluates: every count-th one, so
  long and short videos spread evenly."""
  return list(videos)[process_index::process_count]


def allgather_objects(value: Any) -> List[Any]:
  """[value of process 0, value of process 1, ...], on every process (pickled bytes through
  `multihost_utils.process_allgather`; the plain [value] on one process)."""
  if jax.process_count() == 1:
    return [value]
  data = np.frombuffer(pickle.dumps(value), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  gathered = np.asarray(multihost_utils.process_allgather(padded))
  return [pickle.loads(gathered[i, :int(n)].tobytes()) for i, n in enumerate(sizes.reshape(-1))]


def local_detections(forward, params, state, videos: Sequence[VideoRecord], config,
                     num_classes: int, process_index: int = 0, process_count: int = 1,
                     progress: Optional[bool] = None) -> Dict[str, localize.Detections]:
  """{video_id: Detections} of this process's share of `videos` (`process_videos`)."""
  mine = process_videos(videos, process_index, process_count)
  return detect(video_outputs(forward, params, state, mine, config, num_classes, progress), mine,
                config, progress)


def evaluate(forward, params, state, dataset: Dataset, videos: Sequence[VideoRecord], config, *,
             process_index: Optional[int] = None, process_count: Optional[int] = None,
             allgather: Callable[[Any], List[Any]] = allgather_objects,
             progress: Optional[bool] = None, scored: bool = True
             ) -> Tuple[Optional[evaluation.EvaluationResult], Dict[str, localize.Detections]]:
  """(mAP result, detections) of the network on `videos` (outputs, localizer, scoring); the
  result is None unless `scored` (videos without ground truth).

  With several processes each runs the network on its share (`process_videos`) and the
  detections of all are gathered (`allgather`), so every process returns the result of all
  videos, in the order of `videos`. progress: as `video_outputs`.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  found = local_detections(forward, params, state, videos, config, dataset.num_classes,
                           process_index, process_count, progress)
  if process_count > 1:
    merged = {}
    for part in allgather(found):
      merged.update(part)
    found = merged
  detections = {v.video_id: found[v.video_id] for v in videos}
  return (score(dataset, videos, detections, config) if scored else None), detections


def selection_value(result: evaluation.EvaluationResult, iou: float) -> Tuple[str, float]:
  """(name, value) of the checkpoint-selection metric: mAP@iou, or the mean for iou < 0."""
  if iou < 0:
    return 'average_mAP', float(result.average_mAP)
  hits = np.flatnonzero(np.isclose(result.tiou, iou))
  if not hits.size:
    raise ValueError(f'train.selection_iou={iou} is not among evaluation.tiou_thresholds '
                     f'{tuple(float(t) for t in result.tiou)}')
  return f'mAP@{iou:g}', float(result.mAP[hits[0]])
