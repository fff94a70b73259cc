"""Pieces every localizer shares: the `Detections` record, runs above thresholds, the pairs of
overlapping proposals, greedy NMS over a conflict graph, range sums by cumulative sums and the top-k
mean. NumPy only, vectorised over proposals.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Detections:
  """One video's detections, sorted by score (desc), then class, start and end (asc).

  Attributes:
    class_index: (N,) int32 class of each detection.
    start, end: (N,) float64 seconds.
    score: (N,) float64 outer-inner contrast score S.
    start_snippet, end_snippet: (N,) int64 the snippet range [start_snippet, end_snippet).
  """
  class_index: np.ndarray
  start: np.ndarray
  end: np.ndarray
  score: np.ndarray
  start_snippet: np.ndarray
  end_snippet: np.ndarray

  def __len__(self) -> int:
    return int(self.class_index.shape[0])

  def to_list(self) -> list[tuple[int, float, float, float]]:
    """[(class_index, start_s, end_s, score), ...] as Python numbers."""
    return [(int(c), float(s), float(e), float(v))
            for c, s, e, v in zip(self.class_index, self.start, self.end, self.score)]

  @classmethod
  def empty(cls) -> 'Detections':
    i = np.zeros(0, np.int64)
    f = np.zeros(0, np.float64)
    return cls(i.astype(np.int32), f, f.copy(), f.copy(), i, i.copy())


def topk_mean(sequence: np.ndarray, k: int) -> np.ndarray:
  """(C,) float64 mean of the k largest entries of each column of `sequence` (s, C); k >= 1, all
  s entries for k >= s."""
  s = sequence.shape[0]
  top = np.partition(sequence, s - k, axis=0)[s - k:] if k < s else sequence
  return top.astype(np.float64).mean(axis=0)


def range_sums(rows: np.ndarray, row: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
  """fn(lo, hi) -> (P,) float64 sums of rows[row[p], lo[p]:hi[p]], by one cumulative sum.

  rows (R, s); row (P,) int. Empty ranges (lo == hi) sum to 0.
  """
  cumsum = np.zeros((rows.shape[0], rows.shape[1] + 1), np.float64)
  np.cumsum(rows, axis=1, dtype=np.float64, out=cumsum[:, 1:])

  def range_sum(lo, hi):
    return cumsum[row, hi] - cumsum[row, lo]

  return range_sum


def find_proposals(rows: np.ndarray, thresholds: np.ndarray, min_length: int):
  """Unique runs of rows[r] > theta over all rows r and thresholds theta.

  Args:
    rows: (R, s) refined sequences of the relevant classes.
    thresholds: (K,) float64.
    min_length: shortest run kept.

  Returns:
    row, start, end: (P,) int64, sorted by (row, start, end), without duplicates.
  """
  num_rows, s = rows.shape
  above = np.zeros((num_rows, thresholds.shape[0], s + 2), np.int8)
  # Compare in the sequence's dtype, as the official code (float32 TCAMs against Python floats).
  above[:, :, 1:-1] = rows[:, None, :] > thresholds.astype(rows.dtype)[None, :, None]
  edges = np.diff(above, axis=-1)  # (R, K, s + 1): +1 at a run's start, -1 after its end.
  # Starts and ends alternate along each (row, threshold) line, so in row-major order the i-th
  # start and the i-th end belong to the same run.
  row, _, start = np.nonzero(edges == 1)
  end = np.nonzero(edges == -1)[2]
  long_enough = end - start >= min_length
  row, start, end = row[long_enough], start[long_enough], end[long_enough]
  key = np.unique((row * (s + 1) + start) * (s + 1) + end)
  rest, end = np.divmod(key, s + 1)
  row, start = np.divmod(rest, s + 1)
  return row, start, end


def overlapping_pairs(row: np.ndarray, start: np.ndarray, limit: np.ndarray, side: str = 'left'):
  """All pairs (i, j) of the same row with start_i <= start_j < limit_i ('left'; 'right':
  start_j <= limit_i), i before j in (row, start) order (ties: index order).

  With limit = end of [start, end) ranges these are the overlapping pairs; a caller with other
  overlap rules passes a wider limit and filters. row (P,) int >= 0; start, limit (P,) int or
  float, in any order. Returns src, dst (E,) int64 indices into the inputs. Array code: the
  values are ranked to exact integer codes, so one searchsorted over (row, code) keys finds,
  for every i, the end of its run of candidates.
  """
  num = row.shape[0]
  order = np.lexsort((start, row))
  values, codes = np.unique(np.concatenate([start, limit]), return_inverse=True)
  width = values.shape[0]
  key = row[order] * width + codes[:num][order]
  last = np.searchsorted(key, row[order] * width + codes[num:][order], side=side)
  first = np.arange(num) + 1
  counts = np.maximum(last - first, 0)
  src = np.repeat(np.arange(num), counts)
  dst = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                                       counts))
  return order[src], order[dst]


def orient_pairs(src: np.ndarray, dst: np.ndarray, order: np.ndarray):
  """Each pair (src, dst) from the earlier to the later proposal in the greedy `order` (P,) (a
  permutation, first = highest priority). Returns src, dst (E,) and the rank (P,) of each."""
  rank = np.empty(order.shape[0], np.int64)
  rank[order] = np.arange(order.shape[0])
  swap = rank[src] > rank[dst]
  return np.where(swap, dst, src), np.where(swap, src, dst), rank


def nms_keep(row: np.ndarray, start: np.ndarray, end: np.ndarray, score: np.ndarray,
             iou_threshold: float) -> np.ndarray:
  """Greedy NMS per row (class): (P,) bool, True for the proposals kept.

  Greedy order: score desc, then start asc, end asc. A proposal is suppressed when a kept one of
  the same row earlier in that order has IoU >= iou_threshold with it (IoU of snippet ranges
  [start, end), end > start).
  """
  src, dst = overlapping_pairs(row, start, end)
  inter = np.minimum(end[src], end[dst]) - np.maximum(start[src], start[dst])
  union = (end[src] - start[src]) + (end[dst] - start[dst]) - inter
  conflict = inter / union >= iou_threshold
  src, dst, _ = orient_pairs(src[conflict], dst[conflict], np.lexsort((end, start, -score, row)))
  return greedy_keep(row.shape[0], src, dst)


def greedy_keep(num: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Greedy NMS over a conflict graph: (num,) bool, True for the proposals kept.

  src, dst (E,): the conflicting pairs, each oriented from the earlier to the later proposal in
  greedy order. A proposal is kept when no earlier conflicting proposal is kept. Runs in rounds:
  each round settles every proposal whose earlier conflicting proposals are all settled.
  """
  kept = np.zeros(num, bool)
  decided = np.zeros(num, bool)
  while not decided.all():
    # Suppressed: an earlier conflicting proposal is kept.
    suppressed = np.zeros(num, bool)
    suppressed[dst[kept[src]]] = True
    # Kept: every earlier conflicting proposal is settled and suppressed.
    blocked = np.zeros(num, bool)
    blocked[dst[~decided[src]]] = True
    newly_kept = ~decided & ~blocked & ~suppressed
    kept |= newly_kept
    decided |= newly_kept | suppressed
    # Edges into settled proposals, or out of suppressed ones, no longer matter.
    live = ~decided[dst] & (~decided[src] | kept[src])
    src, dst = src[live], dst[live]
  return kept
