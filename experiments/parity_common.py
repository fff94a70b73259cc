"""Shared pieces of the parity scripts (parity_d2net.py, parity_sal.py).

The authors' code has NO license: it is never stored in the project. `open_source` reads it at run
time from what the user has, a checkout or a git directory (`git clone --mirror`, a bare
repository); `OfficialPort` copies its Python files into a temporary directory with the edits each
script lists, one by one with the reason (CPU instead of CUDA, widths that are literals in the
official code made the script's), and imports them from there. Nothing of it outlives the `with`
block.

The comparisons (`Report`) are shared with tests/test_parity_fixtures.py, which replays the stored
official numbers against the project without the official code: a quantity passes when
max |official - project| <= TOLERANCE * max |official| (scale-relative; the absolute difference
when the official array is all zero), detections when they are the same (class, start, end)
with scores within TOLERANCE relative.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import types
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

TOLERANCE = 1e-5
ROOT = _common.ROOT
load_module = _common.load_module


# ---------------------------------------------------------------------------------------------
# The official code, read at run time.


@dataclasses.dataclass
class Source:
  """The official repository at `path`: a working tree (files read from disk) or a git directory
  (files read from HEAD)."""
  path: str
  git_dir: bool
  commit: str
  dirty: bool

  def _git(self, *args, text=True):
    return subprocess.run(['git', '-C', self.path, *args], check=True, capture_output=True,
                          text=text).stdout

  def files(self) -> List[str]:
    """Every file of the repository (relative paths, '/'-separated)."""
    if self.git_dir:
      return [f for f in self._git('ls-tree', '-r', '--name-only', 'HEAD').split('\n') if f]
    root = pathlib.Path(self.path)
    return sorted(str(p.relative_to(root)).replace(os.sep, '/') for p in root.rglob('*')
                  if p.is_file() and '.git' not in p.relative_to(root).parts)

  def read(self, name: str) -> str:
    if self.git_dir:
      return self._git('show', f'HEAD:{name}')
    return (pathlib.Path(self.path) / name).read_text()

  def read_bytes(self, name: str) -> bytes:
    if self.git_dir:
      return self._git('show', f'HEAD:{name}', text=False)
    return (pathlib.Path(self.path) / name).read_bytes()

  def describe(self) -> str:
    return f'{self.commit}{" (modified working tree)" if self.dirty else ""}'


def open_source(path: str, expect: Sequence[str]) -> Source:
  """The official code at `path`; SystemExit (one line) when it lacks a file of `expect`."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise SystemExit(f'--official {path}: no such directory')

  def git(*args):
    return subprocess.run(['git', '-C', path, *args], capture_output=True, text=True)

  bare = git('rev-parse', '--is-bare-repository').stdout.strip() == 'true'
  has_files = all(os.path.isfile(os.path.join(path, f)) for f in expect)
  head = git('rev-parse', 'HEAD')
  commit = head.stdout.strip() if head.returncode == 0 else 'unknown (not a git repository)'
  dirty = (not bare and has_files and head.returncode == 0
           and bool(git('status', '--porcelain', '--untracked-files=no').stdout.strip()))
  source = Source(path, git_dir=bare or (not has_files and head.returncode == 0), commit=commit,
                  dirty=dirty)
  missing = sorted(set(expect) - set(source.files()))
  if missing:
    raise SystemExit(f'--official {path}: not the expected repository, missing {missing}')
  return source


@dataclasses.dataclass(frozen=True)
class Edit:
  """re.subn(pattern, replacement, text of `file`, flags=re.M) must replace exactly `count`."""
  file: str
  pattern: str
  replacement: str
  count: int
  why: str


def strip_cuda(text: str) -> Tuple[str, int]:
  return text.replace('.cuda()', ''), text.count('.cuda()')


class _Anything:
  """Stand-in for an optional module's names (tensorboard loggers, progress bars, ...)."""

  def __init__(self, *args, **kwargs):
    pass

  def __call__(self, *args, **kwargs):
    return None

  def __getattr__(self, name):
    return _Anything()


