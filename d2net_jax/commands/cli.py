"""`d2net-jax COMMAND ...`: one console script, one module per command.

Each command module has `main(argv: list[str]) -> int`, with argv excluding the command name.
"""

import difflib
import functools
import importlib
import os
import pathlib
import signal
import sys
import warnings

from d2net_jax.utils import interrupts

PACKAGE = pathlib.Path(__file__).resolve().parents[1]

COMMANDS = {
    'train': ('d2net_jax.commands.train', 'train (and evaluate) from a config'),
    'evaluate': ('d2net_jax.commands.evaluate', 'score a detections JSON against ground truth'),
    'localize': ('d2net_jax.commands.localize', 'run a trained checkpoint, write detections'),
    'plot': ('d2net_jax.commands.plot', 'draw TCAM, attention, ground truth and detections'),
    'compare': ('d2net_jax.commands.compare', 'one table of runs: test mAP, method, config '
                'differences, selection protocol'),
    'check': ('d2net_jax.commands.check', 'read and validate every video of a config\'s data'),
    'convert': ('d2net_jax.commands.convert', 'convert W-TALC / STPN features to the HDF5 store'),
    'import': ('d2net_jax.commands.import_data', 'import your own .npy features + labels to HDF5'),
    'synthetic': ('d2net_jax.commands.synthetic', 'write the synthetic benchmark to HDF5 + gt.json'),
    'extract': ('d2net_jax.commands.extract', 'video files -> I3D snippet features (HDF5 store)'),
}


def usage() -> str:
  lines = ['usage: d2net-jax COMMAND [args]', '', 'commands:']
  lines += [f'  {name:10s} {help_}' for name, (_, help_) in COMMANDS.items()]
  return '\n'.join(lines)


def main(argv=None) -> int:
  from_command_line = argv is None
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ('-h', '--help', 'help'):
    print(usage())
    return 0 if argv else 2
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    print(f'd2net-jax: error: unknown command {name!r} ({hint}commands: {", ".join(COMMANDS)})',
          file=sys.stderr)
    return 2
  restore = interrupts.install()  # A Ctrl-C is never swallowed (interrupts.py).
  show = warnings.showwarning
  warnings.showwarning = functools.partial(_show_warning, f'd2net-jax {name}', show)
  try:
    code = _run(name, rest)
  finally:
    warnings.showwarning = show
    if not from_command_line:
      restore()
  if from_command_line:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # The work is over: a late Ctrl-C is ignored.
    if code in (130, 143):  # Interrupted, maybe while XLA compiles in its threads: skip the
      sys.stdout.flush()    # interpreter's teardown, which could crash under them (segfault).
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
  return code


def _show_warning(prog, show, message, category, filename, lineno, file=None, line=None):
  """Our own warnings as one line, 'd2net-jax COMMAND: warning: ...' (not Python's two, with the
  file, line number and source line); other libraries' as Python shows them."""
  if pathlib.Path(filename).resolve().is_relative_to(PACKAGE):
    print(f'{prog}: warning: {message}', file=file or sys.stderr)
  else:
    show(message, category, filename, lineno, file, line)


def _run(name: str, argv) -> int:
  """The exit status of command `name` on `argv`."""
  try:
    with interrupts.deferred():
      module = importlib.import_module(COMMANDS[name][0])
    code = int(module.main(argv) or 0)
    interrupts.check()  # One that JAX's garbage collection swallowed.
    return code
  except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed.
    if isinstance(e.code, str):
      print(e.code, file=sys.stderr)
      return 1
    return int(e.code or 0)
  except Exception:  # pylint: disable=broad-except
    if not interrupts.pending():
      raise
    # Ctrl-C during an import: numpy turns it into an ImportError.
    return _interrupted(name, interrupts.pending())
  except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM outside train's step loop (imports, ...).
    return _interrupted(name, interrupts.signal_name(e))


def _interrupted(name: str, signal_name: str) -> int:
  interrupts.clear()
  if signal_name == 'SIGTERM':
    print(f'd2net-jax {name}: terminated (SIGTERM)', file=sys.stderr)
    return 143
  print(f'd2net-jax {name}: interrupted', file=sys.stderr)
  return 130


if __name__ == '__main__':
  sys.exit(main())
