"""Batching: static shapes, exact resume, crops inside the video, buckets, sharding, prefetch."""

import threading
import time

import numpy as np
import pytest

from d2net_jax.data import batching
from d2net_jax.data.records import DataError, VideoRecord

DIM, CLASSES = 6, 4


def make_video(i, length, dim=DIM):
  # Row t of video i holds (i, t, ...) so crops can be traced back to their source.
  features = np.zeros((length, dim), np.float32)
  features[:, 0] = i
  features[:, 1] = np.arange(length)
  features[:, 2:] = np.random.default_rng(i).normal(size=(length, dim - 2))
  labels = np.zeros(CLASSES, np.float32)
  labels[i % CLASSES] = 1
  return VideoRecord(f'video_{i}', 'validation', labels, np.zeros((0, 2)), np.zeros(0, np.int32),
                     length * 0.64, 0.64, length, load=lambda: features)


@pytest.fixture
def videos():
  return [make_video(i, n) for i, n in enumerate([3, 40, 17, 120, 64, 65, 9])]


def check_rows(batch, videos):
  """Each row is a contiguous window of its video, then zeros; the mask marks the prefix."""
  for row, index in enumerate(batch['video_index']):
    assert index >= 0
    source = videos[index].features()
    valid = int(batch['mask'][row].sum())
    np.testing.assert_array_equal(batch['mask'][row, :valid], 1)
    np.testing.assert_array_equal(batch['mask'][row, valid:], 0)
    np.testing.assert_array_equal(batch['features'][row, valid:], 0)
    start = int(batch['features'][row, 0, 1])
    np.testing.assert_array_equal(batch['features'][row, :valid], source[start:start + valid])
    np.testing.assert_array_equal(batch['labels'][row], videos[index].labels)


def test_train_batch_shapes_dtypes_and_crops(videos):
  batcher = batching.TrainBatcher(videos, 5, 32, seed=3)
  batch = batcher.batch(0)
  assert batch['features'].shape == (5, 32, DIM) and batch['features'].dtype == np.float32
  assert batch['mask'].shape == (5, 32) and batch['mask'].dtype == np.float32
  assert batch['labels'].shape == (5, CLASSES) and batch['labels'].dtype == np.float32
  assert batch['video_index'].shape == (5,) and batch['video_index'].dtype == np.int32
  for step in range(20):
    batch = batcher.batch(step)
    check_rows(batch, videos)
    lengths = batch['mask'].sum(1)
    expected = [min(videos[i].num_snippets, 32) for i in batch['video_index']]
    np.testing.assert_array_equal(lengths, expected)


def test_train_batch_is_a_pure_function_of_seed_and_step(videos):
  a = batching.TrainBatcher(videos, 4, 32, seed=7)
  b = batching.TrainBatcher(videos, 4, 32, seed=7)
  later = [b.batch(s) for s in (5, 2, 9)]  # Out of order, as after a resume.
  for step, got in zip((5, 2, 9), later):
    want = a.batch(step)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  other = batching.TrainBatcher(videos, 4, 32, seed=8).batch(5)
  assert not np.array_equal(other['features'], later[0]['features'])
  assert not np.array_equal(a.batch(6)['features'], later[0]['features'])


def test_iterate_resumes_exactly(videos):
  batcher = batching.TrainBatcher(videos, 3, 16, seed=0)
  with batcher.iterate(0, num_steps=6) as it:
    full = list(it)
  with batcher.iterate(4, num_steps=2) as it:
    resumed = list(it)
  assert len(full) == 6 and len(resumed) == 2
  for got, want in zip(resumed, full[4:]):
    np.testing.assert_array_equal(got['features'], want['features'])
    np.testing.assert_array_equal(got['video_index'], want['video_index'])


def test_sampling_with_replacement_and_every_crop_start_reachable():
  # One 12-snippet video cropped to 10: starts 0, 1, 2 all appear (the official code never picks 2).
  video = make_video(0, 12)
  batcher = batching.TrainBatcher([video], 8, 10, seed=1)
  starts = set()
  for step in range(10):
    batch = batcher.batch(step)
    np.testing.assert_array_equal(batch['video_index'], 0)
    starts.update(batch['features'][:, 0, 1].astype(int).tolist())
  assert starts == {0, 1, 2}


