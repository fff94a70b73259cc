"""`d2net-jax import`: your own per-video features and video-level labels into the HDF5 store.

  d2net-jax import --features feats/ --labels labels.csv [--segments segments.csv] \\
      [--classes classes.txt] --out mydata.h5 [--gt-out mydata_gt.json]
  d2net-jax import --features new_feats/ --out new.h5      # new videos, for `localize --data`

Without --labels every feature file is a new video without labels, in subset 'new' (or
--default-subset), and the store has no class list: `d2net-jax localize --workdir RUN --data
new.h5` takes the class names of the trained run (RUN/model.json).

Inputs:
  feats/<video>.npy     (T, D) float features of one video (no pickle): RGB in the first D/2
                        channels, optical flow in the second. T rows of seconds_per_snippet each.
  labels.csv            header `video,labels[,subset][,duration]`; `labels` holds class names
                        separated by ';' (empty: no action); `subset` defaults to
                        --default-subset; `duration` (seconds) defaults to T * seconds_per_snippet.
  labels.json           {"<video>": {"labels": [...], "subset": "...", "duration": s}} or
                        {"<video>": [labels]}, or ActivityNet ground truth ({"database": ...}),
                        whose instances give the labels and the segments.
  segments.csv          optional, for evaluation only: header `video,label,start,end` (seconds).
  segments.json         optional: ActivityNet ground truth ({"database": {video: {"annotations":
                        [{"segment": [s, e], "label": name}]}}}).
  classes.txt           optional: class names in index order, one per line (default: the sorted
                        labels found); a label outside it is an error.

Every listed video needs a feature file and every feature file a label entry; a mismatch, an
unknown label, a bad value or an unreadable file is reported with one line naming the file and the
video, all of them in one pass (NaN / inf values too, found while the store is written), then the
import fails and writes nothing.
"""

from __future__ import annotations

import csv
import functools
import pathlib

import numpy as np

from d2net_jax.data import ground_truth, validation
from d2net_jax.data.records import TWO_STREAMS, DataError, Dataset, raise_problems


def _read_csv(path: pathlib.Path, required: list[str]) -> list[dict]:
  path = validation.require_file(path)
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:  # A UTF-8 BOM is tolerated.
      reader = csv.DictReader(f)
      reader.fieldnames = [c.strip() for c in reader.fieldnames or []]  # So are spaces.
      columns = reader.fieldnames
      missing = [c for c in required if c not in columns]
      if missing:
        raise DataError(f'{path}: missing column(s) {missing}; the header has {columns}')
      rows = []
      for number, row in enumerate(reader, 2):
        if None in row or any(v is None for v in row.values()):
          raise DataError(f'{path}, line {number}: {len(columns)} columns expected')
        rows.append({k: v.strip() for k, v in row.items()})
      return rows
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f'{path}: unreadable CSV ({e})') from e


class _Entry:
  """One video's label entry before the class list is known."""

  def __init__(self, video_id, labels, subset, duration, source):
    self.video_id, self.labels, self.subset = video_id, list(labels), subset
    self.duration, self.source = duration, source
    self.segments: list[tuple[float, float, str]] = []


def read_labels(path, *, default_subset: str, separator: str = ';', video_column: str = 'video',
                labels_column: str = 'labels', subset_column: str = 'subset',
                duration_column: str = 'duration') -> dict[str, _Entry]:
  """{video_id: entry} from a labels CSV or JSON (module docstring)."""
  path = pathlib.Path(path)
  entries: dict[str, _Entry] = {}

  def add(entry):
    if not entry.video_id:
      raise DataError(f'{path}: an entry has an empty video id')
    if entry.video_id in entries:
      raise DataError(f'{path}, video {entry.video_id!r}: listed more than once')
    entries[entry.video_id] = entry

  if path.suffix.lower() == '.csv':
    for row in _read_csv(path, [video_column, labels_column]):
      names = [n.strip() for n in row[labels_column].split(separator) if n.strip()]
      duration = row.get(duration_column) or None
      add(_Entry(row[video_column], names, row.get(subset_column) or default_subset,
                 duration, path))
  elif path.suffix.lower() == '.json':
    data = ground_truth.load_json(path)
    if isinstance(data, dict) and 'database' in data:
      for video_id, e in data['database'].items():
        if not isinstance(e, dict):
          raise DataError(f'{path}, video {video_id!r}: entry is not an object')
        annotations = e.get('annotations', [])
        entry = _Entry(video_id, dict.fromkeys(a.get('label') for a in annotations),
                       e.get('subset') or default_subset, e.get('duration'), path)
        entry.segments = _json_segments(path, video_id, annotations)
        add(entry)
    elif isinstance(data, dict):
      for video_id, e in data.items():
        if isinstance(e, list):
          e = {'labels': e}
        if not isinstance(e, dict) or not isinstance(e.get('labels'), list):
          raise DataError(f'{path}, video {video_id!r}: expected a list of labels or '
                          '{"labels": [...], "subset": ..., "duration": ...}')
        add(_Entry(video_id, [str(n) for n in e['labels']], e.get('subset') or default_subset,
                   e.get('duration'), path))
    else:
      raise DataError(f'{path}: expected a JSON object keyed by video id')
  else:
    raise DataError(f'{path}: labels must be a .csv or .json file')
  return entries


