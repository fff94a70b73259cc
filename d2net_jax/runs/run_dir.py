"""The run folder as a record: config history, resume-config checks, a lock, provenance, and
the flag Ctrl-C / SIGTERM set so that the loop saves a checkpoint and stops (`StopFlag`).

Files it owns under a workdir:
  config.json     the resolved config of the run; written only once the run has started (data
                  loaded, model built), so a call that fails never replaces it.
  model.json      what the trained model needs from its data: class names (index order) and
                  feature_dim; `localize --data NEW` maps new data's classes by these names.
  history.jsonl   one line per event of every `train` call on this folder: 'start' (command line,
                  date, commit, package version, config fields changed) and 'end' (its outcome).
  train.lock      held (fcntl.flock) while a training runs; a second `train` on the folder stops at
                  start. The kernel drops the lock when the process dies, so a crashed run never
                  leaves it stale; the file's text (pid, host, date) only explains who holds it.
"""

import datetime
import errno
import fcntl
import functools
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import ml_collections

from d2net_jax import __version__
from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.utils import atomic_write

# Fields that cannot change what a run has computed so far: a resume may change them (recorded in
# history.jsonl). train.num_steps only upwards (extending the run).
HARMLESS_FIELDS = frozenset({
    'train.num_steps', 'train.log_every', 'train.tensorboard', 'train.checkpoint_every',
    'train.keep_checkpoints', 'train.cache_features', 'data.prefetch', 'train.final_test',
    'train.distributed',
})


class RunDirError(ValueError):
  """The workdir cannot be used as asked (locked, or another config); one line."""


def now() -> str:
  """UTC date and time, ISO 8601 to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


@functools.lru_cache(maxsize=1)
def commit() -> Optional[str]:
  """The git commit of the d2net_jax source in use ('+dirty' with local changes), or None."""
  root = pathlib.Path(__file__).resolve().parents[1]
  try:
    head = subprocess.run(['git', '-C', str(root), 'rev-parse', 'HEAD'], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(root), 'status', '--porcelain', '--untracked-files=no',
                            '--', 'd2net_jax'], capture_output=True, text=True, timeout=10,
                           check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ('+dirty' if dirty else '') if head else None


def provenance() -> Dict[str, Optional[str]]:
  """{'date', 'commit', 'version'}: what produced a file, for results.json and history.jsonl."""
  return {'date': now(), 'commit': commit(), 'version': __version__}


def _flatten(tree, prefix: str = '') -> Dict[str, object]:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def config_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON values (what config.json holds)."""
  return json.loads(config.to_json_best_effort())


def config_diff(old: dict, new: dict) -> Dict[str, Tuple[object, object]]:
  """{dotted field: (old value, new value)} of the fields that differ (missing = None)."""
  a, b = _flatten(old), _flatten(new)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _harmless(field: str, old, new) -> bool:
  if field == 'train.num_steps':
    return isinstance(old, int) and isinstance(new, int) and new >= old
  return field in HARMLESS_FIELDS


def unused_sections(config: ml_collections.ConfigDict) -> set:
  """The config sections of the registered methods that neither `config.method` nor a method it
  wraps owns (a D2-Net run: 'sal', 'co2net', 'dfe', ...): nothing of the run reads them, so a
  changed default there (dfe.base) does not stop a resume. Empty when the chain is invalid."""
  try:
    chain = methods.method_chain(config)
  except ValueError:
    return set()
  used = {name for method in chain for name in method.config_sections()}
  return set(methods.config_sections()) - used


def has_run(workdir: pathlib.Path) -> bool:
  """Whether `workdir` holds a started run (its config.json, and metrics or checkpoints)."""
  return (workdir / 'config.json').is_file() and _run_traces(workdir) != []


def _run_traces(workdir: pathlib.Path) -> List[str]:
  """What in `workdir` shows that a run has started there (metrics, checkpoints, history)."""
  checkpoints = workdir / 'checkpoints'
  traces = [name for name in ('metrics.jsonl', 'history.jsonl') if (workdir / name).is_file()]
  return traces + (['checkpoints/'] if checkpoints.is_dir() and any(checkpoints.iterdir())
                   else [])


