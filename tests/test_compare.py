"""`d2net-jax compare RUN1 RUN2 ...` (issue 14, section 5): one table of runs."""

import json

from d2net_jax import config as config_lib
from d2net_jax.commands import cli


def _run(folder, method='d2net', lr=1e-4, results=True, selection='validation'):
  folder.mkdir()
  config = config_lib.base_config()
  config.method, config.train.learning_rate = method, lr
  (folder / 'config.json').write_text(config.to_json_best_effort())
  if results:
    (folder / 'results.json').write_text(json.dumps({
        'test': {'tiou': [0.1, 0.5], 'mAP': [0.6, 0.25], 'average_mAP': 0.425},
        'selected_checkpoint': {'step': 500, 'protocol': selection}}))
  return folder


def test_compare_tabulates_runs_and_their_differences(tmp_path, capsys):
  a = _run(tmp_path / 'a')
  b = _run(tmp_path / 'b', method='mil', lr=1e-3, selection='test')
  c = _run(tmp_path / 'c', results=False)
  assert cli.main(['compare', str(a), str(b), str(c)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split()[:3] == ['run', 'method', 'test']
  assert lines[1].split() == [str(a), 'd2net', '42.50', '25.00', '500', 'validation']
  assert lines[2].split() == [str(b), 'mil', '42.50', '25.00', '500', 'test']
  assert lines[3].split()[:4] == [str(c), 'd2net', '-', '-'] and 'not finished' in lines[3]
  assert 'Config fields that differ (2):' in lines
  assert '  method: "d2net" | "mil" | "d2net"' in lines
  assert '  train.learning_rate: 0.0001 | 0.001 | 0.0001' in lines


def test_compare_errors_are_one_line(tmp_path, capsys):
  assert cli.main(['compare', str(tmp_path)]) == 1
  assert 'no config.json' in capsys.readouterr().err
  assert cli.main(['compare']) == 2
  assert cli.main(['compare', str(tmp_path), '--sort']) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 2

