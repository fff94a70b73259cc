"""Which snippets of a video a batch row holds: resampling to a fixed length, epoch order.

'resample' sampling (SAL, CO2-Net, the STPN lineage) feeds every video as exactly T snippets: in
training one random snippet per bin (`random_perturb`), at test evenly spaced ones
(`uniform_sampling`). The batcher keeps each video's original length, so times map back.
"""

import numpy as np

SAMPLINGS = ('crop', 'resample')
SHUFFLES = ('replacement', 'epoch')
RESAMPLE_TRAIN = ('perturb', 'sorted_random')


def random_perturb(length: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
  """(num_segments,) int64 training indices into a `length`-snippet video (SAL, STPN lineage).

  Bin i starts at s_i = i * length / num_segments. For i < num_segments - 1 the index is uniform
  in {floor(s_i), ..., floor(s_{i+1})} (the next bin's first snippet included) when those differ,
  else floor(s_i); the last one is uniform in {floor(s_last), ..., length - 1}. Identity when
  length == num_segments; shorter videos repeat snippets.
  """
  if length == num_segments:
    return np.arange(length, dtype=np.int64)
  starts = np.floor(np.arange(num_segments + 1, dtype=np.float64) * length / num_segments)
  starts = starts.astype(np.int64)
  lo = starts[:-1]
  hi = np.append(starts[1:-1], length - 1)  # Inclusive upper ends; the last bin ends the video.
  hi = np.maximum(hi, lo)
  return lo + np.floor(rng.random(num_segments) * (hi - lo + 1)).astype(np.int64)


def random_sample(length: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
  """(num_segments,) int64 training indices, ActivityNet1.3 SAL / ACM-Net `random_sample`.

  length < num_segments: num_segments draws with replacement, sorted. length > num_segments: as
  `random_perturb` (bin i uniform in {floor(s_i), ..., floor(s_{i+1})}) except the last index,
  uniform in {idx_{n-2}, ..., length - 1} from the index drawn for the bin before it. Identity
  when length == num_segments.
  """
  if length == num_segments:
    return np.arange(length, dtype=np.int64)
  if length < num_segments:
    return np.sort(np.floor(rng.random(num_segments) * length).astype(np.int64))
  starts = np.floor(np.arange(num_segments, dtype=np.float64) * length / num_segments)
  starts = starts.astype(np.int64)
  lo, hi = starts[:-1], starts[1:]
  idx = lo + np.floor(rng.random(num_segments - 1) * (hi - lo + 1)).astype(np.int64)
  last = idx[-1] + np.floor(rng.random() * (length - idx[-1])).astype(np.int64)
  return np.append(idx, last)


def uniform_sampling(length: int, num_segments: int) -> np.ndarray:
  """(num_segments,) int64 test indices floor(i * length / num_segments) (identity if equal)."""
  return np.floor(np.arange(num_segments, dtype=np.float64) * length / num_segments
                  ).astype(np.int64)


def epoch_order(num_videos: int, seed: int, epoch: int) -> np.ndarray:
  """The permutation of the videos in `epoch` (shuffle='epoch'), a function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_videos)
