"""Where a run's numbers go: `workdir/metrics.jsonl` (one JSON object per step), and TensorBoard
event files when the optional tensorboardX is installed. Progress bars: `utils/progress.py`.
"""

import json
import math
import pathlib
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
        from tensorboardX import SummaryWriter  # Optional (extra `tensorboard`). pylint: disable=import-outside-toplevel
      except ImportError:
        pass
      else:
        self._tb_dir = str(pathlib.Path(workdir) / 'tensorboard')
        self._tb = SummaryWriter(self._tb_dir)

  def _failed(self, error: OSError) -> OSError:
    """A failed write of metrics.jsonl (a full disk): an OSError naming the file."""
    return OSError(error.errno, error.strerror or str(error), str(self.path))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    """One line {"step": step, **metrics}; metrics are host scalars."""
    record = {'step': int(step), **{k: _plain(v) for k, v in metrics.items()}}
    try:
      self._file.write(json.dumps(record) + '\n')
    except OSError as e:
      raise self._failed(e) from e
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
      from tensorboardX import SummaryWriter  # Optional (extra `tensorboard`). pylint: disable=import-outside-toplevel
      writer = SummaryWriter(self._tb_dir)
      for name, value in values.items():
        writer.add_scalar(name, float(value), int(step))
      writer.close()

  def flush(self) -> None:
    try:
      self._file.flush()
    except OSError as e:
      raise self._failed(e) from e
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    try:
      self.flush()
    finally:
      try:
        self._file.close()
      except OSError:
        pass  # The flush above reported it.
    if self._tb is not None:
      self._tb.close()
      self._tb = None
