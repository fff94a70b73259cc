r"""The analogue of the paper's Table 3 on the synthetic benchmark, and the official-code switches.

  python experiments/ablation.py                        # quick: CPU, ~10 min on 2 cores
  python experiments/ablation.py --mode full --seeds 3 --steps 1000
  python experiments/ablation.py --mode smoke           # seconds; what the tests run

Every variant is trained by the library (`d2net_jax.training.train.train_and_evaluate`: checkpoint selected
on a validation split held out from the training videos, test split scored once):
  Table 3    L_CE (`loss.discriminative='bce'`, no L_D), L_F (focal: Eq. 4 with w = 0, no L_D),
             L_Dis (Eq. 4, no L_D), L_Dis + L_D (the full D2-Net, pDMI).
  switches   the full D2-Net with one official-code choice changed to the paper's:
             `loss.pdmi_start_step=-1, loss.pdmi_every=1` (L_D from the start at every step,
             instead of the official schedule scaled to the run: after 5% of the steps, as the
             official 1000 of 20000, every 2nd step),
             `loss.positive_class_weight=False` (no factor C on the positive terms of Eq. 4),
             `localize.nms_threshold=0.5` (inference only: the full D2-Net's selected checkpoints
             re-scored with NMS 0.5 instead of 0.3; no retraining).
Reported: test mAP at tIoU 0.1-0.5 (and 0.6, 0.7), their averages, F1@0.5 (precision / recall of
the localizer's detections at tIoU 0.5, the evaluator's greedy TP / FP), mean ± std over seeds.

Writes --out (default runs/experiments/ablation): results.md (the tables printed), results.json
(every number, per seed), plot.png.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'ablation'
# name: (label, config overrides). The full D2-Net is the base config: the official loss settings
# and L_D schedule (scaled to the run), the size's batch and learning rate (not the official ones;
# the header says which).
TRAINED = {
    'ce': ('L_CE', {'loss.discriminative': 'bce', 'loss.denoising': 'none'}),
    'focal': ('L_F', {'loss.discriminative': 'focal', 'loss.denoising': 'none'}),
    'dis': ('L_Dis', {'loss.discriminative': 'd2net', 'loss.denoising': 'none'}),
    'full': ('L_Dis + L_D (D2-Net)', {'loss.discriminative': 'd2net', 'loss.denoising': 'pdmi'}),
    'no_schedule': ('D2-Net, L_D from step 0 at every step (paper)',
                    {'loss.pdmi_start_step': -1, 'loss.pdmi_every': 1}),
    'no_pos_weight': ('D2-Net, no positive-class weight (paper)',
                      {'loss.positive_class_weight': False}),
}
RESCORED = {'nms_0.5': ('D2-Net, NMS 0.5 (paper)', {'localize.nms_threshold': 0.5})}
TABLE3 = ('ce', 'focal', 'dis', 'full')
SWITCHES = ('full', 'no_schedule', 'no_pos_weight', 'nms_0.5')
VARIANTS = tuple(TRAINED) + tuple(RESCORED)
LABELS = {**{k: v[0] for k, v in TRAINED.items()}, **{k: v[0] for k, v in RESCORED.items()}}
LABELS['full'] = 'L_Dis + L_D (D2-Net, official loss settings)'
# Paper, Tab. 3 (THUMOS14, real I3D features): mAP@0.5 and F1@0.5, for reference only.
PAPER = {'ce': ('23.0', '23.5'), 'focal': ('26.7', '-'), 'dis': ('32.2', '30.7'),
         'full': ('35.9', '36.6')}


def rescore(config, workdir: pathlib.Path, overrides: Dict[str, Any]) -> Dict[str, Any]:
  """Test metrics of the run in `workdir` (its selected checkpoint), other inference settings."""
  import jax  # pylint: disable=import-outside-toplevel
  from d2net_jax import inference  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  config = _common.apply_overrides(config, overrides)
  dataset, model, state, _ = train.restore_trained(config, workdir, 'best')
  params, method_state = jax.device_get((state.params, state.method_state))
  result, _ = inference.evaluate(inference.make_forward(model, config), params, method_state, dataset,
                                 dataset.test_videos(), config)
  return result.to_dict()


def run_all(args, log) -> tuple[List[Dict[str, Any]], Any]:
  """(one test record per (variant, seed), the base config every variant overrides)."""
  base = _common.base_config(args.mode, args.steps, args.data_dir, args.config, args.config_arg)
  base = _common.apply_overrides(base, dict(args.set))
  base = _common.prepare_data(base, log)
  trained = [v for v in args.variants if v in TRAINED]
  if any(v in RESCORED for v in args.variants) and 'full' not in trained:
    trained.append('full')  # The re-scored variants re-use the full D2-Net's checkpoints.
  runs = []
  for variant in trained:
    for seed in range(1, args.seeds + 1):
      config = _common.apply_overrides(base, dict(TRAINED[variant][1], **{'train.seed': seed}))
      workdir = args.out / 'runs' / f'{variant}_seed{seed}'
      summary = _common.train_variant(config, workdir)
      record = _common.test_record(variant, seed, summary['test'],
                                   train_seconds=summary['seconds'],
                                   selected_step=summary['selection']['step'],
                                   skipped=summary['num_skipped'])
      runs.append(record)
      log(f'{variant:13s} seed {seed}: avg mAP {100 * record["average_mAP"]:.1f}, '
          f'F1@0.5 {100 * record["f1"]["f1"]:.1f} ({summary["seconds"]:.0f} s)')
      if variant == 'full':
        for name, (_, overrides) in RESCORED.items():
          if name in args.variants:
            runs.append(_common.test_record(name, seed, rescore(config, workdir, overrides),
                                            selected_step=record['selected_step']))
  return runs, base


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=('smoke', 'quick', 'full'), default='quick',
                      help='sizes of data, model and run (experiments/_common.py SIZES)')
  parser.add_argument('--seeds', type=int, help='seeds per variant (train.seed = 1..N)')
  parser.add_argument('--steps', type=int, help='training steps per run')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated subset of {",".join(VARIANTS)}')
  parser.add_argument('--config', default='synthetic', help='a preset in configs/ (synthetic, '
                      'thumos14, activitynet12); real data needs --set data.path=...')
  parser.add_argument('--config-arg', default=None, help="the preset's argument, e.g. 'paper'")
  _common.add_set_argument(parser, ', e.g. --set data.path=/data/thumos14')
  parser.add_argument('--data-dir', type=pathlib.Path,
                      help='synthetic store cache (default OUT/data)')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--compilation-cache', type=pathlib.Path,
                      help="JAX's persistent compilation cache (default OUT/jax_cache)")
  args = parser.parse_args(argv)
  size = _common.SIZES[args.mode]
  args.seeds = args.seeds or size['seeds']
  args.steps = args.steps or size['steps']
  args.variants = _common.split_choices(parser, args.variants, VARIANTS, 'variants')
  args.out = args.out or _common.ROOT / 'runs' / 'experiments' / NAME
  args.data_dir = args.data_dir or args.out / 'data'
  args.compilation_cache = args.compilation_cache or args.out / 'jax_cache'
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
  runs, base = run_all(args, log)
  meta['wall_s'] = time.perf_counter() - start

  def labels(names):
    return {n: LABELS[n] for n in names}

  paper = {k: list(v) for k, v in PAPER.items()}
  table3 = _common.map_table(runs, labels(TABLE3), max_tiou=0.5, extra=paper,
                             extra_header=['paper mAP@0.5', 'paper F1@0.5'])
  switches = _common.map_table(runs, labels(SWITCHES))
  skipped = sum(r.get('skipped', 0) for r in runs)
  notes = [f'configs/{args.config}.py, {args.mode} size: {_common.describe_data(base)}; '
           f'{args.steps} steps, {args.seeds} seed(s) per variant; '
           + _common.describe_selection(base),
           'full D2-Net: ' + _common.describe_schedule(base),
           f'{skipped} skipped (non-finite or non-positive loss) updates over all runs']
  markdown = (_common.markdown_header('Ablation (Table 3 analogue)', meta, notes) + '\n'
              + '## Loss terms (paper Tab. 3): test mAP (%) and F1@0.5, mean ± std over seeds\n\n'
              + table3
              + '\nThe paper\'s columns are THUMOS14 with real I3D features (Tab. 3; F1 of L_F '
              'not legible in our copy), for reference only.\n\n'
              + '## Official-code switches (each row changes one setting of the full D2-Net to '
              'the paper\'s)\n\n' + switches
              + '\nNMS 0.5 re-scores the checkpoints of the official-loss-settings rows (selected '
              'with NMS 0.3) on the test split; it is not retrained.\n')
  figure, axes = _common.new_figure(2)
  _common.plot_map(axes[0], runs, labels(TABLE3), 'loss terms (Tab. 3)')
  _common.plot_map(axes[1], runs, labels(SWITCHES), 'official-code switches')
  figure.tight_layout()
  results = {'meta': meta, 'args': {k: str(v) for k, v in vars(args).items()}, 'runs': runs}
  return _common.finish(args.out, markdown, results, figure)


if __name__ == '__main__':
  sys.exit(main())
