"""Evaluation length buckets: the few padded lengths whole videos are batched at (one compiled
program each). `batching.eval_batches` uses them; `batching` re-exports these names.

'multiple': the next multiple of `bucket`; 'pow2': `bucket` times the next power of two;
'fitted': at most `max_programs` multiples of `bucket` chosen to pad the given videos least.
"""

from __future__ import annotations

import collections
import math
from typing import List, Sequence

from d2net_jax.data.records import VideoRecord

BUCKET_MODES = ('multiple', 'pow2', 'fitted')


def bucket_length(num_snippets: int, bucket: int, mode: str = 'multiple') -> int:
  """Padded length of a T-snippet video: ceil(T / bucket) * bucket, or for 'pow2' the least
  bucket * 2^k >= T."""
  if bucket < 1:
    raise ValueError(f'bucket={bucket} must be >= 1')
  if mode not in ('multiple', 'pow2'):
    raise ValueError(f'bucket mode {mode!r} has no per-video length; one of multiple, pow2')
  num_snippets = max(int(num_snippets), 1)
  if mode == 'multiple':
    return -(-num_snippets // bucket) * bucket
  return bucket * 2 ** max(0, math.ceil(math.log2(num_snippets / bucket)))


def fitted_edges(num_snippets: Sequence[int], bucket: int, max_programs: int) -> List[int]:
  """At most `max_programs` padded lengths, multiples of `bucket`, that pad the given videos least.

  Each video is padded to the smallest edge >= its length; the edges minimise the total padded
  snippets (dynamic programming over the distinct multiples of `bucket`: O(m^2 K) for m of them),
  so a whole evaluation set compiles at most `max_programs` programs.
  """
  if max_programs < 1:
    raise ValueError(f'max_programs={max_programs} must be >= 1')
  counts = collections.Counter(bucket_length(n, bucket) for n in num_snippets)
  if not counts:
    return []
  cands = sorted(counts)
  m = len(cands)
  groups = min(max_programs, m)
  inf = float('inf')
  # best[g][i]: least padded total of the first i candidates in g groups, the last ending at i-1.
  best = [[inf] * (m + 1) for _ in range(groups + 1)]
  back = [[0] * (m + 1) for _ in range(groups + 1)]
  best[0][0] = 0.0
  prefix = [0]
  for c in cands:
    prefix.append(prefix[-1] + counts[c])
  for g in range(1, groups + 1):
    for i in range(1, m + 1):
      for j in range(g - 1, i):  # Group = candidates j..i-1, padded to cands[i-1].
        cost = best[g - 1][j] + cands[i - 1] * (prefix[i] - prefix[j])
        if cost < best[g][i]:
          best[g][i], back[g][i] = cost, j
  g = min(range(1, groups + 1), key=lambda k: (best[k][m], k))
  edges, i = [], m
  while i > 0:
    edges.append(cands[i - 1])
    i, g = back[g][i], g - 1
  return sorted(edges)


def padded_lengths(videos: Sequence[VideoRecord], bucket: int = 64, mode: str = 'multiple',
                   max_programs: int = 8) -> List[int]:
  """Each video's padded evaluation length under bucket mode `mode`."""
  if mode not in BUCKET_MODES:
    raise ValueError(f'bucket mode {mode!r}; one of {BUCKET_MODES}')
  if mode != 'fitted':
    return [bucket_length(v.num_snippets, bucket, mode) for v in videos]
  edges = fitted_edges([v.num_snippets for v in videos], bucket, max_programs)
  return [next(e for e in edges if e >= bucket_length(v.num_snippets, bucket)) for v in videos]


def eval_lengths(videos: Sequence[VideoRecord], bucket: int = 64, mode: str = 'multiple',
                 max_programs: int = 8) -> List[int]:
  """The distinct padded lengths (= compiled programs per batch size) of evaluating `videos`."""
  return sorted(set(padded_lengths(videos, bucket, mode, max_programs)))
