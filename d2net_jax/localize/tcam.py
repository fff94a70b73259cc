"""D2-Net's localizer (Sec. 3.3, localizer 'tcam'): detections from a TCAM and an attention, NumPy only.

Per video, from the TCAM `T` (s, C) and the bottom-up attention `lambda'` (s,) (Eq. 8):

1. refined sequence r = lambda' * T (s, C); `rescale_attention` first scales lambda' by
   `attention_scale / max(lambda')` (official ActivityNet1.2 setting);
2. video-level class scores p (C,): mean of the top-k snippets of r (official) or of T (paper),
   k = max(1, floor(s / topk_ratio)) (official scorer) or max(1, ceil(s / topk_ratio)) (paper);
3. relevant classes: p > class_threshold * max(p) and p > 0, or the official ActivityNet rule;
4. proposals: for every relevant class c and threshold theta, the runs of r_c > theta that are at
   least `min_proposal_snippets` long, as snippet ranges [start, end) (end exclusive);
5. outer-inner contrast S = S_i - S_o: S_i the mean of r_c inside, S_o the mean over
   floor(inflation * width) snippets (at least `min_outer_snippets`) on each side, cut at the
   video borders; a side that falls outside the video is left out, a proposal spanning the whole
   video gets S = S_i; with `outer_rejection` a proposal with (S_o - S_i + 1) / 2 above
   `outer_rejection_threshold` is dropped (official code);
6. greedy class-wise NMS: IoU of the snippet ranges >= nms_threshold is suppressed;
7. detections with S >= score_threshold * (best S of the video's class, or of the video).

Detections are reported in seconds: snippet t covers [t, t + 1) * seconds_per_snippet, so a range
[start, end) becomes [start * sps, end * sps].

Everything is array code: the proposals of all classes and thresholds come from one comparison,
identical proposals (found at several thresholds) are scored once, and NMS runs as rounds over the
list of conflicting pairs (no Python loop over proposals or pairs). Ties are broken by a fixed
order (score desc, start asc, end asc within a class), so the result does not depend on the order
in which proposals were found.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from d2net_jax.localize import common
from d2net_jax.localize.common import Detections, find_proposals, nms_keep, topk_mean
from d2net_jax.utils import topk


# ------------------------------------------------------------------------------------------------
# Configuration.


def _check_config(config: Any) -> None:
  """ValueError for settings the procedure cannot run with."""
  start, stop, step = (float(v) for v in config.proposal_thresholds)
  if not step > 0 or stop < start:
    raise ValueError(f'localize.proposal_thresholds must be (start, stop >= start, step > 0), got '
                     f'{tuple(config.proposal_thresholds)}')
  if not 0 < config.nms_threshold <= 1:
    raise ValueError(f'localize.nms_threshold must be in (0, 1], got {config.nms_threshold}')
  if config.topk_ratio <= 0:
    raise ValueError(f'localize.topk_ratio must be > 0, got {config.topk_ratio}')
  if config.topk_rounding not in TOPK_COUNTS:
    raise ValueError("localize.topk_rounding must be 'floor' or 'ceil', got "
                     f'{config.topk_rounding!r}')
  if config.class_score_source not in ('refined', 'tcam'):
    raise ValueError("localize.class_score_source must be 'refined' or 'tcam', got "
                     f'{config.class_score_source!r}')
  if config.outer_mean not in ('sides', 'pooled'):
    raise ValueError(f"localize.outer_mean must be 'sides' or 'pooled', got {config.outer_mean!r}")
  if config.score_threshold_scope not in ('class', 'video'):
    raise ValueError("localize.score_threshold_scope must be 'class' or 'video', got "
                     f'{config.score_threshold_scope!r}')
  if config.min_proposal_snippets < 1 or config.min_outer_snippets < 0 or config.inflation < 0:
    raise ValueError('localize.min_proposal_snippets must be >= 1, min_outer_snippets and '
                     'inflation >= 0')
  if config.activitynet_class_rule and config.activitynet_max_classes < 1:
    raise ValueError('localize.activitynet_max_classes must be >= 1')


def proposal_thresholds(config: Any) -> np.ndarray:
  """(K,) float64 thresholds start, start + step, ..., stop (inclusive).

  When 1 / step is an integer m they are computed as i / m, e.g. 1/40, ..., 19/40 for the default
  (0.025, 0.475, 0.025), the exact values of the official code.
  """
  start, stop, step = (float(v) for v in config.proposal_thresholds)
  count = int(math.floor((stop - start) / step + 1e-9)) + 1
  per_unit = 1.0 / step
  first = start * per_unit
  if abs(per_unit - round(per_unit)) < 1e-9 and abs(first - round(first)) < 1e-9:
    return (round(first) + np.arange(count)) / round(per_unit)
  return start + step * np.arange(count)


def outer_width(width: np.ndarray | int, config: Any) -> np.ndarray:
  """Snippets of outer region on each side: max(min_outer_snippets, floor(inflation * width))."""
  grown = np.floor(np.asarray(width, np.float64) * float(config.inflation)).astype(np.int64)
  return np.maximum(int(config.min_outer_snippets), grown)


# ------------------------------------------------------------------------------------------------
# Steps 1-3: refined sequence, class scores, relevant classes.


def _validate_video(tcam: np.ndarray, attention: np.ndarray, seconds_per_snippet: float):
  tcam = np.asarray(tcam)
  attention = np.asarray(attention)
  if tcam.ndim != 2:
    raise ValueError(f'tcam must be (s, C), got shape {tcam.shape}')
  if attention.shape != (tcam.shape[0],):
    raise ValueError(f'attention must be (s,) with s = {tcam.shape[0]} (the tcam rows), got shape '
                     f'{attention.shape}')
  if tcam.shape[0] == 0 or tcam.shape[1] == 0:
    raise ValueError(f'tcam has no snippets or no classes: shape {tcam.shape}')
  if not (np.all(np.isfinite(tcam)) and np.all(np.isfinite(attention))):
    raise ValueError('tcam and attention must be finite')
  if not (np.isfinite(seconds_per_snippet) and seconds_per_snippet > 0):
    raise ValueError(f'seconds_per_snippet must be > 0, got {seconds_per_snippet}')
  dtype = np.result_type(tcam.dtype, attention.dtype, np.float32)
  return tcam.astype(dtype, copy=False), attention.astype(dtype, copy=False)


def refined_sequence(tcam: np.ndarray, attention: np.ndarray, config: Any) -> np.ndarray:
  """r = lambda' * T (s, C), in the inputs' float dtype (float32 for float32 inputs)."""
  if config.rescale_attention:
    top = attention.max()
    if top > 0:  # All-zero (or negative) attention: nothing to rescale, no detections follow.
      attention = attention * attention.dtype.type(config.attention_scale) / top
  return tcam * attention[:, None]


# k of the video-level top-k mean by `topk_rounding`.
TOPK_COUNTS = {'floor': topk.topk_count_floor_min1, 'ceil': topk.topk_count_ceil_min1}


def _class_scores(tcam: np.ndarray, refined: np.ndarray, config: Any) -> np.ndarray:
  """p (C,) float64: top-k mean of r (official) or T (paper), k = TOPK_COUNTS[topk_rounding]."""
  source = refined if config.class_score_source == 'refined' else tcam
  k = TOPK_COUNTS[config.topk_rounding](tcam.shape[0], config.topk_ratio)
  return topk_mean(source, int(k))


def video_class_scores(tcam: np.ndarray, attention: np.ndarray, config: Any) -> np.ndarray:
  """p (C,) float64: top-k mean of r (official) or T (paper)."""
  tcam, attention = _validate_video(tcam, attention, 1.0)
  return _class_scores(tcam, refined_sequence(tcam, attention, config), config)


def relevant_classes(scores: np.ndarray, config: Any) -> np.ndarray:
  """(C,) bool, the classes to localize, from the video-level scores p (C,)."""
  scores = np.asarray(scores, np.float64)
  if not config.activitynet_class_rule:
    return (scores > config.class_threshold * scores.max()) & (scores > 0)
  high = float(config.activitynet_high_floor)
  floor = high if np.any(scores > high) else float(config.activitynet_class_floor)
  n = int(config.activitynet_max_classes)
  # The (n + 1)-th highest score; with n or fewer classes every class can pass.
  cutoff = np.sort(scores)[-(n + 1)] if scores.shape[0] > n else -np.inf
  return scores > max(floor, cutoff)


# ------------------------------------------------------------------------------------------------
# Steps 4-5: proposals and their outer-inner contrast.


def contrast_scores(rows: np.ndarray, row: np.ndarray, start: np.ndarray, end: np.ndarray,
                     config: Any):
  """Outer-inner contrast S = S_i - S_o of each proposal (Sec. 3.3) and the rejection rule.

  Args:
    rows: (R, s) refined sequences.
    row, start, end: (P,) int proposals, the snippet range [start, end) of rows[row].
    config: the `localize` section (inflation, min_outer_snippets, outer_mean, outer_rejection*).

  Returns:
    score: (P,) float64 S (S_i where the proposal spans the whole video).
    keep: (P,) bool, False for the proposals the rejection rule drops.
  """
  s = rows.shape[1]
  range_sum = common.range_sums(rows, row)

  width = end - start
  inner = range_sum(start, end) / width
  grow = outer_width(width, config)
  left_lo = np.maximum(start - grow, 0)
  right_hi = np.minimum(end + grow, s)
  left_n = start - left_lo
  right_n = right_hi - end
  has_left, has_right = left_n > 0, right_n > 0
  has_outer = has_left | has_right
  left_sum, right_sum = range_sum(left_lo, start), range_sum(end, right_hi)
  with np.errstate(invalid='ignore', divide='ignore'):
    if config.outer_mean == 'sides':
      left_mean = left_sum / left_n
      right_mean = right_sum / right_n
      outer = np.where(has_left & has_right, (left_mean + right_mean) / 2,
                       np.where(has_left, left_mean, right_mean))
    else:
      outer = (left_sum + right_sum) / (left_n + right_n)
  score = np.where(has_outer, inner - outer, inner)
  keep = np.ones(score.shape, bool)
  if config.outer_rejection:
    keep = ~has_outer | ((outer - inner + 1) / 2 <= config.outer_rejection_threshold)
  return score, keep


# ------------------------------------------------------------------------------------------------
# The whole procedure.


def localize_video(tcam: np.ndarray, attention: np.ndarray, seconds_per_snippet: float,
                   config: Any) -> Detections:
  """Detections of one video (Sec. 3.3).

  Args:
    tcam: (s, C) class activations T (the mean of the two sigmoid streams).
    attention: (s,) bottom-up attention lambda' (Eq. 8).
    seconds_per_snippet: feature timing; snippet t covers [t, t + 1) * seconds_per_snippet.
    config: the `localize` ConfigDict (or any object with its attributes).

  Returns:
    Detections sorted by score desc, then class, start, end.
  """
  _check_config(config)
  tcam, attention = _validate_video(tcam, attention, seconds_per_snippet)
  s = tcam.shape[0]
  refined = refined_sequence(tcam, attention, config)
  classes = np.flatnonzero(relevant_classes(_class_scores(tcam, refined, config), config))
  if classes.size == 0 or s < config.min_proposal_snippets:
    return Detections.empty()
  rows = np.ascontiguousarray(refined[:, classes].T)  # (R, s)

  thresholds = proposal_thresholds(config)
  row, start, end = find_proposals(rows, thresholds, int(config.min_proposal_snippets))
  score, keep = contrast_scores(rows, row, start, end, config)
  row, start, end, score = row[keep], start[keep], end[keep], score[keep]
  if row.size == 0:
    return Detections.empty()

  keep = nms_keep(row, start, end, score, float(config.nms_threshold))
  row, start, end, score = row[keep], start[keep], end[keep], score[keep]

  # Step 7: scores below a fraction of the best one (per class or per video) are dropped.
  if config.score_threshold_scope == 'class':
    best = np.full(rows.shape[0], -np.inf)
    np.maximum.at(best, row, score)
    best = best[row]
  else:
    best = score.max()
  keep = score >= config.score_threshold * best
  row, start, end, score = row[keep], start[keep], end[keep], score[keep]

  class_index = classes[row].astype(np.int32)
  order = np.lexsort((end, start, class_index, -score))
  class_index, start, end, score = class_index[order], start[order], end[order], score[order]
  sps = float(seconds_per_snippet)
  return Detections(class_index=class_index, start=start * sps, end=end * sps, score=score,
                    start_snippet=start.astype(np.int64), end_snippet=end.astype(np.int64))


def localize_videos(videos: Iterable[tuple[np.ndarray, np.ndarray, float]], config: Any,
                    names: Sequence[str] | None = None) -> list[Detections]:
  """`localize_video` for each (tcam, attention, seconds_per_snippet); errors name the video."""
  _check_config(config)
  results = []
  for i, (tcam, attention, sps) in enumerate(videos):
    try:
      results.append(localize_video(tcam, attention, sps, config))
    except ValueError as e:
      name = names[i] if names is not None else f'#{i}'
      raise ValueError(f'video {name}: {e}') from e
  return results
