"""Ctrl-C (issue 14, section 1): never lost, never a traceback, during compilation included."""

import gc
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from d2net_jax.utils import interrupts

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def handler():
  restore = interrupts.install()
  yield
  interrupts.clear()
  restore()


def test_a_ctrl_c_swallowed_by_a_gc_callback_is_raised_at_the_next_check(handler, capsys):
  """JAX's garbage-collection callback cannot pass a KeyboardInterrupt on: Python used to print
  "Exception ignored ... KeyboardInterrupt" and go on training."""
  fired = []

  def callback(phase, info):
    del info
    if phase == 'start' and not fired:
      fired.append(True)
      signal.raise_signal(signal.SIGINT)  # The handler runs inside this callback.

  gc.callbacks.append(callback)
  try:
    gc.collect()
  finally:
    gc.callbacks.remove(callback)
  assert fired and interrupts.pending()
  with pytest.raises(KeyboardInterrupt):
    interrupts.check()
  interrupts.check()  # Raised once.
  assert 'Exception ignored' not in capsys.readouterr().err
  with pytest.raises(KeyboardInterrupt):  # Imports: remembered, raised when they are done.
    with interrupts.deferred():
      signal.raise_signal(signal.SIGINT)
      done = True
  assert done


@pytest.mark.slow
def test_ctrl_c_while_train_compiles_exits_cleanly(tmp_path):
  """SIGINT to `d2net-jax train` as it starts compiling the step, and again (a user pressing
  Ctrl-C twice): exit status 130, one line, no traceback, no segfault."""
  env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED='1', JAX_PLATFORMS='cpu')
  command = [sys.executable, '-m', 'd2net_jax.commands.cli', 'train', '--config',
             str(REPO / 'configs' / 'synthetic.py:smoke'), '--workdir', str(tmp_path / 'run'),
             f'--config.data.path={tmp_path / "data"}', '--noprogress']
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=tmp_path)
  try:
    for line in process.stdout:
      if 'global batch' in line:  # Printed just before the first step compiles.
        break
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    if process.poll() is None:
      process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
  finally:
    process.kill()
  assert process.returncode == 130, (out, err)
  assert 'Traceback' not in err and 'Exception ignored' not in err, err
  assert ('d2net-jax train: interrupted' in err) or ('Interrupted (SIGINT)' in out), (out, err)
