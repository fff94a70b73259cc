"""SAL's localizer ('oic', BaS-Net lineage; SAL-DFE-spec Sec. 2.7): detections from a CAS and two
actionness sequences. NumPy only.

Per video, from the raw class logits `cas` (s, C), the RGB and flow actionness a_r, a_f (s,) in
[0, 1] and the second-order class logits `sc` (C,):

1. combined score comb = w_cas softmax_C(cas) + w_rgb a_r + w_flow a_f (s, C) (THUMOS14: the mean
   of the three, ActivityNet: 0.6 / 0.2 / 0.2); video class probabilities
   p = softmax_C((1 - beta_sc) * mean_{t in top-k of comb_c} cas[t, c] + beta_sc * sc),
   k = max(1, s // topk_ratio) (`topk_min_one`) or the ActivityNet code's s // topk_ratio, whose
   k = 0 (fewer than topk_ratio snippets: NaN scores in the code) gives no detection;
2. classes {c : p_c >= class_threshold}, or {argmax p} when none passes;
3. each selected comb_c is upsampled x `scale` by linear interpolation at
   x = np.arange(0, s, 1 / scale) (N = scale * s points, the last scale - 1 extrapolated past
   s - 1 from the last interval: scipy's interp1d(kind='linear', fill_value='extrapolate'),
   reproduced bit for bit in float64);
4. for every threshold theta of np.arange semantics (0.1, 0.2, 0.30000000000000004, ..., 0.9): the
   runs [s, e] (inclusive, on the upsampled grid) of comb_up >= theta (and > 0: the code zeroes
   values below theta and keeps those > 0). With `skip_index0_quirk`, a (class, theta) whose only
   position above theta is index 0 yields nothing (the code's `if temp_list.any()`);
5. OIC score inner - outer + gamma * p_c: inner the mean of comb_up over [s, e], outer the mean over
   the pooled sides [outer_s, s - 1] and [e + 1, outer_e] (0 when both are empty), with L = e-s+1,
   outer_s = max(0, int(s - lambda L)) and outer_e = min(N - 1, int(e + lambda L)) ('basnet':
   ceil(lambda L) points on the left, floor(lambda L) on the right; 'symmetric': floor on both);
6. times [s * tf, (e + 1) * tf] with tf = seconds_per_snippet / scale (seconds_per_snippet is per
   fed snippet, already scaled by v_len / s when the video was resampled);
7. per class, the proposals of all thresholds (duplicates included, as the code) go through
   BaS-Net's NMS on the times in seconds (basnet_nms.py: IoU with "+1" lengths, greedy by score;
   'basnet_soft' decays a suppressed proposal once and keeps it, 'hard' drops it).

The proposals of all classes and thresholds come from one comparison, their scores from cumulative
sums, and the NMS runs in rounds over the list of conflicting pairs (`common.greedy_keep`). Exact
ties in the greedy order are broken by start, end (asc); identical proposals found at several
thresholds have identical scores, so their order does not matter.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from d2net_jax.localize import common
from d2net_jax.localize.basnet_nms import basnet_nms
from d2net_jax.localize.common import Detections
from d2net_jax.utils import topk

OUTER_ROUNDINGS = ('basnet', 'symmetric')
NMS_KINDS = ('basnet_soft', 'hard')


# ------------------------------------------------------------------------------------------------
# Configuration.


def check_config(config: Any) -> None:
  """ValueError (one line, naming the field) for settings the procedure cannot run with."""
  def fail(field, rule, value):
    raise ValueError(f'localize.oic.{field} must be {rule}, got {value!r}')

  def finite(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)

  # (The code selects nothing at all, not even the argmax, for a threshold >= 1.)
  if not (finite(config.class_threshold) and 0 <= config.class_threshold < 1):
    fail('class_threshold', 'in [0, 1)', config.class_threshold)
  weights = tuple(config.comb_weights)
  if (len(weights) != 3 or not all(finite(w) and w >= 0 for w in weights)
      or sum(weights) <= 0):
    fail('comb_weights', '3 weights >= 0 (softmax(cas), rgb, flow) with a positive sum',
         tuple(weights))
  if not (isinstance(config.topk_ratio, (int, np.integer)) and config.topk_ratio >= 1):
    fail('topk_ratio', 'an integer >= 1', config.topk_ratio)
  if not isinstance(config.topk_min_one, (bool, np.bool_)):
    fail('topk_min_one', 'True or False', config.topk_min_one)
  if not (finite(config.beta_sc) and 0 <= config.beta_sc <= 1):
    fail('beta_sc', 'in [0, 1]', config.beta_sc)
  if not (isinstance(config.scale, (int, np.integer)) and config.scale >= 1):
    fail('scale', 'an integer >= 1', config.scale)
  thresholds = tuple(config.thresholds)
  if (len(thresholds) != 3 or not all(finite(v) for v in thresholds) or not thresholds[2] > 0
      or thresholds[1] < thresholds[0]):
    fail('thresholds', '(start, stop >= start, step > 0)', thresholds)
  if not (finite(config.outer_lambda) and config.outer_lambda >= 0):
    fail('outer_lambda', '>= 0', config.outer_lambda)
  if not finite(config.gamma):
    fail('gamma', 'a finite number', config.gamma)
  if config.outer_rounding not in OUTER_ROUNDINGS:
    fail('outer_rounding', ' or '.join(map(repr, OUTER_ROUNDINGS)), config.outer_rounding)
  if not isinstance(config.skip_index0_quirk, (bool, np.bool_)):
    fail('skip_index0_quirk', 'True or False', config.skip_index0_quirk)
  if config.nms not in NMS_KINDS:
    fail('nms', ' or '.join(map(repr, NMS_KINDS)), config.nms)
  if not (finite(config.nms_threshold) and 0 < config.nms_threshold <= 1):
    fail('nms_threshold', 'in (0, 1]', config.nms_threshold)
  if not (finite(config.soft_alpha) and config.soft_alpha > 0):
    fail('soft_alpha', '> 0', config.soft_alpha)


def thresholds(config: Any) -> np.ndarray:
  """(K,) float64 start + i * step up to stop (inclusive): np.arange's values, e.g.
  np.arange(0.1, 1.0, 0.1) = 0.1, 0.2, 0.30000000000000004, ..., 0.9 for (0.1, 0.9, 0.1)."""
  start, stop, step = (float(v) for v in config.thresholds)
  count = int(math.floor((stop - start) / step + 1e-9)) + 1
  return np.arange(start, start + (count - 0.5) * step, step)[:count]


# ------------------------------------------------------------------------------------------------
# Steps 1-2: combined score, class probabilities, selected classes.


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def combined_scores(cas: np.ndarray, a_r: np.ndarray, a_f: np.ndarray, weights) -> np.ndarray:
  """comb (s, C) in the inputs' float dtype: w_cas softmax(cas) + w_rgb a_r + w_flow a_f.

  Equal weights of 1/3 are computed as the THUMOS14 code does, (softmax + (a_f + a_r)) / 3;
  otherwise term by term in the order (cas, rgb, flow), as the ActivityNet code does.
  """
  dtype = cas.dtype.type
  probs = _softmax(cas, axis=1)
  w_cas, w_rgb, w_flow = (float(w) for w in weights)
  if all(abs(w - 1 / 3) < 1e-12 for w in (w_cas, w_rgb, w_flow)):
    return (probs + (a_f + a_r)[:, None]) / dtype(3)
  return (dtype(w_cas) * probs + dtype(w_rgb) * a_r[:, None]) + dtype(w_flow) * a_f[:, None]


def _topk(num_snippets: int, config: Any) -> int:
  """k of step 1: max(1, s // topk_ratio) with `topk_min_one`, else s // topk_ratio (maybe 0)."""
  count = topk.topk_count_floor_min1 if config.topk_min_one else topk.topk_count_floor
  return int(count(num_snippets, int(config.topk_ratio)))


def class_probabilities(cas: np.ndarray, comb: np.ndarray, sc: np.ndarray, config: Any
                        ) -> np.ndarray:
  """p (C,) in the inputs' float dtype: softmax((1 - beta_sc) * cas_top + beta_sc * sc), cas_top
  (C,) the mean of cas over the top-k snippets of comb in each class (ties: the earlier snippet
  first). Kept in float32 for float32 inputs: the code compares float32 p with class_threshold.
  Needs k >= 1 (`localize_video` gives no detection for k = 0)."""
  s = cas.shape[0]
  k = _topk(s, config)
  if k < 1:
    raise ValueError(f'top-k of {s} snippets with localize.oic.topk_ratio={config.topk_ratio} '
                     'is 0 (topk_min_one=False): no class scores')
  # The top k of each column: every value above the k-th largest, then the earliest ties with it.
  kth = np.partition(comb, s - k, axis=0)[s - k]  # (C,)
  above = comb > kth
  tied = comb == kth
  chosen = above | (tied & (np.cumsum(tied, axis=0) <= k - above.sum(axis=0)))
  cas_top = np.where(chosen, cas, 0).sum(axis=0, dtype=cas.dtype) / cas.dtype.type(k)
  dtype = cas.dtype.type
  beta = float(config.beta_sc)
  v = dtype(1 - beta) * cas_top + dtype(beta) * sc.astype(cas.dtype)
  return _softmax(v)


def selected_classes(p: np.ndarray, config: Any) -> np.ndarray:
  """(R,) int64 sorted classes with p_c >= class_threshold, or [argmax p] when none passes.

  The comparison is in p's dtype (float32 p against float32(class_threshold), as the code)."""
  chosen = np.flatnonzero(p >= p.dtype.type(config.class_threshold))
  return chosen if chosen.size else np.array([int(np.argmax(p))], np.int64)


def video_classes(cas, a_f, a_r, sc, config: Any) -> np.ndarray:
  """(R,) int64 the classes `localize_video` localizes (steps 1-2), e.g. to plot them; none when
  k = 0."""
  check_config(config)
  cas, a_f, a_r, sc = _validate(cas, a_f, a_r, sc, 1.0)
  if _topk(cas.shape[0], config) < 1:
    return np.zeros(0, np.int64)
  comb = combined_scores(cas, a_r, a_f, config.comb_weights)
  return selected_classes(class_probabilities(cas, comb, sc, config), config)


# ------------------------------------------------------------------------------------------------
# Steps 3-5: upsampling, runs, OIC scores.


@functools.lru_cache(maxsize=64)
def _upsampling_grid(s: int, scale: int):
  """x = np.arange(0, s, 1 / scale) (N,) and the left end lo (N,) of its interval (read-only)."""
  x = np.arange(0, s, 1 / scale)
  lo = np.clip(np.searchsorted(np.arange(s), x), 1, max(1, s - 1)) - 1
  x.flags.writeable = False
  lo.flags.writeable = False
  return x, lo


def upsample(rows: np.ndarray, scale: int) -> np.ndarray:
  """(R, N) float64 linear interpolation of rows (R, s) at x = np.arange(0, s, 1 / scale).

  Exactly scipy's interp1d(np.arange(s), rows, kind='linear', fill_value='extrapolate'): the
  interval of x is [hi - 1, hi] with hi = searchsorted(arange(s), x) clipped to [1, s - 1], and
  the value is float64(y[hi] - y[lo]) * (x - lo) + y[lo] (the difference in the rows' dtype).
  A single snippet is repeated.
  """
  s = rows.shape[1]
  x, lo = _upsampling_grid(s, scale)
  if s == 1:
    return np.repeat(rows.astype(np.float64), x.shape[0], axis=1)
  slope = (rows[:, 1:] - rows[:, :-1]).astype(np.float64)  # (R, s - 1), y[i + 1] - y[i]
  return slope[:, lo] * (x - lo) + rows.astype(np.float64)[:, lo]


def find_runs(rows: np.ndarray, theta: np.ndarray, skip_index0: bool):
  """Runs of rows[r] >= theta_k (and > 0) for every row r and threshold k, duplicates kept.

  With the thresholds sorted, the levels a value v passes are a prefix: k < m(v), m(v) the count
  of theta_k <= v (0 for v <= 0). A run of level k starts at j iff m(j - 1) <= k < m(j) and ends
  at j iff m(j + 1) <= k < m(j) (m = 0 outside the sequence), so the runs of every level come
  from the counts m (R, N) without a (K, R, N) array.

  Args:
    rows: (R, N) float64 upsampled sequences.
    theta: (K,) float64 thresholds.
    skip_index0: drop the (row, threshold) lines whose only position above is index 0.

  Returns:
    row, level, start, end: (P,) int64, the run [start, end] (inclusive) of rows[row] at
    theta[level], ordered by (level, row, start) as the code finds them.
  """
  num_rows, n = rows.shape
  order = np.argsort(theta, kind='stable')
  m = np.zeros((num_rows, n + 2), np.int8 if theta.shape[0] < 127 else np.int32)
  inner = m[:, 1:-1]
  for value in theta:  # K passes of one comparison: faster than searchsorted for small K.
    inner += rows >= value
  inner *= rows > 0

  def expand(edge_row, at, low, high):  # one entry per level in [low, high)
    low, high = low.astype(np.int64), high.astype(np.int64)
    count = high - low
    levels = np.repeat(low - np.cumsum(count) + count, count) + np.arange(count.sum())
    return np.repeat(edge_row, count), np.repeat(at, count), levels

  r, j = np.nonzero(m[:, 1:-1] > m[:, :-2])
  start_row, start, start_level = expand(r, j, m[r, j], m[r, j + 1])
  r, j = np.nonzero(m[:, 1:-1] > m[:, 2:])
  end_row, end, end_level = expand(r, j, m[r, j + 2], m[r, j + 1])
  # Starts and ends alternate along each (level, row) line: the i-th start pairs with the i-th end.
  first = np.lexsort((start, start_row, start_level))
  last = np.lexsort((end, end_row, end_level))
  row, level, start, end = start_row[first], start_level[first], start[first], end[last]
  if skip_index0 and row.size:
    line = level * num_rows + row
    alone = np.bincount(line, minlength=theta.shape[0] * num_rows)[line] == 1
    keep = ~(alone & (end == 0))
    row, level, start, end = row[keep], level[keep], start[keep], end[keep]
  # Levels in the caller's threshold order.
  level = order[level]
  line = np.lexsort((start, row, level))
  return row[line], level[line], start[line], end[line]


def oic_scores(rows: np.ndarray, row: np.ndarray, start: np.ndarray, end: np.ndarray,
               class_scores: np.ndarray, config: Any) -> np.ndarray:
  """(P,) float64 inner - outer + gamma * p of each run [start, end] of rows[row] (step 5).

  Args:
    rows: (R, N) upsampled sequences; row, start, end: (P,) int runs (end inclusive).
    class_scores: (R,) p_c of each row.
    config: the `localize.oic` section.
  """
  n = rows.shape[1]
  range_sum = common.range_sums(rows, row)
  length = end - start + 1
  inner = range_sum(start, end + 1) / length
  grow = float(config.outer_lambda) * length  # float64, as lambda_ * len in the code
  if config.outer_rounding == 'basnet':
    # int() truncation of float64 s - lambda L and e + lambda L, in the code's arithmetic.
    outer_s = np.maximum(0, np.trunc(start - grow).astype(np.int64))
    outer_e = np.minimum(n - 1, np.trunc(end + grow).astype(np.int64))
  else:
    side = np.floor(grow).astype(np.int64)
    outer_s = np.maximum(0, start - side)
    outer_e = np.minimum(n - 1, end + side)
  count = (start - outer_s) + (outer_e - end)
  outer_sum = range_sum(outer_s, start) + range_sum(end + 1, outer_e + 1)
  outer = np.where(count > 0, outer_sum / np.maximum(count, 1), 0.0)
  return inner - outer + float(config.gamma) * class_scores[row].astype(np.float64)


# ------------------------------------------------------------------------------------------------
# The whole procedure.


def _validate(cas, a_f, a_r, sc, seconds_per_snippet):
  cas = np.asarray(cas)
  if cas.ndim != 2 or cas.shape[0] == 0 or cas.shape[1] == 0:
    raise ValueError(f'cas must be (s, C) with s, C > 0, got shape {cas.shape}')
  s, c = cas.shape
  dtype = np.result_type(cas.dtype, np.float32)
  a_f, a_r, sc = (np.asarray(x) for x in (a_f, a_r, sc))
  for name, x, shape in (('a_f', a_f, (s,)), ('a_r', a_r, (s,)), ('sc', sc, (c,))):
    if x.shape != shape:
      raise ValueError(f'{name} must have shape {shape}, got {x.shape}')
  if not all(np.all(np.isfinite(x)) for x in (cas, a_f, a_r, sc)):
    raise ValueError('cas, a_f, a_r and sc must be finite')
  if not (np.isfinite(seconds_per_snippet) and seconds_per_snippet > 0):
    raise ValueError(f'seconds_per_snippet must be > 0, got {seconds_per_snippet}')
  return tuple(x.astype(dtype, copy=False) for x in (cas, a_f, a_r, sc))


def localize_video(cas: np.ndarray, a_f: np.ndarray, a_r: np.ndarray, sc: np.ndarray,
                   seconds_per_snippet: float, config: Any) -> Detections:
  """Detections of one video (steps 1-7).

  Args:
    cas: (s, C) raw class logits; a_f, a_r: (s,) flow and RGB actionness in [0, 1].
    sc: (C,) second-order class logits.
    seconds_per_snippet: seconds one fed snippet covers (v_len / s times the feature timing when
      the video was resampled from v_len snippets).
    config: the `localize.oic` ConfigDict.

  Returns:
    Detections sorted by score desc, then class, start, end. start_snippet / end_snippet are the
    fed snippets [floor(start / scale), ceil((end + 1) / scale)) a proposal touches.
  """
  check_config(config)
  cas, a_f, a_r, sc = _validate(cas, a_f, a_r, sc, seconds_per_snippet)
  if _topk(cas.shape[0], config) < 1:  # The ActivityNet code's k = 0: NaN scores, no detection.
    return Detections.empty()
  comb = combined_scores(cas, a_r, a_f, config.comb_weights)
  p = class_probabilities(cas, comb, sc, config)
  classes = selected_classes(p, config)
  scale = int(config.scale)
  rows = upsample(np.ascontiguousarray(comb[:, classes].T), scale)  # (R, N)

  row, _, start, end = find_runs(rows, thresholds(config), bool(config.skip_index0_quirk))
  if row.size == 0:
    return Detections.empty()
  score = oic_scores(rows, row, start, end, p[classes], config)
  tf = float(seconds_per_snippet) / scale
  t_start, t_end = start * tf, (end + 1) * tf
  keep, score = basnet_nms(row, t_start, t_end, score, config)
  row, start, end, t_start, t_end, score = (
      x[keep] for x in (row, start, end, t_start, t_end, score))

  class_index = classes[row].astype(np.int32)
  order = np.lexsort((t_end, t_start, class_index, -score))
  return Detections(class_index=class_index[order], start=t_start[order], end=t_end[order],
                    score=score[order], start_snippet=(start // scale)[order].astype(np.int64),
                    end_snippet=(-(-(end + 1) // scale))[order].astype(np.int64))
