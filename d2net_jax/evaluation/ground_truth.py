"""What the evaluator scores against: the ground truth (from a dataset, an ActivityNet JSON or a
mapping) restricted to subsets, and the ambiguous regions (THUMOS14 Ambiguous_test.txt) whose
detections are dropped. Used by `mean_ap.py` (which re-exports these names) and `official.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from d2net_jax.data.records import DataError


# ----------------------------------------------------------------------------------------------
# Inputs.


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """The scored GT instances.

  Attributes:
    video_ids: the V scored videos (also those without instances).
    class_names: the C scored classes (each with >= 1 instance).
    video_index: (M,) int64 video of each instance.
    class_index: (M,) int64 class of each instance.
    segments: (M, 2) float64 [start_s, end_s].
    subsets: the subsets the videos were taken from.
    classes_without_instances: declared classes (`class_names`) with no instance here.
    declared_class_names: the full class list given (or a Dataset's), else None; class indices
      in detections refer to it.
    source: where it came from (error messages).
  """
  video_ids: tuple[str, ...]
  class_names: tuple[str, ...]
  video_index: np.ndarray
  class_index: np.ndarray
  segments: np.ndarray
  subsets: tuple[str, ...]
  classes_without_instances: tuple[str, ...] = ()
  declared_class_names: tuple[str, ...] | None = None
  source: str = 'the in-memory ground truth'

  @property
  def num_instances(self) -> int:
    return int(self.segments.shape[0])


def _database_from_dataset(dataset) -> dict[str, Any]:
  """A `records.Dataset` -> the ActivityNet "database" dict."""
  database = {}
  for video in dataset.videos:
    annotations = [{'segment': [float(s), float(e)], 'label': str(dataset.class_names[int(c)])}
                   for (s, e), c in zip(np.asarray(video.segments).reshape(-1, 2),
                                        np.asarray(video.segment_classes).reshape(-1))]
    database[video.video_id] = {'subset': video.subset, 'duration': float(video.duration),
                                'annotations': annotations}
  return database


def _as_subsets(subset: str | Iterable[str] | None) -> tuple[str, ...] | None:
  if subset is None:
    return None
  if isinstance(subset, str):
    return (subset,)
  return tuple(subset)


def load_ground_truth(ground_truth: Any,
                      subset: str | Iterable[str] | None = None,
                      class_names: Sequence[str] | None = None) -> GroundTruth:
  """Reads the GT to score.

  Args:
    ground_truth: an ActivityNet GT JSON path; its dict ({"database": {video: {"subset",
      "duration", "annotations": [{"segment": [s, e], "label": name}]}}}) or the bare "database";
      a `records.Dataset`; or a `GroundTruth` (returned as is).
    subset: keep the videos of this subset (or these subsets). None: the GT must hold one subset.
    class_names: the model's class list (order of the per-class table; classes absent from the GT
      are allowed in detections and reported). Defaults to a Dataset's list, else sorted GT labels.
  """
  if isinstance(ground_truth, GroundTruth):
    return ground_truth
  source = 'the in-memory ground truth'
  if hasattr(ground_truth, 'videos') and hasattr(ground_truth, 'class_names'):
    source = f'dataset {getattr(ground_truth, "name", "")!r}'
    if class_names is None:
      class_names = list(ground_truth.class_names)
    database = _database_from_dataset(ground_truth)
  else:
    if isinstance(ground_truth, (str, os.PathLike)):
      source = str(ground_truth)
      try:
        with open(ground_truth) as f:
          ground_truth = json.load(f)
      except json.JSONDecodeError as e:
        raise DataError(f'{source}: not valid JSON ({e}).') from e
    if not isinstance(ground_truth, Mapping):
      raise DataError(f'{source}: expected the ActivityNet GT dict, got '
                      f'{type(ground_truth).__name__}.')
    database = ground_truth.get('database', ground_truth)

  wanted = _as_subsets(subset)
  present = sorted({str(v.get('subset', '')) for v in database.values()
                    if isinstance(v, Mapping)})
  if wanted is None:
    if len(present) > 1:
      raise ValueError(f'{source}: holds the subsets {present}; say which to score (subset=...).')
    wanted = tuple(present)
  missing = [s for s in wanted if s not in present]
  if missing:
    raise DataError(f'{source}: no video of subset(s) {missing} (present: {present}).')

  video_ids, video_index, labels, segments = [], [], [], []
  for video, entry in database.items():
    if not isinstance(entry, Mapping) or 'annotations' not in entry:
      raise DataError(f'{source}: video {video!r}: entry has no "annotations".')
    if str(entry.get('subset', '')) not in wanted:
      continue
    vi = len(video_ids)
    video_ids.append(str(video))
    for ann in entry['annotations']:
      try:
        start, end = (float(x) for x in ann['segment'])
        label = ann['label']
      except (KeyError, TypeError, ValueError) as e:
        raise DataError(f'{source}: video {video!r}: bad annotation {ann!r}.') from e
      if not (np.isfinite(start) and np.isfinite(end)) or end < start:
        raise DataError(f'{source}: video {video!r}: bad segment [{start}, {end}] ({label}).')
      video_index.append(vi)
      labels.append(str(label))
      segments.append((start, end))

  present_labels = set(labels)
  if class_names is None:
    scored = sorted(present_labels)
    declared_only = []
  else:
    declared = [str(c) for c in class_names]
    unknown = sorted(present_labels - set(declared))
    if unknown:
      raise DataError(f'{source}: GT labels {unknown} are not among the {len(declared)} '
                      'class names given.')
    scored = [c for c in declared if c in present_labels]
    declared_only = [c for c in declared if c not in present_labels]
  class_of = {c: i for i, c in enumerate(scored)}
  return GroundTruth(
      video_ids=tuple(video_ids),
      class_names=tuple(scored),
      video_index=np.asarray(video_index, dtype=np.int64),
      class_index=np.asarray([class_of[l] for l in labels], dtype=np.int64),
      segments=np.asarray(segments, dtype=np.float64).reshape(-1, 2),
      subsets=tuple(wanted),
      classes_without_instances=tuple(declared_only),
      declared_class_names=None if class_names is None else tuple(str(c) for c in class_names),
      source=source)


def parse_ambiguous(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """THUMOS14 `Ambiguous_test.txt` -> {video_id: (R, 2) float64 [start_s, end_s]}.

  Lines are `video_name [label] start_s end_s` (the label is empty in the THUMOS14 file).
  """
  regions: dict[str, list[tuple[float, float]]] = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      try:
        if len(fields) not in (3, 4):
          raise ValueError(line)
        start, end = float(fields[-2]), float(fields[-1])
      except ValueError as e:
        raise DataError(f'{path}:{number}: expected "video_name [label] start_s end_s", got '
                        f'{line.strip()!r}.') from e
      if end < start:
        raise DataError(f'{path}:{number}: region [{start}, {end}] ends before it starts.')
      regions.setdefault(fields[0], []).append((start, end))
  return {video: np.asarray(r, dtype=np.float64) for video, r in regions.items()}


def _as_regions(ambiguous) -> tuple[dict[str, np.ndarray], str] | tuple[None, None]:
  if ambiguous is None:
    return None, None
  if isinstance(ambiguous, (str, os.PathLike)):
    return parse_ambiguous(ambiguous), pathlib.Path(ambiguous).name
  return ({str(v): np.asarray(r, dtype=np.float64).reshape(-1, 2) for v, r in ambiguous.items()},
          'given regions')


def ground_truth_ambiguous(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
  """The "ambiguous" regions {video: (R, 2) seconds} an ActivityNet GT JSON carries (the files
  `d2net-jax convert --gt-out` writes for THUMOS14), or None when it carries none."""
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, json.JSONDecodeError):
    return None  # load_ground_truth reports the file.
  regions = data.get('ambiguous') if isinstance(data, Mapping) else None
  if not isinstance(regions, Mapping):
    return None
  try:
    return {str(v): np.asarray(r, dtype=np.float64).reshape(-1, 2) for v, r in regions.items()}
  except (TypeError, ValueError) as e:
    raise DataError(f'{path}: "ambiguous" is not {{video: [[start_s, end_s], ...]}} ({e}).') from e


def choose_ambiguous(regions: Mapping[str, np.ndarray] | None, use: bool, source: str,
                     switch: str) -> tuple[Mapping[str, np.ndarray] | None, str]:
  """(the regions to filter with or None, a note for the protocol line when there are none).

  The one rule of `d2net-jax evaluate` and of train / localize: the ground truth's ambiguous
  regions are used when it carries them, unless switched off (`switch` names how, e.g.
  'evaluation.use_ambiguous=False'); the protocol line says which.
  """
  if regions and use:
    return regions, ''
  if regions:
    count = sum(np.asarray(r).reshape(-1, 2).shape[0] for r in regions.values())
    return None, f'{source} carries {count} regions, not used: {switch}'
  return None, f'{source} carries none'


def ambiguous_mask(video_ids: np.ndarray, segments: np.ndarray,
                   regions: Mapping[str, np.ndarray]) -> np.ndarray:
  """(N,) bool: the detection overlaps (intersection > 0 s) an ambiguous region of its video.

  The region's label is ignored, as in the D2-Net / W-TALC scorers (they test a non-empty
  intersection of snippet index sets; here the intersection of the segments in seconds).
  """
  hit = np.zeros(len(video_ids), dtype=bool)
  for video, r in regions.items():
    rows = np.flatnonzero(video_ids == video)
    if rows.size == 0 or r.size == 0:
      continue
    seg = segments[rows]
    inter = (np.minimum(seg[:, None, 1], r[None, :, 1]) -
             np.maximum(seg[:, None, 0], r[None, :, 0]))
    hit[rows] = (inter > 0).any(axis=1)
  return hit
