"""BaS-Net's NMS, step 7 of SAL's localizer (`oic.py`; SAL-DFE-spec Sec. 2.7). NumPy only.

Per class, on proposal times in seconds with "+1" lengths: IoU = inter / (area_i + area_j - inter),
inter = max(0, min(end) - max(start) + 1), area = end - start + 1. Greedy by score; a proposal with
IoU >= nms_threshold to a kept one leaves the loop: 'basnet_soft' keeps it with
score * exp(-IoU^2 / soft_alpha) (decayed once, never suppressed again, nothing discarded), 'hard'
drops it. The candidate pairs come from `common.overlapping_pairs` and the greedy loop runs in
rounds over the list of conflicting pairs (`common.greedy_keep`), both shared with the TCAM
localizer, instead of one proposal at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from d2net_jax.localize import common


def basnet_iou(start_a, end_a, start_b, end_b) -> np.ndarray:
  """IoU with "+1" lengths (seconds, BaS-Net): inter / (area_a + area_b - inter), where
  inter = max(0, min(end) - max(start) + 1) and area = end - start + 1. Symmetric."""
  inter = np.maximum(0.0, np.minimum(end_a, end_b) - np.maximum(start_a, start_b) + 1)
  return inter / ((end_a - start_a + 1) + (end_b - start_b + 1) - inter)


def _conflicts(row, start, end, order, iou_threshold):
  """Pairs (i, j) of the same row, i before j in greedy `order`, with basnet IoU >= threshold.

  Returns src, dst (E,) int64, their IoU (E,) and the greedy rank (P,) of every proposal.
  """
  # j after i in start order can overlap i (inter > 0) only if s_j < e_i + 1; the margin keeps
  # every pair whose float IoU could reach the threshold (> 0).
  src, dst = common.overlapping_pairs(row, start, end + 1 + 1e-9 * (1 + np.abs(end)), side='right')
  src, dst, rank = common.orient_pairs(src, dst, order)
  iou = basnet_iou(start[src], end[src], start[dst], end[dst])
  hit = iou >= iou_threshold
  return src[hit], dst[hit], iou[hit], rank


def basnet_nms(row: np.ndarray, start: np.ndarray, end: np.ndarray, score: np.ndarray,
               config: Any):
  """BaS-Net NMS per row (class) on times in seconds (step 7).

  Greedy order: score desc, then start, end asc. Returns (keep (P,) bool, new_score (P,)): for
  'basnet_soft' every proposal is kept, a suppressed one with score * exp(-IoU^2 / soft_alpha),
  IoU to the first kept proposal (in greedy order) that suppressed it; for 'hard' the suppressed
  ones are dropped.
  """
  num = row.shape[0]
  order = np.lexsort((end, start, -score))
  src, dst, iou, rank = _conflicts(row, start, end, order, float(config.nms_threshold))
  kept = common.greedy_keep(num, src, dst)
  if config.nms == 'hard':
    return kept, score.astype(np.float64)
  # Each suppressed proposal left the loop at the first kept proposal conflicting with it.
  by_kept = kept[src]
  s_, d_, i_ = src[by_kept], dst[by_kept], iou[by_kept]
  first = np.lexsort((rank[s_], d_))
  d_sorted = d_[first]
  lead = np.ones(d_sorted.shape[0], bool)
  lead[1:] = d_sorted[1:] != d_sorted[:-1]
  decay = np.ones(num, np.float64)
  decay[d_sorted[lead]] = np.exp(-np.square(i_[first][lead]) / float(config.soft_alpha))
  return np.ones(num, bool), score * decay
