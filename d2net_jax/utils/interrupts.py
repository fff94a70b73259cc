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

SIGTERM (a cluster's preemption, `kill`) is handled the same way and raises `Terminated`, a
KeyboardInterrupt that says so: its default action killed the process without a word (during
start-up, before the training loop's own handler).

The same hook keeps quiet the unraisable exceptions a caller registers as noise
(`quiet_unraisable`: orbax's late asyncio callbacks after a failed read, whose error is raised).
"""

import contextlib
import signal
import sys
import threading
from typing import Any, Callable, Optional

_pending = None  # The name of a signal that nothing has handled yet.
_quiet = []  # Predicates of unraisable exceptions that print nothing (`quiet_unraisable`).
_deferring = 0
_previous_hook = None


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (commands exit with status 143)."""
  signal_name = 'SIGTERM'
  exit_status = 143


def _interrupt(name: Optional[str]) -> KeyboardInterrupt:
  return Terminated() if name == 'SIGTERM' else KeyboardInterrupt()


def exit_status(error: BaseException) -> int:
  """130 for Ctrl-C, 143 for SIGTERM (128 + the signal number, as a shell reports them)."""
  return getattr(error, 'exit_status', 130)


def signal_name(error: BaseException) -> str:
  return getattr(error, 'signal_name', 'SIGINT')


def _on_signal(signum, frame):
  del frame
  global _pending
  _pending = signal.Signals(signum).name
  if not _deferring:
    raise _interrupt(_pending)


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
    return  # Remembered by _on_signal; raised again by check().
  if any(quiet(unraisable) for quiet in _quiet):
    return
  (_previous_hook or sys.__unraisablehook__)(unraisable)


def _install_hook() -> None:
  global _previous_hook
  if sys.unraisablehook is not _unraisable:
    _previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable


def quiet_unraisable(predicate: Callable[[Any], bool]) -> None:
  """From now on, in this process, an unraisable exception for which `predicate(unraisable)` is
  true prints nothing (checkpointing's late asyncio callbacks after a failed orbax read, whose
  error is raised to the caller). Installs the hook; `install`'s restore then leaves it."""
  if predicate not in _quiet:
    _quiet.append(predicate)
  _install_hook()


def install():
  """Installs the handler and the quiet hook (main thread only); returns a function that puts
  back what was there (for a command run inside another program, e.g. the tests)."""
  if threading.current_thread() is not threading.main_thread():
    return lambda: None
  handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
  hook = sys.unraisablehook
  _install_hook()

  def restore():
    for signum, handler in handlers.items():
      signal.signal(signum, handler)
    if not _quiet:  # Else the hook stays for them (it passes everything else on to `hook`).
      sys.unraisablehook = hook
  return restore


def check() -> None:
  """Raises KeyboardInterrupt (`Terminated` for SIGTERM) if a Ctrl-C or SIGTERM came that
  nothing has handled yet."""
  global _pending
  if _pending:
    name, _pending = _pending, None
    raise _interrupt(name)


def pending() -> Optional[str]:
  """The name of the signal ('SIGINT', 'SIGTERM') that nothing has handled yet, or None."""
  return _pending


def clear() -> None:
  """The interrupt was handled (the caller reports it)."""
  global _pending
  _pending = None
