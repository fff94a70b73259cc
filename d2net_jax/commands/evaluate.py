"""`d2net-jax evaluate`: score an ActivityNet results JSON against an ActivityNet GT JSON.

  d2net-jax evaluate --ground-truth gt.json --detections det.json [--tiou 0.1:0.7:0.1]
      [--subset test] [--ambiguous Ambiguous_test.txt | --no-ambiguous] [--output metrics.json]
      [--protocol activitynet|d2net_official] [--official-gt-file test_gt_segments.npy]
      [--keep-later-classes] [--official-fps 25] [--official-frames 16]

`--protocol d2net_official` scores as the official D2-Net detectionMAP.py
(d2net_jax/evaluation/official.py; default tIoU 0.1:0.5): with `--official-gt-file` its THUMOS14
branch (that file's instances; gt.json gives the scored videos, their durations and the classes),
else its ActivityNet1.2 branch (gt.json's instances on the snippet grid).

Ambiguous regions (THUMOS14): the ground truth's own ("ambiguous" in the JSON, as `convert
--gt-out` writes them) are used when it carries them, as `train` and `localize` do
(evaluation.use_ambiguous); `--ambiguous FILE` uses that file's instead, `--no-ambiguous` none.
The protocol line says which.

Prints the mAP table (percent) with the number of videos and instances scored, the TP/FP counts per
threshold and the per-class AP; `--output` writes the metrics JSON (fractions in [0, 1]).
"""

from __future__ import annotations

import argparse
import sys

from d2net_jax import config as config_lib
from d2net_jax.commands import argparse_cli
from d2net_jax.data import ground_truth as ground_truth_lib
from d2net_jax.data import stpn
from d2net_jax.data.records import DataError
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax.evaluation import official as evaluation_official


def _parser() -> argparse.ArgumentParser:
  defaults = config_lib.evaluation_config()
  parser = argparse_cli.ArgumentParser(
      prog='d2net-jax evaluate',
      description='Detection mAP (ActivityNet eval_detection semantics) of a results JSON.')
  parser.add_argument('--ground-truth', required=True,
                      help='ActivityNet GT JSON '
                      '({"database": {video: {"subset", "annotations"}}}).')
  parser.add_argument('--detections', required=True,
                      help='ActivityNet results JSON ({"results": {video: [{"label", "score", '
                      '"segment"}]}}).')
  parser.add_argument('--tiou', default=None,
                      help='thresholds, start:stop:step (stop included) or a comma list; default '
                      'the config (THUMOS14 0.1:0.7:0.1). ActivityNet: 0.5:0.95:0.05.')
  parser.add_argument('--subset', action='append', default=None,
                      help='GT subset to score (repeatable); needed when the GT holds several.')
  regions = parser.add_argument_group(
      'ambiguous regions', "default: the ground truth's own regions, if it carries any; "
      'detections overlapping them are dropped').add_mutually_exclusive_group()
  regions.add_argument('--ambiguous', default=None, help='the regions of a THUMOS14 Ambiguous_test.txt')
  regions.add_argument('--no-ambiguous', action='store_true',
                       help='no regions (train / localize: --config.evaluation.use_ambiguous=False)')
  parser.add_argument('--unknown-videos', default=defaults.unknown_videos,
                      choices=evaluation.UNKNOWN_VIDEO_POLICIES,
                      help='detections in videos outside the scored GT (default: %(default)s, '
                      'as the reference scorer).')
  parser.add_argument('--protocol', default=defaults.protocol,
                      choices=evaluation_official.PROTOCOLS,
                      help="'activitynet' (the field's standard, default) or 'd2net_official' "
                      '(the official D2-Net detectionMAP.py).')
  official = parser.add_argument_group(
      'd2net_official protocol', 'the official D2-Net detectionMAP.py (--protocol d2net_official)')
  official.add_argument('--official-gt-file', default=None,
                        help='the official test_gt_segments.npy (THUMOS14 branch); without it, '
                        'the ActivityNet1.2 branch on --ground-truth.')
  official.add_argument('--keep-later-classes', action='store_true',
                        help='a class without detections gets AP 0 but does not zero the '
                        'classes after it (the official code does).')
  official.add_argument('--official-fps', type=float, default=defaults.official_fps,
                        help='the grid: seconds * fps / frames (default %(default)s).')
  official.add_argument('--official-frames', type=int,
                        default=defaults.official_frames_per_snippet,
                        help='frames per snippet of the grid (default %(default)s).')
  parser.add_argument('--classes', default=None,
                      help="the model's class names: a run's model.json or a text file, one per "
                      'line; detections of classes the ground truth lacks then count as false '
                      'positives of those classes instead of an error.')
  parser.add_argument('--no-per-class', action='store_true', help='omit the per-class table.')
  parser.add_argument('--output', default=None, help='write the metrics JSON here.')
  return parser


