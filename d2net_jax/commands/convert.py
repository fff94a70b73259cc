"""`d2net-jax convert` (`python -m d2net_jax.commands.convert`): W-TALC or STPN data to the HDF5 store.

  d2net-jax convert --layout wtalc --root /data/wtalc --name Thumos14reduced \\
      --out thumos14.h5 --trust-pickle --gt-out thumos14_gt.json
  d2net-jax convert --layout stpn --root /data/THUMOS14 --out thumos14.h5

Prints the videos per subset, the feature dim, every issue found (clipped segments, feature
timing mismatches, ...) and the config flags to train on the store. Every bad file or video is
reported in one pass (one line each, naming the file and the video), then it fails with exit
status 1 and writes nothing; so does a failed write (disk full, read-only folder), in one line
naming the path. A progress bar shows on a terminal when writing takes more than a few seconds.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys

from d2net_jax.commands import argparse_cli
from d2net_jax.data import ground_truth, hdf5_store, stpn, validation, wtalc
from d2net_jax.data.records import DataError, DataErrors, Dataset

TRUST_PICKLE_HELP = (
    'allow loading pickled .npy files (the W-TALC features and annotation lists are pickled '
    'object arrays). Unpickling a file runs code from it: use this only for files from a source '
    'you trust. Convert once; the HDF5 store needs no pickle.')


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
  """Options shared by `convert` and `import`: output, timing, policies."""
  parser.add_argument('--out', required=True, type=pathlib.Path, help='HDF5 store to write')
  parser.add_argument('--gt-out', type=pathlib.Path, default=None,
                      help='also write the ground truth as ActivityNet JSON (for evaluation)')
  parser.add_argument('--seconds-per-snippet', type=float, default=0.64,
                      help='feature timing: seconds per feature row (I3D: 16 frames at 25 fps = '
                      '0.64, the default)')
  parser.add_argument('--feature-dim', type=int, default=None,
                      help='expected feature dim D (RGB D/2 then flow D/2); default: the data')
  subsets = parser.add_argument_group(
      'subsets', 'defaults: THUMOS14 validation / test, ActivityNet training / validation '
      '(convert);\ntrain / test (import)')
  subsets.add_argument('--train-subset', default=None, help='training subset name')
  subsets.add_argument('--test-subset', default=None, help='test subset name')
  checks = parser.add_argument_group('checks of the annotations against the features')
  checks.add_argument('--segment-policy', choices=validation.SEGMENT_POLICIES, default='clip',
                      help='segments reaching outside [0, duration]: clip them (with a '
                      'warning; default) or refuse the data')
  checks.add_argument('--timing-check', choices=validation.TIMING_CHECKS, default='warn',
                      help='features whose length disagrees with the annotated duration: warn '
                      '(default) or refuse')
  checks.add_argument('--timing-tolerance-snippets', type=float, default=2.0,
                      help='a length within this many snippets of the duration agrees '
                      '(default %(default)s)')
  checks.add_argument('--timing-tolerance-fraction', type=float, default=0.02,
                      help='... or within this fraction of the duration (default %(default)s)')
  parser.add_argument('--compression', choices=hdf5_store.COMPRESSIONS, default='none',
                      help='compression of the feature arrays in the store')
  parser.add_argument('--no-progress', action='store_true',
                      help='no progress bar (default: one on a terminal, for passes > 2 s)')


def timing_options(args) -> dict:
  return dict(segment_policy=args.segment_policy, timing_check=args.timing_check,
              timing_tolerance_snippets=args.timing_tolerance_snippets,
              timing_tolerance_fraction=args.timing_tolerance_fraction)


def summary_lines(dataset: Dataset) -> list[str]:
  counts = collections.Counter(v.subset for v in dataset.videos)
  instances = collections.Counter()
  for v in dataset.videos:
    instances[v.subset] += len(v.segments)
  classes = f'{dataset.num_classes} classes' if dataset.num_classes else 'no labels'
  lines = [f'{dataset.name}: {len(dataset.videos)} videos, {classes}, '
           f'feature dim {dataset.feature_dim} (streams {dataset.streams})']
  for subset, n in counts.items():
    role = {dataset.train_subset: ' (train)', dataset.test_subset: ' (test)'}.get(subset, '')
    lines.append(f'  subset {subset!r}{role}: {n} videos, {instances[subset]} instances')
  return lines


def write_outputs(dataset: Dataset, args, report: validation.Report, problems=(),
                  for_training: bool = True) -> None:
  """Writes the store (and ground truth), then prints the summary, the issues and the flags
  (those to train on it, unless not `for_training`).

  problems: the bad videos the reader left out; with the store's own they fail it (DataErrors)."""
  path = hdf5_store.write_store(args.out, dataset, compression=args.compression,
                                progress=False if args.no_progress else None, problems=problems)
  print('\n'.join(summary_lines(dataset)))
  print(f'wrote {path}')
  if args.gt_out:
    print(f'wrote {ground_truth.export_ground_truth(dataset, args.gt_out)}')
  if report.issues:
    print(f'{len(report.issues)} issues (handled as stated):')
    for issue in report.issues:
      print(f'  {issue}')
  if not for_training:
    return
  sps = dataset.videos[0].seconds_per_snippet if dataset.videos else args.seconds_per_snippet
  print(train_flags_line(dataset, path, sps))


