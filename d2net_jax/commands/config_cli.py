"""`--config FILE[:ARG] --config.section.field=value ... --workdir DIR`, parsed with absl flags and
ml_collections `config_flags` on a private FlagValues (so a command can run many times in one
process), with every error reduced to one line.
"""

import re
from typing import Optional, Sequence, Tuple

from absl import flags
import ml_collections
from ml_collections import config_flags


class UsageError(ValueError):
  """A bad command line or config; the message is one line."""


def _first_line(error: BaseException) -> str:
  text = str(error).strip().strip('"\'')
  return text.splitlines()[0] if text else type(error).__name__


def _unknown_override(argv: Sequence[str], config_file: str) -> Optional[str]:
  """The first `--config.a.b` of argv that names no field of the config file."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv, sys_argv=['x', f'--config={config_file}'])
  fv(['x', f'--config={config_file}'])
  config = fv.config
  for arg in argv:
    match = re.match(r'^--?(?:no)?config\.([\w.]+)', arg)
    if not match:
      continue
    node = config
    for part in match.group(1).split('.'):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        return match.group(1)
      node = node[part]
  return None


def parse(prog: str, argv: Sequence[str], extra_flags=()) -> Tuple[ml_collections.ConfigDict,
                                                                   flags.FlagValues]:
  """(config, flag values) from `argv` (without the program name).

  extra_flags: callables `define(flag_values)` adding command-specific flags. Raises UsageError.
  """
  full = [prog] + list(argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/synthetic.py.',
                                  flag_values=fv, lock_config=True, sys_argv=full)
  for define in extra_flags:
    define(fv)
  try:
    rest = fv(full)
  except AttributeError as e:  # config_flags: an override of a field that does not exist.
    config_file = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    if config_file is None and '--config' in argv and argv.index('--config') + 1 < len(argv):
      config_file = argv[argv.index('--config') + 1]
    name = _unknown_override(argv, config_file) if config_file else None
    raise UsageError(f'unknown config field {name or _first_line(e)!r}') from e
  except (flags.Error, OSError, ValueError, TypeError) as e:
    raise UsageError(_first_line(e).replace('Configuration is not available because of an '
                                            'earlier failure to load: ', '')) from e
  if len(rest) > 1:
    raise UsageError(f'unexpected arguments: {" ".join(rest[1:])}')
  if fv['config'].value is None:
    raise UsageError('--config is required (e.g. --config configs/synthetic.py)')
  try:
    config = fv.config
    config.get('train')  # A config file that failed to load raises here, not at parse time.
  except OSError as e:
    message = ' '.join(line.strip() for line in str(e).splitlines()[-2:])
    raise UsageError(f'cannot load the config file: {message}') from e
  return config, fv
