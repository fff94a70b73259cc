"""Temporal detection mAP with the semantics of ActivityNet's `Evaluation/eval_detection.py`.

That scorer (used by BaS-Net, ACM-Net, CoLA and most WTAL code since) is the field's standard:

  * Per class, the detections of all videos are ranked by score, highest first. Ties keep their
    input order here (stable sort).
  * Each detection, in rank order, is compared with the ground truth (GT) instances of its class
    in its video (in GT file order) by temporal IoU (tIoU). At each threshold it takes the not yet
    matched instance of highest tIoU (ties: the later instance); if that tIoU >= threshold it is a
    true positive (TP) and locks the instance, otherwise a false positive (FP). A duplicate of a
    matched detection is therefore a FP. Detections in videos without GT of their class are FPs.

Where the results can differ from the reference: it orders both lists with NumPy's default
`argsort()[::-1]`, which is the reversed input order of equal values only where the argsort keeps
ties in input order. So (a) detections of one class with equal scores: the reference ranks them
in an unspecified order (reversed input order for small arrays), this evaluator in input order;
(b) GT instances (of one class in one video) with equal tIoU to a detection: this evaluator takes
the later one, as the reference wherever NumPy's argsort keeps ties in input order (its generic
quicksort does for up to 16 values); NumPy builds that sort with SIMD (x86-simd-sort: NumPy 2.4 on
an AVX-512 CPU, for one) can order ties otherwise from 4 values on, so the reference's own choice
then depends on the machine. Nothing else differs.
  * AP is the VOC 2010+ interpolated area: precision made monotone from the right, summed over
    the recall steps. A class with GT but no detection has AP 0. mAP is the mean over classes.

Which classes are scored: those with at least one GT instance in the scored videos (the reference
builds its class list from the GT; recall divides by the number of instances, undefined for 0).
Classes declared through `class_names` but without GT are reported and their detections ignored;
a detection label that is neither a GT class nor a declared one is an error.

Vectorised (NumPy): the only sequential dependency of the greedy matching is between detections of
the same (class, video) group, so the k-th ranked detection of every group is matched at once, for
all thresholds, in round k. Detections whose best tIoU is below the smallest threshold are FPs at
every threshold and skip the rounds.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from d2net_jax.data.records import DataError
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation.ground_truth import (  # noqa: F401  (re-exported)
    GroundTruth, _database_from_dataset, _as_subsets, load_ground_truth, parse_ambiguous,
    _as_regions, ambiguous_mask, choose_ambiguous, ground_truth_ambiguous)
from d2net_jax.evaluation.report import EvaluationResult, format_table, save_metrics  # noqa: F401

THUMOS14_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOU = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# The averages THUMOS14 papers report, each over the thresholds of a range (step 0.1).
THUMOS14_RANGES = {
    '0.1:0.5': (0.1, 0.2, 0.3, 0.4, 0.5),
    '0.3:0.7': (0.3, 0.4, 0.5, 0.6, 0.7),
    '0.1:0.7': THUMOS14_TIOU,
}
UNKNOWN_VIDEO_POLICIES = ('false_positive', 'drop', 'error')


# ----------------------------------------------------------------------------------------------
# Matching and AP.


def segment_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """tIoU of segments a (..., 2) and b (..., 2) (broadcast); 0 where the union is empty."""
  inter = np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  union = (b[..., 1] - b[..., 0]) + (a[..., 1] - a[..., 0]) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _padded_tiou(det_segments, gt_segments, start, count):
  """(A, m) tIoU of each detection with its group's GT (-inf past the group), (A, m) GT index."""
  m = max(int(count.max()), 1)
  cols = np.arange(m)
  valid = cols[None, :] < count[:, None]
  gt_index = start[:, None] + np.minimum(cols[None, :], np.maximum(count[:, None] - 1, 0))
  tiou = segment_tiou(det_segments[:, None, :], gt_segments[gt_index])
  return np.where(valid, tiou, -np.inf), gt_index