def train_flags_line(dataset: Dataset, path, seconds_per_snippet: float) -> str:
  """'train on it with: --config.data...' for a store just written."""
  return ('train on it with: --config.data.kind=hdf5 '
          f'--config.data.path={path} --config.data.feature_dim={dataset.feature_dim} '
          f'--config.data.num_classes={dataset.num_classes} '
          f'--config.data.train_subset={dataset.train_subset} '
          f'--config.data.test_subset={dataset.test_subset} '
          f'--config.data.seconds_per_snippet={seconds_per_snippet:g}')


def run_command(prog: str, body) -> int:
  """Runs `body()`; exit status 1 after a DataError (one line), DataErrors (one line per problem,
  then the summary) or a failed write (one line naming the path)."""
  try:
    body()
  except DataErrors as e:
    for problem in e.problems:
      print(f'{prog}: {problem}', file=sys.stderr)
    print(f'{prog}: error: {e.summary} (listed above)', file=sys.stderr)
    return 1
  except DataError as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return 1
  except OSError as e:
    where = f'{e.filename}: ' if e.filename else ''
    print(f'{prog}: error: {where}{e.strerror or e}', file=sys.stderr)
    return 1
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse_cli.ArgumentParser(
      prog='d2net-jax convert', description='Convert W-TALC or STPN features to the HDF5 store.',
      epilog=__doc__.split('\n\n')[1] if __doc__ else None,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--layout', required=True, choices=('wtalc', 'stpn'),
                      help='wtalc: <root>/<Name>-I3D-JOINTFeatures.npy + <Name>-Annotations/; '
                      'stpn: <root>/features/{train,test}/{rgb,flow}/<video>.npy + gt.json + '
                      'split_{train,test}.txt')
  parser.add_argument('--root', required=True, type=pathlib.Path, help='data folder')
  parser.add_argument('--name', default=None,
                      help='wtalc: the file prefix <Name> (default Thumos14reduced); stpn: the '
                      'dataset name (default: the folder name)')
  parser.add_argument('--trust-pickle', action='store_true', help=TRUST_PICKLE_HELP)
  wtalc_group = parser.add_argument_group('wtalc layout')
  wtalc_group.add_argument(
      '--video-labels', choices=wtalc.VIDEO_LABEL_SOURCES, default='labels_all',
      help="the weak video label: labels_all.npy (official), the instances' classes, or their "
      'union')
  wtalc_group.add_argument(
      '--ambiguous', type=pathlib.Path, default=None,
      help='ambiguous regions file (default: <Name>-Annotations/Ambiguous_test.txt if present)')
  parser.add_argument_group('stpn layout').add_argument(
      '--classes', type=pathlib.Path, default=None,
      help='class names file, one per line (default: sorted gt.json labels)')
  add_common_arguments(parser)
  return parser


def read(args, report: validation.Report, collect: list[str]) -> Dataset:
  """The dataset of the layout; bad videos left out and their problems appended to `collect`."""
  options = dict(feature_dim=args.feature_dim, seconds_per_snippet=args.seconds_per_snippet,
                 train_subset=args.train_subset, test_subset=args.test_subset, report=report,
                 collect=collect, **timing_options(args))
  if args.layout == 'wtalc':
    return wtalc.read_dataset(args.root, args.name or 'Thumos14reduced',
                              trust_pickle=args.trust_pickle, video_labels=args.video_labels, ambiguous_file=args.ambiguous,
                              **options)
  class_names = stpn.read_class_list(args.classes) if args.classes else None
  return stpn.read_dataset(args.root, name=args.name or '', class_names=class_names, **options)


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)

  def body():
    report, problems = validation.Report(), []
    dataset = read(args, report, problems)  # Every bad file found here and while writing,
    write_outputs(dataset, args, report, problems)  # then reported together.

  return run_command('d2net-jax convert', body)


if __name__ == '__main__':
  sys.exit(main())
