"""The guarantees as a whole (issue 23): a walk over the faults a user meets — bad files, a full
disk, read-only places, signals at each phase, corrupt checkpoints — asserting for each the exit
status, a last line that names the cause, no traceback, no partial file left, and, where a run was
interrupted, that the same command resumes it.

Tiny data (16 videos of 40 x 16 features, `tiny_data`), a few steps; the faults that a test
process cannot observe from inside (a segfault at exit, a signal) run `d2net-jax` in a child
process (`cli_process`). All of them share one persistent XLA compilation cache, so the model is
compiled once for the module. A full disk is a small tmpfs, which needs root (skipped otherwise).
"""

import contextlib
import gc
import io
import json
import pathlib
import shutil
import signal
import sys
import time

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.training import checkpointing
from d2net_jax.training import train

import cli_process
import tiny_data

STEPS = 200  # Long enough that a signal after the first log line lands mid-training.
CACHE_FLAGS = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs',
               'jax_persistent_cache_min_entry_size_bytes')


@pytest.fixture(scope='module', autouse=True)
def compile_cache(tmp_path_factory):
  """One persistent compilation cache for this process and the child processes: {env vars}."""
  folder = str(tmp_path_factory.mktemp('xla_cache'))
  previous = [getattr(jax.config, name) for name in CACHE_FLAGS]
  for name, value in zip(CACHE_FLAGS, (folder, 0.0, 0)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield {'JAX_COMPILATION_CACHE_DIR': folder, 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
         'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
  for name, value in zip(CACHE_FLAGS, previous):
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.fixture(scope='module')
def store(tmp_path_factory):
  """A store of 12 training and 4 test videos with one ground-truth segment each."""
  return tiny_data.import_store(tmp_path_factory.mktemp('data'), segments=True)


def _flags(store, **extra):
  extra = {'train.eval_every': STEPS // 2, 'train.checkpoint_every': 4, **extra}
  return tiny_data.train_flags(store, num_steps=STEPS, **extra)


def _partial_files(*roots):
  """Temporary files and folders a failed write could leave (ours, orbax's)."""
  return [p for root in roots for p in pathlib.Path(root).rglob('*')
          if '.tmp-' in p.name or 'orbax-checkpoint-tmp' in p.name]


def _fault(code, err, expected, *names):
  """The guarantees of one fault: exit status, no traceback, a last line naming the cause."""
  return cli_process.assert_clean_failure(code, err, expected, *names)


def _run(*argv):
  """`d2net-jax ARGV` in this process: (exit status, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main([str(a) for a in argv])
  return code, out.getvalue(), err.getvalue()


def _printed_unraisables(monkeypatch):
  """What Python would print as unraisable exceptions ('Event loop is closed' after a failed
  orbax read: 41 tracebacks for a truncated latest checkpoint, 48 lines under localize)."""
  printed = []
  monkeypatch.setattr(sys, 'unraisablehook', printed.append)
  return printed


def _late_callbacks_done():
  time.sleep(0.5)  # The reads still in flight when the restore failed finish.
  gc.collect()


# Bad files.


def test_a_nan_feature_file(tmp_path):
  feats, labels, _ = tiny_data.write_own_data(tmp_path)
  bad = np.load(feats / 'v3.npy')
  bad[5, 2] = np.nan
  np.save(feats / 'v3.npy', bad)
  code, _, err = _run('import', '--features', feats, '--labels', labels, '--out',
                      tmp_path / 'x.h5', '--no-progress')
  _fault(code, err, 1, feats / 'v3.npy', 'NaN')
  assert not (tmp_path / 'x.h5').exists() and not _partial_files(tmp_path)


def test_a_truncated_store(store, tmp_path):
  damaged = tmp_path / 'damaged.h5'
  damaged.write_bytes(store.read_bytes()[:store.stat().st_size // 2])
  code, _, err = _run('train', '--workdir', tmp_path / 'run',
                      *_flags(store, **{'data.path': damaged}))
  _fault(code, err, 1, damaged)
  assert not (tmp_path / 'run' / 'config.json').exists()


def test_features_too_large_for_float32_stop_training_early(store, tmp_path):
  """Issue 23.6: features scaled by 1e37 skipped every update, then a traceback at evaluation."""
  feats, labels, segments = tiny_data.write_own_data(tmp_path, segments=True)
  for path in feats.glob('*.npy'):
    np.save(path, np.load(path) * np.float32(1e37))
  big = tmp_path / 'big.h5'
  assert _run('import', '--features', feats, '--labels', labels, '--segments', segments,
              '--out', big, '--no-progress')[0] == 0
  code, _, err = _run('train', '--workdir', tmp_path / 'run', *_flags(big))
  line = _fault(code, err, 1, 'skipped', 'rescale', str(big))
  assert 'all 12 updates' in line, line
  assert not (tmp_path / 'run' / 'results.json').exists()


# A full disk (a small tmpfs).


def test_a_full_disk_while_importing(small_disk, tmp_path):
  """(A child process: the full-disk store write used to segfault at exit; test_store_writes.)"""
  disk = small_disk(200)
  feats, labels, _ = tiny_data.write_own_data(tmp_path)
  for path in feats.glob('*.npy'):
    np.save(path, np.tile(np.load(path), (20, 1)))  # 800 snippets: 50 KiB a video.
  code, _, err = _run('import', '--features', feats, '--labels', labels, '--out',
                      disk / 'own.h5', '--no-progress')
  _fault(code, err, 1, disk / 'own.h5', 'No space left on device')
  assert not list(disk.iterdir())


def test_a_full_disk_while_saving_a_checkpoint_then_resume(store, small_disk, monkeypatch):
  """The disk fills just before step 8's checkpoint: one line, no orbax tracebacks or 'Event loop
  is closed' noise, no temporary folder; freed, the same command resumes from step 4."""
  disk = small_disk(4096)
  run = disk / 'run'
  save = checkpointing.Checkpointer.save
  filler = disk / 'filler'

  def fill_then_save(self, state, force=False):
    if int(state.step) == 8 and not filler.exists():
      self.wait()  # Step 4's checkpoint is complete: the one to resume from.
      with open(filler, 'wb') as f, contextlib.suppress(OSError):
        while True:
          f.write(b'\0' * 65536)
    return save(self, state, force)

  printed = _printed_unraisables(monkeypatch)
  monkeypatch.setattr(checkpointing.Checkpointer, 'save', fill_then_save)
  code, _, err = _run('train', '--workdir', run, *_flags(store))
  lines = [l for l in err.splitlines() if not l.startswith('step ')]
  # The first write to meet the full disk: step 8's checkpoint, or a record of the run
  # (metrics.jsonl, or another file of the run folder, which the line then names) while orbax
  # still writes that checkpoint in the background: which one comes first is a race.
  line = _fault(code, '\n'.join(lines), 1, run, 'No space left on device')
  assert ('checkpoints: checkpoint (saving step 8)' in line or 'metrics.jsonl' in line
          or f'cannot write {run}' in line), line
  assert len(lines) == 1, err
  _late_callbacks_done()
  assert [str(u.exc_value) for u in printed] == []
  assert not _partial_files(run)
  filler.unlink()
  monkeypatch.setattr(checkpointing.Checkpointer, 'save', save)
  code, out, err = _run('train', '--workdir', run, *_flags(store))
  assert code == 0, err
  assert f'Resumed from {run / "checkpoints"} at step 4' in out, (out, err)
  assert (run / 'results.json').exists()


# Read-only places.


def test_read_only_places(store, read_only_dir, tmp_path):
  feats, labels, _ = tiny_data.write_own_data(tmp_path)
  code, _, err = _run('import', '--features', feats, '--labels', labels, '--out',
                      read_only_dir / 'x.h5', '--no-progress')
  _fault(code, err, 1, read_only_dir / 'x.h5')
  code, _, err = _run('train', '--workdir', read_only_dir / 'run', *_flags(store))
  _fault(code, err, 1, read_only_dir / 'run')
  assert not list(read_only_dir.iterdir())


# Signals at each phase, and resuming.


def test_sigterm_during_start_up(store, tmp_path, compile_cache):
  """Issue 23.6: SIGTERM during start-up printed nothing (its default action killed the run)."""
  process = cli_process.popen('train', '--workdir', tmp_path / 'run', *_flags(store),
                              env=compile_cache)
  # After the first line ('d2net on ...'): the data is loaded, the model not built yet.
  out, err = cli_process.signal_when(process, 'stdout', '', signal.SIGTERM)
  line = _fault(process.returncode, err, 143, 'terminated (SIGTERM)', 'before training started')
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / 'run' / 'checkpoints').exists() or not any(
      (tmp_path / 'run' / 'checkpoints').iterdir()), (line, out)


@pytest.fixture(scope='module')
def finished(store, tmp_path_factory, compile_cache):
  """A run interrupted by Ctrl-C mid-training (a child process), then resumed to its end: the
  run folder. Asserts both halves."""
  run = tmp_path_factory.mktemp('walk') / 'run'
  process = cli_process.popen('train', '--workdir', run, *_flags(store), env=compile_cache)
  out, err = cli_process.signal_when(process, 'stderr', 'step 4:', signal.SIGINT)
  _fault(process.returncode, err, 130)
  last = out.strip().splitlines()[-1]
  assert last.startswith('Interrupted (SIGINT): checkpoint saved at step '), out
  step = int(last.split('at step ')[1].split(';')[0])
  assert 4 <= step < STEPS and (run / 'checkpoints' / str(step)).is_dir()
  code, out, err = _run('train', '--workdir', run, *_flags(store))
  assert code == 0, err
  assert f'Resumed from {run / "checkpoints"} at step {step}' in out
  assert json.loads((run / 'results.json').read_text())['test']['average_mAP'] >= 0
  return run


def test_ctrl_c_during_training_then_resume(finished):
  history = [json.loads(l) for l in (finished / 'history.jsonl').read_text().splitlines()]
  assert [h['outcome'] for h in history if h['event'] == 'end'] == ['SIGINT', 'finished']


def test_ctrl_c_during_the_final_test_then_resume(finished, store, tmp_path, monkeypatch):
  """Issue 23.6: a Ctrl-C during the final test said 'before training started'."""
  run = tmp_path / 'run'
  shutil.copytree(finished, run)
  (run / 'results.json').unlink()
  evaluate = train.Evaluator.run

  def interrupted(self, state, scored=True):
    if self.split == 'test':
      raise KeyboardInterrupt
    return evaluate(self, state, scored)

  monkeypatch.setattr(train.Evaluator, 'run', interrupted)
  code, _, err = _run('train', '--workdir', run, *_flags(store))
  _fault(code, err, 130, 'during the final evaluation', f'checkpoint of step {STEPS} saved')
  monkeypatch.setattr(train.Evaluator, 'run', evaluate)
  assert _run('train', '--workdir', run, *_flags(store))[0] == 0
  assert (run / 'results.json').exists()


# Corrupt checkpoints.


def _truncate(folder):
  for path in folder.rglob('*'):
    if path.is_file() and path.parent.name == 'd':
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def test_a_truncated_latest_checkpoint_resumes_from_the_one_before(finished, store, tmp_path,
                                                                   monkeypatch):
  """Issue 23.4: one warning line, no longer buried under tracebacks."""
  run = tmp_path / 'run'
  shutil.copytree(finished, run)
  _truncate(run / 'checkpoints' / str(STEPS))
  printed = _printed_unraisables(monkeypatch)
  code, out, err = _run('train', '--workdir', run, *_flags(store))
  _late_callbacks_done()
  assert code == 0, err
  lines = [l for l in err.splitlines() if not l.startswith('step ')]
  assert len(lines) == 1 and 'warning' in lines[0] and 'unreadable' in lines[0], err
  assert f'step {STEPS}' in lines[0] and 'tensorstore_spec' not in lines[0]
  assert f'Resumed from {run / "checkpoints"} at step {STEPS - 4}' in out
  assert [str(u.exc_value) for u in printed] == []


def test_a_truncated_best_checkpoint_under_localize(finished, tmp_path, monkeypatch):
  run = tmp_path / 'run'
  shutil.copytree(finished, run)
  (best,) = [p for p in (run / 'best').iterdir() if p.is_dir()]
  _truncate(best)
  printed = _printed_unraisables(monkeypatch)
  code, _, err = _run('localize', '--workdir', run)
  _late_callbacks_done()
  _fault(code, err, 1, run / 'best', '--checkpoint latest')
  assert len(err.strip().splitlines()) == 1, err
  assert [str(u.exc_value) for u in printed] == []


def test_plot_and_localize_into_a_read_only_place(finished, read_only_dir):
  video = next(iter(json.loads((finished / 'detections_test.json').read_text())['results']))
  code, _, err = _run('plot', '--workdir', finished, '--video', video, '--output',
                      read_only_dir / 'v.png')
  _fault(code, err, 1, read_only_dir / 'v.png')
  code, _, err = _run('localize', '--workdir', finished, '--output', read_only_dir / 'd.json')
  _fault(code, err, 1, read_only_dir / 'd.json')
  assert not list(read_only_dir.iterdir())
