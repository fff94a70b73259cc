r"""The synthetic WTAL benchmark: annotations drawn like THUMOS14 / ActivityNet1.2, features that
are hard in the ways real I3D features are.

  d2net-jax synthetic --preset thumos14_like --out DIR --feature-dim 256 [--seed 0]
      [--num-train N] [--num-test N] [--annotations ../shared/data/thumos14 --trust-pickle]

writes `DIR/<name>.h5` (the HDF5 store) and `DIR/<name>.gt.json` (ActivityNet-style ground
truth); `ensure_store(data_config, cache_dir)` does the same once per set of generation parameters.

Annotations (`Preset`). Durations, instances per video, instance lengths, classes per video and
the foreground fraction follow the real benchmark's statistics (measured on the annotation files
and kept as numbers in the preset). Or `annotations=` lays synthetic features over a real
annotation folder (W-TALC layout), keeping its videos, timings and labels.

Features (`FeatureModel`). D/2 RGB channels then D/2 flow channels. Everything is built in a small
latent space (`latent_dim` per stream, the same for every D) and mapped to D/2 channels by a fixed
random linear map plus white observation noise, so the difficulty hardly depends on D. Per
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

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from d2net_jax.data.records import DataError, Dataset, VideoRecord

# Bump when the generator's output changes: cached stores of older versions are rebuilt.
GENERATOR_VERSION = 1

# Keys of the per-video random streams.
_TRAIN, _TEST, _FEATURES, _WORLD, _PROJECTION = 0, 1, 2, 3, 4


# ------------------------------------------------------------------------------------------------
# Presets.


@dataclasses.dataclass(frozen=True)
class StreamModel:
  """Amplitudes of one stream, in latent units (norms of vectors, std per latent coordinate)."""
  action: float  # Norm of an instance's signal at full envelope.
  context: float  # Norm of the class-like context signal next to an instance.
  scene: float  # Norm of the scene (background) vector.
  drift: float  # Std per coordinate of the smooth structured noise.
  noise: float  # Std per coordinate of the white per-snippet noise.
  observation: float  # Std of the white noise added to each of the D/2 observed channels.


@dataclasses.dataclass(frozen=True)
class FeatureModel:
  """How features are drawn given the annotations (module docstring: the formula)."""
  latent_dim: int = 32  # Per stream; min(latent_dim, D/2) is used.
  # RGB: cleaner, but carries the scene and the context strongly (better at telling the class);
  # flow: noisier, little context (better at telling where): as with I3D on THUMOS14.
  rgb: StreamModel = StreamModel(action=3.5, context=1.6, scene=3.0, drift=0.7, noise=0.5,
                                 observation=0.3)
  flow: StreamModel = StreamModel(action=3.5, context=0.3, scene=1.0, drift=0.7, noise=0.7,
                                  observation=0.3)
  group_similarity: float = 0.6  # Cosine between prototypes of two classes of one group.
  home_scene_similarity: float = 0.35  # Cosine between a class's home scene and its prototype.
  instance_variation: float = 0.5  # Norm of an instance's deviation from its class prototype.
  amplitude_range: Tuple[float, float] = (0.4, 1.2)  # a_i ~ U(range).
  blend_seconds: float = 0.8  # Boundary blur (std of a Gaussian, seconds).
  context_seconds: float = 3.0  # Context reaches this far plus `context_ratio` * length.
  context_ratio: float = 0.75
  context_probability: float = 0.8  # Chance that an instance has context on a given side.
  drift_seconds: float = 2.0  # Time scale of the structured noise.
  scene_seconds: float = 25.0  # Time scale of the scene-weight drift.
  scenes_per_video: Tuple[int, int] = (1, 3)  # Extra random scenes beside the home scene(s).
  noise_scale: float = 1.0  # Multiplies every noise amplitude (harder > 1 > easier).


@dataclasses.dataclass(frozen=True)
class Preset:
  """Annotation statistics of a benchmark (numbers from its annotation files).

  Durations: 'lognormal' (median, sigma) or 'beta' (a, b) on [min, max]. Instances: 'fill' draws
  a per-video foreground fraction f ~ Beta and log-normal instance lengths until they cover f of
  the video (THUMOS14: many short instances, count grows with duration); 'split' draws the count
  (1 + geometric) and splits f of the video among them (ActivityNet: one or two long instances).
  """
  name: str
  class_names: Tuple[str, ...]
  num_train: int
  num_test: int
  train_subset: str
  test_subset: str
  seconds_per_snippet: float
  duration_kind: str
  duration_params: Tuple[float, float]
  duration_range: Tuple[float, float]
  foreground_beta: Tuple[float, float]  # f ~ Beta(a, b).
  instance_mode: str
  instance_length_median: float  # 'fill': log-normal median and sigma, seconds.
  instance_length_sigma: float
  instance_length_range: Tuple[float, float]
  extra_instance_probability: float  # 'split': count = 1 + Geometric(1 - p) - 1.
  groups: Tuple[Tuple[str, ...], ...]  # Share a home scene and similar prototypes.
  also_listed_as: Tuple[Tuple[str, str], ...]  # (A, B): every A instance is listed as B too.
  companions: Tuple[Tuple[str, str, float], ...]  # (A, B, p): a video of A has B too w.p. p.
  extra_class_probability: float  # A video gets a second, unrelated class.
  # Targets measured on the real annotations (the generator test checks them).
  targets: Mapping[str, float]
  feature_model: FeatureModel = FeatureModel()


THUMOS14_CLASSES = (
    'BaseballPitch', 'BasketballDunk', 'Billiards', 'CleanAndJerk', 'CliffDiving',
    'CricketBowling', 'CricketShot', 'Diving', 'FrisbeeCatch', 'GolfSwing', 'HammerThrow',
    'HighJump', 'JavelinThrow', 'LongJump', 'PoleVault', 'Shotput', 'SoccerPenalty',
    'TennisSwing', 'ThrowDiscus', 'VolleyballSpiking')

PRESETS: Dict[str, Preset] = {
    # THUMOS14 (20 classes; 200 `validation` videos to train on, 212 `test`): video length mean
    # 213 s, median 155 s, range 9-1673 s; 15.4 instances per video (median 8); instance length
    # mean 4.3 s, median 3.0 s (10-90%: 1.0-8.5 s); 1.12 classes per video; 29% foreground
    # (per video: median 24%, 10-90%: 7-57%).
    'thumos14_like': Preset(
        name='thumos14_like',
        class_names=THUMOS14_CLASSES,
        num_train=200, num_test=212, train_subset='validation', test_subset='test',
        seconds_per_snippet=0.64,
        duration_kind='lognormal', duration_params=(155.0, 0.84), duration_range=(9.0, 1673.0),
        foreground_beta=(1.2, 2.9),
        instance_mode='fill', instance_length_median=3.0, instance_length_sigma=0.89,
        instance_length_range=(0.3, 120.0), extra_instance_probability=0.0,
        groups=(('CliffDiving', 'Diving'), ('CricketBowling', 'CricketShot'),
                ('HammerThrow', 'Shotput', 'ThrowDiscus'),
                ('HighJump', 'JavelinThrow', 'LongJump', 'PoleVault')),
        also_listed_as=(('CliffDiving', 'Diving'),),
        companions=(('CricketBowling', 'CricketShot', 0.4), ('CricketShot', 'CricketBowling', 0.4)),
        extra_class_probability=0.05,
        targets={'duration_mean': 213.0, 'duration_median': 155.0, 'instances_mean': 15.4,
                 'instances_median': 8.0, 'instance_length_mean': 4.3,
                 'instance_length_median': 3.0, 'classes_per_video': 1.12,
                 'foreground_fraction': 0.29}),
    # ActivityNet1.2 (100 classes; 4819 `training`, 2383 `validation`): video length mean 116 s,
    # median 111 s, range 2-239 s (roughly uniform); 1.5 instances per video (median 1);
    # instance length mean 50 s, median 28 s; 1.0 classes per video; 64% foreground (per video:
    # median 70%, 10-90%: 21-97%).
    'activitynet12_like': Preset(
        name='activitynet12_like',
        class_names=tuple(f'activity_{i:03d}' for i in range(100)),
        num_train=4819, num_test=2383, train_subset='training', test_subset='validation',
        seconds_per_snippet=0.64,
        duration_kind='beta', duration_params=(1.2, 1.3), duration_range=(2.0, 239.0),
        foreground_beta=(1.3, 0.7),
        instance_mode='split', instance_length_median=0.0, instance_length_sigma=0.0,
        instance_length_range=(0.5, 239.0), extra_instance_probability=0.33,
        groups=tuple((f'activity_{i:03d}', f'activity_{i + 1:03d}') for i in range(0, 40, 2)),
        also_listed_as=(),
        companions=(),
        extra_class_probability=0.0015,
        targets={'duration_mean': 116.0, 'duration_median': 111.0, 'instances_mean': 1.5,
                 'instances_median': 1.0, 'instance_length_mean': 50.0,
                 'instance_length_median': 28.0, 'classes_per_video': 1.0,
                 'foreground_fraction': 0.64}),
}


def get_preset(name: str) -> Preset:
  if name not in PRESETS:
    raise ValueError(f'unknown synthetic preset {name!r}; one of {sorted(PRESETS)}')
  return PRESETS[name]


# ------------------------------------------------------------------------------------------------
# Annotations.


@dataclasses.dataclass
class _Annotation:
  video_id: str
  subset: str
  duration: float
  segments: np.ndarray  # (N, 2) seconds.
  segment_classes: np.ndarray  # (N,) int32.
  labels: np.ndarray  # (C,) float32.


def _draw_duration(preset: Preset, rng: np.random.Generator) -> float:
  low, high = preset.duration_range
  if preset.duration_kind == 'lognormal':
    median, sigma = preset.duration_params
    for _ in range(100):
      value = median * np.exp(sigma * rng.standard_normal())
      if low <= value <= high:
        return float(value)
    return float(np.clip(value, low, high))
  if preset.duration_kind == 'beta':
    return float(low + (high - low) * rng.beta(*preset.duration_params))
  raise ValueError(f'preset {preset.name}: unknown duration_kind {preset.duration_kind!r}')


def _draw_classes(preset: Preset, rng: np.random.Generator) -> List[int]:
  """The classes whose instances the video shows (the listed-as duplicates come later)."""
  index = {name: i for i, name in enumerate(preset.class_names)}
  num_classes = len(preset.class_names)
  classes = [int(rng.integers(num_classes))]
  for a, b, p in preset.companions:
    if classes[0] == index[a] and rng.random() < p:
      classes.append(index[b])
  if rng.random() < preset.extra_class_probability:
    other = int(rng.integers(num_classes))
    if other not in classes:
      classes.append(other)
  return classes


def _draw_lengths(preset: Preset, duration: float, rng: np.random.Generator) -> np.ndarray:
  """Instance lengths (N,) seconds, in random order, covering the video's foreground fraction."""
  fraction = rng.beta(*preset.foreground_beta)
  low, high = preset.instance_length_range
  target = fraction * duration
  if preset.instance_mode == 'fill':
    lengths = []
    total = 0.0
    while not lengths or total < target:
      length = preset.instance_length_median * np.exp(preset.instance_length_sigma *
                                                      rng.standard_normal())
      length = float(np.clip(length, low, high))
      if lengths and total + length - target > target - total:
        break  # Stopping is closer to the target than adding this one.
      lengths.append(length)
      total += length
    lengths = np.asarray(lengths)
  elif preset.instance_mode == 'split':
    count = 1
    while rng.random() < preset.extra_instance_probability:
      count += 1
    lengths = target * rng.dirichlet(np.ones(count))
    lengths = np.clip(lengths, low, high)
  else:
    raise ValueError(f'preset {preset.name}: unknown instance_mode {preset.instance_mode!r}')
  # Leave at least 5% of the video (and a snippet) as background between the instances.
  room = 0.95 * duration
  if lengths.sum() > room:
    lengths = lengths * (room / lengths.sum())
  return lengths


