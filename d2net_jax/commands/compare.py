"""`d2net-jax compare RUN1 RUN2 ...`: one table of training runs.

For each run folder (written by `d2net-jax train`): the method, the test mAP (average over the
tIoU thresholds and at 0.5, percent), the selected checkpoint's step and the selection protocol
(validation split or test set), then every config field whose value differs between the runs.
A run without results.json (not finished) is listed with its method and '-' for the numbers.

Flags:
  RUN ...               run folders (at least one)
  --all-fields          list every differing field (default: at most 30; data paths included)
"""

import json
import pathlib
import sys
from typing import List

from d2net_jax.runs import run_dir

PROG = 'd2net-jax compare'


def _read(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: unreadable ({e})') from None


def _percent(value) -> str:
  return '-' if value is None else f'{100 * value:.2f}'


def table(runs: List[pathlib.Path], max_fields: int = 30) -> str:
  """The comparison table of `runs` (see the module docstring)."""
  configs, rows = [], []
  for run in runs:
    config = _read(run / 'config.json')
    if config is None:
      raise ValueError(f'{run}: no config.json (not a `d2net-jax train` run folder)')
    config.setdefault('method', 'd2net')
    configs.append(config)
    results = _read(run / 'results.json') or {}
    test = results.get('test') or {}  # None: the test videos had no ground truth.
    tiou = test.get('tiou', [])
    at_05 = next((m for t, m in zip(tiou, test.get('mAP', [])) if abs(t - 0.5) < 1e-9), None)
    selection = results.get('selected_checkpoint') or {}
    protocol = selection.get('protocol', '-') if results else 'not finished'
    if 'fallback' in selection:
      protocol = 'final state (best checkpoint unusable)'
    elif protocol == 'final':
      protocol = 'final state (no ground truth)'
    rows.append([str(run), config['method'], _percent(test.get('average_mAP')), _percent(at_05),
                 str(selection.get('step', '-')), protocol])
  header = ['run', 'method', 'test avg mAP', 'mAP@0.5', 'step', 'selected on']
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
  fmt = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
  lines = [fmt(header)] + [fmt(r) for r in rows]
  differing = sorted(set().union(*(run_dir.config_diff(configs[0], c) for c in configs[1:])))
  if differing:
    lines += ['', f'Config fields that differ ({len(differing)}):']
    flat = [run_dir._flatten(c) for c in configs]  # pylint: disable=protected-access
    for field in differing[:max_fields]:
      values = ' | '.join(json.dumps(f.get(field)) for f in flat)
      lines.append(f'  {field}: {values}')
    if len(differing) > max_fields:
      lines.append(f'  ... {len(differing) - max_fields} more (--all-fields)')
  elif len(runs) > 1:
    lines += ['', 'The runs have the same config.']
  return '\n'.join(lines)


def main(argv) -> int:
  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(__doc__)
    return 0
  unknown = [a for a in argv if a.startswith('-') and a != '--all-fields']
  runs = [pathlib.Path(a) for a in argv if not a.startswith('-')]
  if unknown or not runs:
    problem = f'unknown flag {unknown[0]}' if unknown else 'give at least one run folder'
    print(f'{PROG}: error: {problem} (usage: {PROG} RUN [RUN ...] [--all-fields])',
          file=sys.stderr)
    return 2
  try:
    print(table(runs, max_fields=10**9 if '--all-fields' in argv else 30))
  except ValueError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
