"""The workdir as a record (issue 14, section 1): config changes on resume refused or recorded,
config.json never replaced by a failing call, history.jsonl, results.json provenance, the lock,
SIGTERM like Ctrl-C, a corrupt or missing best checkpoint."""

import contextlib
import io
import json
import os
import pathlib
import shutil
import signal
import sys

import pytest

from d2net_jax.commands import cli
from d2net_jax.runs import run_dir
from d2net_jax.runs import run_log
from d2net_jax.training import train

SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:smoke')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('smoke_data')


def _train(workdir, data_dir, *overrides):
  return cli.main(['train', '--config', SMOKE, '--workdir', str(workdir),
                   f'--config.data.path={data_dir}', '--noprogress', *overrides])


class FakeSummaryWriter:
  """tensorboardX.SummaryWriter that records add_scalar calls in `CALLS`."""
  CALLS = []

  def __init__(self, logdir):
    del logdir

  def add_scalar(self, name, value, step):
    self.CALLS.append((name, value, step))

  def flush(self):
    pass

  def close(self):
    pass


@pytest.fixture(scope='module')
def finished_run_and_log(tmp_path_factory, data_dir):
  """A smoke run, trained with a fake tensorboardX; (workdir, stdout)."""
  workdir = tmp_path_factory.mktemp('run')
  fake = type(os)('tensorboardX')
  fake.SummaryWriter = FakeSummaryWriter
  out = io.StringIO()
  with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
    patch.setitem(sys.modules, 'tensorboardX', fake)
    assert _train(workdir, data_dir, '--per-class') == 0
  return workdir, out.getvalue()


@pytest.fixture(scope='module')
def finished_run(finished_run_and_log):
  return finished_run_and_log[0]


def test_log_units_tensorboard_and_per_class_table(finished_run_and_log):
  workdir, stdout = finished_run_and_log
  evals = [json.loads(l) for l in (workdir / 'eval.jsonl').read_text().splitlines()]
  for record in evals:  # The log says its unit and gives eval.jsonl's number.
    value = record['average_mAP']
    assert (f'step {record["step"]}: validation average_mAP = {100 * value:.2f}% '
            f'({value:.4f} in eval.jsonl;') in stdout
  scalars = {(n, s): v for n, v, s in FakeSummaryWriter.CALLS}
  assert all(scalars[('validation/average_mAP', r['step'])] == r['average_mAP'] for r in evals)
  test_map = json.loads((workdir / 'results.json').read_text())['test']['average_mAP']
  assert scalars[('test/average_mAP', 24)] == test_map
  assert 'Per-class AP (%)' in stdout


@pytest.fixture
def run_copy(finished_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run, workdir)
  return workdir


def _history(workdir):
  return [json.loads(l) for l in (workdir / 'history.jsonl').read_text().splitlines()]


def test_results_and_history_carry_provenance(finished_run):
  results = json.loads((finished_run / 'results.json').read_text())
  assert {'config', 'commit', 'date', 'version', 'evaluation_protocol'} <= set(results)
  assert results['config']['train']['num_steps'] == 24
  assert results['evaluation_protocol'] == 'activitynet'
  assert 'ActivityNet' in results['evaluation_protocol_description']
  history = _history(finished_run)
  assert [h['event'] for h in history] == ['start', 'end']
  assert history[0]['argv'][:2] == ['d2net-jax', 'train'] and history[0]['config_changes'] == {}
  assert history[1]['outcome'] == 'finished' and history[0]['date'] and 'version' in history[0]
  model = json.loads((finished_run / 'model.json').read_text())
  assert len(model['class_names']) == 20 and model['feature_dim'] == 16


def test_changed_config_is_refused_naming_the_fields(run_copy, data_dir, capsys):
  before = (run_copy / 'config.json').read_bytes()
  assert _train(run_copy, data_dir, '--config.train.learning_rate=0.5',
                '--config.loss.beta=3.0') == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert 'train.learning_rate' in err and 'loss.beta' in err and '--allow-config-change' in err
  assert (run_copy / 'config.json').read_bytes() == before
  assert [h['event'] for h in _history(run_copy)] == ['start', 'end']  # Nothing recorded.