def _stub_module(name: str) -> types.ModuleType:
  module = types.ModuleType(name)

  def getattr_(attr):
    if attr.startswith('__'):
      raise AttributeError(attr)
    return _Anything

  module.__getattr__ = getattr_
  return module


class OfficialPort:
  """`with OfficialPort(source, edits, stubs) as port: port.imp('model')`.

  Writes the repository's .py files, CUDA calls stripped and `edits` applied (each must match as
  many times as it says, else SystemExit: the official code changed), into a temporary directory
  and puts it first on sys.path. `stubs`: modules replaced by empty stand-ins when they do not
  import (optional loggers). On exit every module imported from there is forgotten and the
  modules it shadowed are restored.
  """

  def __init__(self, source: Source, edits: Sequence[Edit] = (), stubs: Sequence[str] = ()):
    self.source, self.edits, self.stubs = source, tuple(edits), tuple(stubs)
    self.applied: List[str] = []

  def __enter__(self) -> 'OfficialPort':
    self._tmp = tempfile.TemporaryDirectory(prefix='parity_official_')
    self.root = self._tmp.name
    files = [f for f in self.source.files() if f.endswith('.py')]
    missing = {e.file for e in self.edits} - set(files)
    if missing:
      raise SystemExit(f'official code: files the port edits are missing: {sorted(missing)}')
    for name in files:
      text, n = strip_cuda(self.source.read(name))
      if n:
        self.applied.append(f'{name}: {n} x .cuda() removed (CPU)')
      for e in (e for e in self.edits if e.file == name):
        text, found = re.subn(e.pattern, e.replacement, text, flags=re.M)
        if found != e.count:
          raise SystemExit(f'official {name}: /{e.pattern}/ matched {found} times, expected '
                           f'{e.count} (the official code changed)')
        self.applied.append(f'{name}: {e.why}')
      path = os.path.join(self.root, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'w') as f:
        f.write(text)
    for folder, _, names in os.walk(self.root):  # Regular packages, never shadowed.
      if folder != self.root and '__init__.py' not in names:
        open(os.path.join(folder, '__init__.py'), 'w').close()
    top = {n.split('/')[0].removesuffix('.py') for n in files}
    self._shadowed = {n: m for n, m in sys.modules.items() if n.split('.')[0] in top}
    for name in self._shadowed:
      del sys.modules[name]
    self._stubbed = []
    for name in self.stubs:
      try:
        importlib.import_module(name)
      except ImportError:
        sys.modules[name] = _stub_module(name)
        self._stubbed.append(name)
    sys.path.insert(0, self.root)
    importlib.invalidate_caches()
    return self

  def imp(self, name: str):
    module = importlib.import_module(name)
    if not (getattr(module, '__file__', '') or '').startswith(self.root):
      raise SystemExit(f'official module {name} imported from {module.__file__}, not the port')
    return module

  def __exit__(self, *exc):
    sys.path.remove(self.root)
    for name, module in list(sys.modules.items()):
      if (getattr(module, '__file__', None) or '').startswith(self.root) or name in self._stubbed:
        del sys.modules[name]
    sys.modules.update(self._shadowed)
    self._tmp.cleanup()
    return False


# ---------------------------------------------------------------------------------------------
# Comparisons.


@dataclasses.dataclass
class Row:
  name: str
  max_abs: Optional[float]
  max_rel: Optional[float]
  ok: bool
  note: str = ''


