"""Reader of the STPN / BaS-Net layout (plain .npy files, no pickle).

  <root>/features/{train,test}/{rgb,flow}/<video>.npy    (T, D/2) float each, same T
  <root>/gt.json                                          ActivityNet JSON ground truth
  <root>/split_train.txt, <root>/split_test.txt           one video id per line

Videos listed in split_train.txt form the training subset, those in split_test.txt the test
subset. Features are read lazily (one video per `VideoRecord.load`), from the file headers only
at reading time.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
from typing import Sequence

import numpy as np

from d2net_jax.data import ground_truth, validation
from d2net_jax.data.records import DataError, Dataset, raise_problems

SPLITS = ('train', 'test')
STREAMS = ('rgb', 'flow')


def read_split(path) -> list[str]:
  """Video ids, one per line (blank lines ignored; duplicates are an error)."""
  path = validation.require_file(path, 'split list')
  try:
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f'{path}: unreadable ({e})') from e
  if len(set(ids)) != len(ids):
    dup = sorted(v for v, n in collections.Counter(ids).items() if n > 1)
    raise DataError(f'{path}: video ids listed more than once: {dup[:5]}')
  return ids


def read_class_list(path) -> list[str]:
  """Class names, one per line, in index order."""
  path = validation.require_file(path, 'class list')
  names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
  if len(set(names)) != len(names):
    raise DataError(f'{path}: class names listed more than once')
  if not names:
    raise DataError(f'{path}: empty class list')
  return names


def _load_two_streams(rgb_path: pathlib.Path, flow_path: pathlib.Path, video_id: str,
                      num_snippets: int, feature_dim: int) -> np.ndarray:
  streams = [validation.check_features(validation.load_npy(p), source=p, video_id=video_id)
             for p in (rgb_path, flow_path)]
  if streams[0].shape[0] != streams[1].shape[0]:
    raise DataError(f'{rgb_path} and {flow_path}, video {video_id!r}: {streams[0].shape[0]} RGB '
                    f'snippets but {streams[1].shape[0]} flow snippets')
  features = np.concatenate(streams, axis=1)
  features = validation.check_features(features, source=rgb_path.parent.parent,
                                       video_id=video_id, feature_dim=feature_dim)
  if features.shape[0] != num_snippets:
    raise DataError(f'{rgb_path}, video {video_id!r}: {features.shape[0]} snippets, the header '
                    f'said {num_snippets} (file changed while in use?)')
  return features


def _majority_subset(video_ids, annotations, default: str) -> str:
  subsets = {annotations[v].subset for v in video_ids if v in annotations}
  return subsets.pop() if len(subsets) == 1 and '' not in subsets else default


def read_dataset(root, *, name: str = '', feature_dim: int | None = None,
                 seconds_per_snippet: float = 0.64, train_subset: str | None = None,
                 test_subset: str | None = None, class_names: Sequence[str] | None = None,
                 segment_policy: str = 'clip', timing_check: str = 'warn',
                 timing_tolerance_snippets: float = 2.0, timing_tolerance_fraction: float = 0.02,
                 report: validation.Report | None = None,
                 collect: list[str] | None = None) -> Dataset:
  """Reads the STPN / BaS-Net layout under `root` (module docstring).

  Every bad video (missing or unreadable file, shape, dtype) is found in one pass: DataErrors
  lists them all; with `collect` they are appended to it and left out of the dataset instead.

  Subset names default to the gt.json subset shared by a split's videos (e.g. THUMOS14's
  'validation' and 'test'), else 'train' and 'test'. The class list is `class_names`, else the
  gt.json "classes" key, else the sorted labels of gt.json.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise DataError(f'{root}: missing STPN data folder')
  own_report = report is None
  report = validation.Report() if own_report else report
  gt_path = root / 'gt.json'
  annotations = ground_truth.read_ground_truth(
      gt_path, class_names=class_names, name=name or root.name,
      seconds_per_snippet=seconds_per_snippet, segment_policy=segment_policy, report=report)
  by_id = {v.video_id: v for v in annotations.videos}
  splits = {s: read_split(root / f'split_{s}.txt') for s in SPLITS}
  both = sorted(set(splits['train']) & set(splits['test']))
  if both:
    raise DataError(f'{root / "split_train.txt"} and {root / "split_test.txt"}: videos in both '
                    f'splits: {both[:5]}')
  subset_names = {
      'train': train_subset or _majority_subset(splits['train'], by_id, 'train'),
      'test': test_subset or _majority_subset(splits['test'], by_id, 'test'),
  }
  if subset_names['train'] == subset_names['test']:
    raise DataError(f'{root}: training and test subsets share the name '
                    f'{subset_names["train"]!r}; name them (--train-subset/--test-subset)')

  def one_video(split, video_id, folders, split_file):
    """(the video's record, its feature dim); DataError naming the file and the video."""
    if video_id not in by_id:
      raise DataError(f'{split_file}, video {video_id!r}: not in {gt_path} (no label)')
    paths = [folder / f'{video_id}.npy' for folder in folders]
    shapes = [validation.npy_feature_shape(path, video_id, split_file) for path in paths]
    if shapes[0][0] != shapes[1][0]:
      raise DataError(f'{paths[0]} and {paths[1]}, video {video_id!r}: {shapes[0][0]} RGB '
                      f'snippets but {shapes[1][0]} flow snippets')
    dim = shapes[0][1] + shapes[1][1]
    if feature_dim is not None and feature_dim > 0 and dim != feature_dim:
      raise DataError(f'{paths[0].parent.parent}, video {video_id!r}: feature dim {dim} '
                      f'(RGB {shapes[0][1]} + flow {shapes[1][1]}) does not match the '
                      f'configured feature_dim {feature_dim}')
    num_snippets = shapes[0][0]
    annotation = dataclasses.replace(by_id[video_id], subset=subset_names[split])
    load = functools.partial(_load_two_streams, paths[0], paths[1], video_id, num_snippets,
                             dim)
    return validation.with_features(annotation, num_snippets, load), dim

  videos, problems = [], []
  for split in SPLITS:
    split_file = root / f'split_{split}.txt'
    folders = [root / 'features' / split / stream for stream in STREAMS]
    for folder in folders:
      if not folder.is_dir():
        raise DataError(f'{folder}: missing feature folder (STPN layout: '
                        'features/{train,test}/{rgb,flow}/<video>.npy)')
    for video_id in splits[split]:  # Every bad video reported, then a failure.
      try:
        video, feature_dim = one_video(split, video_id, folders, split_file)
      except DataError as e:
        problems.append(str(e))
        continue
      videos.append(video)
    listed = set(splits[split])
    for path in sorted(folders[0].glob('*.npy')):
      if path.stem not in listed:
        report.add('unused_file', path, path.stem, f'not listed in {split_file}; not read')
  raise_problems(problems, f'{root}: {len(problems)} of '
                 f'{sum(len(v) for v in splits.values())} videos cannot be read', collect)
  if not problems:
    validation.check_subsets([v.subset for v in videos], subset_names['train'],
                             subset_names['test'], root)
  validation.check_timing(videos, tolerance_snippets=timing_tolerance_snippets,
                          tolerance_fraction=timing_tolerance_fraction, mode=timing_check,
                          source=root / 'features', report=report)
  if own_report:
    report.warn()
  return Dataset(name=annotations.name, class_names=annotations.class_names, videos=videos,
                 train_subset=subset_names['train'], test_subset=subset_names['test'],
                 feature_dim=int(feature_dim or 0), ambiguous=annotations.ambiguous)
