"""experiments/reproduce.py: every measured table of README.md and docs/ is registered, marked,
well formed and names the command and commit that produced it; rewriting one changes nothing
outside its markers; and one cheap table runs end to end into a copy of the docs."""

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
  spec = importlib.util.spec_from_file_location('reproduce_under_test',
                                                ROOT / 'experiments' / 'reproduce.py')
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Its dataclass looks its module up.
  spec.loader.exec_module(module)
  return module


reproduce = _load()


def _blocks(path):
  text = path.read_text()
  return {n: text[s:e] for n, (s, e) in reproduce.find_blocks(text, str(path)).items()}


def test_every_marked_table_is_registered_and_well_formed():
  assert reproduce.check(ROOT) == []
  marked = set()
  for path in reproduce.markdown_files(ROOT):
    marked |= set(_blocks(path))
  assert marked == set(reproduce.REGISTRY)


def test_readme_tables_name_one_commit():
  """The acceptance: README's rerun tables carry one commit. A README table that keeps an older
  provenance (not rerun here yet) must be registered as kept, and only these are."""
  blocks = _blocks(ROOT / 'README.md')
  produced = {n: reproduce.block_commit(c) for n, c in blocks.items()
              if not reproduce.REGISTRY[n].kept}
  assert produced and None not in produced.values(), produced
  assert len(set(produced.values())) == 1, produced
  assert not [n for n in blocks if reproduce.REGISTRY[n].kept]  # Every README table is rerun.
  assert {'readme_demo', 'readme_methods', 'readme_extract_speed'} <= set(produced)


def test_readme_methods_row_summarizes_the_seeds():
  def demo_row(seed, avg, at_05, wall):
    row = ['CO2-Net', str(seed)] + ['0.00'] * 8 + ['1000', f'{wall} s']
    row[reproduce.DEMO_COLUMNS.index('0.5')] = at_05
    row[reproduce.DEMO_COLUMNS.index('avg 0.1:0.7')] = avg
    return row
  row = reproduce.summarize_demo_rows('CO2-Net', 'co2net', [
      demo_row(1, '9.31', '4.00', 60), demo_row(2, '9.18', '5.00', 70),
      demo_row(3, '9.07', '6.00', 80)])
  assert row == ['CO2-Net', '`configs/synthetic.py:co2net`', '1, 2, 3', '9.31 / 9.18 / 9.07',
                 '9.19 ± 0.12', '5.00 ± 1.00', '70 s']
  assert len(row) == len(reproduce.REGISTRY['readme_methods'].columns)
  assert reproduce.summarize_demo_rows('D2-Net', '', [demo_row(1, '11.53', '6.86', 44)])[1:5] == [
      '`configs/synthetic.py`', '1', '11.53', '11.53']


def test_produced_tables_start_with_their_reproduce_command():
  for table in reproduce.TABLES:
    content = _blocks(ROOT / table.path)[table.name]
    if not table.kept:
      assert content.startswith(
          f'Produced by `python experiments/reproduce.py --only {table.name}`'), table.name


def test_method_comparisons_default_to_three_seeds():
  for table in reproduce.TABLES:
    if table.name.startswith(('compare_', 'readme_methods', 'ablation_', 'dmi_test',
                              'dfe_ablation')):
      assert len(table.seeds) >= 3, table.name


DOC = ('# Title\n\ntext  \n<!-- reproduce:demo -->\nProduced by `old` ..., commit 1234567.\n\n'
       '| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /reproduce:demo -->\ntail\twith tab\n\n'
       '<!-- reproduce:other -->\nx\n<!-- /reproduce:other -->\nlast line without newline')


def test_replace_block_changes_only_the_text_between_its_markers():
  new = reproduce.replace_block(DOC, 'demo', 'Produced by `new`, commit abcdef0.\n\n| a |\n')
  start, end = reproduce.find_blocks(DOC)['demo']
  new_start, new_end = reproduce.find_blocks(new)['demo']
  assert new[:new_start] == DOC[:start] and new[new_end:] == DOC[end:]
  assert new[new_start:new_end] == 'Produced by `new`, commit abcdef0.\n\n| a |\n'
  assert reproduce.replace_block(new, 'demo', DOC[start:end]) == DOC


