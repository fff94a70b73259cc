"""Orbax checkpoints of the whole `TrainState`: the latest few for resuming, and the best one.

Layout under the workdir:
  checkpoints/<step>/      the latest `keep` states, every `checkpoint_every` steps (orbax).
  best/<step>/             the state selected by evaluation mAP (orbax, one kept).
  best/selection.json      which step, by which metric and protocol ('validation' or 'test').
  corrupt_checkpoints/     step folders that failed to restore, moved aside.

Resume order (one place, `restore_latest`): the newest checkpoint that restores, else None (a
fresh start). A truncated or otherwise unreadable newest checkpoint is moved aside with a warning
and the previous one is tried.
"""

import asyncio
import json
import logging
import pathlib
import re
import shutil
import warnings
from typing import Any, Optional

from absl import logging as absl_logging
import jax
import orbax.checkpoint as ocp

from d2net_jax.utils import atomic_write
from d2net_jax.utils import interrupts


def _abstract(tree):
  """Shapes and dtypes of a pytree, the restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _signature(tree):
  """Sorted (shape, dtype) of the leaves: what a checkpoint must match to restore into `tree`."""
  return sorted((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(tree))


class CheckpointMismatchError(ValueError):
  """A checkpoint in the workdir holds arrays of other shapes than the current config's state."""


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (disk full, read-only workdir): `filename` is its folder,
  `strerror` the cause in one line. Orbax's temporary folders are removed; the checkpoints written
  before stay valid."""


class BestCheckpointError(ValueError):
  """The best checkpoint is recorded (best/selection.json) but missing or unreadable; one line
  naming the fallback."""


# Checkpoints written before methods were plug-ins hold D2-Net's `x_ref` as a top-level field of
# the state; now it is method_state['x_ref'].
_LEGACY_FIELDS = ('step', 'params', 'opt_state', 'x_ref', 'key', 'num_skipped')


def _is_legacy(metadata) -> bool:
  keys = set(dict(metadata))
  return 'x_ref' in keys and 'method_state' not in keys


def _restore(manager, step: int, template, where: pathlib.Path):
  """Restores checkpoint `step` of `manager` into `template`'s structure (legacy layout too)."""
  metadata = manager.item_metadata(step)
  if metadata is None or not _is_legacy(metadata):
    return manager.restore(step, args=ocp.args.StandardRestore(_abstract(template)))
  method_state = getattr(template, 'method_state', None)
  if not isinstance(method_state, dict) or set(method_state) != {'x_ref'}:
    raise CheckpointMismatchError(
        f'{where}: a D2-Net checkpoint written before methods were plug-ins; restore it with '
        "--config.method=d2net (the run's config.json without a 'method' field means d2net)")
  legacy = {name: (template.method_state['x_ref'] if name == 'x_ref' else getattr(template, name))
            for name in _LEGACY_FIELDS}
  restored = manager.restore(step, args=ocp.args.StandardRestore(_abstract(legacy)))
  fields = {name: restored[name] for name in _LEGACY_FIELDS if name != 'x_ref'}
  return template.replace(method_state={'x_ref': restored['x_ref']}, **fields)


class _OrbaxErrors(logging.Filter):
  """Orbax logs a failed background save in several ERROR records, with tracebacks, from its
  threads; the error itself reaches the caller (CheckpointWriteError, one line). So orbax's ERROR
  records are held back: dropped when the Checkpointer raises the error they are about
  (`discard`), logged (without traceback) at its next call that succeeds (`release`)."""

  def __init__(self):
    super().__init__()
    self.held = []

  def filter(self, record):
    if 'orbax' not in record.pathname:
      return True
    record.exc_info, record.exc_text = None, None
    if record.levelno < logging.ERROR or getattr(record, 'released', False):
      return True
    self.held.append(record)
    return False

  def release(self):
    held, self.held = self.held, []
    for record in held:
      record.released = True
      logging.getLogger(record.name).handle(record)

  def discard(self):
    self.held = []


_ORBAX_ERRORS = _OrbaxErrors()


def _is_closed_loop_noise(unraisable) -> bool:
  """Whether an unraisable exception is asyncio's 'Event loop is closed' from a late callback.

  When one read of a restore (or one write of a save) fails, orbax's event loop stops and closes
  while tensorstore still completes the others; each completion then tries to wake the closed
  loop, and Python printed 'Event loop is closed' with its traceback (41 of them for a truncated
  checkpoint), burying the one-line error. The error itself is raised to the caller."""
  error, tb = unraisable.exc_value, unraisable.exc_traceback
  if not isinstance(error, RuntimeError) or str(error) != 'Event loop is closed' or tb is None:
    return False
  while tb.tb_next is not None:
    tb = tb.tb_next
  return tb.tb_frame.f_code.co_filename == asyncio.base_events.__file__