def _draw_annotation(preset: Preset, video_id: str, subset: str,
                     rng: np.random.Generator) -> _Annotation:
  duration = _draw_duration(preset, rng)
  classes = _draw_classes(preset, rng)
  lengths = _draw_lengths(preset, duration, rng)
  gaps = (duration - lengths.sum()) * rng.dirichlet(np.ones(len(lengths) + 1))
  starts = gaps[0] + np.concatenate([[0.0], np.cumsum(lengths[:-1] + gaps[1:-1])])
  segments = np.stack([starts, starts + lengths], axis=1)
  segment_classes = np.asarray(classes)[rng.integers(len(classes), size=len(lengths))]
  index = {name: i for i, name in enumerate(preset.class_names)}
  extra_segments, extra_classes = [segments], [segment_classes]
  for a, b in preset.also_listed_as:
    copies = segment_classes == index[a]
    extra_segments.append(segments[copies])
    extra_classes.append(np.full(int(copies.sum()), index[b]))
  segments = np.concatenate(extra_segments)
  segment_classes = np.concatenate(extra_classes).astype(np.int32)
  order = np.lexsort((segment_classes, segments[:, 0]))
  labels = np.zeros(len(preset.class_names), np.float32)
  labels[segment_classes] = 1.0
  return _Annotation(video_id, subset, duration, segments[order].astype(np.float64),
                     segment_classes[order], labels)