def check_resume(workdir, config: ml_collections.ConfigDict, allow_change: bool = False
                 ) -> Dict[str, Tuple[object, object]]:
  """The config changes of this call against the run already in `workdir` ({} for a new run).

  Raises RunDirError (one line listing the fields) when a field that affects the run differs and
  `allow_change` is False. Harmless changes (HARMLESS_FIELDS, num_steps extended, fields of the
  sections the run's methods never read: `unused_sections`) pass.
  """
  workdir = pathlib.Path(workdir)
  if not (workdir / 'config.json').exists():
    traces = _run_traces(workdir)
    if not traces:
      return {}  # A new run.
    if allow_change:  # Recorded in history.jsonl, with the config this call writes.
      return {'config.json': ('missing', 'written anew from this call')}
    raise RunDirError(
        f'{workdir} holds a run ({", ".join(traces)}) but its config.json is missing, so this '
        "call's config cannot be checked against it: put the run's config.json back, use a new "
        'workdir, or --allow-config-change to resume with this config (recorded in '
        'history.jsonl)')
  if not has_run(workdir):
    return {}
  try:
    old = config_lib.saved_config(json.loads((workdir / 'config.json').read_text()))
  except (OSError, ValueError) as e:
    raise RunDirError(f'{workdir / "config.json"} is unreadable ({e}); the run in {workdir} '
                      'cannot be checked: use a new workdir') from None
  old.setdefault('method', 'd2net')  # Runs from before methods were plug-ins.
  changes = config_diff(old, config_dict(config))
  old_fields = _flatten(old)
  defaults = _flatten(config_dict(config_lib.base_config()))
  changes = {f: v for f, v in changes.items()  # Fields added to the schema since, at defaults.
             if f in old_fields or v[1] != defaults.get(f)}
  unused = unused_sections(config) if old['method'] == config.method else set()
  refused = [f for f, (a, b) in changes.items()
             if not _harmless(f, a, b) and f.split('.')[0] not in unused]
  if refused and not allow_change:
    shown = ', '.join(f'{f} ({changes[f][0]!r} -> {changes[f][1]!r})' for f in refused[:8])
    more = f' and {len(refused) - 8} more' if len(refused) > 8 else ''
    raise RunDirError(
        f'{workdir} holds a run with another config: {shown}{more}; use a new workdir, the '
        "run's config (--config.x=... as in its config.json), or --allow-config-change to resume "
        'with these changes (recorded in history.jsonl)')
  return changes


def append_history(workdir, event: str, **fields) -> None:
  """Appends one JSON line {'event', date, commit, version, **fields} to history.jsonl."""
  record = dict(event=event, **provenance(), **fields)
  with (pathlib.Path(workdir) / 'history.jsonl').open('a') as f:
    f.write(json.dumps(record, default=str) + '\n')


def write_json_atomic(path, value) -> None:
  """Writes JSON to `path` through a temporary file and a rename (never half-written)."""
  atomic_write.write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + '\n')


def commit_config(workdir, config: ml_collections.ConfigDict, argv: Optional[Sequence[str]],
                  changes: Dict[str, Tuple[object, object]]) -> None:
  """The run has started: config.json := `config`, and a 'start' line in history.jsonl."""
  workdir = pathlib.Path(workdir)
  write_json_atomic(workdir / 'config.json', config_dict(config))
  append_history(workdir, 'start', argv=list(sys.argv if argv is None else argv),
                 config_changes={k: list(v) for k, v in changes.items()})


# Model record.


def write_model_info(workdir, class_names: Sequence[str], feature_dim: int, method: str,
                     streams: str = 'rgb+flow') -> None:
  write_json_atomic(pathlib.Path(workdir) / 'model.json', {
      'class_names': [str(c) for c in class_names], 'feature_dim': int(feature_dim),
      'method': method, 'streams': streams})


def read_model_info(workdir) -> Optional[dict]:
  """model.json of a run ({'class_names', 'feature_dim', 'method', 'streams'}), or None (older
  runs; 'streams' is 'rgb+flow' when the file predates it)."""
  path = pathlib.Path(workdir) / 'model.json'
  if not path.is_file():
    return None
  info = json.loads(path.read_text())
  info.setdefault('streams', 'rgb+flow')
  return info


def class_mapping(model_names: Sequence[str], data_names: Sequence[str], source,
                  some: bool = False) -> List[int]:
  """index_in_model[data class index]: the data's classes mapped to the model's by name.

  Raises ValueError listing the names that only one side has (never a silent relabelling);
  with `some` (new videos), the data may have only some of the model's classes.
  """
  model_names, data_names = [str(c) for c in model_names], [str(c) for c in data_names]
  only_model = [c for c in model_names if c not in data_names]
  only_data = [c for c in data_names if c not in model_names]
  if (only_model and not some) or only_data or len(set(data_names)) != len(data_names):
    raise ValueError(
        f'{source}: class names differ from the model\'s: only in the data {only_data}, only in '
        f'the model {only_model} (the model was trained on {len(model_names)} classes; '
        'detections would be mislabelled)')
  return [model_names.index(c) for c in data_names]


# Lock.


class Lock:
  """An exclusive lock on `workdir/train.lock` (see the module docstring)."""

  def __init__(self, workdir):
    self.path = pathlib.Path(workdir) / 'train.lock'
    self._file = None

  def __enter__(self):
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, 'a+')  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        f.close()  # A file system without locks (some NFS): run unlocked.
        return self
      f.seek(0)
      holder = f.read().strip() or 'another process'
      f.close()
      raise RunDirError(f'{self.path.parent} is in use by a running training ({holder}); wait '
                        'for it or use another workdir') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {socket.gethostname()} since {now()}\n')
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


class StopFlag:
  """Ctrl-C or SIGTERM (preemption) sets the flag (the loop saves a checkpoint and stops); a
  second Ctrl-C interrupts. `signal_name` says which signal stopped the run."""

  def __init__(self):
    self.stop = False
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.stop and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.stop = True
    self.signal_name = signal.Signals(signum).name

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
