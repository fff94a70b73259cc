"""`d2net-jax evaluate`: score an ActivityNet results JSON against an ActivityNet GT JSON.

  d2net-jax evaluate --ground-truth gt.json --detections det.json [--tiou 0.1:0.7:0.1]
      [--subset test] [--ambiguous Ambiguous_test.txt] [--output metrics.json]

Prints the mAP table (percent) with the number of videos and instances scored, the TP/FP counts per
threshold and the per-class AP; `--output` writes the metrics JSON (fractions in [0, 1]).
"""

from __future__ import annotations

import argparse
import sys

from d2net_jax import config as config_lib
from d2net_jax import evaluation
from d2net_jax.data.records import DataError


def _parser() -> argparse.ArgumentParser:
  defaults = config_lib.evaluation_config()
  parser = argparse.ArgumentParser(
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
  parser.add_argument('--ambiguous', default=None,
                      help='THUMOS14 Ambiguous_test.txt: drop detections overlapping its regions.')
  parser.add_argument('--unknown-videos', default=defaults.unknown_videos,
                      choices=evaluation.UNKNOWN_VIDEO_POLICIES,
                      help='detections in videos outside the scored GT (default: %(default)s, '
                      'as the reference scorer).')
  parser.add_argument('--no-per-class', action='store_true', help='omit the per-class table.')
  parser.add_argument('--output', default=None, help='write the metrics JSON here.')
  return parser


def main(argv: list[str]) -> int:
  args = _parser().parse_args(argv)
  try:
    tiou = (evaluation.parse_tiou(args.tiou) if args.tiou is not None
            else evaluation.check_tiou(config_lib.evaluation_config().tiou_thresholds))
    result = evaluation.evaluate_detections(
        args.ground_truth, args.detections, tiou, subset=args.subset,
        ambiguous=args.ambiguous, unknown_videos=args.unknown_videos)
  except (DataError, ValueError, OSError) as e:
    print(f'd2net-jax evaluate: error: {e}', file=sys.stderr)
    return 1
  print(evaluation.format_table(result, per_class=not args.no_per_class))
  if args.output:
    path = evaluation.save_metrics(args.output, result)
    print(f'\nMetrics written to {path}')
  return 0