class Report:
  """Rows of a parity table; `ok` when every row passes."""

  def __init__(self, tolerance: float = TOLERANCE):
    self.tolerance = tolerance
    self.rows: List[Row] = []

  def array(self, name: str, official, project, note: str = '',
            scale: Optional[float] = None) -> Row:
    """Scale-relative difference of two arrays (or scalars) of the same shape; `scale` (default
    max |official|) for a quantity float32 cannot resolve relative to itself (say why in
    `note`)."""
    a = np.asarray(official, np.float64)
    b = np.asarray(project, np.float64)
    if a.shape != b.shape:
      row = Row(name, None, None, False, f'shape {b.shape} != official {a.shape}')
    else:
      diff = float(np.max(np.abs(a - b))) if a.size else 0.0
      if scale is None:
        scale = float(np.max(np.abs(a))) if a.size else 0.0
      rel = diff / scale if scale > 0 else diff
      ok = bool(np.all(np.isfinite(b)) and rel <= self.tolerance)
      row = Row(name, diff, rel, ok, note)
    self.rows.append(row)
    return row

  def equal(self, name: str, official, project, note: str = '') -> Row:
    """Exact equality (pseudo-labels, selections, counts)."""
    a, b = np.asarray(official), np.asarray(project)
    same = a.shape == b.shape and bool(np.all(a == b))
    diff = None if a.shape != b.shape else float(np.max(np.abs(a.astype(np.float64)
                                                               - b.astype(np.float64)), initial=0))
    row = Row(name, diff, None, same, note or 'exact')
    self.rows.append(row)
    return row

  def detections(self, name: str, official: Sequence[Sequence[tuple]],
                 project: Sequence[Sequence[tuple]], note: str = '') -> Row:
    """Per video, lists of (class, start, end, score): identical when sorted lists have the same
    (class, start, end) (start / end compared to 1e-9 relative: seconds computed two ways) and
    scores within the tolerance (relative to max(1, |score|))."""
    same, count, worst = 0, 0, 0.0
    first_bad = ''
    for k, (a, b) in enumerate(zip(official, project)):
      a, b = sorted(a), sorted(b)
      count += len(a)
      ok = len(a) == len(b)
      for x, y in zip(a, b):
        key_ok = x[0] == y[0] and all(abs(u - v) <= 1e-9 * max(1.0, abs(u))
                                      for u, v in zip(x[1:3], y[1:3]))
        err = abs(x[3] - y[3]) / max(1.0, abs(x[3]))
        worst = max(worst, err) if key_ok else worst
        ok = ok and key_ok and err <= self.tolerance
      same += ok
      if not ok and not first_bad:
        first_bad = f'video {k}: {len(a)} official vs {len(b)} project detections'
    n = len(official)
    ok = same == n and len(project) == n
    text = f'{same}/{n} videos identical, {count} official detections'
    row = Row(name, None, worst, ok, '; '.join(t for t in (text, note, first_bad) if t))
    self.rows.append(row)
    return row

  @property
  def ok(self) -> bool:
    return all(r.ok for r in self.rows)

  def failures(self) -> List[str]:
    """One line per failing row."""
    fmt = lambda x: 'n/a' if x is None else f'{x:.2e}'
    return [f'{r.name}: max abs {fmt(r.max_abs)}, max rel {fmt(r.max_rel)}'
            + (f' ({r.note})' if r.note else '') for r in self.rows if not r.ok]

  def table(self) -> str:
    fmt = lambda x: '-' if x is None else f'{x:.1e}'
    return _common.markdown_table(
        ('quantity', 'max abs diff', 'max rel diff', f'pass (<= {self.tolerance:g} rel)', 'note'),
        [(r.name, fmt(r.max_abs), fmt(r.max_rel), 'yes' if r.ok else 'NO', r.note)
         for r in self.rows], align='lrrll')

  def summary(self, group: Callable[[str], str]) -> str:
    """One line per group of rows (`group(name)`, in first-seen order): how many pass, the largest
    relative difference, and the detection counts of localizer rows."""
    groups: Dict[str, List[Row]] = {}
    for r in self.rows:
      groups.setdefault(group(r.name), []).append(r)
    lines = []
    for name, rows in groups.items():
      rel = [r.max_rel for r in rows if r.max_rel is not None]
      notes = '; '.join(r.note.split(';')[0] for r in rows if 'identical' in r.note)
      lines.append((name, f'{sum(r.ok for r in rows)}/{len(rows)}',
                    f'{max(rel):.0e}' if rel else 'exact', notes))
    return _common.markdown_table(('checked', 'rows passing', 'max rel diff', 'detections'), lines,
                                  align='lrrl')


