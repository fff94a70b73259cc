"""Resampling to a fixed number of snippets and epoch-wise shuffling (data/sampling.py, batching)."""

import numpy as np
import pytest

from d2net_jax.data import batching
from d2net_jax.data import sampling
from d2net_jax.data.records import DataError, VideoRecord


def _perturb_reference(length, num_segments, draw):
  """The spec's per-bin loop: draw(lo, hi) picks uniformly in {lo, ..., hi}."""
  if length == num_segments:
    return list(range(length))
  s = [i * length / num_segments for i in range(num_segments)]
  out = []
  for i in range(num_segments):
    lo = int(s[i])
    if i < num_segments - 1:
      hi = int(s[i + 1])
      out.append(draw(lo, hi) if lo != hi else lo)
    else:
      out.append(draw(lo, length - 1) if lo < length - 1 else lo)
  return out


@pytest.mark.parametrize('length,num_segments', [(10, 10), (7, 20), (100, 20), (751, 750),
                                                 (3000, 750), (1, 5)])
def test_random_perturb_bins(length, num_segments):
  """Every index lies in its bin's range of the reference; all of a range can be drawn."""
  lo_hi = []
  _perturb_reference(length, num_segments, lambda lo, hi: lo_hi.append((lo, hi)) or lo)
  rng = np.random.default_rng(0)
  draws = np.stack([sampling.random_perturb(length, num_segments, rng) for _ in range(300)])
  assert draws.shape == (300, num_segments) and draws.dtype == np.int64
  assert draws.min() >= 0 and draws.max() <= length - 1
  if length == num_segments:
    np.testing.assert_array_equal(draws, np.tile(np.arange(length), (300, 1)))
    return
  # Bins with a choice draw within [lo, hi] and reach both ends; the others are fixed.
  ranges = iter(lo_hi)
  fixed = _perturb_reference(length, num_segments, lambda lo, hi: -1)
  for i in range(num_segments):
    column = draws[:, i]
    if fixed[i] >= 0:
      assert np.all(column == fixed[i]), i
    else:
      lo, hi = next(ranges)
      assert column.min() == lo and column.max() == hi, (i, lo, hi)


