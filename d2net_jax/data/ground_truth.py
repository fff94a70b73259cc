"""Ground truth in the ActivityNet JSON format, written for the evaluator and read by the readers.

Format:
  {"version": "d2net_jax",
   "classes": [name, ...],                       # index order (extra key; readers may ignore it)
   "database": {video_id: {"subset": str, "duration": seconds,
                           "annotations": [{"segment": [start_s, end_s], "label": name}, ...]}},
   "ambiguous": {video_id: [[start_s, end_s], ...]}}   # only when the dataset has such regions
"""

from __future__ import annotations

import json
import pathlib
from typing import Iterable, Sequence

import numpy as np

from d2net_jax.data import validation
from d2net_jax.data.records import DataError, Dataset
from d2net_jax.utils import atomic_write


def ground_truth_dict(dataset: Dataset,
                      subsets: Iterable[str] | str | None = None) -> dict:
  """The ActivityNet-format ground truth of the videos in `subsets` (None: all videos)."""
  if isinstance(subsets, str):
    subsets = [subsets]
  keep = None if subsets is None else set(subsets)
  database = {}
  for video in dataset.videos:
    if keep is not None and video.subset not in keep:
      continue
    annotations = [
        {'segment': [float(s), float(e)], 'label': dataset.class_names[int(c)]}
        for (s, e), c in zip(np.asarray(video.segments).reshape(-1, 2), video.segment_classes)]
    database[video.video_id] = {'subset': video.subset, 'duration': float(video.duration),
                                'annotations': annotations}
  out = {'version': 'd2net_jax', 'classes': list(dataset.class_names), 'database': database}
  if dataset.ambiguous:
    out['ambiguous'] = {vid: np.asarray(r, np.float64).reshape(-1, 2).tolist()
                        for vid, r in dataset.ambiguous.items() if vid in database}
  return out


def export_ground_truth(dataset: Dataset, path,
                        subsets: Iterable[str] | str | None = None) -> pathlib.Path:
  """Writes `ground_truth_dict(dataset, subsets)` as JSON to `path`."""
  return atomic_write.write_text(path, json.dumps(ground_truth_dict(dataset, subsets), indent=1))


def load_json(path) -> dict:
  path = validation.require_file(path)
  try:
    return json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DataError(f'{path}: not a readable JSON file ({e})') from e


def read_ground_truth(path, *, class_names: Sequence[str] | None = None, name: str = '',
                      seconds_per_snippet: float = 0.64, segment_policy: str = 'clip',
                      report: validation.Report | None = None) -> Dataset:
  """Reads an ActivityNet-format JSON into an annotations-only `Dataset`.

  The class list is `class_names` if given (a label outside it is an error), else the file's
  "classes" key if present, else the sorted set of labels. A video's label is the set of classes
  of its instances. Videos have num_snippets 0 and no features (`validation.with_features`);
  train/test subsets follow the field's convention for the names present, else ''.
  """
  path = pathlib.Path(path)
  data = load_json(path)
  database = data.get('database') if isinstance(data, dict) else None
  if not isinstance(database, dict):
    raise DataError(f'{path}: no "database" object (expected the ActivityNet JSON format '
                    '{"database": {video: {"subset", "duration", "annotations"}}})')
  entries = {}
  for video_id, entry in database.items():
    if not isinstance(entry, dict):
      raise DataError(f'{path}, video {video_id!r}: entry is not an object')
    annotations = entry.get('annotations', [])
    if not isinstance(annotations, list):
      raise DataError(f'{path}, video {video_id!r}: "annotations" is not a list')
    for a in annotations:
      if not (isinstance(a, dict) and 'segment' in a and 'label' in a):
        raise DataError(f'{path}, video {video_id!r}: annotation {a!r} lacks "segment" or '
                        '"label"')
    entries[video_id] = entry
  if class_names is None:
    if isinstance(data.get('classes'), list):
      class_names = [str(c) for c in data['classes']]
    else:
      class_names = sorted({str(a['label']) for e in entries.values()
                            for a in e.get('annotations', [])})
  class_index = {c: i for i, c in enumerate(class_names)}
  videos = []
  for video_id, entry in entries.items():
    annotations = entry.get('annotations', [])
    if 'duration' not in entry:
      raise DataError(f'{path}, video {video_id!r}: no "duration"')
    duration = validation.check_duration(entry['duration'], source=path, video_id=video_id)
    classes = validation.class_indices([a['label'] for a in annotations], class_index,
                                       source=path, video_id=video_id)
    segments = validation.check_segments(
        [a['segment'] for a in annotations], duration, source=path, video_id=video_id,
        policy=segment_policy, report=report)
    videos.append(validation.annotation_record(
        video_id=str(video_id), subset=str(entry.get('subset', '')),
        labels=validation.multi_hot(classes, len(class_names)), segments=segments,
        segment_classes=classes, duration=duration, seconds_per_snippet=seconds_per_snippet,
        source=path))
  ambiguous = None
  if isinstance(data.get('ambiguous'), dict):
    ambiguous = {vid: np.asarray(r, np.float64).reshape(-1, 2)
                 for vid, r in data['ambiguous'].items()}
  try:
    train_subset, test_subset = validation.infer_subsets({v.subset for v in videos})
  except DataError:
    train_subset, test_subset = '', ''
  return Dataset(name=name or path.stem, class_names=list(class_names), videos=videos,
                 train_subset=train_subset, test_subset=test_subset, feature_dim=0,
                 ambiguous=ambiguous)
