"""The training bar and log lines do not overwrite each other (issue 14, section 5)."""

import contextlib

import tqdm

from d2net_jax import run_log


def test_log_lines_clear_the_progress_bar(monkeypatch):
  """On a terminal, a log line during training is written in tqdm's external write mode."""
  events = []

  @contextlib.contextmanager
  def external_write_mode(**kwargs):
    events.append('clear')
    yield
    events.append('redraw')

  monkeypatch.setattr(tqdm.tqdm, 'external_write_mode', external_write_mode)
  bar = run_log.Progress(0, 10, disable=False)
  bar.wrap(events.append)('step 5: validation ...')
  bar.close()
  assert events == ['clear', 'step 5: validation ...', 'redraw']
  plain = run_log.Progress(0, 10, disable=True)
  assert plain.wrap(print) is print
  plain.close()
