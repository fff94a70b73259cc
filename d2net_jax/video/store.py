"""The extracted videos as a `Dataset` for the HDF5 store: with labels (the `import` formats), or
as new videos without any annotation (what `localize --data` runs a trained model on).
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Mapping, Optional, Sequence

import numpy as np

from d2net_jax.data import own_data, validation
from d2net_jax.data.records import DataError, Dataset
from d2net_jax.video import extract


def store_attrs(settings: extract.Settings) -> dict:
  """Root attributes of the store: the feature frame rate, the streams, the extractor's settings
  (JSON, with the weights' SHA-256)."""
  return {'fps': settings.fps, 'extractor': json.dumps(settings.record(), sort_keys=True)}


def unlabelled_dataset(done: Mapping[str, dict], folder: pathlib.Path,
                       settings: extract.Settings, *, name: str, subset: str = 'test',
                       class_names: Sequence[str] = (), train_subset: str = 'train',
                       test_subset: str = 'test') -> Dataset:
  """New videos: no labels (all zero), no segments, every video in `subset`; the class list is
  `class_names` (default none: `localize --data` takes the model's)."""
  videos = []
  for video_id, info in done.items():
    record = validation.annotation_record(
        video_id=video_id, subset=subset, labels=np.zeros(len(class_names), np.float32),
        segments=np.zeros((0, 2)), segment_classes=np.zeros((0,), np.int32),
        duration=float(info['duration']), seconds_per_snippet=settings.seconds_per_snippet,
        source=info.get('file', folder))
    load = functools.partial(own_data.load_features, folder / f'{video_id}.npy', video_id,
                             int(info['num_snippets']), settings.feature_dim)
    videos.append(validation.with_features(record, int(info['num_snippets']), load))
  return Dataset(name=name, class_names=list(class_names), videos=videos,
                 train_subset=train_subset, test_subset=test_subset,
                 feature_dim=settings.feature_dim, streams=settings.streams)


def labelled_dataset(done: Mapping[str, dict], folder: pathlib.Path,
                     settings: extract.Settings, labels_path, *, name: str,
                     segments_path=None, class_names: Optional[Sequence[str]] = None,
                     train_subset: str = 'train', test_subset: str = 'test',
                     default_subset: Optional[str] = None, report=None,
                     collect: Optional[list] = None) -> Dataset:
  """The extracted videos with their labels (and segments): `own_data.build_dataset` over the
  features folder, restricted to `done`, durations measured from the files."""
  return own_data.build_dataset(
      folder, labels_path, segments_path=segments_path, class_names=class_names, name=name,
      seconds_per_snippet=settings.seconds_per_snippet, feature_dim=settings.feature_dim,
      train_subset=train_subset, test_subset=test_subset, default_subset=default_subset,
      report=report, collect=collect, video_ids=list(done),
      durations={k: info['duration'] for k, info in done.items()}, streams=settings.streams)