def draw_annotations(preset: Preset, seed: int, num_train: int = -1,
                     num_test: int = -1) -> List[_Annotation]:
  """The preset's videos: `num_train` (-1: the preset's count) training, then test videos."""
  num_train = preset.num_train if num_train < 0 else num_train
  num_test = preset.num_test if num_test < 0 else num_test
  annotations = []
  for key, subset, count in ((_TRAIN, preset.train_subset, num_train),
                             (_TEST, preset.test_subset, num_test)):
    for i in range(count):
      rng = np.random.default_rng([seed, key, i])
      annotations.append(_draw_annotation(preset, f'{subset}_{i:05d}', subset, rng))
  return annotations


# ------------------------------------------------------------------------------------------------
# Features.


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mix(base: np.ndarray, toward: np.ndarray, cosine: float) -> np.ndarray:
  """Unit vectors at roughly `cosine` to `toward`, starting from random `base` directions."""
  other = _unit(base - np.sum(base * toward, -1, keepdims=True) * toward)
  return _unit(cosine * toward + np.sqrt(max(0.0, 1.0 - cosine ** 2)) * other)


@dataclasses.dataclass
class _Stream:
  prototypes: np.ndarray  # (C, r) unit.
  scenes: np.ndarray  # (S, r) unit; scene c is class c's home scene for c < C.
  projection: np.ndarray  # (r, d).
  model: StreamModel


