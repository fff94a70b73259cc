"""Checks shared by the readers: every failure is a `DataError` naming the file and the video.

Policies (also in docs/data.md):
- Features: 2-D `(T, D)` with T >= 1, D equal to the configured feature dim, finite values; else an
  error. Features are cast to float32.
- Segments: end < start, or a non-finite bound, is an error. A segment reaching outside
  [0, duration] is clipped to it with a warning (`segment_policy='clip'`, the default; the real
  THUMOS14 and ActivityNet1.2 files need it) or refused (`segment_policy='refuse'`). A clipped
  segment is never dropped, so instance counts stay those of the annotation files.
- Feature timing: a video whose T * seconds_per_snippet differs from its annotated duration by more
  than max(tolerance_snippets * seconds_per_snippet, tolerance_fraction * duration) is reported
  (`timing_check='warn'`, the default) or refused (`timing_check='error'`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np

from d2net_jax.data.records import DataError, VideoRecord

PathLike = str | os.PathLike

PICKLE_RISK = (
    'it holds pickled Python objects, and unpickling a file runs code from it. Load it only if '
    'you trust its source: pass --trust-pickle (training config: '
    '--config.data.trust_pickle=True), then convert the data once to the HDF5 store '
    '(`d2net-jax convert`), which needs no pickle.')

SEGMENT_POLICIES = ('clip', 'refuse')
TIMING_CHECKS = ('warn', 'error')


def as_str(value) -> str:
  """A class name or video id as str (real W-TALC files store byte strings)."""
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode('utf-8')
  if isinstance(value, np.ndarray) and value.shape == ():
    return as_str(value.item())
  return str(value)


def require_file(path: PathLike, what: str = '') -> pathlib.Path:
  path = pathlib.Path(path)
  if not path.is_file():
    suffix = f' ({what})' if what else ''
    raise DataError(f'{path}: missing file{suffix}')
  return path


def npy_header(path: PathLike) -> tuple[tuple[int, ...], np.dtype]:
  """Shape and dtype of a .npy file, read from its header only."""
  path = require_file(path)
  try:
    with open(path, 'rb') as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise ValueError(f'unsupported .npy version {version}')
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: not a readable .npy file ({e})') from e
  return tuple(int(s) for s in shape), np.dtype(dtype)


def load_npy(path: PathLike, *, trust_pickle: bool = False, mmap: bool = False) -> np.ndarray:
  """Loads a .npy file; a pickled (object) array only when `trust_pickle` is set.

  Raises:
    DataError: missing or unreadable file, or a pickled file that is not trusted.
  """
  path = require_file(path)
  _, dtype = npy_header(path)
  if dtype.hasobject and not trust_pickle:
    raise DataError(f'{path}: refusing to load: {PICKLE_RISK}')
  try:
    if dtype.hasobject:
      # latin1 keeps the numeric data of Python 2 pickles intact (numpy's advice).
      return np.load(path, allow_pickle=True, encoding='latin1')
    return np.load(path, allow_pickle=False, mmap_mode='r' if mmap else None)
  except Exception as e:  # numpy raises many kinds (ValueError, EOFError, UnpicklingError, ...).
    raise DataError(f'{path}: unreadable .npy file ({type(e).__name__}: {e})') from e


def _no_features(video_id: str, source: str):
  raise DataError(f'{where(source, video_id)}: annotations only, no features were read')


def annotation_record(*, video_id: str, subset: str, labels: np.ndarray, segments: np.ndarray,
                      segment_classes: np.ndarray, duration: float, seconds_per_snippet: float,
                      source: PathLike) -> VideoRecord:
  """A `VideoRecord` without features yet (num_snippets 0; `load` raises DataError)."""
  return VideoRecord(video_id=video_id, subset=subset, labels=labels, segments=segments,
                     segment_classes=segment_classes, duration=duration,
                     seconds_per_snippet=float(seconds_per_snippet), num_snippets=0,
                     load=functools.partial(_no_features, video_id, str(source)))


def with_features(record: VideoRecord, num_snippets: int, load) -> VideoRecord:
  """`record` with features `(num_snippets, D)` from `load()`."""
  return dataclasses.replace(record, num_snippets=int(num_snippets), load=load)


def where(source: PathLike, video_id: str | None = None) -> str:
  """'file' or 'file, video X': the prefix of every message."""
  return f'{source}, video {video_id!r}' if video_id is not None else f'{source}'


def check_features(features, *, source: PathLike, video_id: str,
                   feature_dim: int | None = None) -> np.ndarray:
  """Validates one video's features and returns them as (T, D) float32."""
  try:
    features = np.asarray(features)
  except Exception as e:
    raise DataError(f'{where(source, video_id)}: features are not an array ({e})') from e
  if features.dtype.kind not in 'fiu':
    raise DataError(f'{where(source, video_id)}: features have dtype {features.dtype}, '
                    'expected floats')
  if features.ndim != 2:
    raise DataError(f'{where(source, video_id)}: features have shape {features.shape}, '
                    'expected (T, D)')
  if features.shape[0] == 0:
    raise DataError(f'{where(source, video_id)}: zero-length video (features of shape '
                    f'{features.shape})')
  if feature_dim is not None and feature_dim > 0 and features.shape[1] != feature_dim:
    raise DataError(f'{where(source, video_id)}: feature dim {features.shape[1]} does not match '
                    f'the configured feature_dim {feature_dim}')
  features = features.astype(np.float32, copy=False)
  finite = np.isfinite(features)
  if not finite.all():
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    raise DataError(f'{where(source, video_id)}: features contain NaN or Inf in '
                    f'{len(bad_rows)} of {features.shape[0]} snippets (first at snippet '
                    f'{bad_rows[0]})')
  return features


