"""`d2net-jax check`: every video of every subset of a config's data read and validated in one
pass (`d2net_jax/data/check.py`), each bad one listed in one line.

  d2net-jax check --config FILE[:ARG] [--config.S.F=VALUE ...] [--workdir DIR]
"""

import pathlib
import sys
import tempfile

from absl import flags

from d2net_jax.commands import config_cli
from d2net_jax.config import checks as config_checks
from d2net_jax.data import check
from d2net_jax.data import loading
from d2net_jax.data.records import DataError
from d2net_jax.training import setup

PROG = 'd2net-jax check'


def main(argv) -> int:
  def define(fv):
    flags.DEFINE_string('workdir', None, 'Where a synthetic store is generated (default: a '
                        'temporary folder).', flag_values=fv)

  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(config_cli.help_text(__doc__, (define,)))
    return 0
  try:
    config, fv = config_cli.parse(PROG, argv, extra_flags=(define,))
    config_checks.validate_config(config)
  except ValueError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  with tempfile.TemporaryDirectory() as tmp:
    try:
      dataset = loading.load_dataset(config.data, cache_dir=pathlib.Path(fv.workdir or tmp) /
                                     'data')
    except (DataError, OSError) as e:
      print(f'{PROG}: error: {e}', file=sys.stderr)
      return 1
    problems = check.find_problems(dataset, print)
  subsets = sorted({v.subset for v in dataset.videos})
  for line in problems:
    print(f'{PROG}: {line}', file=sys.stderr)
  if problems:
    print(f'{PROG}: error: {len(problems)} of {len(dataset.videos)} videos cannot be used '
          '(listed above)', file=sys.stderr)
    return 1
  print(f'{dataset.name}: all {len(dataset.videos)} videos of subsets {subsets} read and valid '
        f'({dataset.num_classes} classes, feature dim {dataset.feature_dim}).')
  _note_missing_ground_truth(config, dataset)
  return 0


def _note_missing_ground_truth(config, dataset) -> None:
  """A note when training could not select a checkpoint or the test could not be scored."""
  _, _, protocol = setup.selection_videos(config, dataset)
  missing = []
  if protocol == 'final':
    missing.append(f'the {setup.selection_pool(config)} videos: `train` learns from the video '
                   'labels alone and keeps its final state (no checkpoint selection)')
  if not setup.has_ground_truth(dataset.test_videos()):
    missing.append('the test videos: their detections are written, not scored')
  if missing:
    print(f'note: no ground-truth segment in {"; in ".join(missing)} (segments: '
          '`d2net-jax import --segments`).')


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