class FeatureWorld:
  """The fixed random vectors of one benchmark (class prototypes, scenes, projections)."""

  def __init__(self, class_names: Sequence[str], groups: Sequence[Sequence[str]],
               feature_dim: int, seed: int, model: FeatureModel = FeatureModel(),
               seconds_per_snippet: float = 0.64):
    if feature_dim < 2 or feature_dim % 2:
      raise ValueError(f'feature_dim={feature_dim} must be even and >= 2 (RGB half, flow half)')
    self.model = model
    self.feature_dim = feature_dim
    self.seed = seed
    self.seconds_per_snippet = seconds_per_snippet
    num_classes = len(class_names)
    half = feature_dim // 2
    latent = min(model.latent_dim, half)
    index = {name: i for i, name in enumerate(class_names)}
    group_of = np.arange(num_classes)  # Classes of a group share its first member's home scene.
    for group in groups:
      members = [index[name] for name in group if name in index]
      group_of[members] = members[0] if members else 0
    self.home_scene = group_of
    self.streams = []
    for stream_key, stream_model in enumerate((model.rgb, model.flow)):
      rng = np.random.default_rng([seed, _WORLD, stream_key])
      prototypes = _unit(rng.standard_normal((num_classes, latent)))
      for group in groups:
        members = [index[name] for name in group if name in index]
        if len(members) > 1:  # Cosine ~ group_similarity between members.
          shared = _unit(rng.standard_normal(latent))
          c = np.sqrt(model.group_similarity)
          prototypes[members] = _mix(prototypes[members], shared, c)
      num_scenes = num_classes + max(4, num_classes // 2)
      scenes = _unit(rng.standard_normal((num_scenes, latent)))
      scenes[:num_classes] = _mix(scenes[:num_classes], prototypes, model.home_scene_similarity)
      scenes[:num_classes] = scenes[group_of]  # One home scene per group.
      projection_rng = np.random.default_rng([seed, _PROJECTION, stream_key, feature_dim])
      q, _ = np.linalg.qr(projection_rng.standard_normal((half, latent)))
      projection = (q.T * np.sqrt(half / latent)).astype(np.float32)  # (r, d), rows orthogonal.
      self.streams.append(_Stream(prototypes, scenes, projection, stream_model))

  def video_features(self, segments: np.ndarray, segment_classes: np.ndarray,
                     num_snippets: int, video_key: int) -> np.ndarray:
    """(T, D) float32 features of one video with the given instances (seconds, class)."""
    m = self.model
    rng = np.random.default_rng([self.seed, _FEATURES, video_key])
    sps = self.seconds_per_snippet
    t = num_snippets
    segments = np.asarray(segments, np.float64).reshape(-1, 2)
    classes = np.asarray(segment_classes, np.int64).reshape(-1)
    # The also-listed-as copies share their segment: one signal per distinct segment.
    if len(segments):
      _, first = np.unique(np.round(segments, 6), axis=0, return_index=True)
      first = np.sort(first)
      segments, classes = segments[first], classes[first]
    n = len(segments)
    t0 = np.arange(t)[None, :] * sps
    t1 = t0 + sps
    # Action envelopes (n, T): the covered fraction of each snippet, blurred at the boundaries.
    envelope = np.clip((np.minimum(segments[:, 1:2], t1) - np.maximum(segments[:, :1], t0)) / sps,
                       0.0, 1.0)
    if n and m.blend_seconds > 0:
      envelope = ndimage.gaussian_filter1d(envelope, m.blend_seconds / sps, axis=1,
                                           mode='constant')
    amplitude = rng.uniform(*m.amplitude_range, size=n)
    # Context ramps (n, T): 1 at the instance's edge down to 0 at `reach`, each side w.p. p.
    centre = (t0 + t1) / 2
    reach = m.context_seconds + m.context_ratio * (segments[:, 1:2] - segments[:, :1])
    before = np.clip(1 - (segments[:, :1] - centre) / reach, 0, 1) * (centre < segments[:, :1])
    after = np.clip(1 - (centre - segments[:, 1:2]) / reach, 0, 1) * (centre > segments[:, 1:2])
    sides = rng.random((n, 2)) < m.context_probability
    context = before * sides[:, :1] + after * sides[:, 1:]
    foreground = np.clip(envelope.sum(0), 0, 1)
    context = context * (1 - foreground)[None, :]
    # Scene weights (T, K): the video's home scenes plus a few random ones, drifting slowly;
    # the home scenes dominate near the actions.
    present = np.unique(classes) if n else np.zeros(0, np.int64)
    homes = np.unique(self.home_scene[present]) if n else np.zeros(0, np.int64)
    num_scenes = self.streams[0].scenes.shape[0]
    num_classes = self.streams[0].prototypes.shape[0]
    extra = rng.integers(num_classes, num_scenes, size=rng.integers(m.scenes_per_video[0],
                                                                    m.scenes_per_video[1] + 1))
    scene_ids = np.concatenate([homes, extra])
    logits = 1.5 * _smooth_noise(rng, t, len(scene_ids), m.scene_seconds / sps)
    near = np.clip(envelope.sum(0) + context.sum(0), 0, 1)
    logits[:, :len(homes)] += 2.0 * near[:, None]
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    noise_scale = m.noise_scale
    halves = []
    for stream in self.streams:
      s = stream.model
      latent = stream.prototypes.shape[1]
      directions = _unit(stream.prototypes[classes] +
                         m.instance_variation * _unit(rng.standard_normal((n, latent))))
      # einsum, not `@`: these products are small, and multi-threaded BLAS on a busy machine
      # makes them several times slower.
      z = np.einsum('nt,nr->tr', envelope * amplitude[:, None], s.action * directions)
      z += np.einsum('nt,nr->tr', context, s.context * stream.prototypes[classes])
      z += np.einsum('tk,kr->tr', weights, s.scene * stream.scenes[scene_ids])
      z += noise_scale * s.drift * _smooth_noise(rng, t, latent, m.drift_seconds / sps)
      z += noise_scale * s.noise * rng.standard_normal((t, latent))
      x = np.einsum('tr,rd->td', z.astype(np.float32), stream.projection)
      x += (noise_scale * s.observation) * rng.standard_normal(x.shape, dtype=np.float32)
      halves.append(x)
    return np.concatenate(halves, axis=1)


def _smooth_noise(rng: np.random.Generator, t: int, dim: int, sigma_snippets: float) -> np.ndarray:
  """(T, dim) Gaussian noise, smooth in time (Gaussian kernel of `sigma_snippets`), unit std."""
  white = rng.standard_normal((t, dim))
  if sigma_snippets <= 0:
    return white
  smooth = ndimage.gaussian_filter1d(white, sigma_snippets, axis=0, mode='reflect')
  radius = int(4 * sigma_snippets + 0.5)
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_snippets) ** 2)
  kernel /= kernel.sum()
  return smooth / np.sqrt(np.sum(kernel ** 2))


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


