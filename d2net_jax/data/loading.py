"""`load_dataset(data_config)`: from a config's `data` section to a `Dataset`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib

import numpy as np

from d2net_jax.data import hdf5_store, stpn, synthetic, validation, wtalc
from d2net_jax.data.records import TWO_STREAMS, DataError, Dataset, stream_names

KINDS = ('hdf5', 'wtalc', 'stpn', 'synthetic')


def _reader_options(data_config) -> dict:
  return dict(segment_policy=data_config.segment_policy, timing_check=data_config.timing_check,
              timing_tolerance_snippets=data_config.timing_tolerance_snippets,
              timing_tolerance_fraction=data_config.timing_tolerance_fraction,
              seconds_per_snippet=data_config.seconds_per_snippet,
              train_subset=data_config.train_subset, test_subset=data_config.test_subset)


def config_streams(data_config) -> str:
  """`data_config.streams` ('rgb+flow' for a config from before the field)."""
  return getattr(data_config, 'streams', TWO_STREAMS)


def _two_stream_dim(data_config) -> int:
  """The two-stream width D a reader of two-stream data (W-TALC, STPN, the synthetic generator)
  is asked for: data.feature_dim is the width the model sees, one stream's with one stream."""
  dim = data_config.feature_dim
  return 2 * dim if config_streams(data_config) != TWO_STREAMS and dim > 0 else dim


def select_streams(dataset: Dataset, streams: str, source) -> Dataset:
  """`dataset` holding `streams` (records.STREAMS): unchanged when it already does; the RGB or
  flow half of a two-stream dataset for 'rgb' / 'flow'. DataError (one line naming `source`
  and both values) for anything else: two streams cannot come from a one-stream store."""
  if dataset.streams == streams:
    return dataset
  if dataset.streams != TWO_STREAMS or streams not in stream_names(TWO_STREAMS):
    raise DataError(f'{source}: the store holds {dataset.streams!r} features, the config says '
                    f'data.streams={streams!r} (set --config.data.streams={dataset.streams})')
  half = dataset.feature_dim // 2
  part = slice(0, half) if streams == 'rgb' else slice(half, 2 * half)

  return dataclasses.replace(dataset, videos=[
      dataclasses.replace(v, load=functools.partial(_load_part, v.load, part))
      for v in dataset.videos],
                             feature_dim=half, streams=streams)


def _load_part(load, part: slice):
  """The channels `part` of the (T, D) features `load()` reads (a picklable loader)."""
  return np.ascontiguousarray(load()[:, part])


def _check_against_config(dataset: Dataset, data_config, source) -> Dataset:
  if data_config.feature_dim > 0 and dataset.feature_dim != data_config.feature_dim:
    raise DataError(f'{source}: features have dim {dataset.feature_dim}, the config says '
                    f'data.feature_dim={data_config.feature_dim} (set '
                    f'--config.data.feature_dim={dataset.feature_dim})')
  if data_config.num_classes > 0 and dataset.num_classes != data_config.num_classes:
    raise DataError(f'{source}: {dataset.num_classes} classes, the config says '
                    f'data.num_classes={data_config.num_classes} (set '
                    f'--config.data.num_classes={dataset.num_classes})')
  return dataset


def _use_config_subsets(dataset: Dataset, data_config, source) -> Dataset:
  """The config's train/test subset names, which must both have videos in the store."""
  present = {v.subset for v in dataset.videos}
  train, test = data_config.train_subset, data_config.test_subset
  if train not in present or test not in present:
    raise DataError(f'{source}: the config names subsets train={train!r}, test={test!r}; the '
                    f'store has {sorted(present)} and was written with train='
                    f'{dataset.train_subset!r}, test={dataset.test_subset!r} (set '
                    f'--config.data.train_subset=... --config.data.test_subset=...)')
  validation.check_subsets(present, train, test, source)
  dataset.train_subset, dataset.test_subset = train, test
  return dataset


def load_dataset(data_config, cache_dir=None) -> Dataset:
  """The dataset described by `data_config` (the `data` section of config.py).

  Args:
    data_config: `kind` selects the reader: 'hdf5' (`path` = store file), 'wtalc' (`path` = the
      folder holding <name>-I3D-JOINTFeatures.npy and <name>-Annotations/), 'stpn' (`path` =
      the STPN / BaS-Net folder) or 'synthetic' (generated once into `path` or `cache_dir`).
    cache_dir: where the synthetic store goes when `data_config.path` is empty.

  Raises:
    DataError: unreadable or inconsistent data, or data that does not match the config
      (feature_dim, num_classes, subset names).
  """
  kind = data_config.kind
  if kind not in KINDS:
    raise DataError(f'data.kind={kind!r}: must be one of {KINDS}')
  if kind == 'synthetic':
    generator_config = copy.deepcopy(data_config)  # The generator writes both streams.
    generator_config.feature_dim = _two_stream_dim(data_config)
    path = pathlib.Path(synthetic.ensure_store(generator_config, cache_dir))
    dataset = hdf5_store.read_store(path)
  else:
    if not data_config.path:
      raise DataError(f'data.path is empty: where are the {kind!r} features?')
    path = pathlib.Path(data_config.path).expanduser()
    if kind == 'hdf5':
      dataset = hdf5_store.read_store(path)
    elif kind == 'wtalc':
      dataset = wtalc.read_dataset(
          path, data_config.name, trust_pickle=data_config.trust_pickle,
          feature_dim=_two_stream_dim(data_config), video_labels=data_config.video_labels,
          ambiguous_file=data_config.ambiguous_file or None, **_reader_options(data_config))
    else:
      class_names = (stpn.read_class_list(data_config.class_list)
                     if data_config.class_list else None)
      dataset = stpn.read_dataset(path, feature_dim=_two_stream_dim(data_config),
                                  class_names=class_names, **_reader_options(data_config))
  if kind in ('hdf5', 'synthetic'):
    if data_config.ambiguous_file:
      dataset.ambiguous = wtalc.read_ambiguous(data_config.ambiguous_file)
    if kind == 'hdf5':  # The synthetic store's subsets are its preset's.
      dataset = _use_config_subsets(dataset, data_config, path)
    report = validation.Report()
    validation.check_timing(dataset.videos, mode=data_config.timing_check, source=path,
                            tolerance_snippets=data_config.timing_tolerance_snippets,
                            tolerance_fraction=data_config.timing_tolerance_fraction,
                            report=report)
    report.warn()
  dataset = select_streams(dataset, config_streams(data_config), path)
  dataset = _check_against_config(dataset, data_config, path)
  if data_config.drop_short_videos:
    dataset = drop_short_videos(dataset, data_config.short_video_snippets)
  return dataset


def drop_short_videos(dataset: Dataset, max_snippets: int, log=print) -> Dataset:
  """`dataset` without the videos of at most `max_snippets` snippets (the official ActivityNet1.2
  loader keeps only videos with more than 5 non-zero feature rows; here the feature row count),
  printing how many and which were dropped."""
  short = [v for v in dataset.videos if v.num_snippets <= max_snippets]
  if not short:
    log(f'data.drop_short_videos: no video has <= {max_snippets} snippets; none dropped.')
    return dataset
  log(f'data.drop_short_videos: dropped {len(short)} of {len(dataset.videos)} videos with <= '
      f'{max_snippets} snippets (official ActivityNet1.2 loader): ' +
      ', '.join(f'{v.video_id} ({v.subset}, {v.num_snippets})' for v in short))
  dropped = {id(v) for v in short}
  return dataclasses.replace(dataset, videos=[v for v in dataset.videos if id(v) not in dropped])