class _TensorstoreTaskErrors(logging.Filter):
  """asyncio's 'Task exception was never retrieved' for the other failed reads of a restore that
  failed (the first error is raised; these repeat it with a traceback)."""

  def filter(self, record):
    error = record.exc_info[1] if record.exc_info else None
    return not (record.msg == 'Task exception was never retrieved' and error is not None and
                'tensorstore_spec' in str(error))


_TENSORSTORE_TASK_ERRORS = _TensorstoreTaskErrors()


def _install_quiet_hooks() -> None:
  """The filters above (each installed once)."""
  logging.getLogger('absl').addFilter(_ORBAX_ERRORS)
  logging.getLogger('asyncio').addFilter(_TENSORSTORE_TASK_ERRORS)
  interrupts.quiet_unraisable(_is_closed_loop_noise)


def read_problem(error: BaseException) -> str:
  """Why a checkpoint did not restore, in a few words: tensorstore's innermost cause ('Requested
  byte range [0, 14354) is not valid for value of size 7177': a truncated file) without its
  spec, or the OS error, else the exception's first line."""
  text = str(error).strip()
  if 'os_error_code' in text:
    return atomic_write.reason(error)
  text = re.sub(r'\s*\[tensorstore_spec=.*$', '', text.splitlines()[0] if text else '')
  status, _, rest = text.partition(': ')
  if re.fullmatch(r'[A-Z_]+', status) and rest:  # A tensorstore status: its innermost clause.
    text = f'{status}: {rest.rsplit(": ", 1)[-1]}'
  return f'{type(error).__name__}: {text[:200]}' if text else type(error).__name__


def _write_json(path: pathlib.Path, value) -> None:
  """Writes JSON atomically (write, then rename)."""
  atomic_write.write_text(path, json.dumps(value, indent=2, sort_keys=True))


