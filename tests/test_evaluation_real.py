"""The evaluator on the real THUMOS14 annotations (../shared/data/thumos14; skipped without it).

Detections are the test ground truth shifted by a fraction f of each instance's length, so each
detection's tIoU with its own instance is (1 - f) / (1 + f): 1, 0.82, 0.54, 0.25 for
f = 0, 0.1, 0.3, 0.6. mAP must be 1 below that tIoU and collapse above it.
"""

import json

import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.data.records import Dataset, VideoRecord
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation import mean_ap as evaluation

SHIFTS = (0.0, 0.1, 0.3, 0.6)


def _decode(x):
  return x.decode('utf-8') if isinstance(x, bytes) else str(x)


def _thumos14_dataset(folder) -> Dataset:
  """Annotations only (trusted test data: the .npy files are pickled object arrays)."""
  load = lambda name: np.load(folder / f'{name}.npy', allow_pickle=True)
  class_names = [_decode(c) for c in load('classlist')]
  index = {c: i for i, c in enumerate(class_names)}
  videos = []
  for name, subset, segments, labels, duration in zip(
      load('videoname'), load('subset'), load('segments'), load('labels'),
      load('duration').reshape(-1)):
    classes = np.asarray([index[_decode(l)] for l in labels], dtype=np.int32)
    multi_hot = np.zeros(len(class_names), np.float32)
    multi_hot[classes] = 1.0
    videos.append(VideoRecord(
        video_id=_decode(name), subset=_decode(subset), labels=multi_hot,
        segments=np.asarray(segments, dtype=np.float64).reshape(-1, 2), segment_classes=classes,
        duration=float(duration), seconds_per_snippet=16 / 25, num_snippets=0, load=lambda: None))
  return Dataset(name='thumos14', class_names=class_names, videos=videos,
                 train_subset='validation', test_subset='test', feature_dim=2048)


def _write_ground_truth(dataset, path):
  """The data helper's exporter when it exists, else the same JSON written here."""
  try:
    from d2net_jax.data import ground_truth  # pylint: disable=g-import-not-at-top
    export_ground_truth = ground_truth.export_ground_truth
  except (ImportError, AttributeError):
    export_ground_truth = None
  if export_ground_truth is not None:
    export_ground_truth(dataset, path)
  else:
    database = {v.video_id: {'subset': v.subset, 'duration': v.duration, 'annotations': [
        {'segment': [float(s), float(e)], 'label': dataset.class_names[c]}
        for (s, e), c in zip(v.segments, v.segment_classes)]} for v in dataset.videos}
    path.write_text(json.dumps({'database': database}))
  return path


def _shifted_copies(ground_truth, shift, seed=0):
  """{video: rows}: every test instance moved right by shift * its length, random scores."""
  rng = np.random.default_rng(seed)
  results = {}
  for video, entry in ground_truth['database'].items():
    if entry['subset'] != 'test':
      continue
    rows = []
    for ann in entry['annotations']:
      start, end = ann['segment']
      offset = shift * (end - start)
      rows.append({'label': ann['label'], 'score': float(rng.uniform()),
                   'segment': [start + offset, end + offset]})
    results[video] = rows
  return results


@pytest.fixture
def thumos14(shared_data, tmp_path):
  folder = shared_data / 'thumos14'
  if not folder.is_dir():
    pytest.skip('thumos14 annotations are absent')
  path = _write_ground_truth(_thumos14_dataset(folder), tmp_path / 'gt.json')
  return folder, path, json.loads(path.read_text())


def test_test_subset_counts(thumos14):
  folder, path, _ = thumos14
  gt = evaluation.load_ground_truth(path, subset='test')
  # The full THUMOS14 test annotations of the 20-class benchmark (the 212 / 3358).
  assert (len(gt.video_ids), gt.num_instances, len(gt.class_names)) == (212, 3358, 20)
  regions = evaluation.parse_ambiguous(folder / 'Ambiguous_test.txt')
  assert sum(len(r) for r in regions.values()) == 99
  # One listed video (video_test_0001292) is not among the 212 videos of the 20-class benchmark.
  assert len(set(regions) - set(gt.video_ids)) == 1


def test_map_falls_as_the_shift_grows(thumos14):
  _, path, ground_truth = thumos14
  averages = []
  for shift in SHIFTS:
    result = evaluation.evaluate_detections(path, _shifted_copies(ground_truth, shift),
                                            evaluation.THUMOS14_TIOU, subset='test')
    assert (result.num_videos, result.num_instances) == (212, 3358)
    own_tiou = (1 - shift) / (1 + shift)
    below = result.tiou <= own_tiou
    if shift <= 0.3:  # No neighbouring instance overlaps a copy more than its own instance.
      np.testing.assert_array_equal(result.mAP[below], 1.0)
    else:  # Copies shifted by 60% sometimes match a neighbour first (greedy, by tIoU).
      assert (result.mAP[below] > 0.9).all()
    assert (result.mAP[~below] < 0.05).all()
    averages.append(result.average_mAP)
  assert averages[0] == averages[1] == 1.0 and 1.0 > averages[2] > averages[3]


def test_ambiguous_filtering_on_real_files(thumos14):
  folder, path, ground_truth = thumos14
  result = evaluation.evaluate_detections(path, _shifted_copies(ground_truth, 0.0),
                                          subset='test',
                                          ambiguous=folder / 'Ambiguous_test.txt')
  # A few test instances overlap an ambiguous region: their exact copies are dropped.
  assert 0 < result.num_ambiguous_removed < 50
  assert result.num_detections == 3358 - result.num_ambiguous_removed
  assert (0.99 < result.mAP).all() and (result.mAP < 1).all()
  # The file's 99 regions, less those of the listed video outside the 212 scored ones.
  assert '(96 regions in the scored videos)' in result.protocol


def test_cli_end_to_end(thumos14, tmp_path, capsys):
  folder, path, ground_truth = thumos14
  det = detections_lib.write_detections(tmp_path / 'det.json',
                                        _shifted_copies(ground_truth, 0.3))
  out = tmp_path / 'metrics.json'
  assert cli.main(['evaluate', '--ground-truth', str(path), '--detections', str(det),
                   '--subset', 'test', '--tiou', '0.1:0.7:0.1', '--output', str(out)]) == 0
  printed = capsys.readouterr().out
  assert '212 videos (212 with instances), 3358 instances, 20 classes' in printed
  metrics = json.loads(out.read_text())
  np.testing.assert_array_equal(metrics['mAP'], [1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_allclose(metrics['range_mAP']['0.1:0.5'], 1.0)
  np.testing.assert_allclose(metrics['average_mAP'], 5 / 7)
  assert len(metrics['per_class_AP']) == 20
