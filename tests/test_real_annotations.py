"""The real THUMOS14 / ActivityNet1.2 annotation files of ../shared/data (skipped when absent).

Expected counts come from the files' README (videos per subset) and the evaluation protocol
(3358 THUMOS14 test instances); the others are counted here straight from the raw arrays.
"""

import functools
import json

import numpy as np
import pytest

from d2net_jax.data import ground_truth, hdf5_store, validation, wtalc
from d2net_jax.data.records import DataError, Dataset

SPS = 0.64


def _raw(folder, name):
  return np.load(folder / f'{name}.npy', allow_pickle=True)


def _decoded(array):
  return [x.decode() if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]


def _raw_instances_per_subset(folder):
  counts = {}
  for subset, segments in zip(_decoded(_raw(folder, 'subset')), _raw(folder, 'segments')):
    counts[subset] = counts.get(subset, 0) + len(segments)
  return counts


def _raw_videos_outside(folder):
  duration = _raw(folder, 'duration').reshape(-1)
  return {v for v, segs, d in zip(_decoded(_raw(folder, 'videoname')), _raw(folder, 'segments'),
                                  duration) if any(s < 0 or e > d for s, e in segs)}


def _instances(dataset, subset):
  return sum(len(v.segments) for v in dataset.subset(subset))


def _random_features(seed, num_snippets, dim):
  return np.random.default_rng(seed).normal(size=(num_snippets, dim)).astype(np.float32)


def lay_random_features(annotations: Dataset, dim: int = 8) -> Dataset:
  """Random (T, dim) features with T = round(duration / 0.64) laid over annotations."""
  videos = [validation.with_features(v, max(1, round(v.duration / SPS)),
                                     functools.partial(_random_features, i,
                                                       max(1, round(v.duration / SPS)), dim))
            for i, v in enumerate(annotations.videos)]
  return Dataset(name=annotations.name, class_names=annotations.class_names, videos=videos,
                 train_subset=annotations.train_subset, test_subset=annotations.test_subset,
                 feature_dim=dim, ambiguous=annotations.ambiguous)


def test_thumos14_counts(shared_data):
  folder = shared_data / 'thumos14'
  report = validation.Report()
  annotations = wtalc.read_annotations(folder, trust_pickle=True, report=report)
  assert len(annotations.videos) == 412
  assert (annotations.train_subset, annotations.test_subset) == ('validation', 'test')
  assert len(annotations.train_videos()) == 200 and len(annotations.test_videos()) == 212
  assert _instances(annotations, 'test') == 3358
  assert _instances(annotations, 'validation') == _raw_instances_per_subset(folder)['validation']
  assert annotations.num_classes == 20
  # Clipped (never dropped): exactly the videos with instances outside their duration.
  clipped = {i.video_id for i in report.of_kind('clipped_segment')}
  assert clipped == _raw_videos_outside(folder) and 'video_test_0000270' in clipped
  for video in annotations.videos:
    assert (video.segments >= 0).all() and (video.segments <= video.duration).all()
  # Ambiguous_test.txt: one region per line.
  lines = [l for l in (folder / 'Ambiguous_test.txt').read_text().splitlines() if l.strip()]
  assert sum(len(r) for r in annotations.ambiguous.values()) == len(lines)


def test_thumos14_keeps_instances_listed_under_cliffdiving_and_diving(shared_data):
  folder = shared_data / 'thumos14'
  annotations = wtalc.read_annotations(folder, trust_pickle=True, report=validation.Report())
  cliff, diving = (annotations.class_names.index(c) for c in ('CliffDiving', 'Diving'))
  raw_pairs = 0
  for segments, labels in zip(_raw(folder, 'segments'), _raw(folder, 'labels')):
    by_label = {}
    for segment, label in zip(segments, labels):
      by_label.setdefault(label, set()).add(tuple(segment))
    raw_pairs += len(by_label.get('CliffDiving', set()) & by_label.get('Diving', set()))
  assert raw_pairs > 0
  pairs = 0
  for video in annotations.videos:
    segs = [tuple(s) for s in video.segments]
    cliff_segs = {s for s, c in zip(segs, video.segment_classes) if c == cliff}
    diving_segs = {s for s, c in zip(segs, video.segment_classes) if c == diving}
    pairs += len(cliff_segs & diving_segs)
  assert pairs == raw_pairs


def test_thumos14_with_random_features_through_the_store(shared_data, tmp_path):
  annotations = wtalc.read_annotations(shared_data / 'thumos14', trust_pickle=True,
                                       report=validation.Report())
  dataset = lay_random_features(annotations)
  assert validation.check_timing(dataset.videos, tolerance_snippets=2.0,
                                 tolerance_fraction=0.02) == []
  store = hdf5_store.read_store(hdf5_store.write_store(tmp_path / 'thumos14.h5', dataset))
  assert len(store.train_videos()) == 200 and len(store.test_videos()) == 212
  assert _instances(store, 'test') == 3358
  assert _instances(store, 'validation') == _instances(annotations, 'validation')
  np.testing.assert_array_equal(store.videos[7].features(), dataset.videos[7].features())
  gt = json.loads(ground_truth.export_ground_truth(store, tmp_path / 'gt.json', 'test').read_text())
  assert len(gt['database']) == 212
  assert sum(len(v['annotations']) for v in gt['database'].values()) == 3358
  assert {v['subset'] for v in gt['database'].values()} == {'test'}


def test_activitynet12_counts(shared_data):
  folder = shared_data / 'activitynet12'
  report = validation.Report()
  annotations = wtalc.read_annotations(folder, trust_pickle=True, report=report)
  assert len(annotations.videos) == 7202 and annotations.num_classes == 100
  assert (annotations.train_subset, annotations.test_subset) == ('training', 'validation')
  assert len(annotations.train_videos()) == 4819 and len(annotations.test_videos()) == 2383
  raw = _raw_instances_per_subset(folder)
  assert _instances(annotations, 'training') == raw['training']
  assert _instances(annotations, 'validation') == raw['validation']
  assert {i.video_id for i in report.of_kind('clipped_segment')} == _raw_videos_outside(folder)
  assert annotations.ambiguous is None


def test_real_annotation_files_need_the_trust_flag(shared_data):
  with pytest.raises(DataError, match=r'segments\.npy: refusing to load.*--trust-pickle'):
    wtalc.read_annotations(shared_data / 'thumos14')
