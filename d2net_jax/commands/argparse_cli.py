"""argparse for the commands that use it (`evaluate`, `convert`, `import`, `synthetic`), with every
usage error in one line: `PROG: error: MESSAGE`, and for a misspelt flag the closest flags that
exist. Exit status 2, as argparse.
"""

import argparse
import difflib
import re
import sys


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors are one line (no multi-line usage block)."""

  def flags(self):
    """Every --flag this parser takes."""
    return [o for action in self._actions for o in action.option_strings if o.startswith('--')]

  def suggestions(self, message: str) -> str:
    """' (did you mean --x?)' for the unknown flags of an 'unrecognized arguments' message."""
    match = re.match(r'unrecognized arguments: (.*)', message)
    if not match:
      return ''
    close, names = [], [f[2:] for f in self.flags()]
    for arg in match.group(1).split():
      if arg.startswith('--'):  # Compared without the dashes, which every flag shares.
        close += ['--' + name for name in difflib.get_close_matches(
            arg.split('=', 1)[0][2:], names, n=1, cutoff=0.6)]
    if close:
      return f' (did you mean {" / ".join(dict.fromkeys(close))}?)'
    return f' ({self.prog} --help lists the flags)'

  def parse_args(self, args=None, namespace=None):
    """argparse's, but a flag that does not exist is reported first (before a missing one)."""
    args = list(sys.argv[1:] if args is None else args)
    words = args[:args.index('--')] if '--' in args else args
    flags = self.flags()
    unknown = [name for name in (a.split('=', 1)[0] for a in words if a.startswith('--'))
               if not any(f.startswith(name) for f in flags)]  # argparse takes prefixes.
    if unknown:
      self.error(f'unrecognized arguments: {" ".join(unknown)}')
    return super().parse_args(args, namespace)

  def error(self, message: str):
    message = ' '.join(message.split())
    self.exit(2, f'{self.prog}: error: {message}{self.suggestions(message)}\n')
