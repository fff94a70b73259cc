"""`d2net-jax import` (`python -m d2net_jax.commands.import_data`): your own per-video .npy
features and labels into the HDF5 store. What it reads, and the rules: `d2net_jax/data/own_data.py`.

  d2net-jax import --features feats/ --labels labels.csv [--segments segments.csv] \\
      [--classes classes.txt] --out mydata.h5 [--gt-out mydata_gt.json]
  d2net-jax import --features new_feats/ --out new.h5    # new videos, no labels: then
  d2net-jax localize --workdir RUN --data new.h5         # (class names from the run)
"""

import argparse
import json
import pathlib
import sys

from d2net_jax.commands import argparse_cli
from d2net_jax.commands import convert
from d2net_jax.data import own_data, records, stpn, validation
from d2net_jax.data.records import DataError
from d2net_jax.video import extract


def add_label_arguments(parser: argparse.ArgumentParser, labels_required: bool) -> None:
  """--labels, --segments, --classes (`import`, and `extract` where labels are optional)."""
  parser.add_argument('--labels', required=labels_required, type=pathlib.Path,
                      help='video-level labels: .csv (video,labels[,subset][,duration]) or .json'
                      + ('' if labels_required else '; without them: new videos for `localize --data`, class names from the trained run'))
  parser.add_argument('--segments', type=pathlib.Path, default=None,
                      help='optional ground-truth instances for evaluation: .csv '
                      '(video,label,start,end) or ActivityNet .json')
  parser.add_argument('--classes', type=pathlib.Path, default=None,
                      help='class names, one per line, in index order (default: sorted labels)')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse_cli.ArgumentParser(
      prog='d2net-jax import',
      description='Import your own per-video .npy features and labels into the HDF5 store.',
      epilog=own_data.__doc__.split('\n\n', 1)[1] if own_data.__doc__ else None,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--features', required=True, type=pathlib.Path,
                      help='folder of <video>.npy (T, D) float features')
  add_label_arguments(parser, labels_required=False)
  parser.add_argument('--name', default='', help='dataset name (default: the features folder)')
  parser.add_argument('--default-subset', default=None,
                      help='subset of videos without one (default: the training subset)')
  parser.add_argument('--streams', choices=records.STREAMS, default=None,
                      help="what the features hold: 'rgb+flow' (RGB then flow halves, the "
                      "field's I3D features), 'rgb' or 'flow' (default: a `d2net-jax extract` "
                      "features folder's own, else 'rgb+flow')")
  parser.add_argument('--label-separator', default=';', help="labels CSV separator (';')")
  parser.add_argument('--video-column', default='video')
  parser.add_argument('--labels-column', default='labels')
  parser.add_argument('--subset-column', default='subset')
  parser.add_argument('--duration-column', default='duration')
  convert.add_common_arguments(parser)
  return parser


def _folder_streams(folder: pathlib.Path) -> str:
  """The streams a `d2net-jax extract` features folder records, else the field's two."""
  try:
    return json.loads((folder / extract.EXTRACTOR_FILE).read_text())['streams']
  except (OSError, ValueError, KeyError, TypeError):
    return records.TWO_STREAMS


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)

  def body():
    report, problems = validation.Report(), []
    new = args.default_subset or own_data.NEW_SUBSET  # Without labels: new videos only.
    train_subset = args.train_subset or ('train' if args.labels else new)
    test_subset = args.test_subset or ('test' if args.labels else new)
    dataset = own_data.build_dataset(
        args.features, args.labels, segments_path=args.segments,
        class_names=stpn.read_class_list(args.classes) if args.classes else None,
        name=args.name, seconds_per_snippet=args.seconds_per_snippet,
        feature_dim=args.feature_dim, train_subset=train_subset, test_subset=test_subset,
        default_subset=args.default_subset, separator=args.label_separator, report=report,
        video_column=args.video_column, labels_column=args.labels_column,
        subset_column=args.subset_column, duration_column=args.duration_column,
        collect=problems, streams=args.streams or _folder_streams(args.features),
        **convert.timing_options(args))
    convert.write_outputs(dataset, args, report, problems,  # Reports them with the store's own.
                          for_training=args.labels is not None)
    if args.labels is None:
      print(f'{len(dataset.videos)} new videos without labels: run a trained model on them with '
            f'`d2net-jax localize --workdir RUN --data {args.out}` (class names from the run)')
      return
    try:
      validation.check_subsets([v.subset for v in dataset.videos], train_subset, test_subset,
                               args.out)
    except DataError as e:
      print(f'note: {e}; training needs both subsets', file=sys.stderr)

  return convert.run_command('d2net-jax import', body)


if __name__ == '__main__':
  sys.exit(main())