def test_uniform_sampling():
  np.testing.assert_array_equal(sampling.uniform_sampling(10, 4), [0, 2, 5, 7])
  np.testing.assert_array_equal(sampling.uniform_sampling(3, 6), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(sampling.uniform_sampling(5, 5), np.arange(5))


def _videos(lengths, dim=4, classes=3):
  out = []
  for i, length in enumerate(lengths):
    features = (np.arange(length, dtype=np.float32)[:, None] + 1000 * i) * np.ones((1, dim))
    labels = np.eye(classes, dtype=np.float32)[i % classes]
    out.append(VideoRecord(video_id=f'v{i}', subset='train', labels=labels,
                           load=lambda f=features: f.astype(np.float32), num_snippets=length,
                           seconds_per_snippet=0.5, duration=length * 0.5,
                           segments=np.zeros((0, 2)), segment_classes=np.zeros((0,), np.int64)))
  return out


def test_resample_batches_are_full_rows_of_their_video_and_pure():
  videos = _videos([5, 40, 13, 8])
  batcher = batching.TrainBatcher(videos, 3, 16, seed=4, sampling='resample', num_segments=12)
  batch = batcher.batch(7)
  assert batch['features'].shape == (3, 12, 4) and np.all(batch['mask'] == 1)
  for row, index in enumerate(batch['video_index']):
    snippets = batch['features'][row, :, 0] - 1000 * index
    assert np.all(np.diff(snippets) >= 0) and snippets.max() < videos[index].num_snippets
  again = batching.TrainBatcher(videos, 3, 16, seed=4, sampling='resample', num_segments=12)
  for name in batch:
    np.testing.assert_array_equal(again.batch(7)[name], batch[name])


def test_epoch_shuffle_draws_every_video_once_per_epoch():
  videos = _videos([3] * 7)
  batcher = batching.TrainBatcher(videos, 3, 4, seed=1, shuffle='epoch')
  order = np.concatenate([batcher.batch(step)['video_index'] for step in range(7)])  # 3 epochs.
  for epoch in range(3):
    assert sorted(order[7 * epoch:7 * (epoch + 1)]) == list(range(7))
  assert not np.array_equal(order[:7], order[7:14])  # A fresh permutation each epoch.
  replacement = batching.TrainBatcher(videos, 3, 4, seed=1)
  np.testing.assert_array_equal(  # The default draws with replacement, as before.
      replacement.batch(5)['video_index'],
      np.random.default_rng([1, 5]).integers(7, size=3))


def test_eval_batches_resampled_keep_original_length():
  videos = _videos([30, 6])
  batches = list(batching.eval_batches(videos, batch_size=1, resample_to=10))
  assert [b['features'].shape for b in batches] == [(1, 10, 4)] * 2
  np.testing.assert_array_equal(batches[0]['features'][0, :, 0], np.arange(0, 30, 3))
  assert [int(b['num_snippets'][0]) for b in batches] == [30, 6]
  np.testing.assert_array_equal(batches[1]['mask'], 1.0)  # 'repeat': resampled up to 10.
  kept = list(batching.eval_batches(videos, batch_size=1, resample_to=10,
                                    resample_short='keep'))
  np.testing.assert_array_equal(kept[1]['mask'][0], [1] * 6 + [0] * 4)
  np.testing.assert_array_equal(kept[1]['features'][0, :6, 0], 1000 + np.arange(6))
  np.testing.assert_array_equal(kept[0]['features'], batches[0]['features'])


def test_bad_sampling_arguments():
  with pytest.raises(ValueError, match='sampling'):
    batching.TrainBatcher(_videos([4]), 1, 4, 0, sampling='bins')
  with pytest.raises(ValueError, match='shuffle'):
    batching.TrainBatcher(_videos([4]), 1, 4, 0, shuffle='cycle')


def _multilabel(videos, extra):
  """videos with class `extra[i]` added to video i's labels (a multi-label video)."""
  for video, c in zip(videos, extra):
    if c is not None:
      video.labels[c] = 1.0
  return videos


def test_similar_pair_batches_share_a_class_per_group():
  """sampler='similar_pairs': rows (0, 1), (2, 3), (4, 5) are distinct videos sharing a class
  (drawn among the classes with >= 2 videos), the rest any video; a pure function of the step."""
  videos = _multilabel(_videos([6] * 9), [None] * 8 + [0])  # Class 2 has 3 videos, 0 has 4.
  batcher = batching.TrainBatcher(videos, 8, 6, seed=2, sampling='resample', num_segments=6,
                                  sampler='similar_pairs')
  seen_classes, seen_rest = set(), set()
  for step in range(40):
    batch = batcher.batch(step)
    rows = batch['video_index']
    for g in range(3):
      a, b = rows[2 * g], rows[2 * g + 1]
      assert a != b
      shared = np.flatnonzero(videos[a].labels * videos[b].labels)
      assert shared.size
      seen_classes.update(shared.tolist())
    seen_rest.update(rows[6:].tolist())
    again = batching.TrainBatcher(videos, 8, 6, seed=2, sampling='resample', num_segments=6,
                                  sampler='similar_pairs').batch(step)
    np.testing.assert_array_equal(again['video_index'], rows)
    np.testing.assert_array_equal(again['features'], batch['features'])
  assert seen_classes == {0, 1, 2} and seen_rest == set(range(9))
  # Only class 0 has 2+ videos here: every group is drawn from it.
  few = _multilabel(_videos([4] * 3), [None, None, 0])
  rows = batching.TrainBatcher(few, 6, 4, seed=0, sampler='similar_pairs').batch(3)['video_index']
  assert all({rows[2 * g], rows[2 * g + 1]} == {0, 2} for g in range(3))


def test_similar_pair_sampler_refuses_what_it_cannot_draw():
  with pytest.raises(ValueError, match='num_similar'):
    batching.TrainBatcher(_videos([4] * 6), 5, 4, 0, sampler='similar_pairs')
  with pytest.raises(ValueError, match="with replacement"):
    batching.TrainBatcher(_videos([4] * 6), 6, 4, 0, sampler='similar_pairs', shuffle='epoch')
  with pytest.raises(ValueError, match='sampler'):
    batching.TrainBatcher(_videos([4] * 6), 6, 4, 0, sampler='pairs')
  with pytest.raises(DataError, match='no class has 2 or more'):
    batching.TrainBatcher(_videos([4] * 3), 6, 4, 0, sampler='similar_pairs')
