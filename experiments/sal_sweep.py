r"""SAL's synthetic preset chosen by a validation sweep over training recipes (issue 23, item 8).

  python experiments/sal_sweep.py                        # quick: the sweep, 2 seeds, then test
  python experiments/sal_sweep.py --mode smoke           # seconds; what the tests run
  python experiments/sal_sweep.py --recipes authors,preset_1203 --seeds 1 --reuse

Every recipe trains `configs/synthetic.py:sal` on the demo's data (`i3d_like` thumos14_like,
D = 256, 160 training videos) with the recipe's batch, steps, learning rate and schedule, video
mix-up and hidden width set explicitly (RECIPES), so a recipe means the same whatever SAL's
preset is now. Each run evaluates the 40-video validation split held out from the training videos
5 times, evenly over its steps (the same count for every recipe, so no recipe gets more draws of
a noisy maximum), and keeps the best checkpoint by mean mAP 0.1:0.7 there; that validation mAP
is the recipe's score. The recipe with the best mean validation score over the sweep seeds
(train.seed = 1..N) is chosen; the test split plays no part in it. With `--narrow P` the seeds
after the first train only the recipes within P points of the best first-seed score (and the
earlier preset); the choice is among those. Then the chosen recipe and the
earlier preset ('preset_1203') are trained on the test seeds (1, 2, 3; runs of the sweep reused)
and their test mAP is reported: each run's test split scored once, on its validation-selected
checkpoint.

Writes --out (default runs/experiments/sal_sweep): results.md (the two tables), results.json
(every number per run), runs/<recipe>_seed<S>/ (the workdirs; --reuse reads finished ones back).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'sal_sweep'
FIELDS = ('train.batch_size', 'train.num_steps', 'train.learning_rate', 'train.lr_schedule',
          'sal.mixup', 'sal.hidden')
OLD = 'preset_1203'


def _recipe(label, batch, steps, lr, schedule, mixup, hidden):
  return label, dict(zip(FIELDS, (batch, steps, lr, schedule, mixup, hidden)))


# name -> (label, settings). 'authors': SAL's THUMOS14 code (batch 2, Adam 1e-4 constant, the
# mix-up on) with hidden 128 instead of 512 and 8000 steps instead of 10000 (issue 23 item 8).
RECIPES = dict((
    ('preset_1203', _recipe('synthetic preset of 2026-12-03', 10, 1000, 1e-3, 'cosine', False, 64)),
    ('authors', _recipe("authors' recipe scaled down", 2, 8000, 1e-4, 'constant', True, 128)),
    ('authors_nomix', _recipe("authors' recipe, no mix-up", 2, 8000, 1e-4, 'constant', False,
                              128)),
    ('authors_lr3e-4', _recipe("authors' recipe, lr 3e-4", 2, 8000, 3e-4, 'constant', True, 128)),
    ('authors_b10', _recipe("authors' lr / mix-up / hidden, preset's batch and steps", 10, 1000,
                            1e-4, 'constant', True, 128)),
    ('preset_h128_mix', _recipe("preset's schedule, mix-up on, hidden 128", 10, 1000, 1e-3,
                                'cosine', True, 128)),
))
EVALUATIONS = 5  # Validation passes per run, evenly spaced.
SIZES = {
    # smoke: the `smoke` flag's tiny data and model, 2 steps per run.
    'smoke': dict(steps=2, seeds=1, test_seeds=(1,)),
    'quick': dict(steps=None, seeds=2, test_seeds=(1, 2, 3)),
}
TIOUS = ('0.1', '0.2', '0.3', '0.4', '0.5', '0.6', '0.7')


def recipe_config(name: str, seed: int, args):
  """configs/synthetic.py:sal[,smoke] with the recipe's settings, `EVALUATIONS` validation passes
  and train.seed = seed; data in args.data_dir."""
  synthetic = _common.load_module(_common.ROOT / 'configs' / 'synthetic.py', 'sal_sweep_configs')
  config = synthetic.get_config('sal,smoke' if args.mode == 'smoke' else 'sal')
  settings = dict(RECIPES[name][1])
  if args.mode == 'smoke':  # The smoke flag's batch, width and data; the recipe's other fields.
    settings.update({'train.batch_size': config.train.batch_size, 'sal.hidden': config.sal.hidden,
                     'train.num_steps': SIZES['smoke']['steps']})
  steps = settings['train.num_steps']
  every = max(1, steps // EVALUATIONS)
  settings.update({'train.seed': seed, 'train.eval_every': every, 'train.checkpoint_every': every,
                   'train.log_every': max(1, min(25, steps)), 'train.tensorboard': False,
                   'data.path': str(args.data_dir)})
  return _common.apply_overrides(config, settings)


def run_one(name: str, seed: int, args, log) -> Dict[str, Any]:
  config = recipe_config(name, seed, args)
  summary = _common.train_variant(config, args.out / 'runs' / f'{name}_seed{seed}',
                                  reuse=args.reuse)
  selection = summary['selection']
  record = _common.test_record(name, seed, summary['test'], validation=selection['value'],
                               selected_step=selection['step'], seconds=summary['seconds'],
                               data=_common.describe_data(config),
                               selection=_common.describe_selection(config))
  log(f'{name:16s} seed {seed}: validation {100 * record["validation"]:.2f}, test '
      f'{100 * record["average_mAP"]:.2f} (step {record["selected_step"]}, '
      f'{summary["seconds"]:.0f} s)')
  return record


def contenders(runs: List[Dict[str, Any]], names: List[str], seed: int,
               narrow: Optional[float]) -> List[str]:
  """The recipes trained on the next seeds: all of `names`, or with `narrow` those whose
  validation mAP on `seed` is within `narrow` points (%) of the best, and the earlier preset."""
  if narrow is None:
    return names
  score = {r['variant']: 100 * r['validation'] for r in runs if r['seed'] == seed}
  best = max(score[n] for n in names)
  return [n for n in names if score[n] >= best - narrow or n == OLD]


def choose(runs: List[Dict[str, Any]], names: List[str], seeds: List[int]) -> str:
  """The recipe with the best mean validation mAP over `seeds` (test mAP not read)."""
  def score(name):
    return _common.mean_std([r['validation'] for r in runs
                             if r['variant'] == name and r['seed'] in seeds])[0]
  return max(names, key=score)


def sweep_table(runs, names, seeds, chosen) -> str:
  header = (['recipe', 'batch', 'steps', 'lr', 'mix-up', 'hidden']
            + [f'validation seed {s}' for s in seeds] + ['validation mean', 'wall s / run'])
  rows = []
  for name in names:
    label, s = RECIPES[name]
    rs = [r for r in runs if r['variant'] == name and r['seed'] in seeds]
    by_seed = {r['seed']: r for r in rs}
    rows.append([f'{label} (`{name}`)' + (' **chosen**' if name == chosen else ''),
                 s['train.batch_size'], s['train.num_steps'],
                 f'{s["train.learning_rate"]:g} {s["train.lr_schedule"]}',
                 'on' if s['sal.mixup'] else 'off', s['sal.hidden']]
                + [f'{100 * by_seed[k]["validation"]:.2f}' if k in by_seed else '-' for k in seeds]
                + [_common.pm([r['validation'] for r in rs], 100, 2),
                   _common.pm([r['seconds'] for r in rs], 1, 0)])
  return _common.markdown_table(header, rows)


def test_table(runs, names, seeds) -> str:
  header = ['recipe', 'seed'] + [f'mAP@{t}' for t in TIOUS] + ['avg 0.1:0.7', 'validation',
                                                             'selected step']
  rows = []
  for name in names:
    for r in sorted((r for r in runs if r['variant'] == name and r['seed'] in seeds),
                    key=lambda r: r['seed']):
      by_tiou = {f'{t:g}': m for t, m in zip(r['tiou'], r['mAP'])}
      rows.append([f'`{name}`', r['seed']] + [f'{100 * by_tiou[t]:.2f}' for t in TIOUS]
                  + [f'{100 * r["average_mAP"]:.2f}', f'{100 * r["validation"]:.2f}',
                     r['selected_step']])
    rs = [r for r in runs if r['variant'] == name and r['seed'] in seeds]
    rows.append([f'`{name}`', 'mean ± std'] + [''] * len(TIOUS)
                + [_common.pm([r['average_mAP'] for r in rs], 100, 2),
                   _common.pm([r['validation'] for r in rs], 100, 2), ''])
  return _common.markdown_table(header, rows)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=tuple(SIZES), default='quick')
  parser.add_argument('--seeds', type=int, help='sweep seeds per recipe (train.seed = 1..N)')
  parser.add_argument('--test-seeds', default='',
                      help='S,S,...: seeds of the chosen and the earlier preset (default 1,2,3)')
  parser.add_argument('--recipes', default=','.join(RECIPES),
                      help=f'comma-separated subset of {",".join(RECIPES)}')
  parser.add_argument('--narrow', type=float,
                      help='train the seeds after the first only for the recipes within this many '
                           'points (validation mAP, %%) of the best on the first seed, and the '
                           'earlier preset (default: every recipe on every seed)')
  _common.add_output_arguments(parser)
  args = parser.parse_args(argv)
  args.recipes = _common.split_choices(parser, args.recipes, RECIPES, 'recipes')
  args.seeds = list(range(1, (args.seeds or SIZES[args.mode]['seeds']) + 1))
  args.test_seeds = ([int(s) for s in args.test_seeds.split(',') if s]
                     or list(SIZES[args.mode]['test_seeds']))
  return _common.resolve_output_arguments(args, NAME)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  meta, log, start = _common.start_script(args, argv, NAME)
  _common.prepare_data(recipe_config(args.recipes[0], 1, args), log)
  runs, names = [], args.recipes
  for seed in args.seeds:  # Seed by seed: an interrupted sweep has whole seeds.
    runs += [run_one(name, seed, args, log) for name in names]
    names = contenders(runs, names, seed, args.narrow)
  chosen = choose(runs, names, args.seeds)
  log(f'chosen by validation mean over seeds {args.seeds}: {chosen}')
  shown = [chosen] + ([OLD] if OLD in args.recipes and OLD != chosen else [])
  for seed in args.test_seeds:
    runs += [run_one(name, seed, args, log) for name in shown
             if not any(r['variant'] == name and r['seed'] == seed for r in runs)]
  meta['wall_s'] = time.perf_counter() - start
  selection = re.sub(r'evaluated every \d+ steps', f'evaluated {EVALUATIONS} times per run',
                     runs[0]['selection'])
  notes = [f'data: {runs[0]["data"]}', selection,
           f'{EVALUATIONS} validation passes per run; the score of a run is its selected '
           'checkpoint\'s validation mean mAP 0.1:0.7 (%)']
  markdown = (_common.markdown_header("SAL's synthetic preset: validation sweep", meta, notes)
              + f'\n## Validation mAP (%) per recipe, seeds {",".join(map(str, args.seeds))}\n\n'
              + sweep_table(runs, args.recipes, args.seeds, chosen)
              + f'\n## Test mAP (%) of the chosen recipe and the earlier preset\n\n'
              + test_table(runs, shown, args.test_seeds))
  results = {'meta': meta, 'args': {k: str(v) for k, v in vars(args).items()}, 'chosen': chosen,
             'recipes': {k: {'label': v[0], 'settings': v[1]} for k, v in RECIPES.items()},
             'runs': runs}
  return _common.finish(args.out, markdown, results)


if __name__ == '__main__':
  sys.exit(main())