def _json_segments(path, video_id, annotations) -> list[tuple[float, float, str]]:
  out = []
  for a in annotations:
    try:
      (start, end), label = a['segment'], a['label']
      out.append((float(start), float(end), str(label)))
    except (KeyError, TypeError, ValueError) as e:
      raise DataError(f'{path}, video {video_id!r}: bad annotation {a!r} (expected '
                      '{"segment": [start, end], "label": name})') from e
  return out


def read_segments(path, entries: dict[str, _Entry]) -> None:
  """Adds the instances of a segments CSV or JSON to `entries`."""
  path = pathlib.Path(path)
  if path.suffix.lower() == '.csv':
    items = []
    for number, row in enumerate(_read_csv(path, ['video', 'label', 'start', 'end']), 2):
      try:
        items.append((row['video'], float(row['start']), float(row['end']), row['label']))
      except ValueError as e:
        raise DataError(f'{path}, line {number}, video {row["video"]!r}: start/end are not '
                        f'numbers ({e})') from e
  elif path.suffix.lower() == '.json':
    data = ground_truth.load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get('database'), dict):
      raise DataError(f'{path}: expected ActivityNet ground truth {{"database": ...}}')
    items = [(video_id, s, e, label) for video_id, entry in data['database'].items()
             for s, e, label in _json_segments(path, video_id, entry.get('annotations', []))]
  else:
    raise DataError(f'{path}: segments must be a .csv or .json file')
  for video_id, start, end, label in items:
    if video_id not in entries:
      raise DataError(f'{path}, video {video_id!r}: has segments but no label entry')
    entries[video_id].segments.append((start, end, label))


def load_features(path: pathlib.Path, video_id: str, num_snippets: int,
                  feature_dim: int) -> np.ndarray:
  """The (num_snippets, feature_dim) float32 features of `path`, checked."""
  features = validation.check_features(validation.load_npy(path), source=path,
                                       video_id=video_id, feature_dim=feature_dim)
  if features.shape[0] != num_snippets:
    raise DataError(f'{path}, video {video_id!r}: {features.shape[0]} snippets, expected '
                    f'{num_snippets} (file changed while in use?)')
  return features


NEW_SUBSET = 'new'


def unlabeled_entries(features_dir: pathlib.Path, subset: str) -> dict[str, _Entry]:
  """{video_id: entry without labels} of every <video>.npy in `features_dir`."""
  entries = {p.stem: _Entry(p.stem, [], subset, None, features_dir)
             for p in sorted(features_dir.glob('*.npy'))}
  if not entries:
    raise DataError(f'{features_dir}: no <video>.npy feature file')
  return entries


