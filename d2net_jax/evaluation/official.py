"""The official D2-Net scorer (`detectionMAP.py`, getDetections + getLocMAP) as a protocol.

`evaluation.protocol = 'd2net_official'` scores detections the way the published D2-Net numbers
were scored; 'activitynet' (d2net_jax/evaluation/mean_ap.py, the default) is the field's standard. Both
return an `evaluation.EvaluationResult`, whose table and JSON name the protocol and ground truth.

The official procedure, per class (classes in the order below), at each tIoU threshold:
  * Everything lives on the official snippet grid, `frames` frames at `fps` (16 at 25: 0.64 s);
    with x -> x * fps / frames (seconds to snippets, computed in that order as the official
    code does), a detection [start_s, end_s] is the snippet range [rint(start), rint(end)), a
    ground-truth (GT) instance [a, b) of snippets as each branch below says, and the tIoU of two
    ranges is |A n B| / |A u B| of their snippet index sets.
  * Only videos of the scored subset with >= 1 annotated instance take part; detections elsewhere
    are dropped. THUMOS14 only: detections whose snippet range shares a snippet with an ambiguous
    region [rint(s), rint(e)) of their video are dropped first.
  * Detections are ranked by score (np.argsort(-score), as the official code). Each one, in rank
    order, walks the class's not yet matched GT list in list order and takes the FIRST instance of
    its video with tIoU >= threshold (not the best one): TP, and that instance is removed.
    Otherwise FP.
  * AP: 0 when there is no TP, else the VOC area (precision made monotone from the right). mAP is
    the mean over the classes, all thresholds separately.
  * A class with no detection (after the filters) gets AP 0 and, through an index that is then
    not advanced, every later class reads that same empty list: every later class gets AP 0 too.
    `zero_ap_after_empty_class=True` reproduces this (on by default in this protocol), with a
    warning when it fires; False gives only the empty class AP 0.

Ground truth, two branches of the official code:
  * 'thumos14_npy' (THUMOS14 branch): its own list `test_gt_segments.npy`, 20 per-class lists of
    [video number, start, end] with start and end as fractions of the video's duration (210
    videos, 3234 instances); an instance is [rint(f0 * duration), rint(f1 * duration)) on the grid.
    Classes in class-list order, all 20 (a class without GT scores AP 0). The scored videos are
    the test videos with annotations in segments.npy (212: two have no entry in the list).
  * 'annotations' (ActivityNet1.2 branch): the dataset's own instances in seconds,
    [rint(s), rint(e)) on the grid; classes: those with an instance, sorted by name.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from d2net_jax.data.records import DataError
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation import mean_ap as evaluation

PROTOCOLS = ('activitynet', 'd2net_official')
OFFICIAL_GT = ('thumos14_npy', 'annotations')
OFFICIAL_FPS = 25.0
OFFICIAL_FRAMES = 16
OFFICIAL_THUMOS14_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5)
OFFICIAL_ACTIVITYNET_TIOU = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclasses.dataclass(frozen=True)
class OfficialGroundTruth:
  """GT instances on the official snippet grid.

  Attributes:
    video_ids: (V,) the scored videos (each with >= 1 annotated instance).
    class_names: (C,) the scored classes, in the official scoring order.
    instances: per class, (M_c, 3) int64 rows [video index, first snippet, end snippet), in the
      official list order.
    fps, frames: the grid: a snippet is `frames` frames at `fps`.
    branch: 'thumos14_npy' or 'annotations'.
    source: what the GT came from (shown in tables).
  """
  video_ids: tuple[str, ...]
  class_names: tuple[str, ...]
  instances: tuple[np.ndarray, ...]
  fps: float
  frames: int
  branch: str
  source: str

  @property
  def num_instances(self) -> int:
    return int(sum(len(i) for i in self.instances))


def _rint(x) -> np.ndarray:
  return np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64)


def to_grid(seconds, fps: float = OFFICIAL_FPS, frames: int = OFFICIAL_FRAMES) -> np.ndarray:
  """Seconds -> snippet positions, seconds * fps / frames in the official order (not rounded)."""
  return np.asarray(seconds, dtype=np.float64) * fps / frames


def thumos14_npy_ground_truth(gt_segments_file, videos: Sequence[tuple[str, float]],
                              class_names: Sequence[str], fps: float = OFFICIAL_FPS,
                              frames: int = OFFICIAL_FRAMES) -> OfficialGroundTruth:
  """The THUMOS14 branch: `test_gt_segments.npy` read against the scored videos.

  Args:
    gt_segments_file: the official `test_gt_segments.npy` (one list per class, class-list order,
      rows [video number (the name after 'video_test_'), start fraction, end fraction]).
    videos: (video_id, duration_s) of the scored videos (test videos with >= 1 annotation).
    class_names: the class list (its order is the file's).
  """
  path = pathlib.Path(gt_segments_file)
  try:
    lists = np.load(path, allow_pickle=True)  # A pickled object array (trusted: the official one).
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: not a readable .npy file ({e})') from e
  if len(lists) != len(class_names):
    raise DataError(f'{path}: {len(lists)} class lists for {len(class_names)} classes.')
  index = {str(v)[11:]: i for i, (v, _) in enumerate(videos)}
  durations = np.asarray([d for _, d in videos], dtype=np.float64)
  instances = []
  for c, rows in enumerate(lists):
    out = []
    for name, f0, f1 in rows:
      vi = index.get(str(name))
      if vi is None:
        raise DataError(f'{path}: class {class_names[c]!r}: video {name!r} is not among the '
                        f'{len(videos)} scored videos.')
      d = durations[vi]
      out.append((vi, int(_rint(to_grid(float(f0) * d, fps, frames))),
                  int(_rint(to_grid(float(f1) * d, fps, frames)))))
    instances.append(np.asarray(out, dtype=np.int64).reshape(-1, 3))
  return OfficialGroundTruth(tuple(v for v, _ in videos), tuple(class_names), tuple(instances),
                             float(fps), int(frames), 'thumos14_npy', str(path))


def annotations_ground_truth(videos, class_names: Sequence[str], fps: float = OFFICIAL_FPS,
                             frames: int = OFFICIAL_FRAMES,
                             source: str = 'the dataset annotations') -> OfficialGroundTruth:
  """The ActivityNet1.2 branch: the `VideoRecord`s' own instances, classes sorted by name."""
  scored = [v for v in videos if np.asarray(v.segments).size]
  present = sorted({str(class_names[int(c)]) for v in scored for c in v.segment_classes})
  per_class = {c: [] for c in present}
  for vi, v in enumerate(scored):
    for (s, e), c in zip(np.asarray(v.segments, np.float64).reshape(-1, 2), v.segment_classes):
      per_class[str(class_names[int(c)])].append(
          (vi, int(_rint(to_grid(s, fps, frames))), int(_rint(to_grid(e, fps, frames)))))
  instances = tuple(np.asarray(per_class[c], dtype=np.int64).reshape(-1, 3) for c in present)
  return OfficialGroundTruth(tuple(v.video_id for v in scored), tuple(present), instances,
                             float(fps), int(frames), 'annotations', source)


def _snippet_overlap(a0, a1, b0, b1):
  """|A n B|, |A u B| of the index sets range(a0, a1), range(b0, b1) (broadcast)."""
  inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
  union = np.clip(a1 - a0, 0, None) + np.clip(b1 - b0, 0, None) - inter
  return inter, union


def _first_match_flags(det_video, det_range, gt, thresholds) -> np.ndarray:
  """(K, N) bool TP flags of ranked detections against one class's GT rows (first match)."""
  k, n = thresholds.size, det_video.size
  tp = np.zeros((k, n), dtype=bool)
  for video in np.unique(det_video):
    rows = np.flatnonzero(det_video == video)  # Rank order kept: matching is per video.
    cols = np.flatnonzero(gt[:, 0] == video)  # GT list order kept.
    if cols.size == 0:
      continue
    taken = np.zeros((k, cols.size), dtype=bool)
    for r in rows:
      inter, union = _snippet_overlap(det_range[r, 0], det_range[r, 1], gt[cols, 1], gt[cols, 2])
      tiou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
      ok = ~taken & (tiou[None, :] >= thresholds[:, None])
      hit = ok.any(axis=1)
      first = ok.argmax(axis=1)
      taken[np.flatnonzero(hit), first[hit]] = True
      tp[hit, r] = True
  return tp


def _voc_ap(flags: np.ndarray, num_positives: int) -> float:
  """AP of one class at one threshold from rank-ordered TP flags (0 without a TP)."""
  tp = np.cumsum(flags)
  if flags.size == 0 or tp[-1] == 0:
    return 0.0
  fp = np.cumsum(~flags)
  precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
  recall = np.concatenate([[0.0], tp / max(num_positives, 1), [1.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
  return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def evaluate_official(ground_truth: OfficialGroundTruth, detections: Any,
                      tiou_thresholds=OFFICIAL_THUMOS14_TIOU, *,
                      ambiguous: Mapping[str, np.ndarray] | None = None,
                      ambiguous_note: str = '',
                      zero_ap_after_empty_class: bool = True,
                      class_names: Sequence[str] | None = None) -> evaluation.EvaluationResult:
  """Detection mAP as the official getLocMAP (module docstring: the procedure).

  Args:
    ground_truth: an `OfficialGroundTruth`.
    detections: {video: rows} or a results dict / path (see `detections.flatten_detections`), or
      a `DetectionArrays`.
    tiou_thresholds: (K,) thresholds (official: 0.1:0.5 THUMOS14, 0.5:0.95 ActivityNet1.2).
    ambiguous: {video: (R, 2) seconds}: the THUMOS14 ambiguous-region filter (None: none).
    ambiguous_note: said in the protocol line after 'no ambiguous-region filter' (why not).
    zero_ap_after_empty_class: reproduce the official index bug (see the module docstring).
    class_names: the model's classes, needed when detections give class indices.
  """
  gt = ground_truth
  thresholds = np.asarray(evaluation.check_tiou(tiou_thresholds), dtype=np.float64)
  if isinstance(detections, detections_lib.DetectionArrays):
    det = detections
  elif isinstance(detections, (str, pathlib.Path)):
    det = detections_lib.flatten_detections(detections_lib.read_detections(detections),
                                            class_names, source=str(detections))
  else:
    det = detections_lib.flatten_detections(detections, class_names)
  det_range = _rint(to_grid(det.segments, gt.fps, gt.frames)).reshape(-1, 2)
  video_of = {v: i for i, v in enumerate(gt.video_ids)}
  det_video = np.asarray([video_of.get(v, -1) for v in det.video_ids.tolist()], dtype=np.int64)
  keep = det_video >= 0
  num_ambiguous = 0
  if ambiguous:
    dropped = np.zeros(len(det), dtype=bool)
    for video, regions in ambiguous.items():
      rows = np.flatnonzero(det.video_ids == video)
      r = _rint(to_grid(np.asarray(regions, np.float64).reshape(-1, 2), gt.fps, gt.frames))
      if rows.size and r.size:
        inter, _ = _snippet_overlap(det_range[rows, None, 0], det_range[rows, None, 1],
                                    r[None, :, 0], r[None, :, 1])
        dropped[rows] = (inter > 0).any(axis=1)
    num_ambiguous = int((dropped & keep).sum())
    keep &= ~dropped

  num_classes, k = len(gt.class_names), thresholds.size
  ap = np.zeros((num_classes, k))
  tps = np.zeros((num_classes, k), dtype=np.int64)
  fps = np.zeros_like(tps)
  num_det = np.zeros(num_classes, dtype=np.int64)
  num_pos = np.asarray([len(i) for i in gt.instances], dtype=np.int64)
  empty_class, notes = None, []
  for c, name in enumerate(gt.class_names):
    rows = np.flatnonzero(keep & (det.labels == name))
    num_det[c] = rows.size
    if rows.size == 0 and empty_class is None:
      empty_class = name
      if zero_ap_after_empty_class and c + 1 < num_classes:
        note = (f'class {name!r} has no detection: the official scorer gives it and the '
                f'{num_classes - c - 1} classes after it AP 0 (zero_ap_after_empty_class=True)')
        warnings.warn(note)
        notes.append(note)
    if rows.size == 0 or (zero_ap_after_empty_class and empty_class is not None):
      continue
    rows = rows[np.argsort(-det.scores[rows])]
    flags = _first_match_flags(det_video[rows], det_range[rows], gt.instances[c], thresholds)
    ap[c] = [_voc_ap(f, int(num_pos[c])) for f in flags]
    tps[c] = flags.sum(axis=1)
    fps[c] = rows.size - tps[c]
  mAP = ap.mean(axis=0) if num_classes else np.zeros(k)
  scored = keep & np.isin(det.labels, np.asarray(gt.class_names, dtype=object))

  protocol = ('the official D2-Net detectionMAP.getLocMAP (snippet grid of '
              f'{gt.frames} frames at {gt.fps:g} fps, first GT over the threshold, VOC AP, '
              'ranking np.argsort(-score)); '
              + ('ambiguous regions dropped' if ambiguous else 'no ambiguous-region filter'
                 + (f' ({ambiguous_note})' if ambiguous_note else ''))
              + '; detections outside the scored videos dropped; '
              + ('a class without detections zeroes every later class (official bug)'
                 if zero_ap_after_empty_class else 'a class without detections: AP 0 only')
              + '.')
  return evaluation.EvaluationResult(
      tiou=thresholds, mAP=mAP, average_mAP=float(mAP.mean()),
      range_mAP=evaluation._range_averages(thresholds, mAP),  # pylint: disable=protected-access
      class_names=gt.class_names, ap=ap, num_positives=num_pos,
      num_detections_per_class=num_det, true_positives=tps, false_positives=fps,
      num_videos=len(gt.video_ids),
      num_videos_with_instances=len({int(v) for i in gt.instances for v in i[:, 0]}),
      num_instances=gt.num_instances, num_detections_input=len(det),
      num_detections=int(scored.sum()), num_ambiguous_removed=num_ambiguous,
      num_unknown_video_detections=int((det_video < 0).sum()),
      num_unknown_videos=len(set(det.video_ids[det_video < 0].tolist())),
      unknown_video_policy='drop', num_ignored_detections=int((keep & ~scored).sum()),
      classes_without_instances=(), subsets=(), protocol=protocol,
      protocol_name='d2net_official',
      ground_truth=f'{gt.source} ({gt.branch} branch: {len(gt.video_ids)} videos, '
      f'{gt.num_instances} instances, {num_classes} classes)',
      notes=tuple(notes))


def official_gt_file(config) -> pathlib.Path:
  """`evaluation.official_gt_file`, else
  <data.path>/<data.name>-Annotations/test_gt_segments.npy."""
  if config.evaluation.official_gt_file:
    return pathlib.Path(config.evaluation.official_gt_file).expanduser()
  return (pathlib.Path(config.data.path).expanduser() / f'{config.data.name}-Annotations' /
          'test_gt_segments.npy')


def score_dataset(dataset, videos, detections, config) -> evaluation.EvaluationResult:
  """`inference.score` for evaluation.protocol 'd2net_official': `videos` of `dataset` scored by
  the official procedure, the GT branch of `evaluation.official_gt`.

  'thumos14_npy' needs test-subset videos (the file covers THUMOS14's test set); any other
  videos (a validation split selecting the checkpoint) are scored on their annotations, and the
  result's `ground_truth` says so.
  """
  e = config.evaluation
  grid = (float(e.official_fps), int(e.official_frames_per_snippet))
  ids = {v.video_id for v in videos}
  ambiguous, note = evaluation.choose_ambiguous(
      {v: r for v, r in (dataset.ambiguous or {}).items() if v in ids}, e.use_ambiguous,
      f'the ground truth of dataset {dataset.name!r}', 'evaluation.use_ambiguous=False')
  all_test = all(v.subset == dataset.test_subset for v in videos)
  if e.official_gt == 'thumos14_npy' and all_test:
    scored = [v for v in videos if np.asarray(v.segments).size]
    gt = thumos14_npy_ground_truth(official_gt_file(config),
                                   [(v.video_id, float(v.duration)) for v in scored],
                                   list(dataset.class_names), *grid)
  else:
    source = f'dataset {dataset.name!r} annotations'
    if e.official_gt == 'thumos14_npy':
      source += ' (non-test videos: test_gt_segments.npy covers the test set only)'
    gt = annotations_ground_truth(videos, list(dataset.class_names), *grid, source)
  return evaluate_official(gt, detections, e.tiou_thresholds, ambiguous=ambiguous,
                           ambiguous_note=note, zero_ap_after_empty_class=e.zero_ap_after_empty_class,
                           class_names=list(dataset.class_names))