def generate(preset: str | Preset = 'thumos14_like', *, feature_dim: int = 256, seed: int = 0,
             num_train: int = -1, num_test: int = -1,
             feature_model: Optional[FeatureModel] = None,
             noise_scale: Optional[float] = None,
             seconds_per_snippet: Optional[float] = None) -> Dataset:
  """The synthetic benchmark as a `Dataset` (features generated when a video is loaded).

  Args:
    preset: a `PRESETS` name or a `Preset`.
    feature_dim: D (even): D/2 RGB then D/2 flow channels.
    seed: everything is a function of the seed (and of the other arguments).
    num_train, num_test: video counts (-1: the preset's).
    feature_model: overrides the preset's `FeatureModel`.
    noise_scale: replaces the feature model's `noise_scale` (None: keep it).
    seconds_per_snippet: feature timing (None: the preset's, 0.64 s like I3D).
  """
  preset = get_preset(preset) if isinstance(preset, str) else preset
  model = _feature_model(preset, feature_model, noise_scale)
  sps = float(seconds_per_snippet or preset.seconds_per_snippet)
  world = FeatureWorld(preset.class_names, preset.groups, feature_dim, seed, model, sps)
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
            seconds_per_snippet: Optional[float] = None) -> Dataset:
  """Synthetic features laid over real annotations (their videos, timings and labels).

  `annotations` is a Dataset whose features are ignored (e.g. `wtalc.read_annotations`). The
  preset supplies the feature model and the class groups (matched by class name).
  """
  preset = get_preset(preset) if isinstance(preset, str) else preset
  model = _feature_model(preset, feature_model, noise_scale)
  sps = seconds_per_snippet or (annotations.videos[0].seconds_per_snippet
                                if annotations.videos else preset.seconds_per_snippet)
  world = FeatureWorld(list(annotations.class_names), preset.groups, feature_dim, seed, model, sps)
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
    from d2net_jax.data import wtalc  # pylint: disable=import-outside-toplevel
    annotations = wtalc.read_annotations(
        params['annotations'], trust_pickle=trust_pickle,
        seconds_per_snippet=params['seconds_per_snippet'],
        video_labels=params['video_labels'], segment_policy=params['segment_policy'])
    return overlay(annotations, feature_dim=params['feature_dim'], seed=params['seed'],
                   preset=params['preset'], noise_scale=params['noise_scale'],
                   seconds_per_snippet=params['seconds_per_snippet'])
  return generate(params['preset'], feature_dim=params['feature_dim'], seed=params['seed'],
                  num_train=params['num_train'], num_test=params['num_test'],
                  noise_scale=params['noise_scale'],
                  seconds_per_snippet=params['seconds_per_snippet'])


