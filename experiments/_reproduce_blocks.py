"""Marked Markdown blocks of experiments/reproduce.py: finding, replacing and checking them.

A block is the text between the lines `<!-- reproduce:NAME -->` and `<!-- /reproduce:NAME -->`;
it holds one provenance line ("Produced by `command` ... commit <sha> ..." or "Kept as produced
by `command` ... commit <sha> ...") and one Markdown table. Plain text functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

MARKER = re.compile(r'^<!-- (/?)reproduce:([a-z0-9_]+) -->$', re.M)
PROVENANCE = re.compile(r'^(Produced by|Kept as produced by) `([^`]+)`.*\bcommits? ([0-9a-f]{7,40}'
                        r'(?:\+dirty)?\b|not recorded)', re.M)


def find_blocks(text: str, source: str = '') -> Dict[str, Tuple[int, int]]:
  """NAME -> (start, end) of the text between `<!-- reproduce:NAME -->\n` and the line
  `<!-- /reproduce:NAME -->`. Unbalanced, nested or repeated markers raise ValueError."""
  blocks, open_name, open_end = {}, None, 0
  for m in MARKER.finditer(text):
    closing, name = m.group(1) == '/', m.group(2)
    if not closing:
      if open_name is not None:
        raise ValueError(f'{source}: reproduce:{name} opens inside reproduce:{open_name}')
      if name in blocks:
        raise ValueError(f'{source}: reproduce:{name} appears twice')
      open_name, open_end = name, m.end() + 1
    else:
      if open_name != name:
        raise ValueError(f'{source}: /reproduce:{name} closes {open_name or "nothing"}')
      blocks[name] = (open_end, m.start())
      open_name = None
  if open_name is not None:
    raise ValueError(f'{source}: reproduce:{open_name} is never closed')
  return blocks


def replace_block(text: str, name: str, content: str, source: str = '') -> str:
  """`text` with the block NAME's content replaced; every byte outside it unchanged."""
  blocks = find_blocks(text, source)
  if name not in blocks:
    raise ValueError(f'{source}: no <!-- reproduce:{name} --> block')
  start, end = blocks[name]
  return text[:start] + content.rstrip('\n') + '\n' + text[end:]


def split_row(line: str) -> List[str]:
  return [c.strip() for c in line.strip().strip('|').split('|')]


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)


def markdown_tables(text: str) -> List[List[List[str]]]:
  """Every Markdown table in `text` as rows of cells (the header first, separators left out)."""
  tables, current = [], []
  for line in text.splitlines() + ['']:
    if line.startswith('|'):
      cells = split_row(line)
      if not all(set(c) <= set('-: ') and c for c in cells):
        current.append(cells)
    elif current:
      tables.append(current)
      current = []
  return tables


def check_block(table, content: str) -> List[str]:
  """Problems of one block: its provenance line and its table's header, separator and rows."""
  where = f'{table.path} reproduce:{table.name}'
  problems = []
  if not PROVENANCE.search(content):
    problems.append(f'{where}: no provenance line ("Produced by `command` ... commit <sha>")')
  lines = [l for l in content.splitlines() if l.startswith('|')]
  if len(lines) < 3:
    return problems + [f'{where}: no table with a header, a separator and rows']
  if tuple(split_row(lines[0])) != table.columns:
    problems.append(f'{where}: header {split_row(lines[0])} != registered {list(table.columns)}')
  if not all(set(c) <= set('-: ') and c for c in split_row(lines[1])):
    problems.append(f'{where}: second line is not a separator')
  for line in lines[1:]:
    if len(split_row(line)) != len(table.columns):
      problems.append(f'{where}: row has {len(split_row(line))} cells, not '
                      f'{len(table.columns)}: {line[:60]}')
  return problems


def block_commit(content: str) -> Optional[str]:
  m = PROVENANCE.search(content)
  return m.group(3) if m else None
