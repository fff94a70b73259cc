"""Own data without ground-truth segments (issue 23, items 2 and 5): training on video-level
labels alone (weakly-supervised localization needs no more) uses the final state and says so;
new videos without any label are one `import` and `localize` takes the run's class names."""

import contextlib
import io
import json

import pytest

from d2net_jax.commands import cli

import tiny_data


@pytest.fixture(scope='module')
def unlabeled_run(tmp_path_factory):
  """(store, run, check's stdout, train's stdout) of a run on a store without any segment."""
  root = tmp_path_factory.mktemp('unlabeled')
  store = tiny_data.import_store(root)
  run = root / 'run'
  check, out = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(check):
    assert cli.main(['check', *tiny_data.train_flags(store)[:-1]]) == 0
  with contextlib.redirect_stdout(out):
    assert cli.main(['train', '--workdir', str(run), *tiny_data.train_flags(store)]) == 0
  return store, run, check.getvalue(), out.getvalue()


def test_training_without_any_segment_tests_the_final_state_and_says_so(unlabeled_run):
  """It used to fail at its first evaluation ('no ground-truth instance in subset(s) ['train']')
  after `import` and `check` had passed."""
  _, run, check, out = unlabeled_run
  assert 'no ground-truth segment' in check
  # No validation split to hold out: all 12 training videos train.
  assert '12 training videos' in out and 'no ground-truth segment' in out, out
  assert 'final state' in out.splitlines()[-1], out
  results = json.loads((run / 'results.json').read_text())
  assert results['test'] is None and 'no ground-truth segment' in results['test_note']
  assert results['selected_checkpoint']['protocol'] == 'final'
  assert results['selected_checkpoint']['step'] == 8
  detections = json.loads((run / 'detections_test.json').read_text())['results']
  assert sorted(detections) == ['v12', 'v13', 'v14', 'v15']
  assert not (run / 'eval.jsonl').exists()


def test_new_videos_are_one_import_and_localize_takes_the_runs_class_names(
    unlabeled_run, tmp_path, capsys):
  """Inference on new videos needed a labels CSV of empty labels plus --classes listing exactly
  the model's classes, and printed '64 detections in 3 all videos'."""
  _, run, _, _ = unlabeled_run
  tiny_data.write_features(tmp_path / 'new', ['n0', 'n1', 'n2'], seed=5)
  assert cli.main(['import', '--features', str(tmp_path / 'new'), '--out',
                   str(tmp_path / 'new.h5'), '--no-progress']) == 0
  out = capsys.readouterr().out
  assert '3 videos' in out and 'localize --workdir RUN --data' in out, out
  assert cli.main(['localize', '--workdir', str(run), '--data', str(tmp_path / 'new.h5')]) == 0
  out = capsys.readouterr().out
  assert ' in 3 videos ' in out and 'all videos' not in out, out
  written = run / 'detections_new_new.json'
  detections = json.loads(written.read_text())['results']
  assert sorted(detections) == ['n0', 'n1', 'n2']
  assert {d['label'] for rows in detections.values() for d in rows} <= set(tiny_data.CLASSES)
  # Labels of some of the model's classes only: mapped by name, not refused.
  (tmp_path / 'labels.csv').write_text('video,labels\nn0,A\nn1,A\nn2,\n')
  assert cli.main(['import', '--features', str(tmp_path / 'new'), '--labels',
                   str(tmp_path / 'labels.csv'), '--out', str(tmp_path / 'some.h5'),
                   '--default-subset', 'new', '--no-progress']) == 0
  assert cli.main(['localize', '--workdir', str(run), '--data', str(tmp_path / 'some.h5')]) == 0
  assert ' in 3 videos ' in capsys.readouterr().out
