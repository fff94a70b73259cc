"""Detections in the ActivityNet results JSON format, and their flat (N,) array form.

The file format (what `d2net-jax localize` writes and `d2net-jax evaluate` reads):

  {"version": "VERSION 1.3",
   "results": {video_id: [{"label": name, "score": s, "segment": [start_s, end_s]}, ...]},
   "external_data": {}}

In memory, `results` (the dict under "results") is the exchange structure. `flatten_detections`
also takes per-video rows `(class, start_s, end_s, score)`: an (N, 4) array with the class index in
column 0, tuples whose class is an index or a name, or an object with `to_list()` giving such
tuples (`localize.Detections`); it returns one `DetectionArrays`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from d2net_jax.data.records import DataError
from d2net_jax.utils import atomic_write

RESULTS_VERSION = 'VERSION 1.3'  # The ActivityNet results format version string.


@dataclasses.dataclass(frozen=True)
class DetectionArrays:
  """N detections as flat arrays.

  Attributes:
    video_ids: (N,) str, the video of each detection.
    labels: (N,) str, the class name of each detection.
    segments: (N, 2) float64 [start_s, end_s].
    scores: (N,) float64.
    videos: every video named in the input, in input order (also those with no detection).
  """
  video_ids: np.ndarray
  labels: np.ndarray
  segments: np.ndarray
  scores: np.ndarray
  videos: tuple[str, ...]

  def __len__(self) -> int:
    return int(self.scores.shape[0])


def _check_row(video: str, label: str, start: float, end: float, score: float, source: str):
  if not (math.isfinite(start) and math.isfinite(end)):
    raise DataError(f'{source}: video {video!r}: non-finite segment [{start}, {end}].')
  if end < start:
    raise DataError(f'{source}: video {video!r}: segment [{start}, {end}] ends before it starts.')
  if not math.isfinite(score):
    raise DataError(f'{source}: video {video!r}: non-finite score {score} ({label!r}).')


def _number(value: Any, what: str, video: str, source: str) -> float:
  """`value` as a float; DataError naming the file, the video and the field otherwise."""
  try:
    return float(value)
  except (TypeError, ValueError):
    raise DataError(f'{source}: video {video!r}: {what} {value!r} is not a number.') from None


def _label_name(value: Any, class_names: Sequence[str] | None, video: str, source: str) -> str:
  """A class given as a name or an index into `class_names` -> the name."""
  if isinstance(value, (str, np.str_)):
    return str(value)
  if isinstance(value, bytes):
    return value.decode('utf-8')
  index = _number(value, 'class', video, source)
  if not index.is_integer():
    raise DataError(f'{source}: video {video!r}: class {value!r} is neither a name nor an index.')
  if class_names is None:
    raise ValueError(f'{source}: video {video!r}: detections give class indices; pass class_names '
                     '(their names in index order).')
  if not 0 <= index < len(class_names):
    raise DataError(f'{source}: video {video!r}: class index {int(index)} outside '
                    f'[0, {len(class_names)}).')
  return str(class_names[int(index)])


def _video_rows(video: str, rows: Any, class_names: Sequence[str] | None, source: str):
  """One video's detections (dicts, tuples or an (N, 4) array) -> list of (label, s, e, score)."""
  out = []
  if hasattr(rows, 'to_list') and not isinstance(rows, np.ndarray):
    rows = rows.to_list()  # localize.Detections: [(class_index, start_s, end_s, score), ...].
  if isinstance(rows, np.ndarray):
    if rows.size == 0:
      return out
    if rows.ndim != 2 or rows.shape[1] != 4:
      raise DataError(f'{source}: video {video!r}: detection array of shape {rows.shape}, '
                      'expected (N, 4) [class, start_s, end_s, score].')
    rows = rows.tolist()
  if not isinstance(rows, (list, tuple)):
    raise DataError(f'{source}: video {video!r}: detections must be a list, got '
                    f'{type(rows).__name__}.')
  for row in rows:
    if isinstance(row, Mapping):
      missing = {'label', 'score', 'segment'} - set(row)
      if missing:
        raise DataError(f'{source}: video {video!r}: detection {row!r} lacks {sorted(missing)}.')
      segment = row['segment']
      if not isinstance(segment, (list, tuple, np.ndarray)) or len(segment) != 2:
        raise DataError(f'{source}: video {video!r}: segment {segment!r} is not [start, end].')
      label = _label_name(row['label'], class_names, video, source)
      start, end = (_number(x, 'segment bound', video, source) for x in segment)
      score = _number(row['score'], 'score', video, source)
    else:
      if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != 4:
        raise DataError(f'{source}: video {video!r}: detection {row!r} is not '
                        '(class, start_s, end_s, score).')
      label = _label_name(row[0], class_names, video, source)
      start, end, score = (_number(x, what, video, source)
                           for x, what in zip(row[1:], ('start', 'end', 'score')))
    _check_row(video, label, start, end, score, source)
    out.append((label, start, end, score))
  return out


