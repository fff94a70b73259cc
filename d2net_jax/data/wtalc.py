"""Reader of the W-TALC / D2-Net layout.

  <root>/<Name>-I3D-JOINTFeatures.npy    object array of per-video (T, 2048) features
  <root>/<Name>-Annotations/
      videoname.npy, subset.npy           (N,) names (byte strings in the real files)
      duration.npy                        (N,) or (N, 1) seconds
      segments.npy                        (N,) lists of [start_s, end_s]
      labels.npy                          (N,) lists of class names, parallel to segments
      labels_all.npy                      (N,) lists of class names: the video-level label
      classlist.npy                       (C,) class names in index order
      Ambiguous_test.txt                  optional 'video [label] start_s end_s' lines

The features file and the list-valued annotation files are pickled object arrays: loading them
runs code from the file, so they load only with `trust_pickle=True`. Convert them once to the
HDF5 store (`d2net-jax convert --layout wtalc`), which needs no pickle.
"""

from __future__ import annotations

import collections
import functools
import pathlib

import numpy as np

from d2net_jax.data import validation
from d2net_jax.data.records import DataError, Dataset, raise_problems

FEATURES_SUFFIX = '-I3D-JOINTFeatures.npy'
ANNOTATIONS_SUFFIX = '-Annotations'
AMBIGUOUS_FILE = 'Ambiguous_test.txt'
ANNOTATION_FILES = ('videoname', 'subset', 'duration', 'classlist', 'segments', 'labels',
                    'labels_all')
VIDEO_LABEL_SOURCES = ('labels_all', 'instances', 'union')


def layout_paths(root, name: str) -> tuple[pathlib.Path, pathlib.Path]:
  """(features file, annotations folder) of dataset `name` under `root`."""
  root = pathlib.Path(root)
  return root / f'{name}{FEATURES_SUFFIX}', root / f'{name}{ANNOTATIONS_SUFFIX}'


def read_ambiguous(path) -> dict[str, np.ndarray]:
  """{video_id: (M, 2) seconds} from 'video [label] start_s end_s' lines."""
  path = validation.require_file(path, 'ambiguous regions')
  regions: dict[str, list] = {}
  try:
    lines = path.read_text().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f'{path}: unreadable ({e})') from e
  for number, line in enumerate(lines, 1):
    tokens = line.split()
    if not tokens:
      continue
    try:
      if len(tokens) < 3:
        raise ValueError('too few fields')
      start, end = float(tokens[-2]), float(tokens[-1])
    except ValueError as e:
      raise DataError(f'{path}, line {number}: expected "video [label] start_s end_s", got '
                      f'{line!r}') from e
    if not (np.isfinite(start) and np.isfinite(end)) or end < start:
      raise DataError(f'{path}, line {number}, video {tokens[0]!r}: bad region [{start}, {end}]')
    regions.setdefault(tokens[0], []).append((start, end))
  return {k: np.asarray(v, np.float64).reshape(-1, 2) for k, v in regions.items()}


def _per_video(array: np.ndarray, count: int, path: pathlib.Path, what: str) -> np.ndarray:
  if array.ndim == 2 and array.shape[1] == 1 and array.dtype != object:
    array = array.reshape(-1)  # THUMOS14 stores durations as (N, 1).
  if array.ndim == 0 or len(array) != count:
    length = 'a scalar' if array.ndim == 0 else f'{len(array)} entries'
    raise DataError(f'{path}: {length}, but videoname.npy lists {count} videos ({what} must '
                    'have one entry per video)')
  return array


def _as_list(entry) -> list:
  """One video's list entry; a lone name (str / bytes) is a list of one."""
  if isinstance(entry, (str, bytes, np.bytes_, np.str_)):
    return [entry]
  if entry is None:
    return []
  return list(entry)