def check_feature_shape(shape: Sequence[int], *, source: PathLike, video_id: str,
                        feature_dim: int | None = None) -> tuple[int, int]:
  """Validates a (T, D) shape read from a header; returns (T, D)."""
  if len(shape) != 2:
    raise DataError(f'{where(source, video_id)}: features have shape {tuple(shape)}, '
                    'expected (T, D)')
  if shape[0] == 0:
    raise DataError(f'{where(source, video_id)}: zero-length video (features of shape '
                    f'{tuple(shape)})')
  if feature_dim is not None and feature_dim > 0 and shape[1] != feature_dim:
    raise DataError(f'{where(source, video_id)}: feature dim {shape[1]} does not match the '
                    f'configured feature_dim {feature_dim}')
  return int(shape[0]), int(shape[1])


def npy_feature_shape(path: pathlib.Path, video_id: str, listed_in: PathLike,
                      feature_dim: int | None = None) -> tuple[int, int]:
  """(T, D) of video `video_id`'s (T, D) float .npy feature file `path`, from its header only.

  DataError naming the file and the video: missing (listed in `listed_in`), not floats, or a bad
  shape (`check_feature_shape`)."""
  if not path.is_file():
    raise DataError(f'{path}, video {video_id!r}: missing feature file (listed in {listed_in})')
  shape, dtype = npy_header(path)
  if dtype.hasobject or dtype.kind not in 'fiu':
    raise DataError(f'{path}, video {video_id!r}: dtype {dtype}, expected floats')
  return check_feature_shape(shape, source=path, video_id=video_id, feature_dim=feature_dim)


def check_duration(duration, *, source: PathLike, video_id: str) -> float:
  try:
    value = float(np.asarray(duration, dtype=np.float64).reshape(()))
  except (TypeError, ValueError) as e:
    raise DataError(f'{where(source, video_id)}: duration {duration!r} is not a number') from e
  if not np.isfinite(value) or value <= 0:
    raise DataError(f'{where(source, video_id)}: duration {value} is not a positive number')
  return value


def class_indices(names: Iterable, class_index: Mapping[str, int], *, source: PathLike,
                  video_id: str) -> np.ndarray:
  """(N,) int32 indices of class names; an unknown name is an error."""
  out = []
  for name in names:
    name = as_str(name)
    if name not in class_index:
      raise DataError(f'{where(source, video_id)}: label {name!r} is not in the class list '
                      f'({len(class_index)} classes)')
    out.append(class_index[name])
  return np.asarray(out, dtype=np.int32).reshape(-1)


def multi_hot(indices: np.ndarray, num_classes: int) -> np.ndarray:
  """(C,) float32 multi-hot vector of class indices."""
  labels = np.zeros((num_classes,), np.float32)
  labels[np.asarray(indices, dtype=np.int64)] = 1.0
  return labels


@dataclasses.dataclass(frozen=True)
class Issue:
  """A problem found and handled (not an error): kind, file, video and what was done."""
  kind: str  # 'clipped_segment', 'timing', 'label_mismatch', 'unused_file', ...
  source: str
  video_id: str
  message: str

  def __str__(self) -> str:
    return f'{self.kind}: {where(self.source, self.video_id)}: {self.message}'


@dataclasses.dataclass
class Report:
  """Issues collected while reading; `warn()` sends one summary warning per kind."""
  issues: list[Issue] = dataclasses.field(default_factory=list)

  def add(self, kind: str, source: PathLike, video_id: str, message: str) -> None:
    self.issues.append(Issue(kind, str(source), video_id, message))
    logging.debug('%s', self.issues[-1])

  def of_kind(self, kind: str) -> list[Issue]:
    return [i for i in self.issues if i.kind == kind]

  def summary_lines(self, max_per_kind: int = 3) -> list[str]:
    lines = []
    for kind in dict.fromkeys(i.kind for i in self.issues):
      items = self.of_kind(kind)
      videos = list(dict.fromkeys(i.video_id for i in items))
      shown = '; '.join(str(i) for i in items[:max_per_kind])
      more = f' (+{len(items) - max_per_kind} more)' if len(items) > max_per_kind else ''
      lines.append(f'{len(items)} x {kind} in {len(videos)} videos: {shown}{more}')
    return lines

  def warn(self) -> None:
    for line in self.summary_lines():
      warnings.warn(line, DataWarning, stacklevel=3)


