"""`d2net-jax localize --workdir RUN [--data PATH] [--subset NAME] [--output FILE]`.

Runs a trained checkpoint (the selected best one by default) over a subset of the run's dataset
(the test subset by default), writes the detections as an ActivityNet results JSON and, when the
subset has ground truth, prints its mAP table. The run's config (RUN/config.json) applies;
`--config.localize.nms_threshold=0.5` and the like override it.
"""

import pathlib
import sys

from absl import flags

from d2net_jax.commands import config_cli
from d2net_jax.data.records import DataError

PROG = 'd2net-jax localize'


def _define(fv):
  flags.DEFINE_string('data', None, 'Dataset path (sets config.data.path).', flag_values=fv)
  flags.DEFINE_string('subset', None, 'Subset to run on (default: config.data.test_subset).',
                      flag_values=fv)
  flags.DEFINE_string('output', None, 'Detections JSON (default: RUN/detections_<subset>.json).',
                      flag_values=fv)
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint.', flag_values=fv)


def main(argv) -> int:
  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(__doc__)
    return 0
  try:
    config, fv = config_cli.parse_run(PROG, argv, extra_flags=(_define,))
    if fv.data:
      config.data.path = fv.data
  except config_cli.UsageError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  # pylint: disable=import-outside-toplevel
  from d2net_jax import detections as detections_lib
  from d2net_jax import evaluation
  from d2net_jax import inference
  from d2net_jax import train
  # pylint: enable=import-outside-toplevel
  workdir = pathlib.Path(fv.workdir)
  try:
    dataset, model, state, which = train.restore_trained(config, workdir, fv.checkpoint)
    subset = fv.subset or dataset.test_subset
    videos = dataset.subset(subset)
    if not videos:
      raise DataError(f'{dataset.name}: no video in subset {subset!r}')
    forward = inference.make_forward(model, config)
    outputs = inference.video_outputs(forward, state.params, state.method_state, videos, config,
                                      dataset.num_classes)
    found = inference.detect(outputs, videos, config)
  except (DataError, FileNotFoundError, ValueError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  output = pathlib.Path(fv.output or workdir / f'detections_{subset}.json')
  detections_lib.write_detections(output, found, dataset.class_names)
  print(f'{sum(len(d) for d in found.values())} detections in {len(videos)} {subset} videos '
        f'({which} checkpoint, step {int(state.step)}) written to {output}')
  if any(len(v.segments) for v in videos):
    result = inference.score(dataset, videos, found, config)
    print(evaluation.format_table(result, per_class=False))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
