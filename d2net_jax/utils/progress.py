"""Progress on the terminal: a bar over a pass of videos (`progress_bar`) and the training bar
(`Progress`: step, losses, steps/s), or plain log lines when stderr is no terminal.
"""

import sys
import time
from typing import Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

PROGRESS_DELAY_S = 2.0  # A pass shorter than this shows no bar.


def progress_bar(iterable=None, desc: str = '', *, total: Optional[int] = None,
                 enable: Optional[bool] = None, unit: str = 'video'):
  """`iterable` wrapped in a tqdm bar on stderr, shown once the pass has taken PROGRESS_DELAY_S
  and removed when it ends (`convert`, `import`, `synthetic`, evaluation passes).

  enable: None shows it only when stderr is a terminal (never in logs); False never.
  """
  disable = not sys.stderr.isatty() if enable is None else not enable
  return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=disable,
              delay=PROGRESS_DELAY_S, leave=False, dynamic_ncols=True)


def window_means(window: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict:
  """{key: mean over the steps of `window` (one metrics dict per step)} for the keys they have;
  the finite values only (a skipped step's loss is NaN and is counted apart), NaN if none.

  One step's loss is noisy (SAL trains on batches of 2); the mean of a log window shows the trend
  that metrics.jsonl holds step by step."""
  means = {}
  for key in keys:
    values = np.asarray([float(m[key]) for m in window if key in m], np.float64)
    finite = values[np.isfinite(values)]
    if values.size:
      means[key] = float(finite.mean()) if finite.size else float('nan')
  return means


class Progress:
  """A tqdm progress bar (step, losses, steps/s), or plain log lines when stderr is no terminal."""

  def __init__(self, initial: int, total: int, disable: Optional[bool] = None):
    self._interactive = sys.stderr.isatty() if disable is None else not disable
    self._bar = tqdm(initial=initial, total=total, unit='step', dynamic_ncols=True,
                     disable=not self._interactive, file=sys.stderr)
    self._last_step, self._last_time = initial, time.perf_counter()
    self.steps_per_second = float('nan')

  def update(self, step: int, metrics: Mapping[str, float], window: int = 1) -> None:
    """Advances to `step` and shows the given (host) metrics, the means of the last `window`
    steps (`window_means`; said in the line, and in the bar's description)."""
    now = time.perf_counter()
    if step > self._last_step:
      self.steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
    shown = {k: f'{float(v):.4g}' for k, v in metrics.items()}
    means = f'means of {window} steps' if window > 1 else 'last step'
    if self._interactive:
      self._bar.set_description(means, refresh=False)
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix(shown, refresh=True)
    else:
      text = ' '.join(f'{k}={v}' for k, v in shown.items())
      print(f'step {step}: {text} ({means}; {self.steps_per_second:.1f} steps/s)',
            file=sys.stderr, flush=True)
    self._last_step, self._last_time = step, now

  def wrap(self, log):
    """`log` made to clear the bar, print, and redraw it (lines and bar never overwrite)."""
    if not self._interactive:
      return log

    def wrapped(*args, **kwargs):
      with tqdm.external_write_mode(file=sys.stderr):
        log(*args, **kwargs)
    return wrapped

  def close(self) -> None:
    self._bar.close()
