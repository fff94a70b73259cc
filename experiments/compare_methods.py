r"""One fair comparison of every registered method on the synthetic THUMOS14 and ActivityNet1.2.

  python experiments/compare_methods.py                 # quick: every method, both datasets
  python experiments/compare_methods.py --mode smoke    # seconds; what the tests run
  python experiments/compare_methods.py --methods d2net,mil --datasets thumos14_like
  python experiments/compare_methods.py --methods co2net,dfe,mil --bases co2net   # DFE's default

Variants: every method of `d2net_jax.methods.names()` on the `i3d_like` features; a method that
wraps another (`Method.wraps`, DFE) once over every method it accepts as its base
(`configs/synthetic.py:dfe,base=co2net` (DFE's default base), `...:dfe,base=d2net`,
`...:dfe,base=sal`: the base's own synthetic settings; each row names its base);
D2-Net and `mil` also on the `gaussian` features, so the effect of the feature geometry shows.

Same protocol for every variant: the config is `configs/synthetic.py:<method>` (the demo's data,
model input, schedule and selection, with the method's own `Method.presets['synthetic']`); on
`activitynet12_like` every setting in which configs/activitynet12.py:<method> differs from
configs/thumos14.py:<method> is applied on top (100 classes, subsets, tIoU 0.5:0.95, model and
localizer settings, the method's ActivityNet preset), except the training schedule, D and the
crop length, which stay the demo's. The mode sets D and video counts for all alike, and the
steps of every method whose synthetic recipe does not set its own (SAL's: 8000 steps of batch 2,
chosen by experiments/sal_sweep.py; smoke mode and --steps set them for all).
The checkpoint is selected on a validation split held out from the training videos (mean mAP
over the dataset's tIoUs), the test split is scored once, seeds train.seed = 1..N.

Reported per dataset: test mAP (%) at each tIoU, the averages the dataset reports (THUMOS14:
0.1:0.5 and 0.1:0.7; ActivityNet1.2: 0.5:0.95), mean ± std over seeds; the training wall time of
a run (compilation, validation and test included) and the training steps/s (steps only).

Writes --out (default runs/experiments/compare_methods): results.md, results.json (every number,
per seed), plot.png (mAP against tIoU per dataset).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'compare_methods'
# preset -> (real benchmark, configs/ preset of its real data, averages reported).
DATASETS = {
    'thumos14_like': ('THUMOS14', 'thumos14', ('0.1:0.5', '0.1:0.7')),
    'activitynet12_like': ('ActivityNet1.2', 'activitynet12', ('0.5:0.95',)),
}
# Sizes: D, steps, evaluations per run, seeds, and (train, test) videos per dataset (-1: all).
SIZES = {
    'smoke': dict(feature_dim=16, steps=4, evaluations=1, seeds=1,
                  videos={'thumos14_like': (12, 6), 'activitynet12_like': (12, 6)}),
    'quick': dict(feature_dim=256, steps=600, evaluations=2, seeds=3,
                  videos={'thumos14_like': (-1, -1), 'activitynet12_like': (400, 200)}),
    'full': dict(feature_dim=256, steps=1000, evaluations=5, seeds=3,
                 videos={'thumos14_like': (-1, -1), 'activitynet12_like': (1000, 500)}),
}
BOTH_FEATURES = ('d2net', 'mil')  # Also trained on the 'gaussian' features.
# Settings of the real-data presets that are not carried over to the synthetic runs.
_KEEP = ('data.kind', 'data.path', 'data.name', 'data.feature_dim', 'data.max_seqlen',
         'data.num_segments', 'data.ambiguous_file')


def _flatten(config, prefix: str = '') -> Dict[str, Any]:
  out = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def _preset(name: str, arg: str):
  return _common.load_module(_common.ROOT / 'configs' / f'{name}.py',
                             f'd2net_configs_{name}').get_config(arg)


def preset_arg(method: str, base: str = '') -> str:
  """The preset argument of a variant: 'METHOD' or 'METHOD,base=BASE' (a wrapper's base)."""
  return f'{method},base={base}' if base else method


def dataset_overrides(method: str, dataset: str, base: str = '') -> Dict[str, Any]:
  """The settings in which the dataset's real-data preset differs from THUMOS14's, for `method`
  (over `base`; empty for thumos14_like); the schedule and the data shapes are left out (_KEEP,
  train.*)."""
  real = DATASETS[dataset][1]
  if real == 'thumos14':
    return {}
  arg = preset_arg(method, base)
  target, thumos = _flatten(_preset(real, arg)), _flatten(_preset('thumos14', arg))
  return {k: v for k, v in target.items()
          if thumos.get(k) != v and k not in _KEEP
          and (not k.startswith('train.') or k == 'train.selection_iou')}


def variant_config(method: str, base: str, features: str, dataset: str, args):
  """configs/synthetic.py:<method>[,smoke] on `dataset`, sized by the mode (module docstring)."""
  size = SIZES[args.mode]
  config = _preset('synthetic', preset_arg(method, base)
                   + (',smoke' if args.mode == 'smoke' else ''))
  overrides = dict(dataset_overrides(method, dataset, base))
  num_train, num_test = size['videos'][dataset]
  steps = args.steps or (size['steps'] if args.mode == 'smoke' else
                         own_steps(method, base) or size['steps'])
  overrides.update({
      'data.synthetic.preset': dataset, 'data.synthetic.features': features,
      'data.synthetic.num_train': num_train, 'data.synthetic.num_test': num_test,
      'data.feature_dim': size['feature_dim'], 'data.path': str(args.data_dir),
      'train.num_steps': steps, 'train.eval_every': max(1, steps // size['evaluations']),
      'train.checkpoint_every': steps, 'train.log_every': max(1, min(25, steps)),
      'train.tensorboard': False, 'loss.pdmi_start_step': steps // 4})
  return _common.apply_overrides(config, overrides)


def own_steps(method: str, base: str):
  """The training steps the synthetic recipe of `method` (over `base`) sets, or None."""
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  steps = None
  for name in filter(None, (base, method)):  # The wrapper's own settings apply last.
    steps = methods.get(name).presets.get('synthetic', {}).get('train.num_steps', steps)
  return steps


def bases_of(method: str, candidates: List[str]) -> List[str]:
  """The candidates `method` can wrap: those whose 'METHOD,base=B' synthetic preset builds."""
  out = []
  for b in candidates:
    try:
      _preset('synthetic', preset_arg(method, b))
    except ValueError:
      continue
    out.append(b)
  return out


def variants(selected: List[str], bases: Optional[List[str]] = None
             ) -> List[Tuple[str, str, str]]:
  """(method, base, features) of every compared variant, in table order: a method that wraps
  another (Method.wraps, DFE) once over every method it accepts as its base (of `bases` when
  given)."""
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  names = list(methods.names())
  wrappers = [m for m in names if methods.get(m).wraps is not None]
  out = []
  for m in names:
    if m not in selected:
      continue
    if m in wrappers:
      out += [(m, b, 'i3d_like') for b in bases_of(m, [n for n in names if n not in wrappers])
              if bases is None or b in bases]
    else:
      out.append((m, '', 'i3d_like'))
  out += [(m, '', 'gaussian') for m in BOTH_FEATURES if m in selected]
  return out


def label(method: str, base: str, features: str) -> str:
  name = f'{method} on {base}' if base else method
  return name + (' (gaussian features)' if features == 'gaussian' else '')


def key(method: str, base: str, features: str) -> str:
  return '/'.join([method, base or '-', features])


def steps_per_second(metrics: List[Dict[str, Any]]) -> float:
  values = [m['steps_per_sec'] for m in metrics if 'steps_per_sec' in m]
  return float(np.median(values)) if values else float('nan')


def run_all(args, log) -> List[Dict[str, Any]]:
  runs = []
  for dataset in args.datasets:
    for method, base, features in variants(args.methods, args.bases):
      for seed in range(1, args.seeds + 1):
        config = variant_config(method, base, features, dataset, args)
        config = _common.apply_overrides(config, dict(args.set, **{'train.seed': seed}))
        if seed == 1:
          _common.prepare_data(config, log)
        name = f'{dataset}_{method}_{base or "-"}_{features}_seed{seed}'
        summary = _common.train_variant(config, args.out / 'runs' / name, reuse=args.reuse)
        record = _common.test_record(
            key(method, base, features), seed, summary['test'], dataset=dataset, method=method,
            base=base, features=features, train_seconds=summary['seconds'],
            steps=int(config.train.num_steps),
            steps_per_sec=steps_per_second(summary['metrics']),
            selected_step=summary['selection']['step'], skipped=summary['num_skipped'],
            data=_common.describe_data(config), selection=_common.describe_selection(config))
        runs.append(record)
        log(f'{dataset} {label(method, base, features):32s} seed {seed}: '
            f'avg mAP {100 * record["average_mAP"]:.1f} ({summary["seconds"]:.0f} s, '
            f'{record["steps_per_sec"]:.1f} steps/s)')
  return runs


def dataset_table(runs: List[Dict[str, Any]], dataset: str) -> str:
  rs = [r for r in runs if r['dataset'] == dataset]
  tiou = rs[0]['tiou']
  every = f'{tiou[0]:g}:{tiou[-1]:g}'  # average_mAP: the mean over every evaluated tIoU.
  averages = [a for a in DATASETS[dataset][2] if a in rs[0]['range_mAP'] or a == every]

  def average(r, a):
    return r['average_mAP'] if a == every else r['range_mAP'][a]

  header = (['method', 'seeds'] + [f'mAP@{t:g}' for t in tiou] + [f'avg {a}' for a in averages]
            + ['train s / run', 'steps/s'])
  rows, seen = [], []
  for r in rs:
    if r['variant'] not in seen:
      seen.append(r['variant'])
  for variant in seen:
    vs = [r for r in rs if r['variant'] == variant]
    rows.append([label(vs[0]['method'], vs[0]['base'], vs[0]['features']), len(vs)]
                + [_common.pm([r['mAP'][i] for r in vs], 100) for i in range(len(tiou))]
                + [_common.pm([average(r, a) for r in vs], 100) for a in averages]
                + [_common.pm([r['train_seconds'] for r in vs], 1, 0),
                   _common.pm([r['steps_per_sec'] for r in vs], 1, 1)])
  return _common.markdown_table(header, rows)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=tuple(SIZES), default='quick',
                      help='D, video counts, steps and seeds (SIZES)')
  parser.add_argument('--seeds', type=int, help='seeds per variant (train.seed = 1..N)')
  parser.add_argument('--steps', type=int, help='training steps per run')
  parser.add_argument('--methods', default='', help='comma-separated (default: all registered)')
  parser.add_argument('--bases', default='',
                      help='comma-separated: the bases a wrapper (DFE) is compared over '
                           '(default: every base it accepts)')
  parser.add_argument('--datasets', default=','.join(DATASETS),
                      help=f'comma-separated subset of {",".join(DATASETS)}')
  _common.add_set_argument(parser)
  _common.add_output_arguments(parser)
  args = parser.parse_args(argv)
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  args.seeds = args.seeds or SIZES[args.mode]['seeds']
  args.methods = [m for m in args.methods.split(',') if m] or list(methods.names())
  args.datasets = [d for d in args.datasets.split(',') if d]
  args.bases = [b for b in args.bases.split(',') if b] or None
  unknown = sorted(set(args.methods) - set(methods.names()))
  unknown += sorted(set(args.bases or ()) - set(methods.names()))
  unknown += sorted(set(args.datasets) - set(DATASETS))
  if unknown:
    parser.error(f'unknown methods or datasets {unknown}: methods {methods.names()}, '
                 f'datasets {tuple(DATASETS)}')
  _common.resolve_output_arguments(args, NAME)
  return args


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  start = time.perf_counter()
  _common.enable_compilation_cache(args.compilation_cache)
  _common.quiet_logs()
  meta = _common.run_metadata(argv)
  log = lambda s: print(s, flush=True)
  log(f'{NAME}: {args.mode} mode on {meta["device"]}')
  runs = run_all(args, log)
  meta['wall_s'] = time.perf_counter() - start
  notes = [f'{args.mode} mode: {SIZES[args.mode]["steps"] if not args.steps else args.steps} '
           f'steps, {args.seeds} seed(s) per variant; configs/synthetic.py:<method> for every '
           'method (its Method.presets["synthetic"]), the ActivityNet settings of '
           'configs/activitynet12.py on activitynet12_like',
           'ground truth scored: the synthetic generator\'s own instances (gt.json beside the '
           'store); mAP of the evaluator (ActivityNet-style, interpolated AP)']
  sections = []
  figure, axes = _common.new_figure(len(args.datasets))
  for ax, dataset in zip(axes, args.datasets):
    rs = [r for r in runs if r['dataset'] == dataset]
    real, _, averages = DATASETS[dataset]
    sections.append(f'## {dataset} ({real}-like; averages {", ".join(averages)}): test mAP (%), '
                    f'mean ± std over seeds\n\n- data: {rs[0]["data"]}\n- {rs[0]["selection"]}\n\n'
                    + dataset_table(runs, dataset))
    labels = {}
    for r in rs:
      labels.setdefault(r['variant'], label(r['method'], r['base'], r['features']))
    _common.plot_map(ax, rs, labels, f'{dataset} ({real}-like)')
  figure.tight_layout()
  markdown = (_common.markdown_header('Every method on the synthetic benchmarks', meta, notes)
              + '\n' + '\n'.join(sections))
  results = {'meta': meta, 'args': {k: str(v) for k, v in vars(args).items()}, 'runs': runs}
  return _common.finish(args.out, markdown, results, figure)


if __name__ == '__main__':
  sys.exit(main())
