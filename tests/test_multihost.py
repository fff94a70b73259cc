"""Per-host input without a pod: simulated processes build exactly their rows of the global batch,
and evaluation split over processes gathers exactly the single-process detections."""

import numpy as np
import pytest

from d2net_jax import inference
from d2net_jax.data import batching
from d2net_jax.data.records import Dataset, VideoRecord
from d2net_jax.training import train
import train_fixtures


def _videos(count, dim=8, classes=3, subset='train', seed=0):
  rng = np.random.default_rng(seed)
  videos = []
  for i in range(count):
    length = int(rng.integers(3, 60))
    features = rng.normal(size=(length, dim)).astype(np.float32)
    c = i % classes
    start = int(rng.integers(0, max(1, length - 4)))
    features[start:start + 4] += 2.0 * (c + 1)
    videos.append(VideoRecord(
        f'{subset}{i}', subset, np.eye(classes, dtype=np.float32)[c],
        np.array([[start * 0.64, (start + 4) * 0.64]]), np.array([c], np.int32), length * 0.64,
        0.64, length, load=lambda f=features: f))
  return videos


@pytest.mark.parametrize('sampling', ['crop', 'resample'])
@pytest.mark.parametrize('shuffle', ['replacement', 'epoch'])
@pytest.mark.parametrize('processes', [2, 4])
def test_union_of_process_rows_is_the_global_batch(sampling, shuffle, processes):
  videos = _videos(13)
  batcher = batching.TrainBatcher(videos, 8, 24, seed=3, sampling=sampling, num_segments=16,
                                  shuffle=shuffle, pad_to=8 if sampling == 'crop' else None)
  for step in range(25):
    whole = batcher.batch(step)
    parts = [batcher.batch(step, batching.process_rows(8, i, processes))
             for i in range(processes)]
    for name, value in whole.items():
      np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), value,
                                    err_msg=f'{name} step {step}')


def test_process_rows_must_divide_the_batch():
  assert batching.process_rows(8, 3, 4) == slice(6, 8)
  with pytest.raises(ValueError, match='not divisible'):
    batching.process_rows(10, 0, 4)


@pytest.mark.parametrize('processes', [2, 4])
def test_gathered_detections_equal_single_process(processes):
  config = train_fixtures.tiny_config()
  config.data.feature_dim = 8
  config.method = 'mil'
  config.mil.dropout_rate = 0.0
  test = _videos(11, subset='test', seed=1)
  dataset = Dataset('toy', ['a', 'b', 'c'], test, 'train', 'test', 8)
  model, _, state = train.build(config, 3, 8)
  forward = inference.make_forward(model, config)
  args = (forward, state.params, state.method_state)
  expected, expected_found = inference.evaluate(*args, dataset, test, config, process_index=0,
                                                process_count=1)
  assert sum(len(d) for d in expected_found.values()) > 0
  parts = [inference.local_detections(*args, test, config, 3, i, processes)
           for i in range(processes)]
  assert sorted(k for p in parts for k in p) == sorted(v.video_id for v in test)
  for index in range(processes):
    result, found = inference.evaluate(*args, dataset, test, config, process_index=index,
                                       process_count=processes, allgather=lambda _: parts)
    assert list(found) == list(expected_found)
    for video_id, d in found.items():
      assert d.to_list() == expected_found[video_id].to_list()
    np.testing.assert_array_equal(result.mAP, expected.mAP)
