"""`d2net-jax evaluate` end to end on small JSON files."""

import json

import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.evaluation import detections as detections_lib


def _write_gt(path, database):
  path.write_text(json.dumps({'version': 'test', 'database': database}))
  return path


def _files(tmp_path):
  gt = _write_gt(tmp_path / 'gt.json', {
      'v1': {'subset': 'test', 'duration': 60.0, 'annotations': [
          {'segment': [0.0, 10.0], 'label': 'Jump'}, {'segment': [20.0, 30.0], 'label': 'Jump'},
          {'segment': [40.0, 50.0], 'label': 'Run'}]},
      'v2': {'subset': 'validation', 'duration': 60.0, 'annotations': [
          {'segment': [0.0, 5.0], 'label': 'Swim'}]},
  })
  # Jump: exact copy (TP), then [24, 30] (tIoU 0.6 with [20, 30]): AP 1 up to 0.6, 1/2 at 0.7.
  # Run: [41, 50] (tIoU 0.9): AP 1 everywhere.
  det = detections_lib.write_detections(tmp_path / 'det.json', {'v1': [
      ('Jump', 0.0, 10.0, 0.9), ('Jump', 24.0, 30.0, 0.8), ('Run', 41.0, 50.0, 0.7)]})
  return gt, det


def test_prints_table_and_writes_metrics(tmp_path, capsys):
  gt, det = _files(tmp_path)
  out = tmp_path / 'metrics.json'
  code = cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(det),
                   '--subset', 'test', '--output', str(out)])
  assert code == 0
  printed = capsys.readouterr().out
  assert '1 videos (1 with instances), 3 instances, 2 classes' in printed
  assert 'no ambiguous-region filtering' in printed
  assert 'Per-class AP' in printed and 'Jump' in printed
  metrics = json.loads(out.read_text())
  assert metrics['tiou'] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
  # mAP = mean(Jump, Run) = (1 + 1) / 2 up to 0.6, (1/2 + 1) / 2 at 0.7.
  np.testing.assert_allclose(metrics['mAP'], [1, 1, 1, 1, 1, 1, 0.75])
  np.testing.assert_allclose(metrics['average_mAP'], (6 + 0.75) / 7)
  np.testing.assert_allclose(metrics['per_class_AP']['Jump'], [1, 1, 1, 1, 1, 1, 0.5])
  assert metrics['protocol'].startswith('ActivityNet eval_detection semantics')
  assert metrics['num_videos'] == 1 and metrics['num_instances'] == 3
  assert metrics['false_positives'] == [0, 0, 0, 0, 0, 0, 1]


def test_tiou_and_ambiguous_options(tmp_path, capsys):
  gt, det = _files(tmp_path)
  ambiguous = tmp_path / 'Ambiguous_test.txt'
  ambiguous.write_text('v1  45.0 46.0\n')  # Overlaps the Run detection: Run AP 0.
  out = tmp_path / 'metrics.json'
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(det),
                   '--subset', 'test', '--tiou', '0.5,0.7', '--ambiguous', str(ambiguous),
                   '--output', str(out), '--no-per-class']) == 0
  printed = capsys.readouterr().out
  assert 'Per-class AP' not in printed and '1 detections dropped for ambiguous' in printed
  metrics = json.loads(out.read_text())
  assert metrics['tiou'] == [0.5, 0.7] and metrics['num_ambiguous_removed'] == 1
  np.testing.assert_allclose(metrics['mAP'], [0.5, 0.25])
  assert 'Ambiguous_test.txt' in metrics['protocol']


def test_errors_exit_nonzero_with_a_message(tmp_path, capsys):
  gt, det = _files(tmp_path)
  # Two subsets in the GT and no --subset.
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(det)]) == 1
  assert 'subset' in capsys.readouterr().err
  # A label that is not a GT class of the scored subset.
  bad = detections_lib.write_detections(tmp_path / 'bad.json',
                                        {'v1': [('Swim', 0.0, 5.0, 0.9)]})
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(bad),
                   '--subset', 'test']) == 1
  assert "['Swim']" in capsys.readouterr().err
  # A video outside the GT, with --unknown-videos error.
  other = detections_lib.write_detections(tmp_path / 'other.json',
                                          {'v9': [('Jump', 0.0, 5.0, 0.9)]})
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(other),
                   '--subset', 'test', '--unknown-videos', 'error']) == 1
  assert 'v9' in capsys.readouterr().err
  assert cli.main(['evaluate', '--ground-truth', str(tmp_path / 'missing.json'),
                   '--detections', str(det)]) == 1


