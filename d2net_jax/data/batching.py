"""Static-shape batches for jit: training crops, bucketed evaluation, device sharding, prefetch.

Every batch is a dict of NumPy arrays (the shared batch contract):

  'features'    (B, T, D) float32, zeros at padding;
  'mask'        (B, T) float32, 1 on the valid snippets (a prefix), 0 on padding;
  'labels'      (B, C) float32 multi-hot video-level labels;
  'video_index' (B,) int32, index into the video list the batch was drawn from (-1: filler row).

Training (`TrainBatcher`): B videos drawn with replacement (or, `shuffle='epoch'`, from a fresh
permutation of the videos each epoch), each made into a fixed-length row in one of two ways:
- 'crop' (D2-Net): randomly cropped to at most `max_seqlen` snippets and padded to exactly
  `max_seqlen`, so the train step compiles once;
- 'resample' (SAL, CO2-Net): resampled to exactly `num_segments` snippets, one random snippet per
  bin (`random_perturb`), with no padding. At test (`eval_batches(resample_to=...)`) the
  resampling is uniform (`uniform_sampling`); the batch keeps each video's original length in
  'num_snippets' so times map back to seconds.
 The
official code pads to min(max_seqlen, longest video in the batch) instead, a different shape
nearly every step; under jit that would mean one compilation per distinct length. Valid snippets
see the same zeros past their video's end either way, and the masks keep padding out of the
losses. The cost is compute on padding, and it is small: on the THUMOS14 training videos (B = 10,
max_seqlen 750) the official batches average 660 snippets, 57% of them padding, the static ones
750 with 62% padding, i.e. ~14% more work. `pad_to` (pad each batch only to the next multiple
of `pad_to`) trades up to max_seqlen / pad_to shapes for less padding.

`TrainBatcher.batch(step)` is a pure function of (seed, step): a run resumed at step k sees exactly
the batches of an uninterrupted run.

Evaluation (`eval_batches`): every video whole, padded to a length bucket: the next multiple of
`bucket` ('multiple': at most ceil(T_max / bucket) programs) or `bucket` times the next power of
two ('pow2': at most log2(T_max / bucket) + 1 programs, up to 2x padding). Measured on the real
annotations at 0.64 s per snippet, bucket 64, batch 1: the THUMOS14 test set (212 videos, up to
2614 snippets) compiles 26 programs with 9% padding ('multiple') or 7 with 47% ('pow2');
ActivityNet1.2 validation (2383 videos, up to 373 snippets) 6 with 18% or 4 with 50%. 'fitted'
(the default) picks at most `max_programs` multiples of `bucket` that pad the evaluated videos
least: at bucket 16 and 8 programs, 21% padding on THUMOS14 test and 13% on ActivityNet1.2
validation (experiments/bench_eval_programs.py).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from d2net_jax.data import similar_pairs
from d2net_jax.data.buckets import (BUCKET_MODES, bucket_length, eval_lengths,  # noqa: F401
                                     fitted_edges, padded_lengths)
from d2net_jax.data.prefetch import Prefetcher, count_from, parallel_map, prefetch  # noqa: F401
from d2net_jax.data.records import DataError, VideoRecord
from d2net_jax.data.sampling import (RESAMPLE_TRAIN, SAMPLINGS, SHUFFLES,  # noqa: F401
                                     epoch_order, random_perturb, random_sample,
                                     uniform_sampling)

Batch = Dict[str, np.ndarray]


def _num_classes(videos: Sequence[VideoRecord], num_classes: Optional[int]) -> int:
  if num_classes is not None:
    return int(num_classes)
  if not videos:
    raise ValueError('no videos to batch')
  return int(np.asarray(videos[0].labels).shape[-1])


def _load(video: VideoRecord, feature_dim: Optional[int] = None) -> np.ndarray:
  """(T, D) float32 features of `video`, checked against its record."""
  features = np.asarray(video.features(), dtype=np.float32)
  if features.ndim != 2 or features.shape[0] == 0:
    raise DataError(f'video {video.video_id!r}: features have shape {features.shape}, '
                    'expected (T, D) with T >= 1')
  if feature_dim is not None and features.shape[1] != feature_dim:
    raise DataError(f'video {video.video_id!r}: {features.shape[1]}-d features, expected '
                    f'{feature_dim}-d like the other videos')
  return features


def _labels(video: VideoRecord, num_classes: int) -> np.ndarray:
  labels = np.asarray(video.labels, dtype=np.float32)
  if labels.shape != (num_classes,):
    raise DataError(f'video {video.video_id!r}: labels have shape {labels.shape}, expected '
                    f'({num_classes},)')
  return labels


class TrainBatcher:
  """Random training batches (B, T, D), a pure function of (seed, step).

  shuffle='replacement': videos are drawn uniformly with replacement (like the official D2-Net
  loader); 'epoch': row j of step k is video perm_e[(k B + j) mod N] with e = (k B + j) // N and
  perm_e a seeded permutation per epoch, so every video appears once per epoch (an epoch may
  straddle two steps).

  sampling='crop' (T = max_seqlen): a video longer than `max_seqlen` is cut to a random contiguous
  window of `max_seqlen` snippets (every start in [0, T - max_seqlen] equally likely; the official
  `random_extract` never picks the last one); shorter videos are zero-padded and masked.
  sampling='resample' (T = num_segments): `random_perturb`, every row fully valid.
  sampler='similar_pairs' (CO2-Net): groups of videos sharing a class first (similar_pairs.py).
  """

  def __init__(self, videos: Sequence[VideoRecord], batch_size: int, max_seqlen: int, seed: int,
               num_classes: Optional[int] = None, *, pad_to: Optional[int] = None,
               cache: bool = False, sampling: str = 'crop', num_segments: Optional[int] = None,
               shuffle: str = 'replacement', resample_train: str = 'perturb',
               sampler: str = 'uniform', num_similar: int = 3, similar_size: int = 2):
    """
    Args:
      videos: the training videos; 'video_index' of a batch indexes this list.
      batch_size: B, the global batch (split over devices by `shard_batch`).
      max_seqlen: crop length and (by default) the static padded length T.
      seed: batches are a function of (seed, step) only.
      num_classes: C (default: the length of the first video's labels).
      pad_to: None (static T = max_seqlen), or pad each batch only to the next multiple of
        `pad_to` above its longest crop (at most ceil(max_seqlen / pad_to) shapes).
      cache: keep every video's features in memory after the first load (fast when the training
        set fits in RAM; the default reads from the store each time).
      sampling: 'crop' or 'resample' (see the class docstring).
      num_segments: the resampled length (default: max_seqlen).
      shuffle: 'replacement' or 'epoch'.
      resample_train: 'perturb' (`random_perturb`) or 'sorted_random' (`random_sample`).
      sampler: 'uniform' or 'similar_pairs' (with shuffle='replacement'); num_similar,
        similar_size: its groups.
    """
    if sampling not in SAMPLINGS:
      raise ValueError(f'sampling={sampling!r}: one of {SAMPLINGS}')
    if shuffle not in SHUFFLES:
      raise ValueError(f'shuffle={shuffle!r}: one of {SHUFFLES}')
    if not videos:
      raise ValueError('TrainBatcher needs at least one video')
    if batch_size < 1 or max_seqlen < 1:
      raise ValueError(f'batch_size={batch_size} and max_seqlen={max_seqlen} must be >= 1')
    if pad_to is not None and pad_to < 1:
      raise ValueError(f'pad_to={pad_to} must be None or >= 1')
    self.videos = list(videos)
    self.batch_size = int(batch_size)
    self.max_seqlen = int(max_seqlen)
    self.seed = int(seed)
    self.num_classes = _num_classes(self.videos, num_classes)
    self.pad_to = pad_to
    self.sampling = sampling
    self.num_segments = int(num_segments or max_seqlen)
    self.shuffle = shuffle
    if resample_train not in RESAMPLE_TRAIN:
      raise ValueError(f'resample_train={resample_train!r}: one of {RESAMPLE_TRAIN}')
    self._draw = random_perturb if resample_train == 'perturb' else random_sample
    if sampler not in similar_pairs.SAMPLERS or (sampler != 'uniform' and shuffle != 'replacement'):
      raise ValueError(f'sampler={sampler!r} with shuffle={shuffle!r}: one of '
                       f"{similar_pairs.SAMPLERS}, and 'similar_pairs' draws with replacement")
    self._pairs = similar_pairs.SimilarPairs(
        [_labels(v, self.num_classes) for v in self.videos], self.batch_size, num_similar,
        similar_size) if sampler == 'similar_pairs' else None
    self._cache: Optional[Dict[int, np.ndarray]] = {} if cache else None
    self._cache_lock = threading.Lock()
    self._feature_dim: Optional[int] = None

  def _features(self, index: int) -> np.ndarray:
    if self._cache is not None:
      with self._cache_lock:
        found = self._cache.get(index)
      if found is not None:
        return found
    features = _load(self.videos[index], self._feature_dim)
    self._feature_dim = features.shape[1]
    if self._cache is not None:
      with self._cache_lock:
        self._cache[index] = features
    return features

  def batch(self, step: int, rows: Optional[slice] = None) -> Batch:
    """The batch of training step `step` (same (seed, step), same batch), or only its rows `rows`.

    `rows` (a slice of range(batch_size), e.g. this process's `process_rows`) builds those rows
    alone, identical to the same rows of the whole batch: the random draws of the other rows are
    replayed from their videos' lengths (`num_snippets`), without loading their features.
    """
    rng = np.random.default_rng([self.seed, int(step)])
    if self._pairs is not None:
      indices = self._pairs.draw(rng)
    elif self.shuffle == 'replacement':
      indices = rng.integers(len(self.videos), size=self.batch_size)
    else:
      indices = self._epoch_indices(int(step))
    takes = []  # Per row of the global batch: the snippets it holds, drawn in row order.
    for index in indices:
      length = int(self.videos[int(index)].num_snippets)
      if self.sampling == 'resample':
        takes.append(self._draw(length, self.num_segments, rng))
      else:
        start = int(rng.integers(length - self.max_seqlen + 1)) if length > self.max_seqlen else 0
        takes.append(slice(start, start + min(length, self.max_seqlen)))
    if self.sampling == 'resample':
      length = self.num_segments
    else:
      length = self.max_seqlen
      if self.pad_to is not None:
        longest = max(t.stop - t.start for t in takes)
        length = min(self.max_seqlen, -(-longest // self.pad_to) * self.pad_to)
    own = list(range(self.batch_size))[rows if rows is not None else slice(None)]
    features, mask = None, np.zeros((len(own), length), np.float32)
    for out, row in enumerate(own):
      index = int(indices[row])
      video = self._features(index)
      if video.shape[0] != self.videos[index].num_snippets:
        raise DataError(f'video {self.videos[index].video_id!r}: {video.shape[0]} feature rows '
                        f'but num_snippets={self.videos[index].num_snippets}')
      piece = video[takes[row]]
      if features is None:
        features = np.zeros((len(own), length, video.shape[1]), np.float32)
      features[out, :piece.shape[0]] = piece
      mask[out, :piece.shape[0]] = 1.0
    labels = np.stack([_labels(self.videos[int(indices[row])], self.num_classes) for row in own])
    return {'features': features, 'mask': mask, 'labels': labels,
            'video_index': indices[own].astype(np.int32)}

  def _epoch_indices(self, step: int) -> np.ndarray:
    n = len(self.videos)
    positions = step * self.batch_size + np.arange(self.batch_size)
    epochs, offsets = np.divmod(positions, n)
    orders = {int(e): epoch_order(n, self.seed, int(e)) for e in np.unique(epochs)}
    return np.array([orders[int(e)][o] for e, o in zip(epochs, offsets)], np.int64)

  def iterate(self, start_step: int = 0, num_steps: Optional[int] = None,
              prefetch_size: int = 2, num_workers: int = 1,
              rows: Optional[slice] = None) -> 'Prefetcher':
    """Batches of steps start_step, start_step + 1, ... (`num_steps` of them, or forever),
    prepared ahead in a background thread (`prefetch`); with `num_workers` > 1 that many threads
    assemble consecutive batches at once (still yielded in step order). Close the iterator (or
    use `with`) when done."""
    if num_steps is None:
      steps: Iterable[int] = count_from(start_step)
    else:
      steps = range(start_step, start_step + num_steps)
    if num_workers > 1:
      return prefetch(parallel_map(lambda step: self.batch(step, rows), steps, num_workers),
                      prefetch_size)
    return prefetch((self.batch(step, rows) for step in steps), prefetch_size)


def _test_indices(length: int, resample_to: int, resample_short: str) -> np.ndarray:
  """Snippet indices fed at test when resampling: uniform, or all of a short video ('keep')."""
  if resample_short == 'keep' and length <= resample_to:
    return np.arange(length, dtype=np.int64)
  return uniform_sampling(length, resample_to)


def eval_batches(videos: Sequence[VideoRecord], bucket: int = 64, batch_size: int = 1,
                 num_classes: Optional[int] = None, mode: str = 'multiple', *,
                 max_programs: int = 8, resample_to: Optional[int] = None,
                 resample_short: str = 'repeat') -> Iterator[Batch]:
  """Whole videos, padded to their length bucket, `batch_size` videos of one bucket per batch.

  With `resample_to` = T every video is instead resampled to T snippets (`uniform_sampling`), one
  bucket of length T; with resample_short='keep' a video of at most T snippets is fed whole,
  padded to T and masked. Batches then also carry 'num_snippets' (B,) int32, each video's original
  length (0 on filler rows), so the mask's valid count s maps snippets back to seconds by
  v_len / s.

  With batch_size 1 the batches follow the order of `videos`; otherwise videos are grouped by
  bucket (ascending, dataset order within a bucket). A bucket's last batch is filled up with
  rows of video_index -1, mask 0, zero features and labels. Features are read as the batches
  are consumed. The padded length comes from `num_snippets`; a video whose features disagree
  with it is an error.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size} must be >= 1')
  videos = list(videos)
  if not videos:
    return
  classes = _num_classes(videos, num_classes)
  if resample_to is not None:
    if resample_to < 1:
      raise ValueError(f'resample_to={resample_to} must be >= 1')
    lengths = [int(resample_to)] * len(videos)
  else:
    lengths = padded_lengths(videos, bucket, mode, max_programs)
  if batch_size == 1:
    groups = [[i] for i in range(len(videos))]
  else:
    by_length: Dict[int, List[int]] = {}
    for i, length in enumerate(lengths):
      by_length.setdefault(length, []).append(i)
    groups = [members[k:k + batch_size] for _, members in sorted(by_length.items())
              for k in range(0, len(members), batch_size)]
  feature_dim = None
  for group in groups:
    length = lengths[group[0]]
    loaded = []
    for i in group:
      features = _load(videos[i], feature_dim)
      feature_dim = features.shape[1]
      if features.shape[0] != videos[i].num_snippets:
        raise DataError(f'video {videos[i].video_id!r}: {features.shape[0]} feature rows but '
                        f'num_snippets={videos[i].num_snippets}')
      if resample_to is not None:
        features = features[_test_indices(features.shape[0], resample_to, resample_short)]
      loaded.append(features)
    batch = {
        'features': np.zeros((batch_size, length, feature_dim), np.float32),
        'mask': np.zeros((batch_size, length), np.float32),
        'labels': np.zeros((batch_size, classes), np.float32),
        'video_index': np.full((batch_size,), -1, np.int32),
    }
    if resample_to is not None:
      batch['num_snippets'] = np.zeros((batch_size,), np.int32)
    for row, (i, features) in enumerate(zip(group, loaded)):
      if resample_to is not None:
        batch['num_snippets'][row] = videos[i].num_snippets
      batch['features'][row, :features.shape[0]] = features
      batch['mask'][row, :features.shape[0]] = 1.0
      batch['labels'][row] = _labels(videos[i], classes)
      batch['video_index'][row] = i
    yield batch


def process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
  """The contiguous rows of a global batch that process `process_index` of `process_count` feeds
  (the same split as `parallel.process_batch`)."""
  if batch_size % process_count:
    raise ValueError(f'global batch {batch_size} not divisible by {process_count} processes')
  per = batch_size // process_count
  return slice(process_index * per, (process_index + 1) * per)


def shard_batch(batch: Dict[str, Any], num_devices: int) -> Dict[str, Any]:
  """(B, ...) -> (num_devices, B / num_devices, ...) for every array of the batch (pmap layout)."""
  if num_devices < 1:
    raise ValueError(f'num_devices={num_devices} must be >= 1')
  sharded = {}
  for name, value in batch.items():
    size = value.shape[0]
    if size % num_devices:
      raise ValueError(f'batch[{name!r}] has leading size {size}, not divisible by '
                       f'{num_devices} devices; choose a batch size that is a multiple of it')
    sharded[name] = value.reshape((num_devices, size // num_devices) + tuple(value.shape[1:]))
  return sharded
