r"""DFE on the synthetic benchmark: what each of DFE's parts adds to its base (CO2-Net, D2-Net or
SAL).

  python experiments/dfe_ablation.py                    # quick: the demo's size, 3 seeds, CO2-Net
  python experiments/dfe_ablation.py --mode smoke       # seconds; what the tests run
  python experiments/dfe_ablation.py --base d2net       # over D2-Net
  python experiments/dfe_ablation.py --base sal         # over SAL

Variants (every one trained by `d2net_jax.training.train.train_and_evaluate` from
configs/synthetic.py:dfe,base=BASE, i.e. with the base's own synthetic settings: CO2-Net's
resampling, similar-pair sampler and 'hamnet' localizer for base co2net (DFE's default), SAL's
resampling, sal.hidden and 'oic' localizer for base sal; checkpoint selected on the validation
split held out from the training videos, test scored once):
  base        the base method alone (config.method = the base)
  lfe         DFE with LFE only: dfe.loss.w_global = 0, dfe.loss.lambda_kd = 0 (no global branch)
  gfe         DFE without LFE: GFE (training only), the memory and distillation; dfe.lfe.kind='none'
  dfe         DFE: LFE + GFE (training only) + distillation, the spec's defaults
  dfe_conv    DFE with the alternative LFE, dilated convolutions: dfe.lfe.kind='dilated_conv'
  dfe_global  the dfe checkpoints scored with the global branch at test time
              (dfe.inference_branch='global': GFE and the memory kept; an upper bound, no
              retraining)
Reported: test mAP at tIoU 0.1-0.7, averages and F1@0.5, mean ± std over seeds; parameters of
the deployed (local) model. Writes --out (default runs/experiments/dfe_ablation): results.md,
results.json, plot.png.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'dfe_ablation'
TRAINED = {
    'base': ('base alone', None),
    'lfe': ('+ LFE', {'dfe.loss.w_global': 0.0, 'dfe.loss.lambda_kd': 0.0}),
    'gfe': ('+ GFE (train only) + distillation, no LFE', {'dfe.lfe.kind': 'none'}),
    'dfe': ('+ LFE + GFE (train only) + distillation (DFE)', {}),
    'dfe_conv': ('DFE with the dilated-convolution LFE', {'dfe.lfe.kind': 'dilated_conv'}),
}
RESCORED = {'dfe_global': ('DFE, global branch at test (upper bound)',
                           {'dfe.inference_branch': 'global'})}
VARIANTS = tuple(TRAINED) + tuple(RESCORED)
LABELS = {**{k: v[0] for k, v in TRAINED.items()}, **{k: v[0] for k, v in RESCORED.items()}}


def rescore(config, workdir: pathlib.Path, overrides: Dict[str, Any]) -> Dict[str, Any]:
  """Test metrics of the selected checkpoint in `workdir` under other inference settings."""
  import jax  # pylint: disable=import-outside-toplevel
  from d2net_jax import inference  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  config = _common.apply_overrides(config, overrides)
  dataset, model, state, _ = train.restore_trained(config, workdir, 'best')
  params, method_state = jax.device_get((state.params, state.method_state))
  result, _ = inference.evaluate(inference.make_forward(model, config), params, method_state,
                                 dataset, dataset.test_videos(), config)
  return result.to_dict()


def variant_config(base, variant: str, base_method: str, seed: int):
  if variant == 'base':
    overrides = {'method': base_method}
  else:
    overrides = dict(TRAINED[variant][1], method='dfe', **{'dfe.base': base_method})
  return _common.apply_overrides(base, dict(overrides, **{'train.seed': seed}))


def ablation_config(args):
  """configs/synthetic.py:dfe,base=BASE at the run's size, with the --set overrides: the base's
  own synthetic settings (SAL: resampling, sal.hidden) hold for every variant."""
  base = _common.base_config(args.mode, args.steps, args.data_dir, 'synthetic',
                             f'dfe,base={args.base}')
  return _common.apply_overrides(base, dict(args.set))


def run_all(args, log) -> tuple[List[Dict[str, Any]], Any]:
  base = _common.prepare_data(ablation_config(args), log)
  trained = [v for v in args.variants if v in TRAINED]
  if any(v in RESCORED for v in args.variants) and 'dfe' not in trained:
    trained.append('dfe')
  runs = []
  for variant in trained:
    for seed in range(1, args.seeds + 1):
      config = variant_config(base, variant, args.base, seed)
      workdir = args.out / 'runs' / f'{variant}_seed{seed}'
      summary = _common.train_variant(config, workdir, reuse=args.reuse)
      record = _common.test_record(variant, seed, summary['test'],
                                   train_seconds=summary['seconds'],
                                   selected_step=summary['selection']['step'],
                                   skipped=summary['num_skipped'])
      runs.append(record)
      log(f'{variant:10s} seed {seed}: avg mAP {100 * record["average_mAP"]:.1f}, '
          f'F1@0.5 {100 * record["f1"]["f1"]:.1f} ({summary["seconds"]:.0f} s)')
      if variant == 'dfe':
        for name, (_, overrides) in RESCORED.items():
          if name in args.variants:
            runs.append(_common.test_record(name, seed, rescore(config, workdir, overrides),
                                            selected_step=record['selected_step']))
            log(f'{name:10s} seed {seed}: avg mAP {100 * runs[-1]["average_mAP"]:.1f}')
  return runs, base


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=('smoke', 'quick', 'full'), default='quick',
                      help='sizes of data, model and run (experiments/_common.py SIZES)')
  parser.add_argument('--base', default='co2net', choices=('co2net', 'd2net', 'sal'),
                      help="DFE's base method (dfe.base; default DFE's own, co2net)")
  parser.add_argument('--seeds', type=int, help='seeds per variant (train.seed = 1..N)')
  parser.add_argument('--steps', type=int, help='training steps per run')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated subset of {",".join(VARIANTS)}')
  _common.add_set_argument(parser, ', e.g. --set dfe.gmm.momentum=0.99')
  _common.add_output_arguments(parser)
  args = parser.parse_args(argv)
  size = _common.SIZES[args.mode]
  args.seeds = args.seeds or size['seeds']
  args.steps = args.steps or size['steps']
  args.variants = _common.split_choices(parser, args.variants, VARIANTS, 'variants')
  _common.resolve_output_arguments(args, NAME)
  return args


def deployed_parameters(config) -> Dict[str, int]:
  """Parameter counts of the variant configs at this size: full DFE and its deployed part."""
  import dfe_params  # pylint: disable=import-outside-toplevel
  counts = dfe_params.parameter_counts(config, config.data.num_classes, config.data.feature_dim)
  return {'dfe_total': counts['total'], 'dfe_deployed': counts['total'] - counts['gfe']}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  start = time.perf_counter()
  _common.enable_compilation_cache(args.compilation_cache)
  _common.quiet_logs()
  meta = _common.run_metadata(argv)
  log = lambda s: print(s, flush=True)
  log(f'{NAME}: {args.mode} mode, base {args.base}, on {meta["device"]}')
  runs, base = run_all(args, log)
  meta['wall_s'] = time.perf_counter() - start
  labels = {k: v for k, v in LABELS.items() if k in args.variants or k == 'dfe'}
  labels['base'] = f'{args.base} alone'
  params = deployed_parameters(base)
  table = _common.map_table(runs, labels)
  notes = [f'configs/synthetic.py:dfe,base={args.base}, {args.mode} size: '
           f'{_common.describe_data(base)}; {args.steps} steps, {args.seeds} seed(s) per '
           f'variant; ' + _common.describe_selection(base),
           f'DFE parameters: {params["dfe_total"]:,} in training, {params["dfe_deployed"]:,} '
           'deployed (without GFE)',
           f'{sum(r.get("skipped", 0) for r in runs)} skipped updates over all runs']
  markdown = (_common.markdown_header(f'DFE ablation over {args.base} (synthetic benchmark)',
                                      meta, notes)
              + '\n## Test mAP (%) and F1@0.5, mean ± std over seeds\n\n' + table
              + '\nThe global-branch row re-scores the DFE checkpoints (selected with the local '
              'branch) with GFE and the memory at test time; it is not retrained.\n')
  figure, axes = _common.new_figure(1)
  _common.plot_map(axes[0], runs, labels, f'DFE over {args.base}')
  figure.tight_layout()
  results = {'meta': meta, 'args': {k: str(v) for k, v in vars(args).items()}, 'runs': runs,
             'parameters': params}
  return _common.finish(args.out, markdown, results, figure)


if __name__ == '__main__':
  sys.exit(main())
