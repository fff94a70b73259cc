"""CO2-Net's localizer ('hamnet': the authors' `multiple_threshold_hamnet`, from HAM-Net): OIC
scores of attention runs, Gaussian soft-NMS. NumPy only.

Per video, from the class logits `cas` (s, C + 1) (background last) and the attention a (s,) in
[0, 1] of a CO2-Net-style model (co2net-facts.md Sec. 5):

1. E = cas * a (s, C + 1), a plain product over every column;
2. class scores p = softmax_{C+1}(mean of the top k of E over time, per column)[:C],
   k = max(1, s // class_topk_ratio) (10); classes {c : p_c >= class_threshold} (0.2) in
   ascending order, or {argmax p} when none passes;
3. for every threshold theta of np.linspace(*thresholds) (0.1, 0.1889, ..., 0.9): the runs
   [start, end] (inclusive) of snippets with a > theta (strict), the SAME runs for every selected
   class. With `skip_index0_quirk` a threshold passed only by snippet 0 yields nothing (the code
   tests its index list with `any()`);
4. OIC score inner - outer + gamma * p_c on E[:, c] (`oic.oic_scores`, 'basnet' rounding): inner
   the mean over [start, end], outer the mean over the pooled sides
   [max(0, int(start - lambda L)), start - 1] and [end + 1, min(s - 1, int(end + lambda L))]
   (0 when both are empty), L = end - start + 1, lambda = outer_lambda (0.25), gamma 0.2;
5. per class, the proposals of all thresholds (in threshold order, duplicates kept) go through
   the code's Gaussian soft-NMS on snippet units (start, end + 1) with "+1" lengths: repeatedly
   take the highest score (the first on ties, after the code's swap of that row with row 0),
   keep it, and multiply every remaining score by exp(-IoU^2 / nms_sigma), IoU = inter /
   (area_i + area_j - inter), inter = max(0, min(end) - max(start) + 1), area = end - start + 1.
   Nothing is ever discarded;
6. times [start, end + 1] * seconds_per_snippet. (The code leaves detections in snippet units and
   converts the ground truth to snippets instead, round(t * 25 / 16); its THUMOS14 ambiguous-region
   filter is `evaluation.use_ambiguous` here.)

The runs come from `oic.find_runs` (one sequence, the attention) and the scores from
`oic.oic_scores`, the machinery of SAL's 'oic' localizer.
"""

from __future__ import annotations

import math
import types
from typing import Any, Tuple

import numpy as np

from d2net_jax.localize import oic
from d2net_jax.localize.common import Detections


def check_config(config: Any) -> None:
  """ValueError (one line, naming the field) for settings the procedure cannot run with."""
  def fail(field, rule, value):
    raise ValueError(f'localize.hamnet.{field} must be {rule}, got {value!r}')

  def finite(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)

  if not (isinstance(config.class_topk_ratio, (int, np.integer)) and config.class_topk_ratio >= 1):
    fail('class_topk_ratio', 'an integer >= 1', config.class_topk_ratio)
  if not (finite(config.class_threshold) and 0 <= config.class_threshold < 1):
    fail('class_threshold', 'in [0, 1)', config.class_threshold)
  start, stop, num = (tuple(config.thresholds) + (None, None, None))[:3]
  if (len(tuple(config.thresholds)) != 3 or not finite(start) or not finite(stop)
      or not 0 < start <= stop or not isinstance(num, (int, np.integer)) or num < 1):
    fail('thresholds', '(start > 0, stop >= start, count >= 1) of np.linspace',
         tuple(config.thresholds))
  if not (finite(config.outer_lambda) and config.outer_lambda >= 0):
    fail('outer_lambda', '>= 0', config.outer_lambda)
  if not finite(config.gamma):
    fail('gamma', 'a finite number', config.gamma)
  if not isinstance(config.skip_index0_quirk, (bool, np.bool_)):
    fail('skip_index0_quirk', 'True or False', config.skip_index0_quirk)
  if not (finite(config.nms_sigma) and config.nms_sigma > 0):
    fail('nms_sigma', '> 0', config.nms_sigma)


def thresholds(config: Any) -> np.ndarray:
  """(K,) float64 np.linspace(start, stop, count) of `config.thresholds`."""
  start, stop, num = config.thresholds
  return np.linspace(float(start), float(stop), int(num))


def _validate(cas, attention, seconds_per_snippet) -> Tuple[np.ndarray, np.ndarray]:
  cas, attention = np.asarray(cas), np.asarray(attention)
  if cas.ndim != 2 or cas.shape[0] == 0 or cas.shape[1] < 2:
    raise ValueError(f'cas must be (s, C + 1) with s >= 1 and a background column, got shape '
                     f'{cas.shape}')
  if attention.shape != cas.shape[:1]:
    raise ValueError(f'attention must have shape {cas.shape[:1]}, got {attention.shape}')
  if not (np.all(np.isfinite(cas)) and np.all(np.isfinite(attention))):
    raise ValueError('cas and attention must be finite')
  if not (np.isfinite(seconds_per_snippet) and seconds_per_snippet > 0):
    raise ValueError(f'seconds_per_snippet must be > 0, got {seconds_per_snippet}')
  dtype = np.result_type(cas.dtype, np.float32)
  return cas.astype(dtype, copy=False), attention.astype(dtype, copy=False)