def _stored_parameters(path: pathlib.Path) -> Optional[Dict[str, Any]]:
  import h5py  # pylint: disable=import-outside-toplevel
  try:
    with h5py.File(path, 'r') as f:
      if not bool(f.attrs.get('complete', False)):
        return None
      return json.loads(f.attrs[_PARAMETERS_ATTR])
  except (OSError, KeyError, ValueError):
    return None


def ensure_store(data_config, cache_dir=None, *, force: bool = False) -> pathlib.Path:
  """Builds the synthetic HDF5 store (and its gt.json) once; returns the store's path.

  The file is `<dir>/<store_name(params)>.h5` with `<dir>` = `data_config.path` if set, else
  `cache_dir`. A store whose recorded parameters differ (or that is incomplete) is rebuilt;
  `force` rebuilds regardless. The store is written to a temporary file and renamed, so an
  interrupted build leaves nothing that looks valid.
  """
  from d2net_jax.data import ground_truth, hdf5_store  # pylint: disable=import-outside-toplevel
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
  tmp = path.with_name(f'.{path.stem}.building-{os.getpid()}.h5')
  try:
    hdf5_store.write_store(tmp, dataset)
    import h5py  # pylint: disable=import-outside-toplevel
    with h5py.File(tmp, 'a') as f:
      f.attrs[_PARAMETERS_ATTR] = json.dumps(params, sort_keys=True)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  ground_truth.export_ground_truth(dataset, gt_path)
  return path