def flatten_detections(detections: Mapping[str, Any],
                       class_names: Sequence[str] | None = None,
                       source: str = 'detections') -> DetectionArrays:
  """Per-video detections -> `DetectionArrays` (input order kept).

  Args:
    detections: a whole results JSON dict (with "results"), or {video_id: rows} where rows are
      result dicts, (class, start_s, end_s, score) tuples, an (N, 4) array [class, s, e, score],
      or a `localize.Detections`.
    class_names: needed when classes are given as indices.
    source: named in error messages (e.g. the file path).
  """
  if isinstance(detections, Mapping) and 'results' in detections:
    detections = detections['results']
  if not isinstance(detections, Mapping):
    raise DataError(f'{source}: expected a mapping video_id -> detections, got '
                    f'{type(detections).__name__}.')
  videos, labels, segments, scores, names = [], [], [], [], []
  for video, rows in detections.items():
    video = str(video)
    names.append(video)
    for label, start, end, score in _video_rows(video, rows, class_names, source):
      videos.append(video)
      labels.append(label)
      segments.append((start, end))
      scores.append(score)
  return DetectionArrays(
      video_ids=np.asarray(videos, dtype=object),
      labels=np.asarray(labels, dtype=object),
      segments=np.asarray(segments, dtype=np.float64).reshape(-1, 2),
      scores=np.asarray(scores, dtype=np.float64),
      videos=tuple(names))


def to_results(detections: Mapping[str, Any],
               class_names: Sequence[str] | None = None,
               source: str = 'detections') -> dict[str, list[dict[str, Any]]]:
  """Per-video detections (any form `flatten_detections` takes) -> the "results" dict."""
  flat = flatten_detections(detections, class_names, source)
  results: dict[str, list[dict[str, Any]]] = {video: [] for video in flat.videos}
  for video, label, (start, end), score in zip(flat.video_ids, flat.labels, flat.segments,
                                               flat.scores):
    results[video].append({'label': label, 'score': float(score),
                           'segment': [float(start), float(end)]})
  return results


def write_detections(path: str | os.PathLike,
                     detections: Mapping[str, Any],
                     class_names: Sequence[str] | None = None,
                     *,
                     version: str = RESULTS_VERSION,
                     external_data: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes the ActivityNet results JSON; returns the path."""
  path = pathlib.Path(path)
  document = {
      'version': version,
      'results': to_results(detections, class_names, source=str(path)),
      'external_data': dict(external_data or {}),
  }
  return atomic_write.write_text(path, json.dumps(document))


def read_detections(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
  """Reads an ActivityNet results JSON; returns its checked "results" dict."""
  path = pathlib.Path(path)
  try:
    with open(path) as f:
      document = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f'{path}: not valid JSON ({e}).') from e
  if not isinstance(document, Mapping) or 'results' not in document:
    raise DataError(f'{path}: not an ActivityNet results file (no "results" field).')
  return to_results(document['results'], source=str(path))