def read_annotations(folder, *, trust_pickle: bool = False, name: str = '',
                     seconds_per_snippet: float = 0.64, train_subset: str | None = None,
                     test_subset: str | None = None, video_labels: str = 'labels_all',
                     segment_policy: str = 'clip', ambiguous_file=None,
                     report: validation.Report | None = None) -> Dataset:
  """Reads a W-TALC annotations folder (no features).

  Args:
    folder: the `<Name>-Annotations/` folder (or one holding the same files).
    trust_pickle: allow loading the pickled (object-array) files; see the module docstring.
    name: dataset name (default: the folder name without '-Annotations').
    seconds_per_snippet: the feature timing to record (features laid over later use it).
    train_subset, test_subset: default: the field's convention for the subset names present.
    video_labels: the weak label: 'labels_all' (the file, as the official code), 'instances'
      (classes of the annotated instances) or 'union'.
    segment_policy: 'clip' or 'refuse' segments outside [0, duration] (validation.py).
    ambiguous_file: regions file (default: Ambiguous_test.txt in the folder, if present).
    report: collects clipped segments, label mismatches; None: warn at the end.

  Returns:
    A `Dataset` of annotations only (feature_dim 0; each video has num_snippets 0 and a `load`
    that raises DataError), videos in file order. Lay features over it with
    `validation.with_features`.
  """
  if video_labels not in VIDEO_LABEL_SOURCES:
    raise ValueError(f'video_labels must be one of {VIDEO_LABEL_SOURCES}, got {video_labels!r}')
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise DataError(f'{folder}: missing W-TALC annotations folder')
  own_report = report is None
  report = validation.Report() if own_report else report
  files = {k: folder / f'{k}.npy' for k in ANNOTATION_FILES}
  arrays = {k: validation.load_npy(p, trust_pickle=trust_pickle) for k, p in files.items()}
  names = arrays['videoname'].reshape(-1)
  video_ids = [validation.as_str(v) for v in names]
  count = len(video_ids)
  per_video = {k: _per_video(arrays[k], count, files[k], k)
               for k in ('subset', 'duration', 'segments', 'labels', 'labels_all')}
  duplicates = sorted(v for v, n in collections.Counter(video_ids).items() if n > 1)
  if duplicates:
    raise DataError(f'{files["videoname"]}: video ids listed more than once: {duplicates[:5]}')
  class_names = [validation.as_str(c) for c in arrays['classlist'].reshape(-1)]
  class_index = {c: i for i, c in enumerate(class_names)}
  if len(class_index) != len(class_names):
    raise DataError(f'{files["classlist"]}: class names listed more than once')

  def one_video(i, video_id):
    duration = validation.check_duration(per_video['duration'][i], source=files['duration'],
                                         video_id=video_id)
    instance_names = _as_list(per_video['labels'][i])
    raw_segments = _as_list(per_video['segments'][i])
    if len(instance_names) != len(raw_segments):
      raise DataError(f'{files["labels"]} and {files["segments"]}, video {video_id!r}: '
                      f'{len(instance_names)} instance labels for {len(raw_segments)} segments')
    classes = validation.class_indices(instance_names, class_index, source=files['labels'],
                                       video_id=video_id)
    weak = validation.class_indices(_as_list(per_video['labels_all'][i]), class_index,
                                    source=files['labels_all'], video_id=video_id)
    if set(weak.tolist()) != set(classes.tolist()):
      report.add('label_mismatch', files['labels_all'], video_id,
                 f'video label {sorted(class_names[c] for c in set(weak.tolist()))} vs instance '
                 f'classes {sorted(class_names[c] for c in set(classes.tolist()))}; using '
                 f'{video_labels}')
    if video_labels == 'instances':
      weak = classes
    elif video_labels == 'union':
      weak = np.concatenate([weak, classes])
    segments = validation.check_segments(raw_segments, duration, source=files['segments'],
                                         video_id=video_id, policy=segment_policy,
                                         report=report)
    return validation.annotation_record(
        video_id=video_id, subset=validation.as_str(per_video['subset'][i]),
        labels=validation.multi_hot(weak, len(class_names)), segments=segments,
        segment_classes=classes, duration=duration, seconds_per_snippet=seconds_per_snippet,
        source=folder)

  videos, problems = [], []
  for i, video_id in enumerate(video_ids):  # Every bad video reported, then a failure.
    try:
      videos.append(one_video(i, video_id))
    except DataError as e:
      problems.append(str(e))
  raise_problems(problems, f'{folder}: {len(problems)} of {count} videos have bad annotations')

  if ambiguous_file is None and (folder / AMBIGUOUS_FILE).is_file():
    ambiguous_file = folder / AMBIGUOUS_FILE
  ambiguous = read_ambiguous(ambiguous_file) if ambiguous_file else None
  if ambiguous:
    for video_id in sorted(set(ambiguous) - set(video_ids)):
      report.add('unknown_video', ambiguous_file, video_id,
                 'ambiguous regions for a video that is not in videoname.npy (kept)')
  if not name:
    name = folder.name[:-len(ANNOTATIONS_SUFFIX)] if folder.name.endswith(
        ANNOTATIONS_SUFFIX) else folder.name
  subset_names = list(dict.fromkeys(v.subset for v in videos))
  if train_subset is None or test_subset is None:
    inferred = validation.infer_subsets(subset_names)
    train_subset = train_subset or inferred[0]
    test_subset = test_subset or inferred[1]
  validation.check_subsets(subset_names, train_subset, test_subset, folder)
  if own_report:
    report.warn()
  return Dataset(name=name, class_names=class_names, videos=videos, train_subset=train_subset,
                 test_subset=test_subset, feature_dim=0, ambiguous=ambiguous)