def _data_config(args):
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  c = config_lib.data_config()
  c.kind = 'synthetic'
  c.path = str(args.out)
  c.feature_dim = args.feature_dim
  c.seconds_per_snippet = args.seconds_per_snippet
  c.trust_pickle = args.trust_pickle
  c.synthetic.preset = args.preset
  c.synthetic.seed = args.seed
  c.synthetic.num_train = args.num_train
  c.synthetic.num_test = args.num_test
  c.synthetic.annotations = args.annotations
  if 'noise_scale' in c.synthetic:
    c.synthetic.noise_scale = args.noise_scale
  else:
    with c.synthetic.unlocked():
      c.synthetic.noise_scale = args.noise_scale
  return c


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`d2net-jax synthetic`: writes the benchmark to DIR/<name>.h5 and DIR/<name>.gt.json."""
  parser = argparse.ArgumentParser(
      prog='d2net-jax synthetic',
      description='Write the synthetic WTAL benchmark (HDF5 store + ActivityNet-style gt.json).')
  parser.add_argument('--preset', default='thumos14_like', choices=sorted(PRESETS))
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--feature-dim', type=int, default=2048,
                      help='D (even): D/2 RGB then D/2 flow channels (I3D: 2048)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num-train', type=int, default=-1, help="-1: the preset's count")
  parser.add_argument('--num-test', type=int, default=-1, help="-1: the preset's count")
  parser.add_argument('--noise-scale', type=float, default=1.0,
                      help='multiplies the feature noise (harder > 1 > easier)')
  parser.add_argument('--seconds-per-snippet', type=float, default=0.64)
  parser.add_argument('--annotations', default='',
                      help='lay the features over this W-TALC annotation folder instead')
  parser.add_argument('--trust-pickle', action='store_true',
                      help='allow unpickling the annotation .npy files (trusted files only)')
  parser.add_argument('--force', action='store_true', help='rebuild even if the store exists')
  args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
  if args.feature_dim < 2 or args.feature_dim % 2:
    parser.error(f'--feature-dim {args.feature_dim} must be even and >= 2')
  try:
    path = ensure_store(_data_config(args), force=args.force)
  except DataError as e:
    print(f'd2net-jax synthetic: {e}', file=sys.stderr)
    return 1
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  dataset = hdf5_store.read_store(path)
  stats = annotation_statistics(dataset.videos)
  print(f'{path}\n{ground_truth_path(path)}')
  print(f'{dataset.name}: {len(dataset.train_videos())} {dataset.train_subset} + '
        f'{len(dataset.test_videos())} {dataset.test_subset} videos, {dataset.num_classes} '
        f'classes, D={dataset.feature_dim}')
  targets = {} if args.annotations else get_preset(args.preset).targets
  for key, value in stats.items():
    target = f'  (real: {targets[key]:g})' if key in targets else ''
    print(f'  {key:24s} {value:10.3f}{target}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
