"""What the commands on a trained run (`localize`, `plot`) share: --help with the run's config, the
run's config with the command's flags (validated), and the restored model."""

import dataclasses
import pathlib
import sys
from typing import Any, Callable, Optional, Union

from absl import flags
import ml_collections

from d2net_jax.commands import config_cli
from d2net_jax.config import checks as config_checks
from d2net_jax.data.records import DataError
from d2net_jax.training import train


@dataclasses.dataclass
class TrainedRun:
  """A run folder opened for a command: its config (with the command's flags), the flags, and
  the model restored from its `--checkpoint` ('best' or 'latest'; `which` says which one came)."""
  config: ml_collections.ConfigDict
  flags: flags.FlagValues
  workdir: pathlib.Path
  dataset: Any
  model: Any
  state: Any
  which: str


def open_run(prog: str, doc: str, argv, define: Callable,
             check: Optional[Callable[[flags.FlagValues], Any]] = None
             ) -> Union[TrainedRun, int]:
  """The run `--workdir RUN` of command `prog` (flags: `define` plus --data and --checkpoint), or
  an exit code once a line is printed: 0 for --help (`doc`, the run's config when readable), 2 for
  a bad flag or config (`check(flags)` may raise UsageError or ValueError for the command's own
  flags), 1 when the run cannot be restored."""
  if any(arg in ('-h', '--help', '-help') for arg in argv):
    print(config_cli.help_text(doc, (define,), config_cli.run_config_or_none(argv),
                               run_flags=True))
    return 0
  try:
    config, fv = config_cli.parse_run(prog, argv, extra_flags=(define,))
    config_checks.validate_config(config, check_data_path=not fv.data)
    if check is not None:
      check(fv)
  except (config_cli.UsageError, ValueError) as e:  # ValueError: config_checks.ConfigError.
    print(f'{prog}: error: {e}', file=sys.stderr)
    return 2
  workdir = pathlib.Path(fv.workdir)
  try:
    dataset, model, state, which = train.restore_trained(config, workdir, fv.checkpoint,
                                                         data_path=fv.data)
  except (DataError, FileNotFoundError, ValueError) as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return 1
  return TrainedRun(config, fv, workdir, dataset, model, state, which)
