"""Checks during training that stop a run which cannot learn, with the likely cause in one line
(instead of evaluating an untrained model and failing there with a traceback)."""

import numpy as np


class NoUpdateError(RuntimeError):
  """Every update of a run so far was skipped (its loss or gradient is not finite): nothing
  trains, so the run stops (with the likely cause) instead of evaluating an untrained model."""


def check_updates(num_skipped: int, start: int, done: int, batch, config) -> None:
  """Raises NoUpdateError when all of at least 10 updates since `start` were skipped.

  Args:
    num_skipped: updates skipped since `start` (TrainState.num_skipped now minus then).
    start: the step this call of `train` started (or resumed) at; done: the step reached.
    batch: the last host batch ('features' (B, T, D)): its magnitude names the likely cause.
    config: the run's config (data.path is named).
  """
  if num_skipped < done - start or done - start < 10:
    return
  largest = float(np.max(np.abs(batch['features']))) if np.size(batch['features']) else 0.0
  if largest > 1e15:
    cause = (f'the features reach |x| = {largest:.3g}, beyond what float32 arithmetic handles '
             f'(squares overflow past 1.8e19): rescale them ({config.data.path or "the data"})')
  else:
    cause = 'check the data (`d2net-jax check`) and config.train.learning_rate'
  raise NoUpdateError(f'all {done - start} updates of steps {start + 1}-{done} were skipped (the '
                      f'loss or its gradient is not finite); nothing trains: {cause}')