def test_allowed_and_harmless_changes_are_recorded(run_copy, data_dir):
  assert _train(run_copy, data_dir, '--config.train.num_steps=26',
                '--config.train.log_every=2') == 0  # Harmless: passes without the flag.
  start = _history(run_copy)[-2]
  assert start['config_changes'] == {'train.log_every': [4, 2], 'train.num_steps': [24, 26]}
  assert _train(run_copy, data_dir, '--config.train.num_steps=26', '--config.train.log_every=2',
                '--config.train.learning_rate=0.5', '--allow-config-change') == 0
  start = _history(run_copy)[-2]
  assert list(start['config_changes']) == ['train.learning_rate']
  assert json.loads((run_copy / 'config.json').read_text())['train']['learning_rate'] == 0.5
  # Fewer steps than the run has is not harmless.
  assert _train(run_copy, data_dir, '--config.train.num_steps=20', '--config.train.log_every=2',
                '--config.train.learning_rate=0.5') == 1


def test_failing_call_never_replaces_config_json(run_copy, data_dir, tmp_path, capsys):
  before = (run_copy / 'config.json').read_bytes()
  # Passes the config check (allowed change), then fails loading the data.
  assert _train(run_copy, data_dir, '--config.data.num_classes=5', '--allow-config-change') == 1
  assert 'num_classes' in capsys.readouterr().err
  assert (run_copy / 'config.json').read_bytes() == before
  assert _history(run_copy)[-1]['event'] == 'end'  # Nothing started, nothing recorded.
  fresh = tmp_path / 'fresh'
  assert _train(fresh, data_dir, '--config.data.num_classes=5') == 1
  assert not (fresh / 'config.json').exists()


def test_a_deleted_config_json_does_not_let_a_changed_config_resume(run_copy, data_dir, capsys):
  """Issue 23.7: with config.json deleted, a resume with another learning rate was accepted
  silently (the checkpoints and history.jsonl still hold the run)."""
  (run_copy / 'config.json').unlink()
  before = (run_copy / 'history.jsonl').read_text()
  assert _train(run_copy, data_dir, '--config.train.learning_rate=0.5') == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'config.json' in err and 'missing' in err, err
  assert '--allow-config-change' in err
  assert (run_copy / 'history.jsonl').read_text() == before
  assert not (run_copy / 'config.json').exists()


def test_print_config_prints_and_does_not_train(tmp_path, capsys):
  assert cli.main(['train', '--config', SMOKE, '--print-config',
                   '--config.train.learning_rate=0.25']) == 0
  assert json.loads(capsys.readouterr().out)['train']['learning_rate'] == 0.25


def test_second_training_on_a_workdir_stops_and_stale_lock_does_not(tmp_path, data_dir, capsys):
  with run_dir.Lock(tmp_path):
    assert _train(tmp_path, data_dir) == 1
    err = capsys.readouterr().err
    assert 'in use by a running training' in err and f'pid {os.getpid()}' in err
    assert not (tmp_path / 'config.json').exists()
  # A crashed holder leaves the file but no lock: the next one proceeds.
  (tmp_path / 'train.lock').write_text('pid 999999 on elsewhere since 2020-01-01\n')
  with run_dir.Lock(tmp_path):
    pass


def test_sigterm_saves_like_ctrl_c(tmp_path, data_dir, monkeypatch, capsys):
  write = run_log.MetricWriter.write

  def write_then_term(self, step, metrics):
    write(self, step, metrics)
    if step == 8:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(run_log.MetricWriter, 'write', write_then_term)
  assert _train(tmp_path, data_dir) == 143
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [8]
  assert 'SIGTERM' in capsys.readouterr().out
  assert _history(tmp_path)[-1]['outcome'] == 'SIGTERM'