def _official(args) -> evaluation.EvaluationResult:
  """The d2net_official protocol on the command's files."""
  tiou = (evaluation.parse_tiou(args.tiou) if args.tiou is not None
          else evaluation_official.OFFICIAL_THUMOS14_TIOU)
  dataset = ground_truth_lib.read_ground_truth(args.ground_truth)
  subsets = sorted({v.subset for v in dataset.videos})
  wanted = args.subset or subsets
  if not args.subset and len(subsets) > 1:
    raise ValueError(f'{args.ground_truth}: holds the subsets {subsets}; say which to score '
                     '(--subset).')
  videos = [v for v in dataset.videos if v.subset in wanted]
  grid = (args.official_fps, args.official_frames)
  if args.official_gt_file:
    scored = [v for v in videos if v.segments.size]
    gt = evaluation_official.thumos14_npy_ground_truth(
        args.official_gt_file, [(v.video_id, float(v.duration)) for v in scored],
        list(dataset.class_names), *grid)
  else:
    gt = evaluation_official.annotations_ground_truth(videos, list(dataset.class_names), *grid,
                                                      str(args.ground_truth))
  if args.ambiguous:
    ambiguous, note = evaluation.parse_ambiguous(args.ambiguous), ''
  else:
    ids = {v.video_id for v in videos}
    ambiguous, note = evaluation.choose_ambiguous(
        {v: r for v, r in (dataset.ambiguous or {}).items() if v in ids},
        not args.no_ambiguous, str(args.ground_truth), '--no-ambiguous')
  return evaluation_official.evaluate_official(
      gt, args.detections, tiou, ambiguous=ambiguous, ambiguous_note=note,
      zero_ap_after_empty_class=not args.keep_later_classes,
      class_names=list(dataset.class_names))


def _class_names(path) -> list[str] | None:
  """--classes: a run's model.json ("class_names") or a text file of names, one per line."""
  if path is None:
    return None
  if str(path).endswith('.json'):
    data = ground_truth_lib.load_json(path)
    names = data.get('class_names') if isinstance(data, dict) else None
    if not isinstance(names, list):
      raise DataError(f'{path}: no "class_names" list (a run\'s model.json has one)')
    return [str(n) for n in names]
  return stpn.read_class_list(path)


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.protocol == 'd2net_official':
      result = _official(args)
    else:
      tiou = (evaluation.parse_tiou(args.tiou) if args.tiou is not None
              else evaluation.check_tiou(config_lib.evaluation_config().tiou_thresholds))
      ambiguous, source, note = args.ambiguous, None, ''
      if not args.ambiguous:
        source = str(args.ground_truth)
        ambiguous, note = evaluation.choose_ambiguous(
            evaluation.ground_truth_ambiguous(args.ground_truth), not args.no_ambiguous, source,
            '--no-ambiguous')
      result = evaluation.evaluate_detections(
          args.ground_truth, args.detections, tiou, subset=args.subset, ambiguous=ambiguous,
          ambiguous_source=source, ambiguous_note=note, unknown_videos=args.unknown_videos,
          class_names=_class_names(args.classes))
  except (DataError, ValueError, OSError) as e:
    print(f'd2net-jax evaluate: error: {e}', file=sys.stderr)
    return 1
  print(evaluation.format_table(result, per_class=not args.no_per_class))
  if args.output:
    path = evaluation.save_metrics(args.output, result)
    print(f'\nMetrics written to {path}')
  return 0