def class_scores(cas: np.ndarray, attention: np.ndarray, config: Any
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """(p (C,), E (s, C + 1)) in the inputs' float dtype (steps 1-2): E = cas * a, p the softmax
  over C + 1 of E's per-column top-k mean, background dropped."""
  e = cas * attention[:, None]
  s = e.shape[0]
  k = max(1, s // int(config.class_topk_ratio))
  top = np.partition(e, s - k, axis=0)[s - k:].mean(axis=0, dtype=e.dtype)
  z = np.exp(top - top.max())
  return (z / z.sum())[:-1], e


def selected_classes(p: np.ndarray, config: Any) -> np.ndarray:
  """(R,) int64 ascending classes with p_c >= class_threshold (in p's dtype), else [argmax p]."""
  chosen = np.flatnonzero(p >= p.dtype.type(config.class_threshold))
  return chosen if chosen.size else np.array([int(np.argmax(p))], np.int64)


def video_classes(cas, attention, config: Any) -> np.ndarray:
  """(R,) int64 the classes `localize_video` localizes (steps 1-2), e.g. to plot them."""
  check_config(config)
  cas, attention = _validate(cas, attention, 1.0)
  return selected_classes(class_scores(cas, attention, config)[0], config)


def soft_nms(start: np.ndarray, end: np.ndarray, score: np.ndarray, sigma: float
             ) -> Tuple[np.ndarray, np.ndarray]:
  """The code's Gaussian soft-NMS of one class (step 5), on snippet units with "+1" lengths.

  Args:
    start, end: (P,) proposal [start, end) in snippets (end = last snippet + 1).
    score: (P,) scores, in the order the proposals were found.
    sigma: the Gaussian's sigma (0.3).

  Returns:
    (order (P,) int64 the proposals in retention order, score (P,) float64 each one's score
    when it was retained).
  """
  index = np.arange(score.shape[0])
  current = score.astype(np.float64)
  start, end = start.astype(np.float64), end.astype(np.float64)
  area = end - start + 1
  order, kept = [], []
  while index.size:
    top = int(np.argmax(current))
    index[[0, top]] = index[[top, 0]]  # The code swaps the pick with row 0: ties follow it.
    current[[0, top]] = current[[top, 0]]
    first, rest = index[0], index[1:]
    order.append(first)
    kept.append(current[0])
    inter = np.maximum(np.minimum(end[first], end[rest]) - np.maximum(start[first], start[rest])
                       + 1, 0.0)
    iou = inter / (area[first] + area[rest] - inter)
    index, current = rest, current[1:] * np.exp(-(iou * iou) / sigma)
  return np.asarray(order, np.int64), np.asarray(kept, np.float64)


def localize_video(cas: np.ndarray, attention: np.ndarray, seconds_per_snippet: float,
                   config: Any) -> Detections:
  """Detections of one video (steps 1-6).

  Args:
    cas: (s, C + 1) class logits, background last; attention: (s,) in [0, 1].
    seconds_per_snippet: seconds one fed snippet covers.
    config: the `localize.hamnet` ConfigDict.

  Returns:
    Detections sorted by score desc, then class, start, end; start_snippet / end_snippet the
    run [start, end + 1).
  """
  check_config(config)
  cas, attention = _validate(cas, attention, seconds_per_snippet)
  p, e = class_scores(cas, attention, config)
  classes = selected_classes(p, config)
  theta = thresholds(config)
  # a > theta (strict) == a >= nextafter(theta) in float64; theta > 0, so also a > 0 as find_runs
  # requires.
  # find_runs orders the runs by threshold, then start: the code's order.
  _, _, run_start, run_end = oic.find_runs(
      attention.astype(np.float64)[None], np.nextafter(theta, np.inf),
      bool(config.skip_index0_quirk))
  if run_start.size == 0:
    return Detections.empty()
  # Proposal (class r, run j) for every selected class; per class in threshold order.
  num_runs, num_classes = run_start.shape[0], classes.shape[0]
  row = np.repeat(np.arange(num_classes), num_runs)
  start, end = np.tile(run_start, num_classes), np.tile(run_end, num_classes)
  scoring = types.SimpleNamespace(outer_lambda=config.outer_lambda, outer_rounding='basnet',
                                  gamma=config.gamma)
  score = oic.oic_scores(np.ascontiguousarray(e[:, classes].T), row, start, end, p[classes],
                         scoring)
  keep, new_score = [], np.empty(score.shape[0], np.float64)
  for r in range(num_classes):
    members = np.flatnonzero(row == r)
    order, kept = soft_nms(start[members], end[members] + 1, score[members],
                           float(config.nms_sigma))
    new_score[members[order]] = kept
    keep.append(members[order])
  keep = np.concatenate(keep)
  class_index = classes[row[keep]].astype(np.int32)
  start, end, score = start[keep], end[keep] + 1, new_score[keep]
  order = np.lexsort((end, start, class_index, -score))
  spp = float(seconds_per_snippet)
  return Detections(class_index=class_index[order], start=start[order] * spp,
                    end=end[order] * spp, score=score[order],
                    start_snippet=start[order].astype(np.int64),
                    end_snippet=end[order].astype(np.int64))
