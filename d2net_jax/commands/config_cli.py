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
  """The message of `error` in one line: for a wrapped traceback (a config file's get_config
  that raised), its last line, the original error, without the exception class."""
  text = str(error).strip()
  if text[:1] in '"\'' and text[:1] == text[-1:]:
    text = text[1:-1]
  if 'Traceback (most recent call last)' in text:
    last = text.splitlines()[-1].strip()
    return re.sub(r'^\w+(Error|Exception): ', '', last) or type(error).__name__
  return text.splitlines()[0] if text else type(error).__name__


def _unknown_override(argv: Sequence[str], config_file: str) -> Optional[str]:
  """The first `--config.a.b` of argv that names no field of the config file."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv,
                                  sys_argv=['x', f'--config={config_file}'])
  fv(['x', f'--config={config_file}'])
  return _unknown_field(argv, fv.config)


def _unknown_field(argv: Sequence[str], config) -> Optional[str]:
  """The first `--config.a.b` of argv that names no field of `config`."""
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
  _update(config, config_lib.saved_config(json.loads(path.read_text())), str(path))
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
  full = [prog] + list(argv)
  if not workdir:  # A misspelt flag (--workdri) is named first, checked on the base schema.
    fv = flags.FlagValues()
    config_flags.DEFINE_config_dict('config', config_lib.base_config(), flag_values=fv,
                                    sys_argv=full)
    flags.DEFINE_string('workdir', None, 'Run folder.', flag_values=fv)
    for define in extra_flags:
      define(fv)
    try:
      fv(full)
    except flags.UnrecognizedFlagError as e:
      raise UsageError(_first_line(e)) from e
    except (flags.Error, AttributeError, ValueError, TypeError):
      pass
    raise UsageError('--workdir RUN is required (a folder written by `d2net-jax train`)')
  fv = flags.FlagValues()
  config = run_config(workdir)
  unknown = _unknown_field(argv, config)
  if unknown:
    raise UsageError(f'unknown config field {unknown!r}')
  config_flags.DEFINE_config_dict('config', config, flag_values=fv,
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


def _fields(config, prefix=''):
  for name, value in sorted(config.items()):
    if isinstance(value, ml_collections.ConfigDict):
      yield from _fields(value, f'{prefix}{name}.')
    else:
      yield f'{prefix}{name}', value


def help_text(doc: str, extra_flags=(), config: Optional[ml_collections.ConfigDict] = None,
              run_flags: bool = False) -> str:
  """`doc`, then every flag the command takes (from its definitions, so the list cannot go stale)
  and every `--config.section.field` with its value in `config` (default: the base schema).

  run_flags: the command takes `--workdir RUN` (parse_run) rather than `--config FILE`.
  """
  fv = flags.FlagValues()
  if run_flags:
    flags.DEFINE_string('workdir', None, 'Run folder written by `d2net-jax train` (required).',
                        flag_values=fv)
  else:
    flags.DEFINE_string('config', None, 'Config file[:ARG], e.g. configs/synthetic.py:smoke '
                        '(required).', flag_values=fv)
  for define in extra_flags:
    define(fv)
  lines = [doc.rstrip(), '', 'All flags:']
  for name, flag in sorted(fv._flags().items()):  # pylint: disable=protected-access
    if name != flag.name:
      continue
    kind = '[no]' if flag.boolean else ''
    default = '' if flag.default is None else f' (default: {flag.default})'
    lines.append(f'  {"--" + kind + name:28s} {flag.help}{default}')
  lines += ['', 'Config fields, --config.SECTION.FIELD=VALUE (value shown: '
            + ("the run's" if run_flags else 'the base schema') + '):']
  config = config if config is not None else config_lib.base_config()
  lines += [f'  --config.{name}={json.dumps(list(value) if isinstance(value, tuple) else value)}'
            for name, value in _fields(config)]
  return '\n'.join(lines)


def run_config_or_none(argv: Sequence[str]) -> Optional[ml_collections.ConfigDict]:
  """The config of `--workdir RUN` in argv if it can be read, else None (for --help)."""
  for i, arg in enumerate(argv):
    workdir = (arg.split('=', 1)[1] if arg.startswith('--workdir=') else
               argv[i + 1] if arg == '--workdir' and i + 1 < len(argv) else None)
    if workdir:
      try:
        return run_config(workdir)
      except (UsageError, OSError, ValueError):
        return None
  return None
