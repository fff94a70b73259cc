"""The data of a run: its own dataset (`load_data`), or new videos a trained run is applied to
(`localize --data NEW`).

The class names a model was trained with are in RUN/model.json (run_dir.write_model_info). Data
loaded for a run is put in the model's class order by name (labels and ground-truth classes
re-indexed), so detections, scores and plots are never mislabelled; different names are an error
listing them. New data needs no training subset and no ground truth.
"""

import dataclasses
import pathlib
from typing import Optional, Tuple

import ml_collections
import numpy as np

from d2net_jax.data import hdf5_store, loading, validation
from d2net_jax.data.records import TWO_STREAMS, DataError, Dataset
from d2net_jax.runs import run_dir


def load_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Dataset:
  """The dataset of `config.data` (the synthetic benchmark is generated on first use)."""
  return loading.load_dataset(config.data, cache_dir=workdir / 'data')


def _use_new_data(config: ml_collections.ConfigDict, path: str) -> None:
  """Points `config.data` at `path`, whatever the run's data.kind: a file is an HDF5 store; a
  folder is read as the run's kind if that is a folder format ('wtalc', 'stpn')."""
  location = pathlib.Path(path).expanduser()
  if not location.exists():
    raise DataError(f'--data {path}: no such file or folder')
  if location.is_file():
    kind = 'hdf5'
  elif config.data.kind in ('wtalc', 'stpn'):
    kind = config.data.kind
  else:
    raise DataError(f'--data {path}: a folder, but the run was trained on data.kind='
                    f'{config.data.kind!r}; give an HDF5 store (d2net-jax import / convert '
                    'write one) or set --config.data.kind=wtalc|stpn')
  config.data.kind = kind
  config.data.path = str(location)


def _load_new(config: ml_collections.ConfigDict) -> Dataset:
  """A store of new videos: any subsets (no training subset needed), with or without GT."""
  if config.data.kind != 'hdf5':
    return loading.load_dataset(config.data)
  path = pathlib.Path(config.data.path)
  dataset = hdf5_store.read_store(path)
  if dataset.streams == TWO_STREAMS:  # A one-stream run takes its stream's half.
    dataset = loading.select_streams(dataset, loading.config_streams(config.data), path)
  report = validation.Report()
  validation.check_timing(dataset.videos, mode=config.data.timing_check, source=path,
                          tolerance_snippets=config.data.timing_tolerance_snippets,
                          tolerance_fraction=config.data.timing_tolerance_fraction, report=report)
  report.warn()
  return dataset


def in_model_order(dataset: Dataset, model_names, source, some: bool = False) -> Dataset:
  """`dataset` with its classes re-indexed to `model_names` (labels (C,), segment classes).

  Raises DataError listing the names only one side has; with `some` (new videos) the data may
  have only some of the model's classes (`run_dir.class_mapping`).
  """
  if not dataset.class_names and not any(len(v.segments) for v in dataset.videos):
    dataset = dataclasses.replace(  # New videos without any annotation or class list.
        dataset, class_names=[str(c) for c in model_names], videos=[dataclasses.replace(
            v, labels=np.zeros(len(model_names), np.float32)) for v in dataset.videos])
  try:
    to_model = np.asarray(run_dir.class_mapping(model_names, dataset.class_names, source, some),
                          np.int64)
  except ValueError as e:
    raise DataError(str(e)) from None
  if len(to_model) == len(model_names) and np.array_equal(to_model, np.arange(len(to_model))):
    return dataset

  def remap(video):
    labels = np.zeros(len(model_names), np.float32)
    labels[to_model] = np.asarray(video.labels, np.float32)
    classes = to_model[np.asarray(video.segment_classes, np.int64)].astype(np.int32)
    return dataclasses.replace(video, labels=labels, segment_classes=classes)

  return dataclasses.replace(dataset, class_names=[str(c) for c in model_names],
                             videos=[remap(v) for v in dataset.videos])


def check_streams(model_info: Optional[dict], dataset: Dataset, source, workdir) -> None:
  """DataError (one line naming the data and both values) unless `dataset` holds the streams
  the model in `workdir` was trained on (RUN/model.json; none: nothing to check)."""
  if model_info is not None and dataset.streams != model_info['streams']:
    raise DataError(f'{source}: features of streams {dataset.streams!r}, the model in {workdir} '
                    f'was trained on streams {model_info["streams"]!r}')


def load_for_run(config: ml_collections.ConfigDict, workdir, data_path: Optional[str] = None
                 ) -> Tuple[Dataset, int, int]:
  """(dataset in the model's class order, num_classes, feature_dim) of the model in `workdir`.

  data_path: new data (see `_use_new_data`); None: the run's own dataset.
  """
  workdir = pathlib.Path(workdir)
  model = run_dir.read_model_info(workdir)
  if data_path is None:
    dataset = load_data(config, workdir)
  else:
    _use_new_data(config, data_path)
    dataset = _load_new(config)
  if model is None:  # A run from before model.json: the data's classes are the model's.
    return dataset, dataset.num_classes, dataset.feature_dim
  source = config.data.path or workdir / 'data'
  check_streams(model, dataset, source, workdir)
  if dataset.feature_dim != model['feature_dim']:
    raise DataError(f'{source}: features have dim {dataset.feature_dim}, the model in {workdir} '
                    f'was trained on dim {model["feature_dim"]}')
  dataset = in_model_order(dataset, model['class_names'], source, some=data_path is not None)
  return dataset, len(model['class_names']), model['feature_dim']