class Checkpointer:
  """Saves and restores `TrainState`s under `workdir` (see the module docstring)."""

  def __init__(self, workdir, keep: int = 3, async_save: bool = True, read_only: bool = False):
    self.workdir = pathlib.Path(workdir).absolute()
    self.read_only = read_only
    self._saving = None  # The step of the latest asynchronous save (error messages).
    _install_quiet_hooks()
    options = dict(create=not read_only, read_only=read_only,
                   enable_async_checkpointing=async_save)
    level = absl_logging.get_verbosity()
    if read_only:  # orbax warns that a read-only manager will not save: that is the point.
      absl_logging.set_verbosity(absl_logging.ERROR)
    try:
      self._latest = ocp.CheckpointManager(
          self.workdir / 'checkpoints', item_handlers=ocp.StandardCheckpointHandler(),
          options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
      self._best = ocp.CheckpointManager(
          self.workdir / 'best', item_handlers=ocp.StandardCheckpointHandler(),
          options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
    finally:
      absl_logging.set_verbosity(level)

  def _write_failed(self, folder: pathlib.Path, step: int, error: Exception) -> OSError:
    """After a failed save: the managers closed (no writer thread left), orbax's temporary
    folders removed, and the one-line CheckpointWriteError to raise."""
    self.abort()
    failed = atomic_write.write_failed(folder, error, f'checkpoint (saving step {step})')
    return CheckpointWriteError(failed.errno, failed.strerror, failed.filename)

  def abort(self) -> None:
    """After an error (this Checkpointer's or another): the saves under way finished or failed,
    the managers closed (no writer thread left), orbax's temporary folders removed; raises
    nothing, the error being handled is the one to report."""
    for manager in (self._latest, self._best):
      for finish in (manager.wait_until_finished, manager.close):
        try:
          finish()
        except Exception:  # pylint: disable=broad-except
          pass
    _ORBAX_ERRORS.discard()
    if self.read_only:
      return
    for parent in (self.workdir / 'checkpoints', self.workdir / 'best'):
      for tmp in parent.glob('*.orbax-checkpoint-tmp*'):
        shutil.rmtree(tmp, ignore_errors=True)

  # Latest.

  def save(self, state, force: bool = False) -> bool:
    """Saves `state` under its step (asynchronously); False if that step is already saved.

    Raises CheckpointWriteError when this save, or the asynchronous one before it, failed."""
    step = int(jax.device_get(state.step))
    try:
      if step in self._latest.all_steps():
        return False
      self._saving = step
      saved = self._latest.save(step, args=ocp.args.StandardSave(state), force=force)
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_failed(self._latest.directory, step, e) from e
    _ORBAX_ERRORS.release()
    return saved

  def latest_step(self) -> Optional[int]:
    return self._latest.latest_step()

  def restore_latest(self, template) -> Optional[Any]:
    """The newest checkpoint that restores into `template`'s structure, or None if there is none.

    Unreadable checkpoints (truncated or missing files) are moved to `corrupt_checkpoints/` with
    a warning, so the run continues from the previous good one and can save that step again.
    """
    self._latest.wait_until_finished()
    expected = _signature(template)
    for step in sorted(self._latest.all_steps(), reverse=True):
      try:
        found, unreadable = _signature(dict(self._latest.item_metadata(step))), None
      except Exception as e:  # pylint: disable=broad-except
        found, unreadable = None, e  # Unreadable metadata: corrupt, handled below.
      if found is not None and found != expected:
        raise CheckpointMismatchError(
            f'{self._latest.directory / str(step)} holds a state of other shapes than this '
            'config builds (was the run started with another model or data config? see '
            f'{self.workdir / "config.json"}); use a new workdir or that config')
      if found is None:
        problem = f'its metadata: {read_problem(unreadable)}'
      else:
        try:
          return _restore(self._latest, step, template, self._latest.directory / str(step))
        except CheckpointMismatchError:
          raise
        except Exception as e:  # pylint: disable=broad-except
          problem = read_problem(e)
      where = 'left in place' if self.read_only else f'moved to {self._move_aside(step)}'
      warnings.warn(f'checkpoint step {step} in {self.workdir / "checkpoints"} is unreadable '
                    f'({problem}); {where}, trying the previous one', RuntimeWarning,
                    stacklevel=2)
    return None

  def _move_aside(self, step: int) -> pathlib.Path:
    source = self._latest.directory / str(step)
    target = self.workdir / 'corrupt_checkpoints' / str(step)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
      shutil.rmtree(target)
    shutil.move(str(source), str(target))
    self._latest.reload()
    return target

  # Best.

  def save_best(self, state, selection: dict) -> None:
    """Saves `state` as the best one; `selection` (step, metric, value, protocol) goes to JSON."""
    step = int(jax.device_get(state.step))
    try:
      self._best.wait_until_finished()
      if step not in self._best.all_steps():
        self._best.save(step, args=ocp.args.StandardSave(state), force=True)
        self._best.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_failed(self._best.directory, step, e) from e
    _ORBAX_ERRORS.release()
    if jax.process_index() == 0:
      _write_json(self.workdir / 'best' / 'selection.json', dict(selection, step=step))

  def best_selection(self) -> Optional[dict]:
    """The best checkpoint's selection record, or None."""
    path = self.workdir / 'best' / 'selection.json'
    if not path.exists() or self._best.latest_step() is None:
      return None
    return json.loads(path.read_text())

  def restore_best(self, template) -> Optional[Any]:
    step = self._best.latest_step()
    if step is None:
      return None
    return _restore(self._best, step, template, self._best.directory / str(step))

  def restore_for_inference(self, template):
    """(state, which): the best checkpoint if there is one, else the latest; which says so.

    A best checkpoint that selection.json records but that is missing or unreadable raises
    BestCheckpointError (never silently the latest one, never a library traceback).
    """
    recorded = (self.workdir / 'best' / 'selection.json').is_file()
    try:
      state = self.restore_best(template)
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise BestCheckpointError(
          f'the best checkpoint in {self.workdir / "best"} is unreadable ({read_problem(e)}); '
          '--checkpoint latest uses the latest checkpoint instead') from None
    if state is not None:
      return state, 'best'
    if recorded:
      raise BestCheckpointError(
          f'{self.workdir / "best" / "selection.json"} records a best checkpoint, but '
          f'{self.workdir / "best"} holds none; --checkpoint latest uses the latest checkpoint '
          'instead')
    state = self.restore_latest(template)
    if state is not None:
      return state, 'latest'
    raise FileNotFoundError(f'no checkpoint under {self.workdir}')

  def wait(self) -> None:
    """Waits for the asynchronous saves; CheckpointWriteError if one failed."""
    for manager in (self._latest, self._best):
      try:
        manager.wait_until_finished()
      except Exception as e:  # pylint: disable=broad-except
        raise self._write_failed(manager.directory, self._saving, e) from e
    _ORBAX_ERRORS.release()

  def close(self) -> None:
    self._latest.close()
    self._best.close()
    _ORBAX_ERRORS.release()