def match_detections(det_keys: np.ndarray, det_segments: np.ndarray,
                     gt_keys: np.ndarray, gt_segments: np.ndarray,
                     thresholds: np.ndarray, chunk: int = 4096) -> np.ndarray:
  """Greedy matching of the reference scorer; returns (K, N) bool, True = TP.

  Args:
    det_keys: (N,) group of each detection (class * V + video; -1 = no GT group).
      Detections must already be in rank order (score descending) within each group.
    det_segments: (N, 2).
    gt_keys: (M,) group of each GT instance, sorted ascending (stable: earlier instances first).
    gt_segments: (M, 2).
    thresholds: (K,) tIoU thresholds.
  """
  n, k = det_keys.shape[0], thresholds.shape[0]
  tp = np.zeros((k, n), dtype=bool)
  if n == 0 or gt_keys.shape[0] == 0:
    return tp
  start = np.searchsorted(gt_keys, det_keys, side='left')
  count = np.searchsorted(gt_keys, det_keys, side='right') - start
  count[det_keys < 0] = 0

  # Best tIoU per detection (chunked to bound the padded (chunk, m) arrays): below the smallest
  # threshold means FP everywhere, so such detections skip the sequential rounds.
  candidates = np.flatnonzero(count > 0)
  best = np.full(n, -np.inf)
  for lo in range(0, candidates.size, chunk):
    rows = candidates[lo:lo + chunk]
    tiou, _ = _padded_tiou(det_segments[rows], gt_segments, start[rows], count[rows])
    best[rows] = tiou.max(axis=1)
  candidates = np.flatnonzero(best >= thresholds.min())
  if candidates.size == 0:
    return tp

  # Rank of each candidate within its group (input order = rank order), then rounds by rank.
  keys = det_keys[candidates]
  by_group = np.argsort(keys, kind='stable')
  sorted_keys = keys[by_group]
  first = np.searchsorted(sorted_keys, sorted_keys, side='left')
  rank = np.empty(candidates.size, dtype=np.int64)
  rank[by_group] = np.arange(candidates.size) - first
  by_round = np.argsort(rank, kind='stable')
  bounds = np.searchsorted(rank[by_round], np.arange(rank.max() + 2), side='left')

  locked = np.zeros((k, gt_keys.shape[0]), dtype=bool)
  thr = thresholds[:, None]
  for r in range(bounds.size - 1):
    rows = candidates[by_round[bounds[r]:bounds[r + 1]]]  # One detection per group.
    tiou, gt_index = _padded_tiou(det_segments[rows], gt_segments, start[rows], count[rows])
    available = np.where(locked[:, gt_index], -np.inf, tiou[None])  # (K, A, m)
    # Last maximum: the later instance on ties, as the reference's `argsort()[::-1]`.
    choice = available.shape[-1] - 1 - available[..., ::-1].argmax(axis=-1)
    chosen_tiou = np.take_along_axis(available, choice[..., None], axis=-1)[..., 0]
    hit = chosen_tiou >= thr  # (K, A)
    tp[:, rows] = hit
    kk, aa = np.nonzero(hit)
    locked[kk, gt_index[aa, choice[kk, aa]]] = True
  return tp


def interpolated_ap(tp: np.ndarray, num_positives: int) -> np.ndarray:
  """VOC 2010+ interpolated AP of ranked TP flags (K, n) -> (K,).

  precision_i = TP_i / i and recall_i = TP_i / num_positives over the first i detections;
  precision is replaced by its maximum over ranks >= i (monotone envelope) and summed times the
  recall increments (the final step to recall 1 has precision 0).
  """
  k, n = tp.shape
  ap = np.zeros(k)
  if n == 0 or num_positives <= 0:
    return ap
  tp_cum = np.cumsum(tp, axis=1, dtype=np.float64)
  fp_cum = np.cumsum(~tp, axis=1, dtype=np.float64)
  recall = tp_cum / float(num_positives)
  precision = tp_cum / (tp_cum + fp_cum)
  envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
  steps = np.diff(recall, axis=1, prepend=0.0)
  for i in range(k):
    # Only the recall steps are summed, plus the zero-precision step to recall 1, so the sum
    # adds the same terms in the same order as the reference scorer.
    changed = steps[i] != 0
    terms = steps[i][changed] * envelope[i][changed]
    if recall[i, -1] != 1.0:
      terms = np.append(terms, 0.0)
    ap[i] = np.sum(terms)
  return ap


# ----------------------------------------------------------------------------------------------
# The evaluator.


def parse_tiou(text: str) -> tuple[float, ...]:
  """'0.1:0.7:0.1' (start:stop:step, stop included) or '0.3,0.5' -> thresholds.

  Values are rounded to 10 decimals, so 0.9 is 0.9 (np.linspace(0.5, 0.95, 10) gives
  0.8999999999999999; only a tIoU exactly equal to the threshold can tell them apart).
  """
  text = text.strip()
  try:
    if ':' in text:
      parts = [float(x) for x in text.split(':')]
      if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
        raise ValueError(text)
      start, stop, step = parts
      count = int(np.floor((stop - start) / step + 1e-9)) + 1
      values = [start + i * step for i in range(count)]
    else:
      values = [float(x) for x in text.split(',') if x.strip()]
  except ValueError as e:
    raise ValueError(f'tIoU thresholds {text!r}: expected start:stop:step or a comma list.') from e
  return check_tiou(round(v, 10) for v in values)


