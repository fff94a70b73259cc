"""End to end: `d2net-jax train` on the tiny synthetic smoke config (8 simulated devices), its
workdir, exact resume after Ctrl-C, and `localize` / `plot` on the trained run."""

import contextlib
import io
import json
import os
import pathlib
import signal

import chex
import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.runs import run_log
from d2net_jax.training import checkpointing
from d2net_jax.training import train
from d2net_jax.utils import progress as progress_lib

SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:smoke')
NUM_STEPS = 24  # The smoke config's.


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The smoke dataset, generated once and copied into each workdir (as <workdir>/data)."""
  return tmp_path_factory.mktemp('smoke_data')


def _train(workdir, data_dir, *overrides):
  return cli.main(['train', '--config', SMOKE, '--workdir', str(workdir),
                   f'--config.data.path={data_dir}', '--noprogress', *overrides])


def _latest_state(workdir):
  """The newest checkpoint of a run, restored without a template (plain arrays)."""
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    step = checkpointer.latest_step()
    return step, checkpointer._latest.restore(step)  # pylint: disable=protected-access
  finally:
    checkpointer.close()


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory, data_dir):
  """An uninterrupted smoke run (its stdout too)."""
  workdir = tmp_path_factory.mktemp('demo')
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert _train(workdir, data_dir) == 0
  return workdir, out.getvalue()


@pytest.mark.slow
def test_demo_writes_its_workdir_and_ends_with_the_map_table(demo_run):
  workdir, stdout = demo_run
  assert stdout.rstrip().splitlines()[-3].startswith('mAP (%)')  # Then the TP and FP rows.
  config = json.loads((workdir / 'config.json').read_text())
  assert config['train']['num_steps'] == NUM_STEPS and config['data']['feature_dim'] == 16
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines] == list(range(1, NUM_STEPS + 1))
  assert all(np.isfinite(l['loss']) and 'loss_dis' in l for l in lines)
  assert 'steps_per_sec' in lines[-1]
  evals = [json.loads(l) for l in (workdir / 'eval.jsonl').read_text().splitlines()]
  assert [e['step'] for e in evals] == [12, 24] and {e['split'] for e in evals} == {'validation'}
  results = json.loads((workdir / 'results.json').read_text())
  selection = results['selected_checkpoint']
  assert selection['protocol'] == 'validation' and 'validation split' in results[
      'selection_protocol']
  assert selection['step'] in (12, 24)
  assert selection['value'] == max(e['average_mAP'] for e in evals)
  assert len(selection['videos']) == 4  # val_fraction 0.25 of 16 training videos.
  assert len(results['test']['mAP']) == 7
  assert (workdir / 'detections_test.json').is_file()
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()) == [12, 24]


@pytest.mark.slow
def test_localize_and_plot_reuse_the_trained_run(demo_run, capsys, monkeypatch):
  workdir, _ = demo_run
  output = workdir / 'again.json'
  assert cli.main(['localize', '--workdir', str(workdir), '--output', str(output)]) == 0
  printed = capsys.readouterr()
  assert 'best checkpoint' in printed.out and 'mAP (%)' in printed.out
  assert 'network outputs' not in printed.err  # No terminal: no bar by default.
  # The same code as training's final evaluation: the same detections.
  assert json.loads(output.read_text())['results'] == json.loads(
      (workdir / 'detections_test.json').read_text())['results']
  monkeypatch.setattr(progress_lib, 'PROGRESS_DELAY_S', 0.0)
  assert cli.main(['localize', '--workdir', str(workdir), '--output', str(output),
                   '--progress']) == 0
  assert 'network outputs' in capsys.readouterr().err  # --progress: drawn anyway.
  video = next(iter(json.loads(output.read_text())['results']))
  assert cli.main(['plot', '--workdir', str(workdir), '--video', video]) == 0
  assert (workdir / 'plots' / f'{video}.png').stat().st_size > 1000
  window = workdir / 'window.svg'  # A window of the video, in the format of the extension.
  assert cli.main(['plot', '--workdir', str(workdir), '--video', video, '--output', str(window),
                   '--start', '1', '--end', '5']) == 0
  assert b'<svg' in window.read_bytes()
  assert cli.main(['plot', '--workdir', str(workdir), '--video', 'no-such-video']) == 1
  assert 'no video' in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_saves_and_the_resumed_run_is_exact(demo_run, data_dir, tmp_path, monkeypatch):
  """Stopped by SIGINT after step 8, restarted from the workdir: the same parameters at 24."""
  reference_dir, _ = demo_run
  write = run_log.MetricWriter.write

  def write_then_interrupt(self, step, metrics):
    write(self, step, metrics)
    if step == 8:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(run_log.MetricWriter, 'write', write_then_interrupt)
  assert _train(tmp_path, data_dir) == 130
  assert _latest_state(tmp_path)[0] == 8  # Saved on Ctrl-C (checkpoint_every is 12).
  monkeypatch.setattr(run_log.MetricWriter, 'write', write)
  assert _train(tmp_path, data_dir) == 0
  step, resumed = _latest_state(tmp_path)
  reference_step, reference = _latest_state(reference_dir)
  assert step == reference_step == NUM_STEPS
  chex.assert_trees_all_equal(resumed, reference)
  steps = [json.loads(l)['step'] for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert steps == list(range(1, NUM_STEPS + 1))


def test_validation_split_is_seeded_disjoint_and_held_out():
  videos = list(range(50))
  train_a, val_a = train.split_validation(videos, 0.2, seed=3)
  train_b, val_b = train.split_validation(videos, 0.2, seed=3)
  assert (train_a, val_a) == (train_b, val_b) and len(val_a) == 10
  assert sorted(train_a + val_a) == videos and not set(train_a) & set(val_a)
  assert train.split_validation(videos, 0.2, seed=4)[1] != val_a
  assert train.split_validation(videos, 0.0, seed=3) == (videos, [])


def test_metric_writer_also_feeds_tensorboard_when_installed(tmp_path, monkeypatch):
  """With tensorboardX importable, every metric also goes to its SummaryWriter."""
  calls = []

  class FakeSummaryWriter:
    def __init__(self, logdir):
      calls.append(('init', logdir))

    def add_scalar(self, name, value, step):
      calls.append((name, value, step))

    def flush(self):
      pass

    def close(self):
      calls.append(('close',))

  fake = type(os)('tensorboardX')
  fake.SummaryWriter = FakeSummaryWriter
  monkeypatch.setitem(__import__('sys').modules, 'tensorboardX', fake)
  writer = run_log.MetricWriter(tmp_path, tensorboard=True)
  writer.write(3, {'loss': np.float32(0.5), 'skipped': np.float32(float('nan'))})
  writer.close()
  assert calls[0] == ('init', str(tmp_path / 'tensorboard'))
  assert ('loss', 0.5, 3) in calls and calls[-1] == ('close',)
  assert json.loads((tmp_path / 'metrics.jsonl').read_text()) == {
      'step': 3, 'loss': 0.5, 'skipped': 'nan'}


@pytest.mark.slow
@pytest.mark.parametrize('sampling', ['crop', 'resample'])
def test_mil_trains_end_to_end_and_localizes(tmp_path, data_dir, sampling, capsys):
  """`d2net-jax train --config configs/synthetic.py:mil,smoke`, with either sampling; then
  `localize` on the run. Resampled test videos map back to seconds inside each video."""
  config = SMOKE.replace(':smoke', ':mil,smoke')
  workdir = tmp_path / sampling
  assert cli.main(['train', '--config', config, '--workdir', str(workdir),
                   f'--config.data.path={data_dir}', '--noprogress',
                   f'--config.data.sampling={sampling}', '--config.data.num_segments=20']) == 0
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['method'] == 'mil' and saved['data']['sampling'] == sampling
  results = json.loads((workdir / 'results.json').read_text())
  assert 0 <= results['test']['average_mAP'] <= 1
  output = workdir / 'detections.json'
  assert cli.main(['localize', '--workdir', str(workdir), '--output', str(output)]) == 0
  detections = json.loads(output.read_text())['results']
  assert detections
  gt = json.loads(next(data_dir.glob('*.gt.json')).read_text())['database']
  for video, found in detections.items():
    for d in found:
      assert 0 <= d['segment'][0] < d['segment'][1] <= gt[video]['duration'] + 0.64 + 1e-6
  capsys.readouterr()
