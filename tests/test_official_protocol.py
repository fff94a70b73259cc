"""`configs/synthetic.py:official_protocol,smoke` trains end to end: the official switches, the
test set selecting the checkpoint, the official scorer (its ActivityNet1.2 GT branch: the synthetic
set has no test_gt_segments.npy), and results.json saying so."""

import contextlib
import io
import json
import pathlib
import warnings

import pytest

from d2net_jax.commands import cli

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' /
             'synthetic.py:official_protocol,smoke')


@pytest.mark.slow
def test_official_protocol_preset_trains_end_to_end(tmp_path):
  out = io.StringIO()
  with contextlib.redirect_stdout(out), warnings.catch_warnings():
    warnings.simplefilter('ignore')  # An empty class of the tiny test set may warn.
    assert cli.main(['train', '--config', CONFIG, '--workdir', str(tmp_path),
                     f'--config.data.path={tmp_path / "data"}', '--noprogress']) == 0
  stdout = out.getvalue()
  assert 'Protocol: d2net_official' in stdout and 'Ground truth: ' in stdout
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['preset'] == 'configs/synthetic.py:official_protocol,smoke'
  assert results['official_protocol'] is True
  assert results['evaluation_protocol'] == 'd2net_official'
  assert 'annotations branch' in results['ground_truth']
  assert 'TEST set' in results['selection_protocol']
  assert results['selected_checkpoint']['metric'] == 'mAP@0.5'
  assert results['test']['tiou'] == [0.1, 0.2, 0.3, 0.4, 0.5]
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['loss']['pairing'] == 'official' and config['loss']['snippet_pdmi'] == 'official'
  assert config['train']['selection'] == 'test'
