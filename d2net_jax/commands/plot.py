"""`d2net-jax plot --workdir RUN --video ID [--output FILE.png|.pdf|.svg] [--start S --end S]`.

Draws one video's TCAM, bottom-up attention lambda', ground truth and detections (Fig. 4) from a
trained checkpoint (another method: its 'tcam' and 'attention' outputs and the classes its localizer
selected) (the selected best one by default); default output RUN/plots/<ID>.png. The format
follows the extension of --output (png, pdf, svg; any other is refused before any work);
--start/--end (seconds) draw a window of a long video. The legend and the class rows say which
classes have ground truth in the video and which are predicted only.
"""

import pathlib
import sys

from absl import flags

from d2net_jax import inference
from d2net_jax import localize
from d2net_jax import methods
from d2net_jax.commands import config_cli
from d2net_jax.commands import trained_run
from d2net_jax.data.records import DataError
from d2net_jax.evaluation import plotting

PROG = 'd2net-jax plot'


def _define(fv):
  flags.DEFINE_string('video', None, 'Video id.', flag_values=fv)
  flags.DEFINE_string('data', None, 'Apply the model to this data (an HDF5 store, whatever the '
                      "run's data.kind; see localize --help).", flag_values=fv)
  flags.DEFINE_string('output', None, 'Figure file, .png, .pdf or .svg (default: '
                      'RUN/plots/<video>.png).', flag_values=fv)
  flags.DEFINE_float('start', None, 'Window start, seconds (default: 0).', flag_values=fv)
  flags.DEFINE_float('end', None, 'Window end, seconds (default: the end of the video).',
                     flag_values=fv)
  flags.DEFINE_list('classes', None, 'Classes to draw (default: relevant, GT and detected).',
                    flag_values=fv)
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint.', flag_values=fv)


def _check_flags(fv):
  """The window (start, end) seconds of --start/--end, or None; UsageError / ValueError for a
  missing --video or a bad flag."""
  if not fv.video:
    raise config_cli.UsageError('--video ID is required')
  if fv.output:
    plotting.check_output(fv.output)
  if fv.start is None and fv.end is None:
    return None
  return plotting.check_window((fv.start or 0.0, float('inf') if fv.end is None else fv.end))


def main(argv) -> int:
  run = trained_run.open_run(PROG, __doc__, argv, _define, check=_check_flags)
  if isinstance(run, int):
    return run
  config, fv, dataset, state = run.config, run.flags, run.dataset, run.state
  window = _check_flags(fv)
  try:
    matches = [v for v in dataset.videos if v.video_id == fv.video]
    if not matches:
      raise DataError(f'{dataset.name}: no video {fv.video!r}')
    video = matches[0]
    forward = inference.make_forward(run.model, config)
    outputs = inference.video_outputs(forward, state.params, state.method_state, [video], config,
                                      dataset.num_classes)
    found = inference.detect(outputs, [video], config)[video.video_id]
    tcam, attention = outputs[0].tcam, outputs[0].attention
    localizer = methods.resolve_localizer(config)
    relevant = localize.relevant_classes_of(localizer, outputs[0].snippet, outputs[0].video,
                                            config)
    ground_truth = [(int(c), float(s), float(e)) for (s, e), c
                    in zip(video.segments.reshape(-1, 2), video.segment_classes)]
    output = pathlib.Path(fv.output or run.workdir / 'plots' / f'{video.video_id}.png')
    plotting.plot_video(
        output, tcam=tcam, attention=attention, seconds_per_snippet=outputs[0].seconds_per_snippet,
        class_names=list(dataset.class_names), classes=fv.classes, ground_truth=ground_truth,
        detections=found, localize_config=config.localize, localizer=localizer,
        relevant_classes=relevant, window=window,
        title=f'{video.video_id} ({video.subset}), {run.which} checkpoint, '
        f'step {int(state.step)}')
  except (DataError, FileNotFoundError, ValueError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  except OSError as e:  # A read-only place, a full disk: the path and the cause.
    print(f'{PROG}: error: cannot write {e.filename or fv.output}: {e.strerror or e}',
          file=sys.stderr)
    return 1
  print(f'wrote {output}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
