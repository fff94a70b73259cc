"""`--config FILE[:ARG] --config.section.field=value ... --workdir DIR`, parsed with absl flags and
ml_collections `config_flags` on a private FlagValues (so a command can run many times in one
process), with every error reduced to one line.
"""

import json
import pathlib
import re
from typing import Optional, Sequence, Tuple

from absl import flags
import ml_collections
from ml_collections import config_flags

from d2net_jax import config as config_lib


class UsageError(ValueError):
  """A bad command line or config; the message is one line."""


def _first_line(error: BaseException) -> str:
  text = str(error).strip().strip('"\'')
  return text.splitlines()[0] if text else type(error).__name__


def _unknown_override(argv: Sequence[str], config_file: str) -> Optional[str]:
  """The first `--config.a.b` of argv that names no field of the config file."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv,
                                  sys_argv=['x', f'--config={config_file}'])
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


def _update(config: ml_collections.ConfigDict, values: dict, where: str) -> None:
  """Sets config fields from a JSON dict (lists back to tuples where the schema has tuples)."""
  for name, value in values.items():
    if name not in config:
      raise UsageError(f'{where}: unknown config field {name!r} (written by another version?)')
    if isinstance(config[name], ml_collections.ConfigDict):
      _update(config[name], value, where)
    elif isinstance(config[name], tuple) and isinstance(value, list):
      config[name] = tuple(value)
    else:
      config[name] = value


def run_config(workdir) -> ml_collections.ConfigDict:
  """The resolved config a run saved in `workdir/config.json`, on the current schema."""
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    raise UsageError(f'{path} not found: is {workdir} a training run folder?')
  config = config_lib.base_config()
  _update(config, json.loads(path.read_text()), str(path))
  config.lock()
  return config


def parse_run(prog: str, argv: Sequence[str], extra_flags=()) -> Tuple[ml_collections.ConfigDict,
                                                                       flags.FlagValues]:
  """Like `parse`, for commands on a trained run: `--workdir RUN` (required) supplies the config
  (its config.json), which `--config.section.field=value` flags may override."""
  workdir = None
  for i, arg in enumerate(argv):
    if arg.startswith('--workdir='):
      workdir = arg.split('=', 1)[1]
    elif arg == '--workdir' and i + 1 < len(argv):
      workdir = argv[i + 1]
  if not workdir:
    raise UsageError('--workdir RUN is required (a folder written by `d2net-jax train`)')
  full = [prog] + list(argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_dict('config', run_config(workdir), flag_values=fv,
                                  lock_config=True, sys_argv=full)
  flags.DEFINE_string('workdir', None, 'Run folder written by `d2net-jax train`.', flag_values=fv)
  for define in extra_flags:
    define(fv)
  try:
    rest = fv(full)
  except AttributeError as e:
    raise UsageError(f'unknown config field ({_first_line(e)})') from e
  except (flags.Error, ValueError, TypeError) as e:
    raise UsageError(_first_line(e)) from e
  if len(rest) > 1:
    raise UsageError(f'unexpected arguments: {" ".join(rest[1:])}')
  return fv.config, fv
