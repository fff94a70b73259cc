"""`d2net-jax localize --workdir RUN [--data PATH] [--subset NAME] [--output FILE]`.

Runs a trained checkpoint (the selected best one by default) over a subset of the run's dataset
(the test subset by default), writes the detections as an ActivityNet results JSON and, when the
subset has ground truth, prints its mAP table. The run's config (RUN/config.json) applies;
`--config.localize.nms_threshold=0.5` and the like override it. RUN/detections_test.json, what
`train` scored, is never overwritten. On the run's training subset a note says how many of the
videos were trained on (their mAP is no held-out score).

`--data NEW.h5` runs the model on another store, whatever the run's data.kind was (a folder is
read as the run's kind when that is 'wtalc' or 'stpn'): it needs no training subset, and without
ground truth the detections are written and scoring is skipped. The default subset is then the
run's test subset if the store has it, else every video of the store. The store's classes are
mapped to the model's (RUN/model.json) by name; different names are an error that lists them.

Flags:
  --workdir RUN         the training run folder (required)
  --data PATH           apply the model to this data (HDF5 store, or a W-TALC / STPN folder)
  --subset NAME         subset to run on (default above)
  --output FILE         detections JSON (default: RUN/detections_<subset>_localize.json, with
                        --data RUN/detections_<data file stem>_<subset>.json)
  --checkpoint best|latest   which checkpoint (default best: the selected one)
  --per-class           also print the per-class AP table
  --[no]progress        progress bars (default: when stderr is a terminal)
  --config.S.F=VALUE    override a field of the run's config (--config.localize.nms_threshold=0.5)
"""

import pathlib
import sys

from absl import flags

from d2net_jax import inference
from d2net_jax.commands import trained_run
from d2net_jax.data.records import DataError
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax.training import train

PROG = 'd2net-jax localize'


def _define(fv):
  flags.DEFINE_string('data', None, 'Apply the model to this data (an HDF5 store, whatever the '
                      "run's data.kind).", flag_values=fv)
  flags.DEFINE_string('subset', None, 'Subset to run on (default: config.data.test_subset).',
                      flag_values=fv)
  flags.DEFINE_string('output', None, 'Detections JSON (default: '
                      'RUN/detections_<subset>_localize.json).', flag_values=fv)
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint.', flag_values=fv)
  flags.DEFINE_bool('per-class', False, 'Also print the per-class AP table.', flag_values=fv)
  flags.DEFINE_bool('progress', None, 'Progress bars (default: when stderr is a terminal).',
                    flag_values=fv)


def main(argv) -> int:
  run = trained_run.open_run(PROG, __doc__, argv, _define)
  if isinstance(run, int):
    return run
  config, fv, dataset, state = run.config, run.flags, run.dataset, run.state
  try:
    subset = fv.subset or dataset.test_subset
    videos = dataset.subset(subset)
    if fv.data and not fv.subset and not videos:  # New videos: all of the store.
      subset, videos = 'all', list(dataset.videos)
    if not videos:
      raise DataError(f'{dataset.name}: no video in subset {subset!r}')
    forward = inference.make_forward(run.model, config)
    outputs = inference.video_outputs(forward, state.params, state.method_state, videos, config,
                                      dataset.num_classes, progress=fv.progress)
    found = inference.detect(outputs, videos, config, progress=fv.progress)
  except (DataError, FileNotFoundError, ValueError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  default = (f'detections_{pathlib.Path(fv.data).stem}_{subset}.json' if fv.data else
             f'detections_{subset}_localize.json')  # detections_test.json is train's.
  output = pathlib.Path(fv.output or run.workdir / default)
  try:
    detections_lib.write_detections(output, found, dataset.class_names)
  except OSError as e:
    print(f'{PROG}: error: cannot write {e.filename or output}: {e.strerror or e}',
          file=sys.stderr)
    return 1
  of = 'all of the store' if subset == 'all' else f'subset {subset!r}'
  print(f'{sum(len(d) for d in found.values())} detections in {len(videos)} videos ({of}; '
        f'{run.which} checkpoint, step {int(state.step)}) written to {output}')
  if not fv.data and subset == dataset.train_subset:
    print(_trained_on_note(config, dataset, videos))
  if any(len(v.segments) for v in videos):
    result = inference.score(dataset, videos, found, config)
    print(evaluation.format_table(result, per_class=fv['per-class'].value))
  else:
    print(f'No ground truth in these {len(videos)} videos: detections written, scoring skipped.')
  return 0


def _trained_on_note(config, dataset, videos) -> str:
  """How many of `videos` (of the run's training subset) the run trained on."""
  trained_ids, selecting, protocol = train.selection_videos(config, dataset)
  trained = len({v.video_id for v in trained_ids} & {v.video_id for v in videos})
  held_out = (f'; the other {len(videos) - trained} are its validation split, which selected '
              'the checkpoint' if protocol == 'validation' and selecting else '')
  return (f'note: subset {dataset.train_subset!r} is the run\'s training subset: {trained} of '
          f'these {len(videos)} videos were trained on{held_out}; this mAP is not a held-out '
          'score')


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
