"""`d2net-jax synthetic --preset thumos14_like --out DIR --feature-dim 256 [...]`: writes the synthetic
benchmark (d2net_jax/data/synthetic.py) to DIR/<name>.h5 and DIR/<name>.gt.json and prints its
statistics.
"""

import sys
from typing import Optional, Sequence

from d2net_jax import config as config_lib
from d2net_jax.commands import argparse_cli
from d2net_jax.data import hdf5_store
from d2net_jax.data import synthetic
from d2net_jax.data.records import DataError


def _data_config(args):
  c = config_lib.data_config()
  c.kind = 'synthetic'
  c.path = str(args.out)
  c.feature_dim = args.feature_dim
  c.seconds_per_snippet = args.seconds_per_snippet
  c.trust_pickle = args.trust_pickle
  c.synthetic.preset = args.preset
  c.synthetic.seed = args.seed
  c.synthetic.num_train = args.num_train
  c.synthetic.num_test = args.num_test
  c.synthetic.annotations = args.annotations
  c.synthetic.noise_scale = args.noise_scale
  c.synthetic.features = args.features
  return c


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`d2net-jax synthetic`: writes the benchmark to DIR/<name>.h5 and DIR/<name>.gt.json."""
  parser = argparse_cli.ArgumentParser(
      prog='d2net-jax synthetic',
      description='Write the synthetic WTAL benchmark (HDF5 store + ActivityNet-style gt.json).')
  parser.add_argument('--preset', default='thumos14_like', choices=sorted(synthetic.PRESETS))
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--feature-dim', type=int, default=2048,
                      help='D (even): D/2 RGB then D/2 flow channels (I3D: 2048)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num-train', type=int, default=-1, help="-1: the preset's count")
  parser.add_argument('--num-test', type=int, default=-1, help="-1: the preset's count")
  parser.add_argument('--noise-scale', type=float, default=1.0,
                      help='multiplies the feature noise (harder > 1 > easier)')
  parser.add_argument('--features', default='', choices=('',) + synthetic.FEATURE_MODELS,
                      help="feature model ('': the preset's, i3d_like)")
  parser.add_argument('--seconds-per-snippet', type=float, default=0.64)
  parser.add_argument('--annotations', default='',
                      help='lay the features over this W-TALC annotation folder instead')
  parser.add_argument('--trust-pickle', action='store_true',
                      help='allow unpickling the annotation .npy files (trusted files only)')
  parser.add_argument('--force', action='store_true', help='rebuild even if the store exists')
  parser.add_argument('--no-progress', action='store_true',
                      help='no progress bar (default: one on a terminal, for passes > 2 s)')
  args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
  if args.feature_dim < 2 or args.feature_dim % 2:
    parser.error(f'--feature-dim {args.feature_dim} must be even and >= 2')
  for flag, count in (('--num-train', args.num_train), ('--num-test', args.num_test)):
    if count < -1:
      parser.error(f'{flag} {count}: must be >= 0, or -1 for the preset\'s count')
  if args.num_train == 0 and args.num_test == 0 and not args.annotations:
    parser.error('--num-train 0 and --num-test 0: no video to write')
  try:
    path = synthetic.ensure_store(_data_config(args), force=args.force,
                                  progress=False if args.no_progress else None)
  except DataError as e:
    print(f'd2net-jax synthetic: error: {e}', file=sys.stderr)
    return 1
  except OSError as e:  # Disk full, read-only folder: the path and the cause.
    print(f'd2net-jax synthetic: error: {e.filename or args.out}: {e.strerror or e}',
          file=sys.stderr)
    return 1
  dataset = hdf5_store.read_store(path)
  stats = synthetic.annotation_statistics(dataset.videos)
  print(f'{path}\n{synthetic.ground_truth_path(path)}')
  print(f'{dataset.name}: {len(dataset.train_videos())} {dataset.train_subset} + '
        f'{len(dataset.test_videos())} {dataset.test_subset} videos, {dataset.num_classes} '
        f'classes, D={dataset.feature_dim}')
  targets = {} if args.annotations else synthetic.get_preset(args.preset).targets
  for key, value in stats.items():
    target = f'  (real: {targets[key]:g})' if key in targets else ''
    print(f'  {key:24s} {value:10.3f}{target}')
  subset = 'training' if dataset.train_videos() else 'test'  # --num-train 0: the test videos.
  sample = (dataset.train_videos() or dataset.test_videos())[:16]
  features = synthetic.stream_statistics([v.features() for v in sample], dataset.feature_dim)
  print(f'features ({synthetic._stored_parameters(path)["features"]}, first {len(sample)} '
        f'{subset} videos; targets: synthetic_features.I3DLike):')
  print(f'  {"":24s} ' + ' '.join(f'{name:>10s}' for name in features))
  for key in features['rgb']:
    print(f'  {key:24s} ' + ' '.join(f'{features[name][key]:10.3f}' for name in features))
  return 0


if __name__ == '__main__':
  sys.exit(main())