def test_a_bad_detection_names_its_file_and_the_hint_names_a_flag(tmp_path, capsys):
  """Issue 23.6: a string inside a segment lost the file name ('could not convert string to
  float'); the unknown-label hint named `class_names`, a Python argument with no flag."""
  gt, _ = _files(tmp_path)
  bad = tmp_path / 'str.json'
  bad.write_text(json.dumps({'results': {'v1': [
      {'label': 'Jump', 'score': 0.5, 'segment': ['x', 5.0]}]}}))
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(bad),
                   '--subset', 'test']) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(bad) in err and "'v1'" in err and "'x'" in err, err
  swim = detections_lib.write_detections(tmp_path / 'swim.json', {'v1': [
      ('Jump', 0.0, 10.0, 0.9), ('Swim', 0.0, 5.0, 0.8)]})
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(swim),
                   '--subset', 'test']) == 1
  err = capsys.readouterr().err
  assert '--classes' in err and 'class_names' not in err, err
  (tmp_path / 'classes.txt').write_text('Jump\nRun\nSwim\n')
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(swim),
                   '--subset', 'test', '--classes', str(tmp_path / 'classes.txt')]) == 0
  assert 'mAP (%)' in capsys.readouterr().out
  (tmp_path / 'model.json').write_text(json.dumps({'class_names': ['Jump', 'Run', 'Swim']}))
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(swim),
                   '--subset', 'test', '--classes', str(tmp_path / 'model.json')]) == 0


def _dataset_with_ambiguous_regions():
  """Two test videos; v1's region [45, 46] overlaps the Run detection of `_DETECTIONS`."""
  from d2net_jax.data import validation  # pylint: disable=import-outside-toplevel
  from d2net_jax.data.records import Dataset  # pylint: disable=import-outside-toplevel
  names = ['Jump', 'Run']
  videos = [validation.annotation_record(
      video_id=vid, subset='test', labels=np.ones(2, np.float32),
      segments=np.asarray(seg, np.float64), segment_classes=np.asarray(cls, np.int32),
      duration=60.0, seconds_per_snippet=0.64, source='test')
      for vid, seg, cls in [('v1', [[0, 10], [40, 50]], [0, 1]), ('v2', [[5, 15]], [1])]]
  return Dataset(name='tiny', class_names=names, videos=videos, train_subset='validation',
                 test_subset='test', feature_dim=0, ambiguous={'v1': np.array([[45.0, 46.0]])})


_DETECTIONS = {'v1': [('Jump', 0.0, 10.0, 0.9), ('Run', 41.0, 50.0, 0.8)],
               'v2': [('Run', 5.0, 15.0, 0.7)]}


@pytest.mark.parametrize('use', [True, False])
@pytest.mark.parametrize('protocol', ['activitynet', 'd2net_official'])
def test_evaluate_and_train_agree_on_the_ground_truths_ambiguous_regions(tmp_path, capsys, use,
                                                                         protocol):
  """train / localize (inference.score, evaluation.use_ambiguous) and `evaluate` on the exported
  GT JSON (--no-ambiguous) drop the same detections, and both protocol lines say so."""
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from d2net_jax import inference  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import ground_truth  # pylint: disable=import-outside-toplevel
  dataset = _dataset_with_ambiguous_regions()
  config = config_lib.base_config()
  config.evaluation.use_ambiguous = use
  config.evaluation.protocol = protocol
  config.evaluation.official_gt = 'annotations'
  in_training = inference.score(dataset, dataset.videos, _DETECTIONS, config)
  gt = ground_truth.export_ground_truth(dataset, tmp_path / 'gt.json')
  det = detections_lib.write_detections(tmp_path / 'det.json', _DETECTIONS)
  out = tmp_path / 'metrics.json'
  tiou = ','.join(f'{t:g}' for t in config.evaluation.tiou_thresholds)
  assert cli.main(['evaluate', '--ground-truth', str(gt), '--detections', str(det), '--tiou',
                   tiou, '--protocol', protocol, '--output', str(out)]
                  + ([] if use else ['--no-ambiguous'])) == 0
  capsys.readouterr()
  metrics = json.loads(out.read_text())
  assert metrics['num_ambiguous_removed'] == in_training.num_ambiguous_removed == int(use)
  np.testing.assert_allclose(metrics['mAP'], in_training.mAP)
  for line in (metrics['protocol'], in_training.protocol):
    if use:
      assert 'ambiguous regions' in line and 'no ambiguous' not in line, line
    else:
      assert 'carries 1 regions, not used' in line, line
