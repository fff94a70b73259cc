"""docs/d2net.md's paper-vs-official table against the presets, so that the two cannot drift apart.

(The table was in README.md before the README became a front door; it moved with its section.)

Each row names a config field and the values of the default, `:official_protocol` and `:paper`
presets of its dataset (THUMOS14, ActivityNet1.2 or both). The official / paper columns must
differ from the default only where the presets do, and every config field the section names in
backticks must exist.
"""

import ast
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRESETS = {'THUMOS14': ('thumos14',), 'ActivityNet1.2': ('activitynet12',),
           'both': ('thumos14', 'activitynet12')}


def _load(name):
  spec = importlib.util.spec_from_file_location(f'readme_preset_{name}',
                                                ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _section() -> str:
  text = (ROOT / 'docs' / 'd2net.md').read_text()
  start = text.index('\n## Paper vs official code\n')
  end = text.find('\n## ', start + 1)
  return text[start:end if end >= 0 else len(text)]


def _rows():
  lines = [l for l in _section().splitlines() if l.startswith('| ')]
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  assert header == ['what', 'dataset', 'official code', 'paper', 'config field', 'default',
                    'official', 'paper']
  rows = []
  for line in lines[1:]:
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if set(cells[0]) <= {'-', ' '}:
      continue
    assert len(cells) == 8, line
    field = cells[4].strip('`')
    values = [ast.literal_eval(c.strip('`')) for c in cells[5:]]
    rows.append((cells[0], cells[1], field, values))
  return rows


def _get(config, dotted):
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node


def test_table_rows_match_the_presets():
  rows = _rows()
  assert len(rows) >= 30
  configs = {}
  for name in ('thumos14', 'activitynet12'):
    module = _load(name)
    configs[name] = [module.get_config(), module.get_config('official_protocol'),
                     module.get_config('paper')]
  fields = set()
  for what, dataset, field, values in rows:
    fields.add(field)
    for name in PRESETS[dataset]:
      for preset, expected in zip(('default', 'official_protocol', 'paper'), values):
        got = _get(configs[name][('default', 'official_protocol', 'paper').index(preset)], field)
        if isinstance(got, (tuple, list)):
          got = tuple(got)
        assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected, (
            f'docs/d2net.md row {what!r} ({dataset}): configs/{name}.py:{preset} has '
            f'{field}={got!r}, the table says {expected!r}')
  # Every switch the section or the presets name exists, and each PAPER / OFFICIAL_PROTOCOL
  # field that changes a value is a row of the table.
  base = configs['thumos14'][0]
  for name in set(re.findall(r'`((?:model|loss|train|data|localize|evaluation)\.[a-z_0-9]+)`',
                             _section())):
    _get(base, name)  # KeyError / AttributeError if the page names a field that does not exist.
  for name in ('thumos14', 'activitynet12'):
    module = _load(name)
    default, official, paper = configs[name]
    for listed, variant in ((module.PAPER, paper), (module.OFFICIAL_PROTOCOL, official)):
      for field in listed:
        if _get(variant, field) != _get(default, field) and field not in (
            'train.eval_every', 'train.checkpoint_every', 'train.selection_iou',
            'evaluation.official_gt', 'evaluation.use_ambiguous',
            'evaluation.zero_ap_after_empty_class'):
          assert field in fields, (
              f'configs/{name}.py changes {field}: not in the table of docs/d2net.md')
