"""What every config check raises and the two checks methods and the schema share: `ConfigError`
(one line naming the field), `check_choices`, `check_range`.
"""

import math
from typing import Iterable, Mapping, Optional


class ConfigError(ValueError):
  """A setting training cannot run with; the message is one line naming the field."""


def _get(config, dotted: str):
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node


def check_choices(config, choices: Mapping[str, Iterable]) -> None:
  """ConfigError unless each field `section.field` of `choices` holds one of its values."""
  for name, allowed in choices.items():
    allowed = tuple(allowed)
    if _get(config, name) not in allowed:
      raise ConfigError(f'config.{name}={_get(config, name)!r}: must be one of {allowed}')


def check_range(config, name: str, low: Optional[float] = None, high: Optional[float] = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
  """ConfigError unless `section.field` is a finite number in the interval (bounds None: none).

  low_open / high_open: the bound itself is excluded.
  """
  value = _get(config, name)
  bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
  if not bad and low is not None:
    bad = value <= low if low_open else value < low
  if not bad and high is not None:
    bad = value >= high if high_open else value > high
  if bad:
    if low is not None and high is not None:
      where = f'in {"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    elif low is not None:
      where = f'{">" if low_open else ">="} {low}'
    else:
      where = f'{"<" if high_open else "<="} {high}'
    raise ConfigError(f'config.{name}={value!r}: must be a number {where}')