@pytest.mark.parametrize('text, message', [
    ('<!-- reproduce:a -->\n', 'never closed'),
    ('<!-- reproduce:a -->\n<!-- /reproduce:b -->\n', 'closes a'),
    ('<!-- reproduce:a -->\n<!-- reproduce:b -->\n', 'opens inside'),
    ('<!-- reproduce:a -->\n<!-- /reproduce:a -->\n<!-- reproduce:a -->\n<!-- /reproduce:a -->\n',
     'twice'),
])
def test_bad_markers_are_refused(text, message):
  with pytest.raises(ValueError, match=message):
    reproduce.find_blocks(text)
  with pytest.raises(ValueError):
    reproduce.replace_block('no markers\n', 'a', 'x')


def test_check_block_finds_a_wrong_table():
  table = reproduce.REGISTRY['demo']
  good = reproduce.render_block(table, [['D2-Net (demo)', '1'] + ['1.00'] * 8 + ['1000', '9 s']],
                                'abcdef0', '2026-12-05', 'cpu', 'seeds 1')
  assert reproduce.check_block(table, good) == []
  assert reproduce.block_commit(good) == 'abcdef0'
  assert any('provenance' in p for p in reproduce.check_block(table, good.split('\n', 1)[1]))
  assert any('header' in p for p in reproduce.check_block(table, good.replace('wall time', 'x')))
  assert any('cells' in p for p in reproduce.check_block(table, good.replace(' 9 s |', '')))


def _docs_copy(tmp_path):
  tmp_path.mkdir(parents=True, exist_ok=True)
  shutil.copy(ROOT / 'README.md', tmp_path / 'README.md')
  shutil.copytree(ROOT / 'docs', tmp_path / 'docs')
  return tmp_path


def test_unregistered_marker_is_reported(tmp_path):
  root = _docs_copy(tmp_path)
  with open(root / 'docs' / 'results.md', 'a') as f:
    f.write('\n<!-- reproduce:nobody -->\nx\n<!-- /reproduce:nobody -->\n')
  assert any('nobody is not registered' in p for p in reproduce.check(root))


def test_dirty_tree_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(reproduce, 'is_dirty', lambda root=None: True)
  with pytest.raises(SystemExit, match='--allow-dirty'):
    reproduce.main(['--only', 'demo', '--root', str(tmp_path)])
  with pytest.raises(SystemExit, match='no producer'):
    reproduce.main(['--only', 'compare_thumos14_like', '--root', str(tmp_path)])


def test_demo_smoke_end_to_end_into_a_copy(tmp_path):
  """`--only demo --smoke` trains the smoke demo through the CLI and rewrites the copy's block;
  every other byte of the copy stays; a second call reuses the finished run."""
  root = _docs_copy(tmp_path / 'docs_copy')
  before = (root / 'docs' / 'results.md').read_text()
  args = ['--only', 'demo', '--smoke', '--allow-dirty', '--root', str(root),
          '--out-dir', str(tmp_path / 'runs')]
  assert reproduce.main(args) == 0
  after = (root / 'docs' / 'results.md').read_text()
  (s0, e0), (s1, e1) = (reproduce.find_blocks(t)['demo'] for t in (before, after))
  assert after[:s1] == before[:s0] and after[e1:] == before[e0:]
  block = after[s1:e1]
  head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, check=True,
                        capture_output=True, text=True).stdout.strip()
  assert reproduce.block_commit(block).split('+')[0] == head
  assert reproduce.check(root) == []
  stamp = (tmp_path / 'runs' / 'demo_smoke_seed1' / 'results.json').stat().st_mtime_ns
  assert reproduce.main(args) == 0
  assert (tmp_path / 'runs' / 'demo_smoke_seed1' / 'results.json').stat().st_mtime_ns == stamp