class DataWarning(UserWarning):
  """Input data was handled with a change or has a suspicious property (see the message)."""


def check_segments(segments, duration: float, *, source: PathLike, video_id: str,
                   policy: str = 'clip', report: Report | None = None) -> np.ndarray:
  """Validates (N, 2) [start_s, end_s] segments against the duration (see the module policy)."""
  if policy not in SEGMENT_POLICIES:
    raise ValueError(f'segment_policy must be one of {SEGMENT_POLICIES}, got {policy!r}')
  try:
    segments = np.asarray(segments, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise DataError(f'{where(source, video_id)}: segments are not numbers ({e})') from e
  if segments.size == 0:
    return np.zeros((0, 2), np.float64)
  if segments.ndim != 2 or segments.shape[1] != 2:
    raise DataError(f'{where(source, video_id)}: segments have shape {segments.shape}, '
                    'expected (N, 2) [start, end]')
  if not np.isfinite(segments).all():
    raise DataError(f'{where(source, video_id)}: segments contain NaN or Inf')
  backwards = np.flatnonzero(segments[:, 1] < segments[:, 0])
  if backwards.size:
    s, e = segments[backwards[0]]
    raise DataError(f'{where(source, video_id)}: segment {backwards[0]} ends before it starts '
                    f'([{s}, {e}] s)')
  outside = np.flatnonzero((segments[:, 0] < 0) | (segments[:, 1] > duration))
  if outside.size:
    first = segments[outside[0]]
    text = (f'{outside.size} of {len(segments)} segments reach outside [0, {duration:g}] s '
            f'(first: [{first[0]:g}, {first[1]:g}])')
    if policy == 'refuse':
      raise DataError(f'{where(source, video_id)}: {text} (segment_policy=refuse; use '
                      "'clip' to clip them to the video)")
    beyond = int(np.sum(segments[outside, 0] >= duration))
    if beyond:
      text += f'; {beyond} start at or after the end of the video and become zero-length'
    segments = np.clip(segments, 0.0, duration)
    if report is not None:
      report.add('clipped_segment', source, video_id, text + '; clipped')
  return segments


def timing_gap(video: VideoRecord) -> float:
  """T * seconds_per_snippet - duration, in seconds (positive: features longer)."""
  return video.num_snippets * video.seconds_per_snippet - video.duration


def check_timing(videos: Iterable[VideoRecord], *, tolerance_snippets: float,
                 tolerance_fraction: float, mode: str = 'warn', source: PathLike = '',
                 report: Report | None = None) -> list[Issue]:
  """Reports videos whose feature length disagrees with their annotated duration."""
  if mode not in TIMING_CHECKS:
    raise ValueError(f'timing_check must be one of {TIMING_CHECKS}, got {mode!r}')
  found = []
  for v in videos:
    gap = timing_gap(v)
    tolerance = max(tolerance_snippets * v.seconds_per_snippet, tolerance_fraction * v.duration)
    if abs(gap) <= tolerance:
      continue
    message = (f'{v.num_snippets} snippets x {v.seconds_per_snippet:g} s = '
               f'{v.num_snippets * v.seconds_per_snippet:.2f} s of features for an annotated '
               f'duration of {v.duration:.2f} s ({"longer" if gap > 0 else "shorter"} by '
               f'{abs(gap):.2f} s > tolerance {tolerance:.2f} s)')
    if mode == 'error':
      raise DataError(f'{where(source, v.video_id)}: {message} (timing_check=error; check '
                      'seconds_per_snippet)')
    issue = Issue('timing', str(source), v.video_id, message)
    found.append(issue)
    if report is not None:
      report.issues.append(issue)
  return found


def infer_subsets(names: Sequence[str]) -> tuple[str, str]:
  """(train, test) subset names from the names present: the field's conventions.

  THUMOS14 trains on `validation` and tests on `test`; ActivityNet1.2 trains on `training` and
  tests on `validation`.
  """
  names = set(names)
  if 'training' in names:
    return 'training', 'validation'
  if 'validation' in names and 'test' in names:
    return 'validation', 'test'
  if 'train' in names:
    return 'train', 'test'
  raise DataError(f'cannot tell the training and test subsets from the subset names '
                  f'{sorted(names)}; name them (--train-subset/--test-subset)')


def check_subsets(present: Iterable[str], train_subset: str, test_subset: str,
                  source: PathLike) -> None:
  """Both the training and the test subset must have videos (a wrong name trains on the wrong
  videos: ActivityNet1.2 has a `validation` subset too)."""
  present = sorted(set(present))
  for role, name in (('training', train_subset), ('test', test_subset)):
    if name not in present:
      raise DataError(f'{source}: the {role} subset {name!r} has no videos; the data has '
                      f'subsets {present} (set data.train_subset / data.test_subset, or '
                      '--train-subset / --test-subset)')
  if train_subset == test_subset:
    raise DataError(f'{source}: the training and test subsets are both {train_subset!r}')
