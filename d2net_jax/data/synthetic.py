r"""The synthetic WTAL benchmark: annotations drawn like THUMOS14 / ActivityNet1.2, features that
are hard in the ways real I3D features are.

  d2net-jax synthetic --preset thumos14_like --out DIR --feature-dim 256 [--seed 0]
      [--num-train N] [--num-test N] [--features i3d_like|gaussian]
      [--annotations ../shared/data/thumos14 --trust-pickle]

writes `DIR/<name>.h5` (the HDF5 store) and `DIR/<name>.gt.json` (ActivityNet-style ground
truth); `ensure_store(data_config, cache_dir)` does the same once per set of generation parameters.

Annotations (`Preset`). Durations, instances per video, instance lengths, classes per video and
the foreground fraction follow the real benchmark's statistics (measured on the annotation files
and kept as numbers in the preset). Or `annotations=` lays synthetic features over a real
annotation folder (W-TALC layout), keeping its videos, timings and labels.

Features: two models (`data.synthetic.features`, `--features`), on the same latent draws.
'i3d_like' (the presets' default) rectifies the Gaussian features below into non-negative ones
with the statistics of I3D features (`synthetic_features.I3DLike`: exact zeros, heavy-tailed
channel profile, a high cosine between any two snippets, sparser and less smooth flow);
'gaussian' is the latent model as it is (zero mean, snippets nearly orthogonal).

The Gaussian model (`FeatureModel`, synthetic_features.FeatureWorld). D/2 RGB channels then D/2
flow channels. Everything is built in a small latent space (`latent_dim` per stream, the same for
every D) and mapped to D/2 channels by a fixed random linear map plus white observation noise, so
the difficulty hardly depends on D. Per
snippet t and stream s (Eq. numbers are ours):

  z_s(t) = sum_i a_i e_i(t) u_s[c_i]            action: instance envelope e_i, per-instance
                                                 direction u near the class prototype
         + k_s sum_i g_i(t) p_s[c_i]             context: class-like, but not the class,
                                                 around each instance (ramps off with distance)
         + b_s sum_k w_k(t) q_s[k]               scene: a few scene prototypes per video, mixed
                                                 by slowly drifting weights; each class has a
                                                 home scene that leans towards its prototype
         + d_s smooth_noise(t) + n_s white(t)    structured drift and per-snippet noise
  x_s(t) = M_s z_s(t) + o_s white_D(t)

What makes it hard: RGB carries the scene and the context strongly (appearance), flow carries the
action with less context but more noise, so the streams disagree; classes of one group (CliffDiving
/ Diving, the cricket pair, the athletics throws and jumps) share a home scene and have similar
prototypes; CliffDiving instances are also listed as Diving (as in THUMOS14); instance boundaries
blend over `blend_seconds`; amplitudes vary per instance (some actions are faint); noise and scene
weights drift smoothly in time, so neighbouring snippets are not independent.

Every random draw is keyed by (seed, purpose, video), so a video does not change when the number
of other videos does, and features are generated lazily per video (`VideoRecord.load`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any, Dict, Mapping, Optional, Sequence

import h5py
import numpy as np

from d2net_jax.data import ground_truth, hdf5_store, wtalc
from d2net_jax.data.records import Dataset, VideoRecord
# The presets and feature models live in their own modules; their public names are this
# module's API too (synthetic.PRESETS, synthetic.FeatureWorld, ...).
from d2net_jax.data.synthetic_features import FeatureWorld, I3DLike, stream_statistics
from d2net_jax.data.synthetic_presets import (
    FEATURE_MODELS, PRESETS, THUMOS14_CLASSES, FeatureModel, I3DLikeModel, Preset, RectifiedStream,
    StreamModel, draw_annotations, get_preset)

__all__ = [
    'FEATURE_MODELS', 'PRESETS', 'THUMOS14_CLASSES', 'FeatureModel', 'FeatureWorld', 'I3DLike',
    'I3DLikeModel', 'Preset', 'RectifiedStream', 'StreamModel', 'annotation_statistics',
    'build_dataset', 'draw_annotations', 'ensure_store', 'generate', 'get_preset',
    'ground_truth_path', 'overlay', 'store_name', 'store_parameters', 'stream_statistics']

# Bump when the generator's output changes: cached stores of older versions are rebuilt.
GENERATOR_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Datasets.


def _num_snippets(duration: float, seconds_per_snippet: float) -> int:
  return max(1, int(np.floor(duration / seconds_per_snippet)))


def _record(world: FeatureWorld, video_id: str, subset: str, labels: np.ndarray,
            segments: np.ndarray, segment_classes: np.ndarray, duration: float,
            num_snippets: int, video_key: int) -> VideoRecord:

  def load():
    return world.video_features(segments, segment_classes, num_snippets, video_key)

  return VideoRecord(video_id=video_id, subset=subset, labels=labels, segments=segments,
                     segment_classes=segment_classes, duration=float(duration),
                     seconds_per_snippet=world.seconds_per_snippet, num_snippets=num_snippets,
                     load=load)


def _feature_model(preset: Preset, feature_model: Optional[FeatureModel],
                   noise_scale: Optional[float]) -> FeatureModel:
  model = feature_model or preset.feature_model
  if noise_scale is not None:
    model = dataclasses.replace(model, noise_scale=float(noise_scale))
  return model


def _world(preset: Preset, class_names: Sequence[str], feature_dim: int, seed: int,
           model: FeatureModel, sps: float, features: Optional[str]) -> FeatureWorld:
  return FeatureWorld(class_names, preset.groups, feature_dim, seed, model, sps,
                      features=features or preset.features, i3d_like=preset.i3d_like)


def generate(preset: str | Preset = 'thumos14_like', *, feature_dim: int = 256, seed: int = 0,
             num_train: int = -1, num_test: int = -1,
             feature_model: Optional[FeatureModel] = None,
             noise_scale: Optional[float] = None,
             seconds_per_snippet: Optional[float] = None,
             features: Optional[str] = None) -> Dataset:
  """The synthetic benchmark as a `Dataset` (features generated when a video is loaded).

  Args:
    preset: a `PRESETS` name or a `Preset`.
    feature_dim: D (even): D/2 RGB then D/2 flow channels.
    seed: everything is a function of the seed (and of the other arguments).
    num_train, num_test: video counts (-1: the preset's).
    feature_model: overrides the preset's `FeatureModel`.
    noise_scale: replaces the feature model's `noise_scale` (None: keep it).
    seconds_per_snippet: feature timing (None: the preset's, 0.64 s like I3D).
    features: the feature model, 'i3d_like' or 'gaussian' (None: the preset's, 'i3d_like').
  """
  preset = get_preset(preset) if isinstance(preset, str) else preset
  model = _feature_model(preset, feature_model, noise_scale)
  sps = float(seconds_per_snippet or preset.seconds_per_snippet)
  world = _world(preset, preset.class_names, feature_dim, seed, model, sps, features)
  videos = []
  for key, a in enumerate(draw_annotations(preset, seed, num_train, num_test)):
    num_snippets = _num_snippets(a.duration, sps)
    videos.append(_record(world, a.video_id, a.subset, a.labels, a.segments, a.segment_classes,
                          a.duration, num_snippets, key))
  return Dataset(name=f'synthetic-{preset.name}', class_names=list(preset.class_names),
                 videos=videos, train_subset=preset.train_subset,
                 test_subset=preset.test_subset, feature_dim=feature_dim)


def overlay(annotations: Dataset, *, feature_dim: int = 256, seed: int = 0,
            preset: str | Preset = 'thumos14_like', feature_model: Optional[FeatureModel] = None,
            noise_scale: Optional[float] = None,
            seconds_per_snippet: Optional[float] = None,
            features: Optional[str] = None) -> Dataset:
  """Synthetic features laid over real annotations (their videos, timings and labels).

  `annotations` is a Dataset whose features are ignored (e.g. `wtalc.read_annotations`). The
  preset supplies the feature model and the class groups (matched by class name).
  """
  preset = get_preset(preset) if isinstance(preset, str) else preset
  model = _feature_model(preset, feature_model, noise_scale)
  sps = seconds_per_snippet or (annotations.videos[0].seconds_per_snippet
                                if annotations.videos else preset.seconds_per_snippet)
  world = _world(preset, list(annotations.class_names), feature_dim, seed, model, sps, features)
  videos = []
  for key, v in enumerate(annotations.videos):
    num_snippets = v.num_snippets if v.num_snippets > 0 else _num_snippets(v.duration, sps)
    videos.append(_record(world, v.video_id, v.subset, np.asarray(v.labels, np.float32),
                          np.asarray(v.segments, np.float64).reshape(-1, 2),
                          np.asarray(v.segment_classes, np.int32), v.duration, num_snippets,
                          key))
  return Dataset(name=f'synthetic-over-{annotations.name}',
                 class_names=list(annotations.class_names), videos=videos,
                 train_subset=annotations.train_subset, test_subset=annotations.test_subset,
                 feature_dim=feature_dim,
                 ambiguous=annotations.ambiguous)


# ------------------------------------------------------------------------------------------------
# Statistics.


def annotation_statistics(videos: Sequence[VideoRecord]) -> Dict[str, float]:
  """Means/medians of duration (s), instances per video, instance length (s), classes per video,
  and the mean per-video foreground fraction (union of instances / duration)."""
  durations = np.array([v.duration for v in videos], np.float64)
  counts = np.array([len(v.segments) for v in videos], np.float64)
  lengths = np.concatenate([np.diff(np.asarray(v.segments).reshape(-1, 2), axis=1)[:, 0]
                            for v in videos] + [np.zeros(0)])
  classes = np.array([np.count_nonzero(v.labels) for v in videos], np.float64)
  foreground = []
  for v in videos:
    segs = np.asarray(v.segments).reshape(-1, 2)
    covered, end = 0.0, -np.inf
    for start, stop in segs[np.argsort(segs[:, 0])]:
      start = max(start, end)
      if stop > start:
        covered += stop - start
        end = stop
    foreground.append(covered / v.duration if v.duration > 0 else 0.0)
  return {
      'videos': float(len(videos)),
      'duration_mean': float(durations.mean()), 'duration_median': float(np.median(durations)),
      'duration_max': float(durations.max()),
      'instances_mean': float(counts.mean()), 'instances_median': float(np.median(counts)),
      'instance_length_mean': float(lengths.mean()) if len(lengths) else 0.0,
      'instance_length_median': float(np.median(lengths)) if len(lengths) else 0.0,
      'classes_per_video': float(classes.mean()),
      'foreground_fraction': float(np.mean(foreground)),
  }


# ------------------------------------------------------------------------------------------------
# The cached store and the command line.

_PARAMETERS_ATTR = 'synthetic_parameters'


def _setting(config, name: str, default):
  value = config.get(name, default) if hasattr(config, 'get') else getattr(config, name, default)
  return default if value is None else value


def store_parameters(data_config) -> Dict[str, Any]:
  """Every parameter the generated store depends on (its cache key), from a `data` config."""
  s = data_config.synthetic
  preset = get_preset(s.preset).name
  params = {
      'generator_version': GENERATOR_VERSION,
      'preset': preset,
      'feature_dim': int(data_config.feature_dim),
      'seed': int(s.seed),
      'num_train': int(s.num_train),
      'num_test': int(s.num_test),
      'noise_scale': float(_setting(s, 'noise_scale', 1.0)),
      'features': str(_setting(s, 'features', '') or get_preset(preset).features),
      'seconds_per_snippet': float(data_config.seconds_per_snippet),
      'annotations': '',
  }
  if s.annotations:
    params.update(
        annotations=str(pathlib.Path(s.annotations).expanduser().resolve()),
        video_labels=str(_setting(data_config, 'video_labels', 'labels_all')),
        segment_policy=str(_setting(data_config, 'segment_policy', 'clip')))
    params['num_train'] = params['num_test'] = -1  # The folder's videos, all of them.
  return params


def store_name(params: Mapping[str, Any]) -> str:
  """synthetic-<preset>[-over-<folder>]-<D>-<seed>-<hash of all parameters>."""
  digest = hashlib.sha256(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:10]
  what = params['preset']
  if params['annotations']:
    what += '-over-' + pathlib.Path(params['annotations']).name
  return f'synthetic-{what}-{params["feature_dim"]}-{params["seed"]}-{digest}'


def ground_truth_path(store_path) -> pathlib.Path:
  """The gt.json written beside a synthetic store: <name>.gt.json."""
  store_path = pathlib.Path(store_path)
  return store_path.with_name(store_path.stem + '.gt.json')


def build_dataset(params: Mapping[str, Any], trust_pickle: bool = False) -> Dataset:
  """The (lazy) synthetic dataset of `store_parameters(...)`."""
  if params['annotations']:
    annotations = wtalc.read_annotations(
        params['annotations'], trust_pickle=trust_pickle,
        seconds_per_snippet=params['seconds_per_snippet'],
        video_labels=params['video_labels'], segment_policy=params['segment_policy'])
    return overlay(annotations, feature_dim=params['feature_dim'], seed=params['seed'],
                   preset=params['preset'], noise_scale=params['noise_scale'],
                   seconds_per_snippet=params['seconds_per_snippet'],
                   features=params['features'])
  return generate(params['preset'], feature_dim=params['feature_dim'], seed=params['seed'],
                  num_train=params['num_train'], num_test=params['num_test'],
                  noise_scale=params['noise_scale'],
                  seconds_per_snippet=params['seconds_per_snippet'], features=params['features'])


def _stored_parameters(path: pathlib.Path) -> Optional[Dict[str, Any]]:
  try:
    with h5py.File(path, 'r') as f:
      if not bool(f.attrs.get('complete', False)):
        return None
      return json.loads(f.attrs[_PARAMETERS_ATTR])
  except (OSError, KeyError, ValueError):
    return None


def ensure_store(data_config, cache_dir=None, *, force: bool = False,
                 progress: Optional[bool] = None) -> pathlib.Path:
  """Builds the synthetic HDF5 store (and its gt.json) once; returns the store's path.

  The file is `<dir>/<store_name(params)>.h5` with `<dir>` = `data_config.path` if set, else
  `cache_dir`. A store whose recorded parameters differ (or that is incomplete) is rebuilt;
  `force` rebuilds regardless. The store is written to a temporary file and renamed, so an
  interrupted build leaves nothing that looks valid. progress: the bar of
  `hdf5_store.write_store` (None: on a terminal).
  """
  params = store_parameters(data_config)
  folder = data_config.path or cache_dir
  if not folder:
    raise ValueError('synthetic data: set data.path or pass a cache_dir for the store')
  folder = pathlib.Path(folder).expanduser()
  path = folder / (store_name(params) + '.h5')
  gt_path = ground_truth_path(path)
  if not force and path.is_file() and _stored_parameters(path) == params:
    if not gt_path.is_file():
      ground_truth.export_ground_truth(hdf5_store.read_store(path), gt_path)
    return path
  dataset = build_dataset(params, trust_pickle=bool(_setting(data_config, 'trust_pickle', False)))
  folder.mkdir(parents=True, exist_ok=True)
  hdf5_store.write_store(path, dataset, progress=progress,
                         attrs={_PARAMETERS_ATTR: json.dumps(params, sort_keys=True)})
  ground_truth.export_ground_truth(dataset, gt_path)
  return path
