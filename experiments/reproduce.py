r"""Reruns the figures that README.md and docs/*.md quote and rewrites their tables in place.

  python experiments/reproduce.py --list                 # every registered table, its status
  python experiments/reproduce.py --check                # markers, table structure, provenance
  python experiments/reproduce.py --only demo,readme_demo --out-dir runs/reproduce

Each table that quotes measured numbers sits between `<!-- reproduce:NAME -->` and
`<!-- /reproduce:NAME -->` in its Markdown file, with one provenance line inside the block: the
command that produced it, the commit, the date and the machine. `TABLES` below registers every
such block: the file, the columns, the experiment that produces it (an existing command or
script of experiments/), its seeds and its cost on 2 CPU cores. Running a table rewrites only
the text between its markers; every other byte of the file stays as it was. Tables are written
only from a clean working tree (the commit must describe the code that produced the numbers);
`--allow-dirty` writes the commit as `<sha>+dirty`.

A table registered with `kept` has not been rerun by this script yet: its block carries the
provenance of the run that did produce it (read from the docs), `--list` gives the command and
its cost, and `--only NAME` refuses it in one line until it has a producer (a kept table with a
producer, e.g. a speed table waiting for idle cores, runs only when named). Training runs go to
`--out-dir` (the demo's to `demo_seedS`) and are reused on the next call when their config is
the same field by field and the library code (d2net_jax/, configs/, setup.cfg, pyproject.toml)
is unchanged since the commit they were trained at; the provenance then names that commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position
from _reproduce_blocks import (  # noqa: E402,F401  pylint: disable=wrong-import-position
    block_commit,  # For tests and callers: the commit a block names.
    check_block, find_blocks, markdown_tables, render_table, replace_block)

ROOT = _common.ROOT
CODE_PATHS = ('d2net_jax', 'configs', 'setup.cfg', 'pyproject.toml')
DEMO_TIOUS = ('0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7')
DEMO_COLUMNS = ('method', 'seed', 'mAP@0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7',
                'avg 0.1:0.7', 'selected step', 'wall time')
README_METHOD_COLUMNS = ('method', 'config', 'seeds', 'avg 0.1:0.7 per seed', 'avg 0.1:0.7',
                         'mAP@0.5', 'wall time / run')


@dataclasses.dataclass(frozen=True)
class Table:
  """One marked table. produce(args) -> (rows, runs' commit, note); None while `kept`."""
  name: str
  path: str  # Relative to the repository root.
  columns: Tuple[str, ...]
  command: str  # The experiment behind the numbers.
  seeds: Tuple[int, ...]
  cost: str  # On 2 CPU cores.
  produce: Optional[Callable[..., Tuple[List[List[str]], str, str]]] = None
  kept: str = ''  # Why it was not rerun here; its block keeps its old provenance. A kept table
  # with a producer runs only when named by --only.


# ---------------------------------------------------------------------------------------------
# Git and the machine.


def _git(*args: str, root: pathlib.Path = ROOT) -> str:
  return subprocess.run(['git', *args], cwd=root, check=True, capture_output=True,
                        text=True).stdout.strip()


def head_commit(root: pathlib.Path = ROOT) -> str:
  return _git('rev-parse', '--short', 'HEAD', root=root)


def is_dirty(root: pathlib.Path = ROOT) -> bool:
  """Tracked files modified (runs/ and other ignored outputs do not count)."""
  return bool(_git('status', '--porcelain', '--untracked-files=no', root=root))


def same_code(commit: str, root: pathlib.Path = ROOT) -> bool:
  """Whether the library code at `commit` equals the working tree's (CODE_PATHS)."""
  try:
    subprocess.run(['git', 'diff', '--quiet', commit.split('+')[0], '--', *CODE_PATHS], cwd=root,
                   check=True, capture_output=True)
  except subprocess.CalledProcessError:
    return False
  return not commit.endswith('+dirty')


def machine_line() -> str:
  """CPU model and cores, the JAX backend and version."""
  import jax  # pylint: disable=import-outside-toplevel  (heavy: only when a table is run)
  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  devices = jax.devices()
  return (f'{cpu}, {cores} cores; {len(devices)} x {devices[0].device_kind} '
          f'({jax.default_backend()}), JAX {jax.__version__}')


# ---------------------------------------------------------------------------------------------
# Producers.


def _demo_rows(args, arg: str, label: str) -> Tuple[List[List[str]], str, str]:
  """`d2net-jax train --config configs/synthetic.py:<arg> --config.train.seed=S` per seed (S = 1
  is `bash dev.sh demo`), in the CLI as a user runs it; a finished run of the same config at the
  same library code in `--out-dir` is read back instead."""
  synthetic = _common.load_module(ROOT / 'configs' / 'synthetic.py', 'reproduce_synthetic')
  rows, commits = [], set()
  for seed in args.seeds or (1,):
    config = synthetic.get_config(arg)
    config.train.seed = seed
    workdir = pathlib.Path(args.out_dir).resolve() / f'demo{"_" + arg if arg else ""}_seed{seed}'
    summary = _finished(config, workdir)
    if summary is None:
      cmd = [sys.executable, '-m', 'd2net_jax.commands.cli', 'train', '--config',
             f'configs/synthetic.py{":" + arg if arg else ""}', '--workdir', str(workdir),
             f'--config.train.seed={seed}']
      if workdir.exists():
        shutil.rmtree(workdir)  # Another config or older code: `train` would resume it.
      workdir.parent.mkdir(parents=True, exist_ok=True)
      with open(workdir.with_suffix('.log'), 'w') as log:
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
      summary = _finished(config, workdir, check_code=False)
      if summary is None:
        raise SystemExit(f'reproduce.py: {workdir} did not finish; see {workdir}.log')
    commits.add(summary['commit'])
    test = summary['test']
    by_tiou = {f'{t:g}': 100 * m for t, m in zip(test['tiou'], test['mAP'])}
    rows.append([label, str(seed)] + [f'{by_tiou[t]:.2f}' for t in DEMO_TIOUS]
                + [f'{100 * test["average_mAP"]:.2f}',
                   str(summary['selection']['step']), f'{summary["seconds"]:.0f} s'])
  seeds = ', '.join(map(str, args.seeds or (1,)))
  return rows, ', '.join(sorted(commits)), f'seed {seeds}; S = 1 is `bash dev.sh demo`'


def _finished(config, workdir: pathlib.Path, check_code: bool = True):
  """A finished run of `config` in `workdir` (check_code: trained at the current library code),
  or None. Its summary gets 'commit', the short hash the run recorded."""
  summary = _common.finished_summary(config, workdir)
  if summary is None:
    return None
  commit = json.loads((workdir / 'results.json').read_text()).get('commit') or 'unknown'
  if check_code and not same_code(commit):
    return None
  summary['commit'] = commit.split('+')[0][:7] + ('+dirty' if commit.endswith('+dirty') else '')
  return summary


def script_producer(*argv: str, note: str = 'no seeds: nothing is trained', runs: bool = False
                    ) -> Callable[..., Tuple[List[List[str]], str, str]]:
  """A producer that runs `python <argv>` (a script of experiments/ that prints its table) and
  takes the printed table whose header is the registered columns; its commit is HEAD's. runs:
  the script trains the table's seeds (`--seeds`) into `--out <out-dir>/<table name>`, afresh on
  every call."""

  def produce(args, table: Table):
    out = pathlib.Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = (['--out', str(out / table.name), '--seeds', ','.join(map(str, args.seeds))]
             if runs else [])
    run = subprocess.run([sys.executable, *argv, *extra], cwd=ROOT, capture_output=True,
                         text=True)
    (out / f'{table.name}.log').write_text(run.stdout + run.stderr)
    if run.returncode:
      raise SystemExit(f'reproduce.py: {" ".join(argv)} failed; see {out / table.name}.log')
    found = [t for t in markdown_tables(run.stdout) if tuple(t[0]) == table.columns]
    if len(found) != 1:
      raise SystemExit(f'reproduce.py: {" ".join(argv)} printed {len(found)} tables with the '
                       f'columns of {table.name}; see {out / table.name}.log')
    return found[0][1:], head_commit(), note

  return produce


def produce_demo(args, table: Table):  # pylint: disable=unused-argument
  return _demo_rows(args, 'smoke' if args.smoke else '', 'D2-Net (demo)')


# (configs/synthetic.py argument, label) of every method in README's comparison; '' is the demo.
README_METHODS = (('', 'D2-Net'), ('co2net', 'CO2-Net'), ('sal', 'SAL'), ('mil', '`mil`'),
                  ('dfe', 'DFE over CO2-Net (its default base)'))


def summarize_demo_rows(label: str, arg: str, rows: List[List[str]]) -> List[str]:
  """One README row from a method's per-seed demo rows (DEMO_COLUMNS): its config, the seeds,
  each seed's avg 0.1:0.7, their mean ± std (sample std), mAP@0.5's and the mean wall time."""
  avg = [float(r[DEMO_COLUMNS.index('avg 0.1:0.7')]) for r in rows]
  at_05 = [float(r[DEMO_COLUMNS.index('0.5')]) for r in rows]
  wall = [float(r[DEMO_COLUMNS.index('wall time')].rstrip(' s')) for r in rows]
  return [label, f'`configs/synthetic.py{":" + arg if arg else ""}`',
          ', '.join(r[DEMO_COLUMNS.index('seed')] for r in rows),
          ' / '.join(f'{a:.2f}' for a in avg),
          _common.pm(avg, digits=2), _common.pm(at_05, digits=2),
          f'{sum(wall) / len(wall):.0f} s']


def produce_readme_methods(args, table: Table):  # pylint: disable=unused-argument
  """Every method's demo-size run (`configs/synthetic.py:METHOD`, its own synthetic recipe) at
  each seed, one row a method; D2-Net's seed-1 run is the demo's (readme_demo reuses it)."""
  rows, commits = [], set()
  for arg, label in README_METHODS:
    run_arg = ','.join(filter(None, (arg, 'smoke' if args.smoke else '')))
    seed_rows, commit, _ = _demo_rows(args, run_arg, label)
    commits.add(commit)
    rows.append(summarize_demo_rows(label, arg, seed_rows))
  seeds = ', '.join(map(str, args.seeds))
  return rows, ', '.join(sorted(commits)), f'seeds {seeds} per method; mean ± std over seeds'


# ---------------------------------------------------------------------------------------------
# The registry.

_COMPARE = 'python experiments/compare_methods.py --mode quick --seeds 3 --reuse'
_COMPARE_COST = ('~4 h on 2 shared cores for 3 seeds x 7 variants x 2 datasets (2 seeds trained '
                 '154 min in all, 73% of it in the DFE runs)')
_DFE_CO2NET = 'python experiments/dfe_ablation.py --mode quick --seeds 3 --reuse'
_COMPARE_CO2NET = ('python experiments/compare_methods.py --mode quick --seeds 3 --methods '
                   'co2net,dfe,mil --bases co2net --datasets thumos14_like --reuse')
_COMPARE_THUMOS_COLUMNS = ('method', 'seeds', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4',
                           'mAP@0.5', 'mAP@0.6', 'mAP@0.7', 'avg 0.1:0.5', 'avg 0.1:0.7',
                           'train s / run', 'steps/s')
_BY_THE_SCRIPT = ('produced by the script itself at the commit it names: the '
                  'block keeps that run\'s provenance; --only NAME reruns it')
_BENCH_COLUMNS = ('method', 'shape', 'dtype', 'steps/s', 'videos/s', 'compile s', 'peak GB',
                  'GFLOP/step', 'GFLOP/s', 'of matmul')
_ABLATION_COLUMNS = ('variant', 'seeds', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4', 'mAP@0.5',
                     'mAP@0.6', 'mAP@0.7', 'avg 0.1:0.5', 'avg 0.1:0.7', 'F1@0.5')
_SPEED = ('speed: to be rerun on idle cores (at load ~16 on 2026-12-05 the steps/s were 2.5-4x '
          'below the table and the prose around it)')
_KEPT = 'not rerun here yet: its block keeps the provenance of the run that produced it'
_SAL_SWEEP = ('python experiments/sal_sweep.py --mode quick --data-dir runs/sal_sweep/data '
              '--narrow 3 --reuse')
_SAL_SWEEP_COST = ('~70 min of training on 2 shared cores (load ~12): 8000-step runs 9-15 min, '
                   '1000-step runs 1.5-5 min; ~1 min with every run reused')
_SAL_SWEEP_KEPT = ('produced by the script itself (its training runs take over an hour): the block '
                   'keeps that run\'s provenance; --only sal_sweep,sal_sweep_test reruns it')
TABLES: Tuple[Table, ...] = (
    Table('readme_demo', 'README.md', DEMO_COLUMNS,
          'd2net-jax train --config configs/synthetic.py --config.train.seed=S',
          (1,), '~5-10 min (one demo run; shared with `demo`)', produce_demo),
    Table('demo', 'docs/results.md', DEMO_COLUMNS,
          'd2net-jax train --config configs/synthetic.py --config.train.seed=S',
          (1,), '~5-10 min per seed', produce_demo),
    Table('demo_1f11bf0', 'docs/results.md', DEMO_COLUMNS,
          'python -m d2net_jax.commands.cli train --config configs/synthetic.py[:mil] '
          '--config.train.seed=S', (1, 2), '~30 min (2 seeds x D2-Net and mil)',
          kept='the earlier demo table (D2-Net and mil, 2 seeds); superseded by `demo`'),
    Table('readme_methods', 'README.md', README_METHOD_COLUMNS,
          'd2net-jax train --config configs/synthetic.py:METHOD --config.train.seed=S',
          (1, 2, 3),
          '~25 min on 2 idle cores (5 methods x 3 seeds; SAL\'s 8000 steps and DFE the longest)',
          produce_readme_methods),
    Table('readme_extract_speed', 'README.md',
          ('what', 'snippets/s', 'GFLOPs per snippet', 'GFLOP/s', 'of the convolution'),
          'python experiments/bench_extract.py', (), '~3 min (I3D compiles, 3 repeats, one video)',
          script_producer('experiments/bench_extract.py')),
    Table('compare_thumos14_like', 'docs/results.md', _COMPARE_THUMOS_COLUMNS,
          _COMPARE, (1, 2, 3), _COMPARE_COST, kept='2 seeds, runs at 4 commits (2026-12-03)'),
    Table('compare_co2net_thumos14_like', 'docs/results.md', _COMPARE_THUMOS_COLUMNS,
          _COMPARE_CO2NET, (1, 2, 3),
          '~22 min on 2 idle cores (4 variants x 3 seeds; a DFE run ~5.5 min of it)',
          script_producer(*_COMPARE_CO2NET.split()[1:]), kept=_BY_THE_SCRIPT),
    Table('compare_activitynet12_like', 'docs/results.md',
          ('method', 'seeds', 'mAP@0.5', 'mAP@0.55', 'mAP@0.6', 'mAP@0.65', 'mAP@0.7', 'mAP@0.75',
           'mAP@0.8', 'mAP@0.85', 'mAP@0.9', 'mAP@0.95', 'avg 0.5:0.95', 'train s / run',
           'steps/s'),
          _COMPARE, (1, 2, 3), _COMPARE_COST, kept='2 seeds, runs at 4 commits (2026-12-03)'),
    Table('bench_summary', 'docs/benchmarks.md',
          ('benchmark', 'setting', 'result', 'detail'),
          'python experiments/benchmark.py', (),
          'a few minutes', kept=_KEPT),
    Table('bench_train_step_thumos14', 'docs/benchmarks.md',
          _BENCH_COLUMNS,
          'python experiments/bench_train_step.py --quick --shapes thumos14 --variants '
          'd2net,mil,sal',
          (),
          'a few minutes',
          script_producer('experiments/bench_train_step.py', '--quick', '--shapes', 'thumos14',
                          '--variants', 'd2net,mil,sal'), kept=_SPEED),
    Table('bench_train_step_demo', 'docs/benchmarks.md',
          _BENCH_COLUMNS,
          'python experiments/bench_train_step.py --shapes demo --dtypes float32 --variants '
          "'d2net,mil,sal,co2net,dfe,dfe;base=d2net,dfe;base=sal'",
          (),
          '~2 min',
          script_producer('experiments/bench_train_step.py', '--shapes', 'demo', '--dtypes',
                          'float32', '--variants',
                          'd2net,mil,sal,co2net,dfe,dfe;base=d2net,dfe;base=sal'), kept=_SPEED),
    Table('real_footage_methods', 'docs/video.md',
          ('method', 'seeds', 'steps', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4', 'mAP@0.5',
           'mAP@0.6', 'mAP@0.7', 'avg 0.1:0.5', 'avg 0.1:0.7', 'train s / run'),
          'python experiments/real_footage_methods.py', (1, 2, 3),
          '~20 min (5 methods x 3 seeds on the 40 real-footage videos, about a minute a run)',
          script_producer('experiments/real_footage_methods.py',
                          note='seeds 1, 2, 3; mean ± std', runs=True)),
    Table('synthetic_feature_stats', 'docs/data.md',
          ('statistic (RGB / flow)', 'target (`i3d_like`)', '`i3d_like`', '`gaussian`'),
          'd2net-jax synthetic --preset thumos14_like --out /tmp/s --feature-dim 256 --num-train '
          '16 --num-test 0 --features i3d_like (and gaussian)',
          (),
          'seconds', kept=_KEPT),
    Table('dfe_params', 'docs/dfe.md',
          ('size', 'D, C, T', 'base params', 'LFE params', 'GFE params', 'deployed params',
           'training params', 'GFLOPs base', 'GFLOPs deployed (local)', 'GFLOPs global branch'),
          'python experiments/dfe_params.py', (),
          'seconds (XLA cost analysis of the forward passes, trains nothing)',
          script_producer('experiments/dfe_params.py')),
    Table('dfe_ablation_d2net', 'docs/dfe.md',
          _ABLATION_COLUMNS,
          'python experiments/dfe_ablation.py --mode quick --steps 600 --base d2net --seeds 3 '
          '--reuse',
          (1, 2, 3),
          '~4-5 h for 3 seeds on 2 idle cores (7 variants; a DFE-over-D2-Net run is 11-23 min on '
          'shared cores)', kept=_KEPT),
    Table('dfe_ablation_sal', 'docs/dfe.md',
          _ABLATION_COLUMNS,
          'python experiments/dfe_ablation.py --mode quick --steps 600 --base sal --seeds 3 '
          '--set sal.hidden=64 --set train.lr_schedule=cosine --reuse',
          (1, 2, 3),
          '69 min for 3 seeds on 2 cores shared with other jobs (2026-12-05, b5f6691)',
          kept='run by the script itself at b5f6691 (SAL\'s synthetic preset of then, which the '
          '--set flags restore): the block keeps that run\'s provenance'),
    Table('dfe_ablation_co2net', 'docs/dfe.md', _ABLATION_COLUMNS, _DFE_CO2NET, (1, 2, 3),
          '~75 min for 3 seeds on 2 idle cores (a run with our transformer LFE ~8 min)',
          script_producer(*_DFE_CO2NET.split()[1:]), kept=_BY_THE_SCRIPT),
    Table('dfe_by_hand', 'docs/dfe.md',
          ('method', 'seed', 'validation mAP', 'mAP@0.1', '0.2', '0.3', '0.4', '0.5', '0.6',
           '0.7', 'avg 0.1:0.7'),
          'd2net-jax train --config configs/synthetic.py:dfe,base=d2net --config.dfe.lfe.kind=none '
          '--config.train.num_steps=600 --config.train.eval_every=300 --config.train.seed=S (and '
          ':d2net)',
          (1, 2, 3),
          '~45 min for 3 seeds x 2 configs', kept=_KEPT),
    Table('ablation_loss_terms', 'docs/results.md',
          ('variant', 'seeds', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4', 'mAP@0.5',
           'avg 0.1:0.5', 'F1@0.5', 'paper mAP@0.5', 'paper F1@0.5'),
          'python experiments/ablation.py --mode quick --seeds 3', (1, 2, 3),
          '~16 min for 2 seeds on 2 shared cores (963 s at e2b9f6c); ~25 min for 3 seeds',
          kept=_KEPT),
    Table('ablation_paper_switches', 'docs/results.md',
          _ABLATION_COLUMNS,
          'python experiments/ablation.py --mode quick --seeds 3', (1, 2, 3),
          'with ablation_loss_terms (one run of ablation.py)', kept=_KEPT),
    Table('dmi_test_map', 'docs/results.md',
          ('variant', 'seeds', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4', 'mAP@0.5', 'mAP@0.6',
           'mAP@0.7', 'avg 0.1:0.5', 'avg 0.1:0.7', 'F1@0.5', 'paper mAP@0.5 (THUMOS14)'),
          'python experiments/dmi_vs_pdmi.py --mode quick --seeds 3', (1, 2, 3),
          '~23 min for 2 seeds on 2 shared cores (1397 s at 1671afe); ~35 min for 3 seeds',
          kept=_KEPT),
    Table('dmi_health', 'docs/results.md',
          ('L_D', 'L_D on (% steps)', 'L_DS left out (% videos)', 'raw L_DS non-finite (%)',
           'raw ∇L_DS non-finite (%)', 'L_DV undefined (% steps)', 'raw ∇L_DV non-finite (%)',
           'classes in batch', '‖∇θ L_D‖ median', '‖∇θ L_D‖ / ‖∇θ L_Dis‖',
           '∇θ L non-finite (%)',
           'skipped updates'),
          'python experiments/dmi_vs_pdmi.py --mode quick --seeds 3', (1, 2, 3),
          'with dmi_test_map (one run of dmi_vs_pdmi.py)', kept=_KEPT),
    Table('dmi_probe', 'docs/results.md',
          ('case', 'K', 'DMI value non-finite', 'DMI grad non-finite', 'DMI median value',
           'DMI median grad norm', 'pDMI value non-finite', 'pDMI grad non-finite',
           'pDMI median value', 'pDMI median grad norm (max)'),
          'python experiments/dmi_vs_pdmi.py --mode quick --seeds 3', (),
          'with dmi_test_map (one run of dmi_vs_pdmi.py)', kept=_KEPT),
    Table('sal_demo', 'docs/sal.md',
          ('method', 'seed', 'mAP@0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7', 'avg 0.1:0.7',
           'selected step'),
          'd2net-jax train --config configs/synthetic.py:sal --config.train.seed=S (and :mil)',
          (1, 2, 3),
          '~45 min for 3 seeds x SAL and mil (the lr 1e-3 mil rows are history)', kept=_KEPT),
    Table('sal_tuning', 'docs/sal.md',
          ('change', 'validation mAP'),
          'd2net-jax train --config configs/synthetic.py:sal --config.train.seed=1 '
          '--config.train.num_steps=600 (one override per row)',
          (1,),
          '~1 h (8 settings x 600 steps)', kept=_KEPT),
    Table('sal_sweep', 'docs/sal.md',
          ('recipe', 'batch', 'steps', 'lr', 'mix-up', 'hidden', 'validation seed 1',
           'validation seed 2', 'validation mean', 'wall s / run'),
          _SAL_SWEEP, (1, 2), _SAL_SWEEP_COST,
          script_producer(*_SAL_SWEEP.split()[1:]), kept=_SAL_SWEEP_KEPT),
    Table('sal_sweep_test', 'docs/sal.md',
          ('recipe', 'seed', 'mAP@0.1', 'mAP@0.2', 'mAP@0.3', 'mAP@0.4', 'mAP@0.5', 'mAP@0.6',
           'mAP@0.7', 'avg 0.1:0.7', 'validation', 'selected step'),
          _SAL_SWEEP, (1, 2, 3), 'with sal_sweep (one run of sal_sweep.py)',
          script_producer(*_SAL_SWEEP.split()[1:]), kept=_SAL_SWEEP_KEPT),
)
REGISTRY: Dict[str, Table] = {t.name: t for t in TABLES}


# ---------------------------------------------------------------------------------------------
# Blocks of the registered tables.


def render_block(table: Table, rows, commit: str, date: str, machine: str, note: str) -> str:
  provenance = (f'Produced by `python experiments/reproduce.py --only {table.name}` (runs '
                f'`{table.command}`, {note}), commit {commit}, {date}, {machine}.')
  return provenance + '\n\n' + render_table(table.columns, rows)


def markdown_files(root: pathlib.Path) -> List[pathlib.Path]:
  return [root / 'README.md'] + sorted((root / 'docs').glob('*.md'))


def check(root: pathlib.Path = ROOT) -> List[str]:
  """Every marked block is registered, every registered table has its block, each well formed."""
  problems, seen = [], set()
  for path in markdown_files(root):
    if not path.exists():
      continue
    rel = path.relative_to(root).as_posix()
    text = path.read_text()
    try:
      blocks = find_blocks(text, rel)
    except ValueError as e:
      problems.append(str(e))
      continue
    for name, (start, end) in blocks.items():
      table = REGISTRY.get(name)
      if table is None:
        problems.append(f'{rel}: reproduce:{name} is not registered in experiments/reproduce.py')
      elif table.path != rel:
        problems.append(f'{rel}: reproduce:{name} is registered for {table.path}')
      else:
        seen.add(name)
        problems += check_block(table, text[start:end])
  problems += [f'{t.path}: registered table {t.name} has no reproduce block'
               for t in TABLES if t.name not in seen]
  return problems


# ---------------------------------------------------------------------------------------------
# Main.


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--list', action='store_true', help='print the registry and exit')
  p.add_argument('--check', action='store_true', help='check the blocks; run nothing')
  p.add_argument('--only', default='', help='NAME[,NAME]: these tables (default: every '
                 'table with a producer that is not kept)')
  p.add_argument('--out-dir', default=str(ROOT / 'runs' / 'reproduce'),
                 help='the runs\' workdirs, reused across calls (same config and library code)')
  p.add_argument('--seeds', default='', help='S[,S]: replaces each table\'s registered seeds')
  p.add_argument('--allow-dirty', action='store_true',
                 help='write tables from a modified tree (commit written as <sha>+dirty)')
  p.add_argument('--smoke', action='store_true', help='seconds-long runs (tests); with --root')
  p.add_argument('--root', default=str(ROOT), help='where README.md and docs/ are rewritten')
  args = p.parse_args(argv)
  args.seeds = tuple(int(s) for s in args.seeds.split(',') if s) or None
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  root = pathlib.Path(args.root)
  if args.list:
    for t in TABLES:
      status = f'kept ({t.kept})' if t.kept else 'produced here'
      print(f'{t.name:28s} {t.path:18s} seeds {",".join(map(str, t.seeds))}  {status}\n'
            f'{"":28s} {t.command}\n{"":28s} cost: {t.cost}')
    return 0
  if args.check:
    problems = check(root)
    print('\n'.join(problems) or f'{len(TABLES)} tables: markers, structure and provenance ok')
    return 1 if problems else 0
  names = ([n for n in args.only.split(',') if n]
           or [t.name for t in TABLES if t.produce and not t.kept])
  for name in names:
    if name not in REGISTRY:
      raise SystemExit(f'reproduce.py: unknown table {name!r} (--list names them)')
    if REGISTRY[name].produce is None:
      raise SystemExit(f'reproduce.py: {name} has no producer yet ({REGISTRY[name].kept}); its '
                       f'command: {REGISTRY[name].command}')
  dirty = is_dirty()  # Before any table is written: the tree the numbers came from.
  if dirty and not args.allow_dirty:
    raise SystemExit('reproduce.py: the working tree has modified tracked files; commit first '
                     '(the tables must name the code that produced them) or pass --allow-dirty')
  machine = machine_line()
  for name in names:
    table = REGISTRY[name]
    run_args = argparse.Namespace(**{**vars(args), 'seeds': args.seeds or table.seeds})
    rows, commit, note = table.produce(run_args, table)
    if dirty and not commit.endswith('+dirty'):
      commit += '+dirty'
    written = head_commit() + ('+dirty' if dirty else '')
    if written != commit:  # Runs reused from an earlier commit with the same library code.
      commit += f' (written at {written}; library code the same)'
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    path = root / table.path
    content = render_block(table, rows, commit, date, machine, note)
    path.write_text(replace_block(path.read_text(), name, content, table.path))
    print(f'{table.path}: reproduce:{name} rewritten ({len(rows)} rows, commit {commit})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
