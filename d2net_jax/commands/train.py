"""`d2net-jax train --config configs/synthetic.py --workdir runs/demo [--config.a.b=value ...]`.

Trains, resuming from the latest checkpoint in the workdir if there is one, evaluates
periodically to keep the best checkpoint, and ends with the test-set mAP table. Ctrl-C saves a
checkpoint and exits (status 130); the same command resumes.

Flags:
  --config FILE[:ARG]   a config file with get_config(ARG), e.g. configs/thumos14.py:paper
  --config.S.F=VALUE    override any field, e.g. --config.train.batch_size=4
  --workdir DIR         the run folder (created; an existing run in it is resumed)
  --[no]progress        progress bar (default: when stderr is a terminal, else log lines)

The workdir: config.json (resolved config), metrics.jsonl (one line per step), eval.jsonl (one
line per checkpoint-selection evaluation), checkpoints/ (latest few), best/ (the selected one and
selection.json), results.json and detections_test.json (test set, at the end), tensorboard/
(with tensorboardX installed), data/ (the synthetic store).
"""

import sys

from absl import flags

from d2net_jax.commands import config_cli
from d2net_jax.data.records import DataError

PROG = 'd2net-jax train'


def _define(fv):
  flags.DEFINE_string('workdir', None, 'Run folder: checkpoints, metrics, results.', flag_values=fv)
  flags.DEFINE_bool('progress', None, 'Progress bar (default: when stderr is a terminal).',
                    flag_values=fv)


def main(argv) -> int:
  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(__doc__)
    return 0
  try:
    config, fv = config_cli.parse(PROG, argv, extra_flags=(_define,))
    if not fv.workdir:
      raise config_cli.UsageError('--workdir is required')
    from d2net_jax import checkpointing  # pylint: disable=import-outside-toplevel
    from d2net_jax import train  # pylint: disable=import-outside-toplevel
    train.validate_config(config)
  except (config_cli.UsageError, ValueError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  if config.train.distributed:
    import jax  # pylint: disable=import-outside-toplevel
    jax.distributed.initialize()
  try:
    summary = train.train_and_evaluate(config, fv.workdir, progress=fv.progress)
  except (DataError, FileNotFoundError, train.ConfigError,
          checkpointing.CheckpointMismatchError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  return 130 if summary['interrupted'] else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
