"""`d2net-jax train --config configs/synthetic.py --workdir runs/demo [--config.a.b=value ...]`.

Trains, resuming from the latest checkpoint in the workdir if there is one, evaluates
periodically to keep the best checkpoint, and ends with the test-set mAP table. Ctrl-C saves a
checkpoint and exits (status 130); so does SIGTERM (cluster preemption; status 143). The same
command resumes; a workdir holding a run of another config is refused, naming the fields that
differ, unless --allow-config-change (the change is recorded in WORKDIR/history.jsonl). Changes
that cannot affect the run so far (train.num_steps extended, logging and checkpoint cadence) pass
and are recorded. A second training on a workdir in use stops at start.

Flags:
  --config FILE[:ARG]   a config file with get_config(ARG), e.g. configs/thumos14.py:paper
  --config.S.F=VALUE    override any field, e.g. --config.train.batch_size=4
  --workdir DIR         the run folder (created; an existing run in it is resumed)
  --[no]progress        progress bar (default: when stderr is a terminal, else log lines)
  --allow-config-change resume a run with a config that differs from its config.json
  --print-config        print the resolved config (JSON) and exit without training
  --per-class           also print the per-class AP table of the test set

The workdir: config.json (resolved config, written once the run has started: a call that fails
never replaces it), model.json (class names and feature_dim of the model), history.jsonl (every
call: command line, date, commit, version, config changes, outcome), metrics.jsonl (one line per
step), eval.jsonl (one line per checkpoint-selection evaluation), checkpoints/ (latest few), best/
(the selected one and selection.json), results.json (test set, at the end, with the config, commit,
date and protocol) and detections_test.json, tensorboard/ (with tensorboardX installed), data/ (the
synthetic store).
"""

import sys

import jax
from absl import flags

from d2net_jax.commands import config_cli
from d2net_jax.data.records import DataError
from d2net_jax.runs import run_dir
from d2net_jax.training import checkpointing
from d2net_jax.training import train
from d2net_jax.utils import interrupts

PROG = 'd2net-jax train'


def _define(fv):
  flags.DEFINE_string('workdir', None, 'Run folder: checkpoints, metrics, results.', flag_values=fv)
  flags.DEFINE_bool('progress', None, 'Progress bar (default: when stderr is a terminal).',
                    flag_values=fv)
  flags.DEFINE_bool('allow-config-change', False, 'Resume a run with a changed config.',
                    flag_values=fv)
  flags.DEFINE_bool('print-config', False, 'Print the resolved config and exit.',
                    flag_values=fv)
  flags.DEFINE_bool('per-class', False, 'Print the per-class AP table of the test set.',
                    flag_values=fv)


def main(argv) -> int:
  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(config_cli.help_text(__doc__, (_define,)))
    return 0
  try:
    config, fv = config_cli.parse(PROG, argv, extra_flags=(_define,))
    if fv['print-config'].value:
      print(config.to_json_best_effort(indent=2, sort_keys=True))
      return 0
    if not fv.workdir:
      raise config_cli.UsageError('--workdir is required')
    train.validate_config(config)
  except (config_cli.UsageError, ValueError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  if config.train.distributed:
    jax.distributed.initialize()
  try:
    summary = train.train_and_evaluate(
        config, fv.workdir, progress=fv.progress, argv=['d2net-jax', 'train', *argv],
        allow_config_change=fv['allow-config-change'].value, per_class=fv['per-class'].value)
  except (DataError, FileNotFoundError, train.ConfigError, run_dir.RunDirError,
          checkpointing.CheckpointMismatchError, train.NoUpdateError) as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 1
  except OSError as e:  # A workdir that cannot be written (read-only, disk full, not a folder).
    print(f'{PROG}: error: cannot write {e.filename or fv.workdir}: {e.strerror or e}',
          file=sys.stderr)
    return 1
  except KeyboardInterrupt as e:  # Outside the step loop, or a second Ctrl-C in it.
    interrupts.clear()
    print(f'{PROG}: {_interrupted(e)}', file=sys.stderr)
    return interrupts.exit_status(e)
  return {'SIGINT': 130, 'SIGTERM': 143}.get(summary['interrupted'], 0)


def _interrupted(error: KeyboardInterrupt) -> str:
  """What a Ctrl-C or SIGTERM outside the step loop stopped, and what is saved."""
  what = 'interrupted' if interrupts.signal_name(error) == 'SIGINT' else 'terminated (SIGTERM)'
  phase, step = getattr(error, 'phase', 'start-up'), getattr(error, 'step', None)
  if phase == 'final evaluation':
    return (f'{what} during the final evaluation; training is complete (checkpoint of step '
            f'{step} saved): run the same command to evaluate it')
  if phase == 'training':
    return (f'{what} during training (a second Ctrl-C); nothing saved since the last checkpoint: '
            'run the same command to resume')
  return f'{what} (before training started); nothing saved since the last checkpoint'


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