# ---------------------------------------------------------------------------------------------
# Fixtures: arrays in an .npz, metadata in a .json beside it.


def write_fixture(path: str, arrays: Dict[str, np.ndarray], meta: Dict) -> int:
  """Writes `path` (.npz, compressed) and `path` with .json instead of .npz; returns bytes."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **arrays)
  meta = dict(meta, keys={k: f'{np.asarray(v).dtype} {list(np.shape(v))}'
                          for k, v in sorted(arrays.items())})
  path.with_suffix('.json').write_text(json.dumps(meta, indent=1, sort_keys=True) + '\n')
  return path.stat().st_size


def read_fixture(path) -> Tuple[Dict[str, np.ndarray], Dict]:
  path = pathlib.Path(path)
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  return arrays, json.loads(path.with_suffix('.json').read_text())


def group(arrays: Dict[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
  """{rest: array} of the keys 'prefix/rest'."""
  p = prefix.rstrip('/') + '/'
  return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


@dataclasses.dataclass(frozen=True)
class Official:
  """An official repository a script reads: its command-line flag and the files it needs."""
  flag: str
  repository: str
  files: Tuple[str, ...]
  required: bool = True


def run_metadata(sources: Dict[str, Source], officials: Sequence[Official],
                 edits: Dict[str, Sequence[str]], torch_version: str) -> Dict:
  """What produced a fixture: each official repository with its commit and the edits of its port,
  the command (checkout paths replaced by a placeholder), date and project commit."""
  meta = _common.run_metadata()
  argv = sys.argv[1:]
  for o in officials:  # No path of this machine in a stored file.
    given = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == o.flag]
    if o.flag in sources:
      given.append(sources[o.flag].path)
    for path in set(given):
      meta['command'] = meta['command'].replace(path, f'<checkout of {o.repository}>')
  official = [{'repository': o.repository, 'commit': sources[o.flag].commit,
               'modified_working_tree': sources[o.flag].dirty,
               'port_edits': list(edits.get(o.flag, ()))}
              for o in officials if o.flag in sources]
  return {'official': official, 'torch': torch_version, 'command': meta['command'],
          'date': meta['date'], 'project_commit': meta['git_commit'], 'tolerance': TOLERANCE}


def pack_detections(prefix: str, detections: Sequence[Sequence[tuple]]) -> Dict[str, np.ndarray]:
  """Per-video lists of (class, start, end, score) as flat arrays 'prefix/...'."""
  flat = [(v, d) for v, video in enumerate(detections) for d in video]
  return {f'{prefix}/video': np.array([v for v, _ in flat], np.int32),
          f'{prefix}/class': np.array([d[0] for _, d in flat], np.int32),
          f'{prefix}/bounds': np.array([d[1:3] for _, d in flat], np.float64).reshape(-1, 2),
          f'{prefix}/score': np.array([d[3] for _, d in flat], np.float64),
          f'{prefix}/count': np.int64(len(detections))}


def unpack_detections(arrays: Dict[str, np.ndarray], prefix: str) -> List[List[tuple]]:
  """`pack_detections` inverted; start / end come back as float."""
  video = arrays[f'{prefix}/video']
  rows = list(zip(arrays[f'{prefix}/class'], arrays[f'{prefix}/bounds'], arrays[f'{prefix}/score']))
  out = [[] for _ in range(int(arrays[f'{prefix}/count']))]
  for v, (c, (start, end), score) in zip(video, rows):
    out[v].append((int(c), float(start), float(end), float(score)))
  return out


# ---------------------------------------------------------------------------------------------
# Exact compact storage of localizer inputs: values on a dyadic grid are exact in float32.


def to_grid(x: np.ndarray, step_log2: int, dtype) -> np.ndarray:
  """Integers q with x ~= q * 2**-step_log2 (stored as `dtype`)."""
  info = np.iinfo(dtype)
  q = np.round(np.asarray(x, np.float64) * 2.0 ** step_log2)
  return np.clip(q, info.min, info.max).astype(dtype)


def from_grid(q: np.ndarray, step_log2: int) -> np.ndarray:
  """float32 q * 2**-step_log2 (exact)."""
  return (q.astype(np.float64) * 2.0 ** -step_log2).astype(np.float32)


def seeded_rng(*key) -> np.random.Generator:
  """A generator seeded by `key` (strings by their CRC-32: stable across processes)."""
  return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key])


# ---------------------------------------------------------------------------------------------
# The scripts' command line.


def main(title: str, officials: Sequence[Official], run_official: Callable, compare: Callable,
         group: Callable[[str], str], quick_help: str) -> int:
  """`--official PATH [...] [--write-fixture FILE] [--markdown FILE] [--quick]`: runs the official
  code (run_official({flag: Source}, full) -> (arrays, {flag: applied edits},
  add_printed_rows(report) or None)), compares the project with `compare(arrays, report)`, prints a
  summary (rows grouped by `group(name)`), the table and the edits, writes the fixture; returns the
  exit status (0: every row passes)."""
  parser = argparse.ArgumentParser(description=title)
  for o in officials:
    parser.add_argument(o.flag, required=o.required,
                        help=f'a checkout or git directory of {o.repository} (read, never stored)'
                        + ('' if o.required else '; its checks are skipped without it'))
  parser.add_argument('--write-fixture', default=None,
                      help='store the inputs and official outputs here (.npz, and a .json beside)')
  parser.add_argument('--markdown', default=None, help='also write the output here (Markdown)')
  parser.add_argument('--quick', action='store_true', help=quick_help)
  opts = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  sources = {o.flag: open_source(getattr(opts, o.flag.lstrip('-').replace('-', '_')), o.files)
             for o in officials if getattr(opts, o.flag.lstrip('-').replace('-', '_'))}
  t0 = time.perf_counter()
  arrays, applied, add_printed_rows = run_official(sources, not opts.quick)
  report = compare(arrays, Report())
  if add_printed_rows is not None:
    add_printed_rows(report)
  meta = run_metadata(sources, officials, applied, torch.__version__)
  verdict = (f'{"PASS" if report.ok else "FAIL"}: {sum(r.ok for r in report.rows)}/'
             f'{len(report.rows)} quantities within {TOLERANCE:g} relative')
  lines = [f'# {title}', '']
  lines += [f'- official: {m["repository"]} @ {m["commit"]}'
            + (' (modified working tree)' if m['modified_working_tree'] else '')
            for m in meta['official']]
  lines += [f'- project: {meta["project_commit"]}; torch {torch.__version__} (CPU), '
            f'{_common.device_description()}', f'- command: `{meta["command"]}`',
            f'- date: {meta["date"]}; {time.perf_counter() - t0:.0f} s', f'- {verdict}', '',
            report.summary(group), '', '<details><summary>Every row</summary>', '',
            report.table(), '</details>', '']
  for m in meta['official']:
    lines.append(f'The official code ({m["repository"]}) as run: CUDA calls removed; '
                 + '; '.join(e for e in m['port_edits'] if '.cuda()' not in e) + '.')
  text = '\n'.join(lines) + '\n'
  print(text)
  if opts.markdown:
    pathlib.Path(opts.markdown).write_text(text)
  if opts.write_fixture:
    size = write_fixture(opts.write_fixture, arrays, meta)
    print(f'wrote {opts.write_fixture} ({size / 1024:.0f} kB, {len(arrays)} arrays) + .json')
  print(verdict)
  return 0 if report.ok else 1
