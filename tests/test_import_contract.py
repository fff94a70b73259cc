"""The package's structure, checked: the one-way layers of setup.cfg (import-linter), no import
cycle between modules, no function-local import but of an optional dependency, small modules."""

import ast
import pathlib
import sys

import pytest
from importlinter import cli as importlinter_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'd2net_jax'
# Function-local imports allowed: optional dependencies only (each line says so).
OPTIONAL = ('tensorboardX', 'av', 'cv2')
MAX_LINES = 400


def _modules():
  """{dotted name: (path, parsed tree)} of every module of the package."""
  found = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(ROOT).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    found[name] = (path, ast.parse(path.read_text(), filename=str(path)))
  return found


def _imported(name, tree, modules):
  """The package's modules `name` imports (at any depth of its code)."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      targets = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
    else:
      continue
    for target in targets:
      while target and target not in modules:
        target = target.rpartition('.')[0]
      if target and target != name and target.startswith('d2net_jax'):
        out.add(target)
  return out


def test_layers_contract_holds():
  """setup.cfg's contracts: layers commands > training > ... > utils, nothing imports commands."""
  code = importlinter_cli.lint_imports(config_filename=str(ROOT / 'setup.cfg'),
                                       no_cache=True)
  assert code == importlinter_cli.EXIT_STATUS_SUCCESS


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
  """The same contract fails on a copy of the package whose data layer imports methods."""
  copy = tmp_path / 'd2net_jax'
  for path in PACKAGE.rglob('*.py'):
    target = copy / path.relative_to(PACKAGE)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(path.read_text())
  sampling = copy / 'data' / 'sampling.py'
  sampling.write_text(sampling.read_text() + '\nfrom d2net_jax import methods  # noqa\n')
  monkeypatch.chdir(tmp_path)  # import-linter puts the working folder first on sys.path.
  monkeypatch.syspath_prepend(str(tmp_path))
  for name in [m for m in sys.modules if m.startswith('d2net_jax')]:
    monkeypatch.delitem(sys.modules, name)
  code = importlinter_cli.lint_imports(config_filename=str(ROOT / 'setup.cfg'), no_cache=True)
  assert code != importlinter_cli.EXIT_STATUS_SUCCESS


def test_no_import_cycle_between_modules():
  modules = _modules()
  graph = {name: _imported(name, tree, modules) for name, (_, tree) in modules.items()}
  # A package's __init__ importing its own modules is no cycle with them (they import siblings).
  for name in graph:
    graph[name] = {t for t in graph[name] if not name.startswith(t + '.')}
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = 'open'
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 'done'

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])
  assert not cycles, '\n'.join(' -> '.join(c) for c in cycles)


def test_function_local_imports_are_optional_dependencies_only():
  bad = []
  for name, (path, tree) in _modules().items():
    for func in ast.walk(tree):
      if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(func):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
          what = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
          if (what or '').split('.')[0] not in OPTIONAL:
            bad.append(f'{path.relative_to(ROOT)}:{node.lineno} imports {what}')
  assert not bad, '\n'.join(bad)


@pytest.mark.parametrize('folder', ['d2net_jax'])
def test_modules_fit_one_sitting(folder):
  long = [f'{p.relative_to(ROOT)}: {n} lines' for p in sorted((ROOT / folder).rglob('*.py'))
          if (n := len(p.read_text().splitlines())) > MAX_LINES]
  assert not long, '\n'.join(long)