def check_tiou(thresholds: Iterable[float]) -> tuple[float, ...]:
  values = tuple(float(t) for t in thresholds)
  if not values or any(not 0.0 <= t <= 1.0 for t in values):
    raise ValueError(f'tIoU thresholds must be a non-empty list in [0, 1], got {values}.')
  return values


def _range_averages(tiou: np.ndarray, mAP: np.ndarray) -> dict[str, float]:
  out = {}
  for name, values in THUMOS14_RANGES.items():
    idx = [np.flatnonzero(np.isclose(tiou, v, atol=1e-9)) for v in values]
    if all(i.size for i in idx):
      out[name] = float(np.mean([mAP[i[0]] for i in idx]))
  return out


def evaluate_detections(ground_truth: Any,
                        detections: Any,
                        tiou_thresholds: Iterable[float] = THUMOS14_TIOU,
                        *,
                        subset: str | Iterable[str] | None = None,
                        ambiguous: Any = None,
                        ambiguous_source: str | None = None,
                        ambiguous_note: str = '',
                        class_names: Sequence[str] | None = None,
                        unknown_videos: str = 'false_positive') -> EvaluationResult:
  """Detection mAP per tIoU threshold (module docstring: the semantics).

  Args:
    ground_truth: see `load_ground_truth` (path, GT dict, Dataset or GroundTruth).
    detections: a results JSON path, a results dict, {video: rows} (see
      `detections.flatten_detections`) or a `DetectionArrays`.
    tiou_thresholds: (K,) thresholds in [0, 1].
    subset: GT subset(s) to score (see `load_ground_truth`).
    ambiguous: None, an `Ambiguous_test.txt` path or {video: (R, 2) seconds}: detections that
      overlap a region of their video are dropped before scoring (THUMOS14 D2-Net protocol).
    ambiguous_source: how the protocol line names the regions (default: the file name).
    ambiguous_note: said in the protocol line after 'no ambiguous-region filtering' (why not).
    class_names: the model's classes (needed for class indices in `detections`).
    unknown_videos: detections of videos that are not in the scored GT:
      'false_positive' (what the reference does), 'drop', or 'error'. Always counted.
  """
  if unknown_videos not in UNKNOWN_VIDEO_POLICIES:
    raise ValueError(f'unknown_videos={unknown_videos!r}; one of {UNKNOWN_VIDEO_POLICIES}.')
  thresholds = np.asarray(check_tiou(tiou_thresholds), dtype=np.float64)
  gt = load_ground_truth(ground_truth, subset, class_names)
  if gt.num_instances == 0:
    raise DataError(f'{gt.source}: no ground-truth instance in subset(s) {list(gt.subsets)}; '
                    'nothing to score.')
  names_for_indices = class_names if class_names is not None else gt.declared_class_names
  if isinstance(detections, detections_lib.DetectionArrays):
    det, det_source = detections, 'detections'
  elif isinstance(detections, (str, os.PathLike)):
    det_source = str(detections)
    det = detections_lib.flatten_detections(detections_lib.read_detections(detections),
                                            names_for_indices, source=det_source)
  else:
    det_source = 'detections'
    det = detections_lib.flatten_detections(detections, names_for_indices, source=det_source)
  num_input = len(det)

  # Labels: every detection label must be a known class.
  known = set(gt.class_names) | set(gt.classes_without_instances)
  unknown_labels = sorted(set(det.labels.tolist()) - known)
  if unknown_labels:
    listed = sorted(known)
    raise DataError(f'{det_source}: labels {unknown_labels} are not classes of {gt.source} '
                    f'({len(listed)} classes: {listed[:20]}{" ..." if len(listed) > 20 else ""}).'
                    ' To score a model whose classes the GT lacks, give its class names '
                    '(`d2net-jax evaluate --classes RUN/model.json`).')

  # Videos outside the scored GT (the reference counts their detections as FPs, silently).
  video_of = {v: i for i, v in enumerate(gt.video_ids)}
  det_video = np.asarray([video_of.get(v, -1) for v in det.video_ids.tolist()], dtype=np.int64)
  if unknown_videos == 'error' and (det_video < 0).any():
    names = sorted(set(det.video_ids[det_video < 0].tolist()))
    raise DataError(f'{det_source}: detections in {len(names)} video(s) not in {gt.source} '
                    f'(subset {list(gt.subsets)}): {names[:5]}'
                    f'{" ..." if len(names) > 5 else ""}.')

  keep = np.ones(num_input, dtype=bool)
  regions, regions_name = _as_regions(ambiguous)
  num_ambiguous = 0
  if regions is not None:
    dropped = ambiguous_mask(det.video_ids, det.segments, regions)
    num_ambiguous = int(dropped.sum())
    keep &= ~dropped

  unknown = (det_video < 0) & keep
  num_unknown = int(unknown.sum())
  num_unknown_videos = len(set(det.video_ids[unknown].tolist()))
  if unknown_videos == 'drop':
    keep &= ~unknown

  class_of = {c: i for i, c in enumerate(gt.class_names)}
  det_class = np.asarray([class_of.get(l, -1) for l in det.labels.tolist()], dtype=np.int64)
  ignored = keep & (det_class < 0)
  num_ignored = int(ignored.sum())
  keep &= det_class >= 0

  rows = np.flatnonzero(keep)
  det_class, det_video = det_class[rows], det_video[rows]
  det_segments, det_scores = det.segments[rows], det.scores[rows]
  # Rank order: by class, then score descending; ties keep input order.
  order = np.lexsort((np.arange(rows.size), -det_scores, det_class))
  det_class, det_video, det_segments = det_class[order], det_video[order], det_segments[order]

  num_videos = len(gt.video_ids)
  det_keys = np.where(det_video >= 0, det_class * num_videos + det_video, -1)
  gt_keys = gt.class_index * num_videos + gt.video_index
  gt_order = np.argsort(gt_keys, kind='stable')
  tp = match_detections(det_keys, det_segments, gt_keys[gt_order], gt.segments[gt_order],
                        thresholds)

  num_classes = len(gt.class_names)
  bounds = np.searchsorted(det_class, np.arange(num_classes + 1), side='left')
  num_positives = np.bincount(gt.class_index, minlength=num_classes)
  ap = np.zeros((num_classes, thresholds.size))
  tps = np.zeros((num_classes, thresholds.size), dtype=np.int64)
  fps = np.zeros_like(tps)
  for c in range(num_classes):
    flags = tp[:, bounds[c]:bounds[c + 1]]
    ap[c] = interpolated_ap(flags, int(num_positives[c]))
    tps[c] = flags.sum(axis=1)
    fps[c] = flags.shape[1] - tps[c]
  mAP = ap.mean(axis=0) if num_classes else np.zeros(thresholds.size)
  unmatchable = _unmatchable_instances(gt)
  if num_input == 0:
    warnings.warn(f'{det_source}: no detections at all; every AP is 0', UserWarning, stacklevel=2)

  protocol = ['ActivityNet eval_detection semantics (greedy highest-tIoU matching, ties to the '
              'later GT instance; VOC interpolated AP, tied scores in input order)']
  if regions is not None:  # Counted in the scored videos (a file may cover more).
    num_regions = sum(len(r) for v, r in regions.items() if v in video_of)
    protocol.append(f'ambiguous regions from {ambiguous_source or regions_name} ({num_regions} '
                    'regions in the scored videos): detections overlapping one in the same video '
                    'dropped')
  else:
    protocol.append('no ambiguous-region filtering' +
                    (f' ({ambiguous_note})' if ambiguous_note else ''))
  protocol.append({'false_positive': 'detections in videos outside the GT count as FP',
                   'drop': 'detections in videos outside the GT dropped',
                   'error': 'detections in videos outside the GT are an error'}[unknown_videos])
  return EvaluationResult(
      tiou=thresholds,
      mAP=mAP,
      average_mAP=float(mAP.mean()),
      range_mAP=_range_averages(thresholds, mAP),
      class_names=gt.class_names,
      ap=ap,
      num_positives=num_positives,
      num_detections_per_class=np.diff(bounds),
      true_positives=tps,
      false_positives=fps,
      num_videos=num_videos,
      num_videos_with_instances=int(np.unique(gt.video_index).size),
      num_instances=gt.num_instances,
      num_detections_input=num_input,
      num_detections=int(rows.size),
      num_ambiguous_removed=num_ambiguous,
      num_unknown_video_detections=num_unknown,
      num_unknown_videos=num_unknown_videos,
      unknown_video_policy=unknown_videos,
      num_ignored_detections=num_ignored,
      classes_without_instances=gt.classes_without_instances,
      subsets=gt.subsets,
      protocol='; '.join(protocol) + (
          f'; {len(unmatchable)} zero-length GT instances kept (never matched)' if unmatchable
          else '') + '.',
      unmatchable_instances=unmatchable,
      protocol_name='activitynet',
      ground_truth=(f'{gt.source} (subset {"+".join(gt.subsets)}: {num_videos} videos, '
                    f'{gt.num_instances} instances, {num_classes} classes)'))


def _unmatchable_instances(gt: GroundTruth) -> tuple[str, ...]:
  """GT instances of zero length (end <= start): no detection ever reaches tIoU > 0 with them."""
  zero = np.flatnonzero(gt.segments[:, 1] <= gt.segments[:, 0])
  return tuple(f'{gt.video_ids[gt.video_index[i]]} {gt.class_names[gt.class_index[i]]} '
               f'[{gt.segments[i, 0]:g}, {gt.segments[i, 1]:g}]' for i in zero)