def _constant(array: np.ndarray) -> np.ndarray:
  return array


def read_dataset(root, name: str = 'Thumos14reduced', *, trust_pickle: bool = False,
                 feature_dim: int | None = None, seconds_per_snippet: float = 0.64,
                 train_subset: str | None = None, test_subset: str | None = None,
                 video_labels: str = 'labels_all', segment_policy: str = 'clip',
                 timing_check: str = 'warn', timing_tolerance_snippets: float = 2.0,
                 timing_tolerance_fraction: float = 0.02, ambiguous_file=None,
                 report: validation.Report | None = None,
                 collect: list[str] | None = None) -> Dataset:
  """Reads features and annotations of the W-TALC layout under `root` (module docstring).

  Every video with bad features is found in one pass: DataErrors lists them all; with `collect`
  they are appended to it and left out of the dataset instead.

  Every video's features are checked here (the file holds them all in memory anyway). Subsets
  default to the field's convention for the names present (validation.infer_subsets).
  """
  features_path, annotations_dir = layout_paths(root, name)
  if not features_path.is_file() or not annotations_dir.is_dir():
    missing = features_path if not features_path.is_file() else annotations_dir
    raise DataError(f'{missing}: missing (the W-TALC layout is <root>/<Name>{FEATURES_SUFFIX} '
                    f'beside <root>/<Name>{ANNOTATIONS_SUFFIX}/; root={root}, Name={name})')
  own_report = report is None
  report = validation.Report() if own_report else report
  annotations = read_annotations(
      annotations_dir, trust_pickle=trust_pickle, name=name,
      seconds_per_snippet=seconds_per_snippet, train_subset=train_subset,
      test_subset=test_subset, video_labels=video_labels, segment_policy=segment_policy,
      ambiguous_file=ambiguous_file, report=report)
  features = validation.load_npy(features_path, trust_pickle=trust_pickle)
  if features.ndim == 0 or len(features) != len(annotations.videos):
    found = 'a scalar' if features.ndim == 0 else f'{len(features)} videos'
    raise DataError(f'{features_path}: {found}, but {annotations_dir / "videoname.npy"} lists '
                    f'{len(annotations.videos)} (features and annotations must be parallel)')
  videos, problems = [], []
  for i, annotation in enumerate(annotations.videos):  # Every bad video, then a failure.
    try:
      array = validation.check_features(features[i], source=features_path,
                                        video_id=annotation.video_id, feature_dim=feature_dim)
    except DataError as e:
      problems.append(str(e))
      continue
    feature_dim = array.shape[1]
    array.flags.writeable = False
    videos.append(validation.with_features(annotation, array.shape[0],
                                           functools.partial(_constant, array)))
  del features
  raise_problems(problems, f'{features_path}: {len(problems)} of {len(annotations.videos)} '
                 'videos have bad features', collect)
  validation.check_timing(videos, tolerance_snippets=timing_tolerance_snippets,
                          tolerance_fraction=timing_tolerance_fraction, mode=timing_check,
                          source=features_path, report=report)
  if own_report:
    report.warn()
  return Dataset(name=name, class_names=annotations.class_names, videos=videos,
                 train_subset=annotations.train_subset, test_subset=annotations.test_subset,
                 feature_dim=int(feature_dim or 0), ambiguous=annotations.ambiguous)
