"""Own data without ground-truth segments (issue 23, items 2 and 5): training on video-level
labels alone (weakly-supervised localization needs no more) uses the final state and says so;
new videos without any label are imported and localized with the run's class names."""

import json

from d2net_jax.commands import cli

import tiny_data


def test_training_without_any_segment_tests_the_final_state_and_says_so(tmp_path, capsys):
  """It used to fail at its first evaluation ('no ground-truth instance in subset(s) ['train']')
  after `import` and `check` had passed."""
  store = tiny_data.import_store(tmp_path)
  capsys.readouterr()
  assert cli.main(['check', *tiny_data.train_flags(store)[:-1]]) == 0
  assert 'no ground-truth segment' in capsys.readouterr().out
  run = tmp_path / 'run'
  assert cli.main(['train', '--workdir', str(run), *tiny_data.train_flags(store)]) == 0
  out = capsys.readouterr().out
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