def test_ctrl_c_before_training_is_one_line(tmp_path, data_dir, monkeypatch, capsys):
  def interrupted(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(train, 'load_data', interrupted)
  assert _train(tmp_path, data_dir) == 130
  err = capsys.readouterr().err.strip()
  assert err.startswith('d2net-jax train: interrupted (before training started') and (
      len(err.splitlines()) == 1)


def _corrupt_best(workdir):
  (step_dir,) = [p for p in (workdir / 'best').iterdir() if p.is_dir()]
  for path in step_dir.rglob('*'):
    if path.is_file() and path.parent.name == 'd':
      path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
  return step_dir


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_ctrl_c_during_the_final_test_says_so_and_the_run_finishes_later(
    run_copy, data_dir, monkeypatch, capsys):
  """Issue 23.6: a Ctrl-C during the final test said 'before training started'."""
  run = train.Evaluator.run

  def interrupted_test(self, state, scored=True):
    if self.split == 'test':
      raise KeyboardInterrupt
    return run(self, state, scored)

  (run_copy / 'results.json').unlink()
  monkeypatch.setattr(train.Evaluator, 'run', interrupted_test)
  assert _train(run_copy, data_dir) == 130
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'during the final evaluation' in err, err
  assert 'checkpoint of step 24 saved' in err and 'before training' not in err, err
  assert _history(run_copy)[-1]['outcome'].startswith('KeyboardInterrupt')
  monkeypatch.setattr(train.Evaluator, 'run', run)
  assert _train(run_copy, data_dir) == 0  # The same command finishes it.
  assert (run_copy / 'results.json').is_file()


def test_plot_and_localize_into_a_read_only_place_are_one_line(finished_run, read_only_dir,
                                                               capsys):
  """Issue 23.6: `plot` into a read-only place raised a raw OSError traceback."""
  video = next(iter(_detections(finished_run / 'detections_test.json')))
  for argv in (['plot', '--video', video, '--output', str(read_only_dir / 'v.png')],
               ['plot', '--video', video, '--output', str(read_only_dir / 'sub' / 'v.png')],
               ['localize', '--output', str(read_only_dir / 'd.json')]):
    assert cli.main([*argv[:1], '--workdir', str(finished_run), *argv[1:]]) == 1, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(read_only_dir) in err, err
    assert 'Read-only file system' in err or 'Permission denied' in err, err
  assert not list(read_only_dir.iterdir())


def test_corrupt_or_missing_best_checkpoint(run_copy, data_dir, capsys):
  step_dir = _corrupt_best(run_copy)
  assert cli.main(['localize', '--workdir', str(run_copy)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and '--checkpoint latest' in err and 'unreadable' in err
  assert cli.main(['localize', '--workdir', str(run_copy), '--checkpoint', 'latest']) == 0
  capsys.readouterr()
  # train's final test falls back to the final state, in one line.
  assert _train(run_copy, data_dir) == 0
  out = capsys.readouterr().out
  assert 'testing the final state (step 24) instead' in out
  # The line above the table says what was tested (it said 'selected by validation').
  assert 'Test set, final state (step 24; the selected checkpoint is unusable' in out, out
  results = json.loads((run_copy / 'results.json').read_text())
  assert 'fallback' in results['selected_checkpoint']
  shutil.rmtree(step_dir)  # Missing, while selection.json still names it.
  assert cli.main(['localize', '--workdir', str(run_copy)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and '--checkpoint latest' in err


# ------------------------------------------------------------------------------------------------
# Section 2: a trained model on new videos.


def _new_store(path, data_dir, *, class_order=None, rename=None, ground_truth=True):
  """The smoke store's test videos alone (subset 'new'), classes in `class_order` (names)."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  (store,) = pathlib.Path(data_dir).glob('*.h5')
  dataset = hdf5_store.read_store(store)
  names = list(dataset.class_names)
  order = class_order or names
  new_index = np.array([order.index(c) for c in names])
  videos = []
  for v in dataset.test_videos():
    labels = np.zeros(len(names), np.float32)
    labels[new_index] = v.labels
    classes = new_index[v.segment_classes].astype(np.int32)
    segments = v.segments
    if not ground_truth:
      labels, classes, segments = labels * 0, classes[:0], segments[:0]
    videos.append(dataclasses.replace(v, subset='new', labels=labels, segment_classes=classes,
                                      segments=segments))
  order = [rename.get(c, c) for c in order] if rename else order
  hdf5_store.write_store(path, dataclasses.replace(
      dataset, class_names=order, videos=videos, train_subset='new', test_subset='new'))
  return path


def _detections(path):
  return json.loads(pathlib.Path(path).read_text())['results']


def test_localize_on_a_new_store_maps_classes_by_name(finished_run, data_dir, tmp_path, capsys):
  names = json.loads((finished_run / 'model.json').read_text())['class_names']
  store = _new_store(tmp_path / 'new.h5', data_dir, class_order=names[::-1])
  output = tmp_path / 'out.json'
  assert cli.main(['localize', '--workdir', str(finished_run), '--data', str(store),
                   '--output', str(output), '--per-class']) == 0  # Run's data.kind: 'synthetic'.
  printed = capsys.readouterr().out
  assert 'Per-class AP (%)' in printed
  assert "6 videos (subset 'new'" in printed and 'mAP (%)' in printed
  # The same videos and model: the same detections, labelled by name despite the new order.
  assert _detections(output) == _detections(finished_run / 'detections_test.json')
  test_map = json.loads((finished_run / 'results.json').read_text())['test']['average_mAP']
  assert f'{100 * test_map:.2f}' in printed


def test_localize_without_ground_truth_writes_and_skips_scoring(finished_run, data_dir, tmp_path,
                                                               capsys):
  store = _new_store(tmp_path / 'nogt.h5', data_dir, ground_truth=False)
  assert cli.main(['localize', '--workdir', str(finished_run), '--data', str(store)]) == 0
  printed = capsys.readouterr().out
  assert 'scoring skipped' in printed and 'mAP' not in printed
  assert _detections(finished_run / 'detections_nogt_new.json') == _detections(
      finished_run / 'detections_test.json')


def test_localize_on_data_with_other_class_names_lists_them(finished_run, data_dir, tmp_path,
                                                            capsys):
  names = json.loads((finished_run / 'model.json').read_text())['class_names']
  store = _new_store(tmp_path / 'other.h5', data_dir, rename={names[3]: 'Juggling'})
  assert cli.main(['localize', '--workdir', str(finished_run), '--data', str(store)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "['Juggling']" in err and repr([names[3]]) in err


def test_localize_keeps_the_detections_train_wrote(run_copy, capsys):
  """Issue 23.7: `localize --workdir RUN` silently overwrote RUN/detections_test.json, the file
  results.json's test score was computed from."""
  trained = (run_copy / 'detections_test.json').read_text()
  assert cli.main(['localize', '--workdir', str(run_copy),
                   '--config.localize.nms_threshold=0.1']) == 0
  out = capsys.readouterr().out
  assert (run_copy / 'detections_test.json').read_text() == trained
  assert str(run_copy / 'detections_test_localize.json') in out, out


def test_localize_on_the_training_subset_says_which_videos_were_trained_on(finished_run, capsys):
  """Issue 23.7: `localize --subset validation` (THUMOS14's training subset) scored 200 videos,
  160 of them trained on, with no note."""
  config = json.loads((finished_run / 'config.json').read_text())
  subset = config['data']['train_subset']
  assert cli.main(['localize', '--workdir', str(finished_run), '--subset', subset,
                   '--output', str(finished_run / 'train_subset.json')]) == 0
  out = capsys.readouterr().out
  note = [line for line in out.splitlines() if line.startswith('note:')]
  assert len(note) == 1 and 'trained on' in note[0] and 'not a held-out score' in note[0], out
  assert cli.main(['localize', '--workdir', str(finished_run), '--output',
                   str(finished_run / 'test_subset.json')]) == 0
  assert 'note:' not in capsys.readouterr().out


def test_fields_added_to_the_schema_since_the_run_are_no_change(tmp_path):
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config()
  saved = run_dir.config_dict(config)
  del saved['localize']['nms_threshold']  # As if written before the field existed.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')
  assert run_dir.check_resume(tmp_path, config) == {}
  config.localize.nms_threshold = 0.5  # Not the default: a change.
  with pytest.raises(run_dir.RunDirError, match='localize.nms_threshold'):
    run_dir.check_resume(tmp_path, config)


def test_localize_and_plot_print_no_library_warnings(finished_run, tmp_path, capfd):
  """Section 5: no orbax read-only or other library warnings on every localize / plot."""
  import warnings  # pylint: disable=import-outside-toplevel
  video = next(iter(_detections(finished_run / 'detections_test.json')))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    assert cli.main(['localize', '--workdir', str(finished_run), '--output',
                     str(tmp_path / 'd.json')]) == 0
    assert cli.main(['plot', '--workdir', str(finished_run), '--video', video, '--output',
                     str(tmp_path / 'v.png')]) == 0
  err = capfd.readouterr().err
  assert not [str(w.message) for w in caught] and not err.strip(), (err, caught)
