"""Where a run's numbers go: `workdir/metrics.jsonl` (one JSON object per step), TensorBoard event
files when tensorboardX is installed, and a one-line progress bar on the terminal.
"""

import json
import math
import pathlib
import sys
import time
from typing import Mapping, Optional

import numpy as np


def _plain(value):
  """A JSON-serialisable Python scalar (NaN and inf become strings, as JSON has no such numbers)."""
  value = np.asarray(value).item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Appends metrics to `workdir/metrics.jsonl` and, optionally, TensorBoard."""

  def __init__(self, workdir, tensorboard: bool = True):
    self.path = pathlib.Path(workdir) / 'metrics.jsonl'
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = self.path.open('a')
    self._tb = None
    self._tb_dir = None
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      except ImportError:
        pass
      else:
        self._tb_dir = str(pathlib.Path(workdir) / 'tensorboard')
        self._tb = SummaryWriter(self._tb_dir)

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    """One line {"step": step, **metrics}; metrics are host scalars."""
    record = {'step': int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + '\n')
    if self._tb is not None:
      for name, value in metrics.items():
        value = float(np.asarray(value))
        self._tb.add_scalar(name, value, int(step))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """TensorBoard only (e.g. 'validation/average_mAP', 'test/average_mAP'); after `close` too."""
    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(name, float(value), int(step))
      self._tb.flush()
    elif self._tb_dir is not None:  # Closed: a writer for these values alone.
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      writer = SummaryWriter(self._tb_dir)
      for name, value in values.items():
        writer.add_scalar(name, float(value), int(step))
      writer.close()

  def flush(self) -> None:
    self._file.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self.flush()
    self._file.close()
    if self._tb is not None:
      self._tb.close()
      self._tb = None


PROGRESS_DELAY_S = 2.0  # A pass shorter than this shows no bar.


def progress_bar(iterable=None, desc: str = '', *, total: Optional[int] = None,
                 enable: Optional[bool] = None, unit: str = 'video'):
  """`iterable` wrapped in a tqdm bar on stderr, shown once the pass has taken PROGRESS_DELAY_S
  and removed when it ends (`convert`, `import`, `synthetic`, evaluation passes).

  enable: None shows it only when stderr is a terminal (never in logs); False never.
  """
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  disable = not sys.stderr.isatty() if enable is None else not enable
  return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=disable,
              delay=PROGRESS_DELAY_S, leave=False, dynamic_ncols=True)


class Progress:
  """A tqdm progress bar (step, losses, steps/s), or plain log lines when stderr is no terminal."""

  def __init__(self, initial: int, total: int, disable: Optional[bool] = None):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    self._interactive = sys.stderr.isatty() if disable is None else not disable
    self._bar = tqdm(initial=initial, total=total, unit='step', dynamic_ncols=True,
                     disable=not self._interactive, file=sys.stderr)
    self._last_step, self._last_time = initial, time.perf_counter()
    self.steps_per_second = float('nan')

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    """Advances to `step` and shows the given (host) metrics."""
    now = time.perf_counter()
    if step > self._last_step:
      self.steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
    shown = {k: f'{float(v):.4g}' for k, v in metrics.items()}
    if self._interactive:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(shown, refresh=True)
    else:
      text = ' '.join(f'{k}={v}' for k, v in shown.items())
      print(f'step {step}: {text} ({self.steps_per_second:.1f} steps/s)', file=sys.stderr,
            flush=True)
    self._last_step, self._last_time = step, now

  def wrap(self, log):
    """`log` made to clear the bar, print, and redraw it (lines and bar never overwrite)."""
    if not self._interactive:
      return log

    def wrapped(*args, **kwargs):
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      with tqdm.external_write_mode(file=sys.stderr):
        log(*args, **kwargs)
    return wrapped

  def close(self) -> None:
    self._bar.close()
