"""Speed of the localizer (d2net_jax/localize.py) on a THUMOS14-test-sized run.

Generates 212 videos with lengths drawn like the THUMOS14 test set (log-normal, mean ~213 s,
median ~155 s, heavy tail up to ~1700 s, at 0.64 s per snippet), 20 classes, 1-2 classes per video
with ~15 instances of ~4 s each, and TCAM / attention sequences that are high on the instances and
noisy elsewhere. Times the vectorised `localize_videos` against `localize_video_reference` below
(the same procedure written the plain way: Python loops over snippets, proposals and pairs), checks
that both give the same detections, and times `d2net_jax.evaluation.mean_ap` when it offers a usable
function. Prints a table.

  .venv/bin/python experiments/bench_localize.py [--videos 212] [--repeats 3] [--seed 0]

`localize_video_reference` is also the oracle of tests/test_localize.py.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import time

import numpy as np

from d2net_jax import config as config_lib
from d2net_jax import localize

# THUMOS14 test durations: log(seconds) ~ N(5.02, 0.84), clipped to the observed range.
_LOG_DURATION_MEAN, _LOG_DURATION_STD = 5.02, 0.84
_MIN_DURATION, _MAX_DURATION = 15.0, 1700.0


# ------------------------------------------------------------------------------------------------
# The reference: the procedure of d2net_jax/localize.py written the obvious, slow way.


def localize_video_reference(tcam, attention, seconds_per_snippet, config):
  """Plain-Python version of `localize.localize_video`.

  Returns a list of (class, start_s, end_s, score, start_snippet, end_snippet) sorted by score
  desc, then class, start, end.
  """
  tcam = np.asarray(tcam)
  attention = np.asarray(attention)
  dtype = np.result_type(tcam.dtype, attention.dtype, np.float32)
  tcam, attention = tcam.astype(dtype), attention.astype(dtype)
  n, num_classes = tcam.shape
  if config.rescale_attention and attention.max() > 0:
    attention = attention * dtype.type(config.attention_scale) / attention.max()
  refined = tcam * attention[:, None]

  # Video-level class scores and relevant classes.
  ratio = n / config.topk_ratio
  k = math.floor(ratio) if config.topk_rounding == 'floor' else math.ceil(ratio)
  k = min(n, max(1, k))
  source = refined if config.class_score_source == 'refined' else tcam
  scores = []
  for c in range(num_classes):
    column = sorted(source[:, c].tolist(), reverse=True)
    scores.append(float(np.mean(np.array(column[:k], np.float64))))
  if not config.activitynet_class_rule:
    best = max(scores)
    relevant = [c for c in range(num_classes)
                if scores[c] > config.class_threshold * best and scores[c] > 0]
  else:
    floor = (config.activitynet_high_floor if any(p > config.activitynet_high_floor for p in scores)
             else config.activitynet_class_floor)
    m = config.activitynet_max_classes
    cutoff = sorted(scores)[-(m + 1)] if num_classes > m else -math.inf
    relevant = [c for c in range(num_classes) if scores[c] > max(floor, cutoff)]

  detections = []
  for c in relevant:
    x = refined[:, c]
    x64 = x.astype(np.float64)
    proposals = []  # (score, start, end); duplicates from several thresholds included.
    for threshold in localize.proposal_thresholds(config):
      on = [bool(v > x.dtype.type(threshold)) for v in x]
      t = 0
      while t < n:
        if not on[t]:
          t += 1
          continue
        start = t
        while t < n and on[t]:
          t += 1
        end = t
        if end - start < config.min_proposal_snippets:
          continue
        grow = max(int(config.min_outer_snippets),
                   int(math.floor((end - start) * config.inflation)))
        left = x64[max(0, start - grow):start]
        right = x64[end:min(n, end + grow)]
        inner = float(np.mean(x64[start:end]))
        if len(left) == 0 and len(right) == 0:
          proposals.append((inner, start, end))
          continue
        if config.outer_mean == 'sides':
          means = [float(np.mean(side)) for side in (left, right) if len(side)]
          outer = means[0] if len(means) == 1 else (means[0] + means[1]) / 2
        else:
          outer = float(np.sum(left) + np.sum(right)) / (len(left) + len(right))
        if config.outer_rejection and (outer - inner + 1) / 2 > config.outer_rejection_threshold:
          continue
        proposals.append((inner - outer, start, end))

    # Greedy NMS: best first (ties: earlier start, then earlier end).
    kept = []
    for score, start, end in sorted(proposals, key=lambda p: (-p[0], p[1], p[2])):
      suppressed = False
      for _, kept_start, kept_end in kept:
        inter = max(0, min(end, kept_end) - max(start, kept_start))
        union = (end - start) + (kept_end - kept_start) - inter
        if inter / union >= config.nms_threshold:
          suppressed = True
          break
      if not suppressed:
        kept.append((score, start, end))
    detections += [(c, score, start, end) for score, start, end in kept]

  if detections:
    if config.score_threshold_scope == 'class':
      best = {}
      for c, score, _, _ in detections:
        best[c] = max(best.get(c, -math.inf), score)
      detections = [d for d in detections if d[1] >= config.score_threshold * best[d[0]]]
    else:
      best = max(d[1] for d in detections)
      detections = [d for d in detections if d[1] >= config.score_threshold * best]
  detections.sort(key=lambda d: (-d[1], d[0], d[2], d[3]))
  sps = float(seconds_per_snippet)
  return [(c, start * sps, end * sps, score, start, end) for c, score, start, end in detections]


def same_detections(fast: localize.Detections, reference: list, rtol: float = 1e-9) -> bool:
  """True when both give the same (class, start, end) in the same order and close scores."""
  if len(fast) != len(reference):
    return False
  if not reference:
    return True
  ref = np.array([(d[0], d[4], d[5]) for d in reference], np.int64)
  fast_keys = np.stack([fast.class_index, fast.start_snippet, fast.end_snippet], axis=1)
  return bool(np.array_equal(fast_keys, ref)
              and np.allclose(fast.score, [d[3] for d in reference], rtol=rtol, atol=1e-12))


# ------------------------------------------------------------------------------------------------
# A THUMOS14-test-like input.


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
  kernel = np.ones(width) / width
  return np.convolve(x, kernel, mode='same')


def synthetic_run(num_videos: int = 212, num_classes: int = 20, seconds_per_snippet: float = 0.64,
                  seed: int = 0):
  """Videos [(tcam (s, C) float32, attention (s,) float32, sps)] and ground truth.

  Ground truth: per video a list of (class, start_s, end_s).
  """
  rng = np.random.default_rng(seed)
  videos, ground_truth = [], []
  for _ in range(num_videos):
    duration = float(np.clip(rng.lognormal(_LOG_DURATION_MEAN, _LOG_DURATION_STD),
                             _MIN_DURATION, _MAX_DURATION))
    s = max(2, int(round(duration / seconds_per_snippet)))
    classes = rng.choice(num_classes, size=1 + int(rng.random() < 0.12), replace=False)
    # ~29% foreground in instances of ~4.3 s.
    count = max(1, int(rng.poisson(0.29 * duration / 4.3)))
    lengths = np.maximum(2, rng.lognormal(np.log(4.3 / seconds_per_snippet) - 0.3, 0.7, count))
    lengths = np.minimum(lengths.astype(int), s)
    starts = (rng.random(count) * (s - lengths + 1)).astype(int)
    labels = rng.choice(classes, size=count)
    foreground = np.zeros((s, num_classes), bool)
    gt = []
    for c, a, n in zip(labels, starts, lengths):
      foreground[a:a + n, c] = True
      gt.append((int(c), a * seconds_per_snippet, (a + n) * seconds_per_snippet))
    noise = _smooth(rng.normal(0, 1, s * num_classes), 3).reshape(s, num_classes)
    logits = np.where(foreground, 1.5, -3.0) + 1.5 * noise
    logits[:, classes] += 1.5  # The video's classes are active in the background too.
    tcam = 1 / (1 + np.exp(-logits))
    attention = np.clip(0.25 + 0.6 * foreground.any(axis=1) + 0.3 * _smooth(rng.normal(0, 1, s), 3),
                        0, 1)
    videos.append((tcam.astype(np.float32), attention.astype(np.float32), seconds_per_snippet))
    ground_truth.append(gt)
  return videos, ground_truth


# ------------------------------------------------------------------------------------------------
# Timing.


def _best_time(fn, repeats: int) -> tuple[float, object]:
  best, result = math.inf, None
  for _ in range(repeats):
    t0 = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - t0)
  return best, result


def _evaluation_timer(videos, ground_truth, detections, num_classes):
  """(callable, note): a zero-argument callable that scores `detections` with
  `d2net_jax.evaluation.mean_ap.evaluate_detections` (building its inputs included), or (None, why not)."""
  try:
    from d2net_jax.evaluation import mean_ap as evaluation  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f'd2net_jax.evaluation.mean_ap not importable ({e})'
  fn = getattr(evaluation, 'evaluate_detections', None)
  if fn is None:
    return None, 'd2net_jax.evaluation.mean_ap has no evaluate_detections'
  class_names = [f'class_{c:02d}' for c in range(num_classes)]
  names = [f'video_{i:03d}' for i in range(len(videos))]
  gt = {'database': {
      name: {'subset': 'test', 'duration': v[0].shape[0] * v[2],
             'annotations': [{'segment': [a, b], 'label': class_names[c]} for c, a, b in g]}
      for name, v, g in zip(names, videos, ground_truth)}}

  def call():
    per_video = {name: d.to_list() for name, d in zip(names, detections)}
    return fn(gt, per_video, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), class_names=class_names)

  try:
    result = call()
  except Exception as e:  # pylint: disable=broad-except
    return None, f'evaluate_detections failed: {type(e).__name__}: {e}'
  maps = ' '.join(f'{m:.3f}' for m in np.asarray(result.mAP))
  return call, f'mAP@0.1:0.7 of this run: {maps}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--videos', type=int, default=212)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--skip-reference', action='store_true')
  args = parser.parse_args(argv)

  config = config_lib.base_config().localize
  videos, ground_truth = synthetic_run(args.videos, seed=args.seed)
  snippets = np.array([v[0].shape[0] for v in videos])
  print(f'{len(videos)} videos, 20 classes, snippets: mean {snippets.mean():.0f} '
        f'(= {snippets.mean() * 0.64:.0f} s), median {np.median(snippets):.0f}, '
        f'max {snippets.max()}; '
        f'cpu cores available: {len(os.sched_getaffinity(0))}')

  fast_s, detections = _best_time(lambda: localize.localize_videos(videos, config), args.repeats)
  rows = [('localize (vectorised)', fast_s)]
  total = sum(len(d) for d in detections)
  if not args.skip_reference:
    ref_s, reference = _best_time(
        lambda: [localize_video_reference(*v, config) for v in videos], 1)
    rows.append(('localize (plain Python reference)', ref_s))
    agree = all(same_detections(d, r) for d, r in zip(detections, reference))
  eval_call, eval_note = _evaluation_timer(videos, ground_truth, detections, 20)
  if eval_call is not None:
    eval_s, _ = _best_time(eval_call, args.repeats)
    rows.append(('evaluation (evaluate_detections, 7 tIoUs)', eval_s))
    rows.append(('localize (vectorised) + evaluation', fast_s + eval_s))

  print(f'{total} detections')
  print(f'| {"step":45s} | {"seconds":>8s} |')
  print(f'|{"-" * 47}|{"-" * 10}|')
  for name, seconds in rows:
    print(f'| {name:45s} | {seconds:8.3f} |')
  if not args.skip_reference:
    print(f'reference / vectorised: {ref_s / fast_s:.1f}x; identical detections: {agree}')
  print(f'evaluation: {eval_note}' if eval_call else f'evaluation not timed: {eval_note}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