def test_pad_to_bounds_the_length(videos):
  short = [v for v in videos if v.num_snippets <= 17]
  batch = batching.TrainBatcher(short, 4, 64, seed=0, pad_to=8).batch(0)
  longest = int(batch['mask'].sum(1).max())
  assert batch['features'].shape[1] == -(-longest // 8) * 8
  check_rows(batch, short)


def test_cache_gives_the_same_batches(videos):
  plain = batching.TrainBatcher(videos, 4, 32, seed=2)
  cached = batching.TrainBatcher(videos, 4, 32, seed=2, cache=True)
  for step in range(3):
    np.testing.assert_array_equal(cached.batch(step)['features'], plain.batch(step)['features'])


def test_bad_video_is_named():
  bad = make_video(0, 10)
  bad = VideoRecord('broken', 'validation', bad.labels, bad.segments, bad.segment_classes, 1.0,
                    0.64, 10, load=lambda: np.zeros((10,), np.float32))
  with pytest.raises(DataError, match='broken'):
    batching.TrainBatcher([make_video(1, 10), bad], 16, 8, seed=0).batch(0)
  wide = VideoRecord('wide', 'validation', bad.labels, bad.segments, bad.segment_classes, 1.0,
                     0.64, 10, load=lambda: np.zeros((10, DIM + 1), np.float32))
  with pytest.raises(DataError, match='-d features, expected'):
    batching.TrainBatcher([make_video(1, 10), wide], 16, 8, seed=0).batch(0)


@pytest.mark.parametrize('mode,expected', [
    ('multiple', [64, 64, 64, 64, 128, 128, 192]),
    ('pow2', [64, 64, 64, 64, 128, 128, 256]),
])
def test_bucket_length(mode, expected):
  got = [batching.bucket_length(t, 64, mode) for t in (1, 2, 63, 64, 65, 128, 129)]
  assert got == expected


def test_eval_batches_cover_every_video_once(videos):
  for batch_size in (1, 3):
    seen = []
    shapes = set()
    for batch in batching.eval_batches(videos, bucket=16, batch_size=batch_size):
      assert batch['features'].shape[0] == batch_size
      length = batch['features'].shape[1]
      assert length % 16 == 0
      shapes.add(length)
      for row, index in enumerate(batch['video_index']):
        if index < 0:  # Filler.
          assert batch['mask'][row].sum() == 0 and not batch['features'][row].any()
          assert not batch['labels'][row].any()
          continue
        seen.append(int(index))
        video = videos[index]
        assert batch['mask'][row].sum() == video.num_snippets
        assert length == batching.bucket_length(video.num_snippets, 16)
        np.testing.assert_array_equal(batch['features'][row, :video.num_snippets],
                                      video.features())
        np.testing.assert_array_equal(batch['labels'][row], video.labels)
    assert sorted(seen) == list(range(len(videos)))
    assert shapes == set(batching.eval_lengths(videos, 16))
    if batch_size == 1:
      assert seen == list(range(len(videos)))


def test_eval_batches_rejects_wrong_num_snippets():
  video = make_video(0, 10)
  wrong = VideoRecord('liar', 'test', video.labels, video.segments, video.segment_classes, 1.0,
                      0.64, 12, load=video.load)
  with pytest.raises(DataError, match='liar'):
    list(batching.eval_batches([wrong], 8))


def test_pow2_compiles_fewer_programs():
  lengths = np.random.default_rng(0).integers(1, 3000, size=300)
  videos = [make_video(i, 1) for i in range(len(lengths))]
  videos = [VideoRecord(v.video_id, v.subset, v.labels, v.segments, v.segment_classes, 1.0, 0.64,
                        int(n), load=v.load) for v, n in zip(videos, lengths)]
  multiple = batching.eval_lengths(videos, 64, 'multiple')
  pow2 = batching.eval_lengths(videos, 64, 'pow2')
  assert len(pow2) <= 7 < len(multiple) <= 47


def test_shard_batch(videos):
  batch = batching.TrainBatcher(videos, 8, 16, seed=0).batch(0)
  sharded = batching.shard_batch(batch, 4)
  assert sharded['features'].shape == (4, 2, 16, DIM)
  assert sharded['video_index'].shape == (4, 2)
  np.testing.assert_array_equal(sharded['features'].reshape(8, 16, DIM), batch['features'])
  np.testing.assert_array_equal(sharded['labels'][1, 0], batch['labels'][2])
  with pytest.raises(ValueError, match='not divisible by 3'):
    batching.shard_batch(batch, 3)


def test_prefetch_yields_everything_in_order():
  with batching.prefetch(iter(range(50)), size=3) as it:
    assert list(it) == list(range(50))
    assert not it.alive


def test_prefetch_runs_ahead():
  produced = []

  def source():
    for i in range(10):
      produced.append(i)
      yield i

  it = batching.prefetch(source(), size=2)
  assert next(it) == 0
  deadline = time.time() + 5
  while len(produced) < 3 and time.time() < deadline:
    time.sleep(0.01)
  assert len(produced) >= 3  # 0 consumed, two queued, one being put.
  it.close()
  assert not it.alive


def test_prefetch_propagates_producer_exceptions():
  def source():
    yield 1
    raise KeyError('disk on fire')

  it = batching.prefetch(source(), size=2)
  assert next(it) == 1
  with pytest.raises(KeyError, match='disk on fire'):
    next(it)
  assert not it.alive
  with pytest.raises(StopIteration):
    next(it)


def test_prefetch_stops_an_infinite_producer():
  closed = threading.Event()

  def forever():
    try:
      i = 0
      while True:
        yield i
        i += 1
    finally:
      closed.set()

  before = threading.active_count()
  it = batching.prefetch(forever(), size=2)
  assert [next(it) for _ in range(5)] == list(range(5))
  it.close()
  assert not it.alive and closed.is_set()
  # Dropping an unclosed prefetcher stops its thread as well.
  dropped = batching.prefetch(forever(), size=2)
  thread = dropped._thread  # pylint: disable=protected-access
  next(dropped)
  del dropped
  thread.join(5)
  assert not thread.is_alive()
  assert threading.active_count() == before


def test_iterate_through_train_loop_zip_does_not_hang(videos):
  batcher = batching.TrainBatcher(videos, 2, 8, seed=0)
  it = batcher.iterate(0)  # Infinite, like training's iterator.
  steps = list(zip(range(3), it))
  assert len(steps) == 3
  it.close()
  assert not it.alive


def test_parallel_workers_give_the_same_batches_in_order(videos):
  batcher = batching.TrainBatcher(videos, 3, 16, seed=4)
  with batcher.iterate(2, num_steps=7, num_workers=3) as it:
    got = list(it)
  assert len(got) == 7
  for step, batch in zip(range(2, 9), got):
    np.testing.assert_array_equal(batch['features'], batcher.batch(step)['features'])


def test_parallel_map_propagates_errors_and_stops():
  def fn(x):
    if x == 5:
      raise ValueError('bad item 5')
    return x * x

  mapped = batching.parallel_map(fn, range(10), 3)
  assert [next(mapped) for _ in range(5)] == [0, 1, 4, 9, 16]
  with pytest.raises(ValueError, match='bad item 5'):
    next(mapped)
  infinite = batching.parallel_map(fn, iter(range(6, 10**9)), 2)
  assert next(infinite) == 36
  infinite.close()  # Returns: the executor is shut down, no thread left running.
  assert not [t for t in threading.enumerate() if t.name.startswith('batch')]


def _lengths_as_videos(lengths):
  base = make_video(0, 1)
  return [VideoRecord(f'v{i}', 'test', base.labels, base.segments, base.segment_classes, 1.0,
                      0.64, int(n), load=base.load) for i, n in enumerate(lengths)]


@pytest.mark.parametrize('seed', range(5))
def test_fitted_buckets_are_optimal_and_few(seed):
  """At most K lengths, every video fits, and no other choice of K edges pads less."""
  import itertools  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, 200, size=int(rng.integers(3, 30)))
  bucket, k = 16, 3
  edges = batching.fitted_edges(lengths, bucket, k)
  assert 1 <= len(edges) <= k and all(e % bucket == 0 for e in edges)
  padded = batching.padded_lengths(_lengths_as_videos(lengths), bucket, 'fitted', k)
  assert all(p >= n for p, n in zip(padded, lengths)) and set(padded) <= set(edges)
  cands = sorted({batching.bucket_length(n, bucket) for n in lengths})
  best = min(sum(min(e for e in choice if e >= n) for n in lengths)
             for r in range(1, k + 1) for choice in itertools.combinations(cands, r)
             if max(choice) == cands[-1])
  assert sum(padded) == best


def test_real_thumos14_test_set_compiles_at_most_eight_programs(shared_data):
  durations = np.load(shared_data / 'thumos14' / 'duration.npy', allow_pickle=True)
  subsets = np.load(shared_data / 'thumos14' / 'subset.npy', allow_pickle=True).astype(str)
  lengths = [max(1, int(d / 0.64)) for d, s in zip(durations.reshape(-1), subsets) if s == 'test']
  videos = _lengths_as_videos(lengths)
  assert len(batching.eval_lengths(videos, 16, 'fitted', 8)) == 8
  assert len(batching.eval_lengths(videos, 16, 'multiple')) > 8
  padded = batching.padded_lengths(videos, 16, 'fitted', 8)
  assert sum(padded) / sum(lengths) - 1 < 0.25
