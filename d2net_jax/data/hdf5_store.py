"""The HDF5 feature store: one file, no pickle, features read one video at a time.

Layout (format version 1):
  /                     attrs: format, format_version, name, feature_dim, train_subset,
                        test_subset, seconds_per_snippet (default of the videos), complete,
                        streams ('rgb+flow', 'rgb' or 'flow': records.STREAMS; absent in
                        stores written before it, which hold both streams)
  /class_names          (C,) utf-8 strings, index order
  /video_ids            (V,) utf-8 strings, the dataset's video order
  /videos/<key>/        one group per video; <key> is the id with '%', '/' (and a leading '.')
                        percent-escaped; attrs: video_id, subset, duration, seconds_per_snippet
      features          (T, D) float32 (or float16: `feature_dtype`; read as float32), chunked
                        by rows, checksummed, optionally compressed
      labels            (C,) float32 multi-hot
      segments          (N, 2) float64 [start_s, end_s]
      segment_classes   (N,) int32
  /ambiguous/<key>      optional (M, 2) float64 regions ignored in evaluation
  /index/               the per-video annotations again as V-long arrays, so opening a store of
                        thousands of videos reads a few datasets: num_snippets, duration,
                        seconds_per_snippet, subset (V,); labels (V, C); segments (S, 2),
                        segment_classes (S,) of all videos, video v's at
                        segment_offsets[v]:segment_offsets[v + 1]

`write_store` streams (one video's features in memory at a time) into a temporary file that is
renamed over `path` only once complete, so a crash never leaves a half file that looks valid, and
removed when the write fails (`_TemporaryFile`: a full disk is one OSError, not a crash).
`read_store` reads the annotations and opens features lazily (`VideoRecord.load`), so a store
larger than memory works.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import threading
from typing import Sequence
import urllib.parse

import h5py
import numpy as np

from d2net_jax.data import validation
from d2net_jax.data.records import (STREAMS, TWO_STREAMS, DataError, Dataset, VideoRecord,
                                    raise_problems)
from d2net_jax.utils import atomic_write
from d2net_jax.utils import progress as progress_lib

FORMAT = 'd2net_jax.store'
FORMAT_VERSION = 1
COMPRESSIONS = ('none', 'gzip', 'lzf')
FEATURE_DTYPES = ('float32', 'float16')


def video_key(video_id: str) -> str:
  """HDF5 group name of a video id ('/' is a path separator there, '.' names the group itself)."""
  if not video_id:
    raise DataError('empty video id')
  key = video_id.replace('%', '%25').replace('/', '%2F')
  if key.startswith('.'):
    key = '%2E' + key[1:]
  return key


def video_id_of_key(key: str) -> str:
  return urllib.parse.unquote(key)


def write_store(path, dataset: Dataset, *, compression: str | None = None,
                chunk_snippets: int = 256, progress: bool | None = None,
                attrs: dict | None = None, problems: Sequence[str] = (),
                feature_dtype: str = 'float32') -> pathlib.Path:
  """Writes `dataset` to an HDF5 store at `path` (atomically) and returns the path.

  Every video's features are loaded once, checked (shape, feature dim, finite values) and written.
  Every bad video is reported in one pass: one DataError listing them all (`DataErrors`), and no
  store. A failed write (disk full, read-only folder) raises an OSError naming `path`; either way
  the temporary file is removed and an existing store at `path` is left as it was.

  Args:
    path: the .h5 file to (over)write.
    dataset: the videos; `VideoRecord.load` is called once per video.
    compression: None / 'none', 'gzip' or 'lzf' for the feature arrays.
    chunk_snippets: rows per HDF5 chunk of a feature array.
    progress: a progress bar on stderr (None: when it is a terminal; `progress_lib.progress_bar`).
    attrs: extra attributes of the file's root (e.g. the synthetic generation parameters).
    problems: bad videos a reader already left out (`collect`): reported with the store's own,
      and then no store is written.
    feature_dtype: 'float32', or 'float16' for half the size (features are read as float32;
      float16 keeps ~3 significant digits, and values up to 65504).
  """
  compression = None if compression in (None, '', 'none') else compression
  if compression is not None and compression not in COMPRESSIONS:
    raise ValueError(f'compression must be one of {COMPRESSIONS}, got {compression!r}')
  if feature_dtype not in FEATURE_DTYPES:
    raise ValueError(f'feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}')
  path = pathlib.Path(path)
  tmp = atomic_write.temporary_path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _TemporaryFile(tmp) as raw:
      f = h5py.File(raw, 'w', rdcc_nbytes=0)  # No chunk cache: chunks are written at once.
      try:
        _write_contents(f, raw, dataset, path=path, compression=compression,
                        chunk_snippets=chunk_snippets, progress=progress, attrs=attrs,
                        problems=problems, feature_dtype=feature_dtype)
        f.close()  # Flushes HDF5's metadata cache.
        raw.check()
        os.fsync(raw.fileno())
      finally:
        if f.id.valid:  # Failed: nothing more reaches the disk, so HDF5 can close the file.
          raw.abandon()
          f.close()
    os.replace(tmp, path)
  except BaseException as e:
    atomic_write.remove(tmp)
    if isinstance(e, OSError):  # Disk full, read-only folder, quota.
      raise atomic_write.write_failed(path, e, 'store') from e
    raise
  return path


class _TemporaryFile(io.FileIO):
  """The temporary file under HDF5 (h5py's file-object driver), which lets a failed write end
  cleanly. HDF5 flushes its caches when a file closes; on a full disk that fails again, the file
  stays open, and HDF5 retries at interpreter exit: hundreds of lines of tracebacks, then a
  segfault. Here the first failed write is raised and remembered (`check` raises it again, for one
  that h5py could only print), and after `abandon` nothing reaches the disk, so HDF5 closes."""

  def __init__(self, path: pathlib.Path):
    super().__init__(path, 'w+')
    self.failure: OSError | None = None
    self.abandoned = False

  def write(self, data) -> int:
    if self.abandoned:
      return len(memoryview(data))
    view, done = memoryview(data).cast('B'), 0
    try:
      while done < len(view):  # HDF5 ignores a short count (the last bytes before a full disk).
        done += super().write(view[done:])
    except OSError as e:
      self.failure = self.failure or e
      raise
    return done

  def truncate(self, size=None):
    return size if self.abandoned else super().truncate(size)

  def flush(self):
    if not self.abandoned:
      super().flush()

  def check(self):
    if self.failure is not None:
      raise self.failure

  def abandon(self):
    self.abandoned = True


def _write_contents(f: h5py.File, raw: '_TemporaryFile', dataset: Dataset, *, path, compression,
                    chunk_snippets, progress, attrs, problems, feature_dtype):
  """Writes the store's groups and attributes into the open file `f` (module docstring)."""
  num_classes = len(dataset.class_names)
  source = f'{path} (writing {dataset.name!r})'
  f.attrs['format'] = FORMAT
  f.attrs['format_version'] = FORMAT_VERSION
  f.attrs['complete'] = False
  f.attrs['name'] = dataset.name
  f.attrs['feature_dim'] = int(dataset.feature_dim)
  f.attrs['streams'] = dataset.streams
  f.attrs['train_subset'] = dataset.train_subset
  f.attrs['test_subset'] = dataset.test_subset
  f.attrs['seconds_per_snippet'] = float(
      dataset.videos[0].seconds_per_snippet if dataset.videos else 0.64)
  strings = h5py.string_dtype()
  f.create_dataset('class_names', data=np.array(list(dataset.class_names), dtype=object),
                   dtype=strings)
  videos = f.create_group('videos')
  earlier = len(problems)
  ids, seen, problems = [], set(), list(problems)
  for video in progress_lib.progress_bar(dataset.videos, f'writing {path.name}', enable=progress):
    try:  # After a bad video the others are still read and checked, no longer written.
      key = video_key(video.video_id)
      if key in seen:
        raise DataError(f'{source}: video {video.video_id!r} appears twice')
      seen.add(key)
      arrays = _checked_video(video, num_classes=num_classes,
                              feature_dim=dataset.feature_dim, source=source)
      if feature_dtype == 'float16' and np.abs(arrays[0]).max() > np.finfo(np.float16).max:
        raise DataError(f'{validation.where(source, video.video_id)}: features exceed the '
                        'float16 range; write the store as float32')
      if not problems:
        _write_video(videos.create_group(key), video, arrays, compression=compression,
                     chunk_snippets=chunk_snippets, dtype=feature_dtype)
        raw.check()
      ids.append(video.video_id)
    except DataError as e:
      problems.append(str(e))
  raise_problems(problems, f'{path}: {len(problems)} of {len(dataset.videos) + earlier} '
                 'videos cannot be written (no store written)')
  f.create_dataset('video_ids', data=np.array(ids, dtype=object), dtype=strings)
  _write_index(f.create_group('index'), dataset.videos, num_classes)
  if dataset.ambiguous:
    group = f.create_group('ambiguous')
    for video_id, regions in dataset.ambiguous.items():
      group.create_dataset(video_key(video_id),
                           data=np.asarray(regions, np.float64).reshape(-1, 2))
  f.attrs.update(attrs or {})
  f.attrs['complete'] = True


def _write_index(group, videos, num_classes):
  strings = h5py.string_dtype()
  group['num_snippets'] = np.array([v.num_snippets for v in videos], np.int64)
  group['duration'] = np.array([v.duration for v in videos], np.float64)
  group['seconds_per_snippet'] = np.array([v.seconds_per_snippet for v in videos], np.float64)
  group.create_dataset('subset', data=np.array([v.subset for v in videos], dtype=object),
                       dtype=strings)
  group['labels'] = np.array([v.labels for v in videos], np.float32).reshape(len(videos),
                                                                          num_classes)
  segments = [np.asarray(v.segments, np.float64).reshape(-1, 2) for v in videos]
  group['segments'] = np.concatenate(segments + [np.zeros((0, 2))])
  group['segment_classes'] = np.concatenate(
      [np.asarray(v.segment_classes, np.int32).reshape(-1) for v in videos] +
      [np.zeros((0,), np.int32)])
  group['segment_offsets'] = np.cumsum([0] + [len(x) for x in segments]).astype(np.int64)


def _checked_video(video: VideoRecord, *, num_classes, feature_dim, source):
  """(features (T, D), labels (C,), segments (N, 2), segment classes (N,)) of `video`, checked;
  DataError naming the video otherwise."""
  features = validation.check_features(video.features(), source=source,
                                       video_id=video.video_id, feature_dim=feature_dim)
  if features.shape[0] != video.num_snippets:
    raise DataError(f'{validation.where(source, video.video_id)}: loaded {features.shape[0]} '
                    f'snippets, the record says {video.num_snippets}')
  labels = np.asarray(video.labels, np.float32)
  if labels.shape != (num_classes,):
    raise DataError(f'{validation.where(source, video.video_id)}: labels have shape '
                    f'{labels.shape}, expected ({num_classes},)')
  segments = np.asarray(video.segments, np.float64).reshape(-1, 2)
  classes = np.asarray(video.segment_classes, np.int32).reshape(-1)
  if len(classes) != len(segments) or (classes.size and
                                       (classes.min() < 0 or classes.max() >= num_classes)):
    raise DataError(f'{validation.where(source, video.video_id)}: {len(segments)} segments '
                    f'with segment classes {classes.tolist()} for {num_classes} classes')
  return features, labels, segments, classes


def _write_video(group, video: VideoRecord, arrays, *, compression, chunk_snippets, dtype):
  features, labels, segments, classes = arrays
  # fletcher32: a checksum per chunk, so a damaged file fails to read instead of giving garbage.
  group.create_dataset('features', data=features.astype(dtype), compression=compression,
                       fletcher32=True, chunks=(min(features.shape[0], chunk_snippets),
                                                features.shape[1]))
  group.create_dataset('labels', data=labels)
  group.create_dataset('segments', data=segments)
  group.create_dataset('segment_classes', data=classes)
  group.attrs['video_id'] = video.video_id
  group.attrs['subset'] = video.subset
  group.attrs['duration'] = float(video.duration)
  group.attrs['seconds_per_snippet'] = float(video.seconds_per_snippet)


class _LazyFeatures:
  """Opens the store on first use (again in a forked child) and reads one video's features."""

  def __init__(self, path: pathlib.Path, feature_dim: int):
    self.path = path
    self.feature_dim = feature_dim
    self._file = None
    self._pid = None
    self._lock = threading.Lock()

  def __getstate__(self):
    return {'path': self.path, 'feature_dim': self.feature_dim}

  def __setstate__(self, state):
    self.__init__(state['path'], state['feature_dim'])

  def _handle(self):
    if self._file is None or self._pid != os.getpid():
      self._file = _open(self.path)
      self._pid = os.getpid()
    return self._file

  def read(self, key: str, video_id: str, num_snippets: int) -> np.ndarray:
    with self._lock:
      try:
        features = self._handle()['videos'][key]['features'][()]
      except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise DataError(f'{self.path}, video {video_id!r}: cannot read features (corrupt or '
                        f'truncated store?): {e}') from e
    features = validation.check_features(features, source=self.path, video_id=video_id,
                                         feature_dim=self.feature_dim)
    if features.shape[0] != num_snippets:
      raise DataError(f'{self.path}, video {video_id!r}: {features.shape[0]} snippets, the '
                      f'store lists {num_snippets}')
    return features

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None


def _open(path: pathlib.Path) -> h5py.File:
  try:
    return h5py.File(path, 'r')
  except (OSError, ValueError) as e:
    raise DataError(f'{path}: not a readable HDF5 file (corrupt or truncated?): {e}') from e


def read_store(path) -> Dataset:
  """Reads a store's annotations; each `VideoRecord.load` reads that video's features."""
  path = validation.require_file(path, 'HDF5 feature store').resolve()
  f = _open(path)
  video_id = None
  try:
    with f:
      attrs = dict(f.attrs)
      if validation.as_str(attrs.get('format', '')) != FORMAT:
        raise DataError(f'{path}: not a d2net_jax feature store (no format={FORMAT!r} '
                        'attribute)')
      if int(attrs.get('format_version', -1)) > FORMAT_VERSION:
        raise DataError(f'{path}: store format version {attrs["format_version"]} is newer than '
                        f'this d2net_jax reads ({FORMAT_VERSION})')
      if not bool(attrs.get('complete', False)):
        raise DataError(f'{path}: incomplete store (its writer stopped before the end); '
                        'write it again')
      feature_dim = int(attrs['feature_dim'])
      streams = validation.as_str(attrs.get('streams', TWO_STREAMS))
      if streams not in STREAMS:
        raise DataError(f'{path}: streams attribute {streams!r} is not one of {STREAMS}')
      class_names = [validation.as_str(c) for c in f['class_names'][()]]
      lazy = _LazyFeatures(path, feature_dim)
      ids = [validation.as_str(v) for v in f['video_ids'][()]]
      index = {k: d[()] for k, d in f['index'].items()}
      for array in index.values():
        array.flags.writeable = False  # Records share views of these arrays.
      if len(f['videos']) != len(ids) or any(
          len(index[k]) != len(ids) for k in ('num_snippets', 'duration', 'subset', 'labels')):
        raise DataError(f'{path}: damaged store (index and video groups disagree)')
      offsets = index['segment_offsets']
      videos = []
      for i, video_id in enumerate(ids):
        key = video_key(video_id)
        num_snippets = int(index['num_snippets'][i])
        segment_range = slice(int(offsets[i]), int(offsets[i + 1]))
        videos.append(VideoRecord(
            video_id=video_id,
            subset=validation.as_str(index['subset'][i]),
            labels=index['labels'][i],
            segments=index['segments'][segment_range],
            segment_classes=index['segment_classes'][segment_range],
            duration=float(index['duration'][i]),
            seconds_per_snippet=float(index['seconds_per_snippet'][i]),
            num_snippets=num_snippets,
            load=functools.partial(lazy.read, key, video_id, num_snippets)))
      video_id = None
      ambiguous = None
      if 'ambiguous' in f:
        ambiguous = {video_id_of_key(k): d[()].reshape(-1, 2) for k, d in f['ambiguous'].items()}
      return Dataset(
          name=validation.as_str(attrs.get('name', path.stem)), class_names=class_names,
          videos=videos, train_subset=validation.as_str(attrs['train_subset']),
          test_subset=validation.as_str(attrs['test_subset']), feature_dim=feature_dim,
          ambiguous=ambiguous, streams=streams)
  except DataError:
    raise
  except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
    at = f', video {video_id!r}' if video_id is not None else ''
    raise DataError(f'{path}{at}: damaged store ({type(e).__name__}: {e})') from e