def build_dataset(features_dir, labels_path, *, segments_path=None, class_names=None,
                  name: str = '', seconds_per_snippet: float = 0.64,
                  feature_dim: int | None = None, train_subset: str = 'train',
                  test_subset: str = 'test', default_subset: str | None = None,
                  separator: str = ';', segment_policy: str = 'clip',
                  timing_check: str = 'warn', timing_tolerance_snippets: float = 2.0,
                  timing_tolerance_fraction: float = 0.02,
                  report: validation.Report | None = None,
                  collect: list[str] | None = None, video_ids=None, durations=None,
                  streams: str = TWO_STREAMS, **columns) -> Dataset:
  """A `Dataset` of your own features and labels (module docstring); features load lazily.

  labels_path None: new videos, every feature file one without labels (module docstring).

  Every bad file or entry is found in one pass: DataErrors lists them all; with `collect` they are
  appended to it and the bad videos left out instead.

  video_ids: only these videos (`<id>.npy` in the folder; label entries of other videos are
    ignored); default: every .npy file of the folder. durations: {video_id: seconds} for entries
    without a duration (default: T * seconds_per_snippet). streams: what the features hold
    (records.STREAMS).
  """
  features_dir = pathlib.Path(features_dir)
  if not features_dir.is_dir():
    raise DataError(f'{features_dir}: missing features folder')
  own_report = report is None
  report = validation.Report() if own_report else report
  if labels_path is None:
    default_subset = default_subset or NEW_SUBSET
    entries = unlabeled_entries(features_dir, default_subset)
  else:
    entries = read_labels(labels_path, default_subset=default_subset or train_subset,
                          separator=separator, **columns)
  if segments_path is not None:
    read_segments(segments_path, entries)
  files = {p.stem: p for p in sorted(features_dir.glob('*.npy'))}
  if video_ids is not None:
    files = {v: features_dir / f'{v}.npy' for v in video_ids}
    entries = {k: e for k, e in entries.items() if k in files}
  allowed = sorted({train_subset, test_subset, default_subset or train_subset})
  # Every problem of the pass is collected, then reported together.
  problems = [f'{labels_path}, video {e.video_id!r}: subset {e.subset!r} is not one of '
              f'{allowed} (--train-subset / --test-subset name the subsets)'
              for e in entries.values() if e.subset not in allowed]
  problems += [f'{files[v]}, video {v!r}: feature file without a label entry in {labels_path}'
               for v in sorted(set(files) - set(entries))]
  if labels_path is None:  # New videos: the classes are the segments', or the model's.
    for e in entries.values():
      e.labels = list(dict.fromkeys(s[2] for s in e.segments))
  if class_names is None:
    class_names = sorted({n for e in entries.values() for n in e.labels} |
                         {s[2] for e in entries.values() for s in e.segments})
  if not class_names and labels_path is not None:
    raise DataError(f'{labels_path}: no class labels at all (new videos without labels: leave '
                    'out --labels)')
  class_index = {c: i for i, c in enumerate(class_names)}
  videos = []

  def one_video(video_id, entry):
    nonlocal feature_dim
    path = features_dir / f'{video_id}.npy'
    num_snippets, dim = validation.npy_feature_shape(path, video_id, entry.source, feature_dim)
    feature_dim = dim
    labels = validation.class_indices(entry.labels, class_index, source=entry.source,
                                      video_id=video_id)
    if entry.duration is None and durations and video_id in durations:
      duration = float(durations[video_id])
    elif entry.duration is None:
      duration = num_snippets * seconds_per_snippet
    else:
      duration = validation.check_duration(entry.duration, source=entry.source,
                                           video_id=video_id)
    source = segments_path or labels_path
    classes = validation.class_indices([s[2] for s in entry.segments], class_index,
                                       source=source, video_id=video_id)
    segments = validation.check_segments([s[:2] for s in entry.segments], duration,
                                         source=source, video_id=video_id,
                                         policy=segment_policy, report=report)
    extra = sorted(set(classes.tolist()) - set(labels.tolist()))
    if extra:
      report.add('label_mismatch', source, video_id,
                 f'segments of classes {[class_names[c] for c in extra]} not in the video '
                 'label (the video label is kept as given)')
    record = validation.annotation_record(
        video_id=video_id, subset=entry.subset,
        labels=validation.multi_hot(labels, len(class_names)), segments=segments,
        segment_classes=classes, duration=duration, seconds_per_snippet=seconds_per_snippet,
        source=entry.source)
    load = functools.partial(load_features, path, video_id, num_snippets, dim)
    return validation.with_features(record, num_snippets, load)

  for video_id, entry in entries.items():  # Every bad file reported, then a failure.
    try:
      videos.append(one_video(video_id, entry))
    except DataError as e:
      problems.append(str(e))
  raise_problems(problems, f'{len(problems)} of {len(set(entries) | set(files))} videos cannot '
                 'be imported', collect)

  if any(e.duration is not None for e in entries.values()):
    validation.check_timing([v for v in videos if entries[v.video_id].duration is not None],
                            tolerance_snippets=timing_tolerance_snippets,
                            tolerance_fraction=timing_tolerance_fraction, mode=timing_check,
                            source=labels_path, report=report)
  if own_report:
    report.warn()
  return Dataset(name=name or features_dir.name, class_names=list(class_names), videos=videos,
                 train_subset=train_subset, test_subset=test_subset,
                 feature_dim=int(feature_dim or 0), streams=streams)
