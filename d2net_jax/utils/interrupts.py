"""Ctrl-C that is never lost and never prints a traceback.

Python's default SIGINT handler raises KeyboardInterrupt in whatever Python code runs at that
moment. Inside a garbage-collection callback (JAX registers one) or a `__del__` the exception
cannot propagate: Python prints "Exception ignored in ... KeyboardInterrupt" with a traceback and
carries on, so a Ctrl-C while JAX is imported or compiles could be lost and the run went on.

Nor can it inside an import of a C extension: numpy turns it into an ImportError and prints the
traceback itself.

`install()` (called by `d2net-jax` before any command runs) keeps the default behaviour, raising
KeyboardInterrupt, but remembers the interrupt: `check()` raises it again at the next safe point
(the trainer calls it between its set-up stages), and the ignored ones print nothing. Inside
`deferred()` (the commands' imports) a Ctrl-C is only remembered, and raised when it ends.
`run_dir.StopFlag` replaces the handler during the training loop (a first Ctrl-C saves a
checkpoint and stops).
"""

import contextlib
import signal
import sys
import threading

_pending = False
_deferring = 0
_previous_hook = None


def _on_sigint(signum, frame):
  del signum, frame
  global _pending
  _pending = True
  if not _deferring:
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred():
  """A Ctrl-C inside is remembered only, and raised (KeyboardInterrupt) once the block ends."""
  global _deferring
  _deferring += 1
  try:
    yield
  finally:
    _deferring -= 1
  check()


def _unraisable(unraisable):
  if isinstance(unraisable.exc_value, KeyboardInterrupt):
    return  # Remembered by _on_sigint; raised again by check().
  (_previous_hook or sys.__unraisablehook__)(unraisable)


def install():
  """Installs the handler and the quiet hook (main thread only); returns a function that puts
  back what was there (for a command run inside another program, e.g. the tests)."""
  global _previous_hook
  if threading.current_thread() is not threading.main_thread():
    return lambda: None
  handler, hook = signal.signal(signal.SIGINT, _on_sigint), sys.unraisablehook
  if hook is not _unraisable:
    _previous_hook = hook
    sys.unraisablehook = _unraisable

  def restore():
    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = hook
  return restore


def check() -> None:
  """Raises KeyboardInterrupt if a Ctrl-C came that nothing has handled yet."""
  global _pending
  if _pending:
    _pending = False
    raise KeyboardInterrupt


def pending() -> bool:
  return _pending


def clear() -> None:
  """The interrupt was handled (the caller reports it)."""
  global _pending
  _pending = False
