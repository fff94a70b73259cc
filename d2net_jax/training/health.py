"""Whether a run trains at all: a run whose every update is skipped (a loss or gradient that is not
finite) stops with the likely cause instead of evaluating an untrained model."""

import numpy as np


class NoUpdateError(RuntimeError):
  """Every update of a run so far was skipped (its loss or gradient is not finite): nothing
  trains, so the run stops (with the likely cause) instead of evaluating an untrained model."""


def check_updates(num_skipped: int, start: int, done: int, batch, config) -> None:
  """Raises NoUpdateError when all of at least 10 updates since `start` were skipped."""
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
