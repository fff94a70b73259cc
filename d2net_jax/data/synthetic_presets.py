"""Annotation presets of the synthetic benchmark (THUMOS14-like, ActivityNet1.2-like) and the
drawing of their videos' annotations; the feature models' parameters (d2net_jax/data/synthetic.py
describes the benchmark as a whole, synthetic_features.py how features are drawn)."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Tuple, Union

import numpy as np

# Keys of the per-video random streams.
_TRAIN, _TEST, _FEATURES, _WORLD, _PROJECTION, _I3D_WORLD, _I3D_VIDEO = 0, 1, 2, 3, 4, 5, 6

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
class RectifiedStream:
  """How one stream of the 'i3d_like' model rectifies the Gaussian features (per channel c):
  x_c = scale * g_c * max(0, h_c + b_c + v_c) (synthetic_features.I3DLike)."""
  offset_mean: float  # b_c ~ N(offset_mean, offset_std): fixed per channel (the network's bias).
  offset_std: float
  gain_sigma: float  # g_c ~ LogNormal(-gain_sigma^2 / 2, gain_sigma): heavy-tailed channel scale.
  video_style: float  # v_c ~ N(0, video_style^2): per video and channel, constant in time.
  scale: float  # Overall scale of the values.


@dataclasses.dataclass(frozen=True)
class I3DLikeModel:
  """Parameters of the 'i3d_like' feature model (targets: synthetic_features.I3DLike)."""
  # RGB: denser, a stronger per-video look (scene, camera, light); flow: sparser, burstier
  # channels (std / mean higher), less video identity. Flow's channel gains spread less than
  # RGB's: more spread tilts flow's class evidence towards the scene (tests/test_synthetic.py,
  # context in RGB vs flow).
  rgb: RectifiedStream = RectifiedStream(offset_mean=1.0, offset_std=1.0, gain_sigma=0.7,
                                         video_style=1.0, scale=0.4)
  flow: RectifiedStream = RectifiedStream(offset_mean=0.5, offset_std=1.0, gain_sigma=0.4,
                                          video_style=0.6, scale=0.5)


# The feature models (data.synthetic.features): 'i3d_like' (non-negative, the presets' default)
# and 'gaussian' (zero-mean, near-orthogonal snippets; the benchmark before the I3D-like model).
FEATURE_MODELS = ('i3d_like', 'gaussian')


@dataclasses.dataclass(frozen=True)
class LogNormalDurations:
  """Video durations ~ LogNormal(median, sigma) seconds, redrawn until in [low, high] (100 tries,
  then clipped): THUMOS14's long right tail."""
  median: float
  sigma: float
  low: float
  high: float

  def draw(self, rng: np.random.Generator) -> float:
    for _ in range(100):
      value = self.median * np.exp(self.sigma * rng.standard_normal())
      if self.low <= value <= self.high:
        return float(value)
    return float(np.clip(value, self.low, self.high))


@dataclasses.dataclass(frozen=True)
class BetaDurations:
  """Video durations low + (high - low) * Beta(a, b) seconds: ActivityNet's near-uniform spread."""
  a: float
  b: float
  low: float
  high: float

  def draw(self, rng: np.random.Generator) -> float:
    return float(self.low + (self.high - self.low) * rng.beta(self.a, self.b))


@dataclasses.dataclass(frozen=True)
class FillInstances:
  """THUMOS14: log-normal instance lengths (median, sigma seconds, clipped to [low, high]) drawn
  until they cover the target; many short instances, their count grows with the duration."""
  length_median: float
  length_sigma: float
  low: float
  high: float

  def lengths(self, target: float, rng: np.random.Generator) -> np.ndarray:
    lengths = []
    total = 0.0
    while not lengths or total < target:
      length = self.length_median * np.exp(self.length_sigma * rng.standard_normal())
      length = float(np.clip(length, self.low, self.high))
      if lengths and total + length - target > target - total:
        break  # Stopping is closer to the target than adding this one.
      lengths.append(length)
      total += length
    return np.asarray(lengths)


@dataclasses.dataclass(frozen=True)
class SplitInstances:
  """ActivityNet: 1 + Geometric(1 - extra_probability) - 1 instances share the target (a
  Dirichlet split, clipped to [low, high] seconds): one or two long instances."""
  extra_probability: float
  low: float
  high: float

  def lengths(self, target: float, rng: np.random.Generator) -> np.ndarray:
    count = 1
    while rng.random() < self.extra_probability:
      count += 1
    return np.clip(target * rng.dirichlet(np.ones(count)), self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Preset:
  """Annotation statistics of a benchmark (numbers from its annotation files).

  Per video: a duration from `durations`, a foreground fraction f ~ Beta(foreground_beta), and
  instance lengths from `instances` covering f of the duration.
  """
  name: str
  class_names: Tuple[str, ...]
  num_train: int
  num_test: int
  train_subset: str
  test_subset: str
  durations: Union[LogNormalDurations, BetaDurations]
  foreground_beta: Tuple[float, float]  # f ~ Beta(a, b).
  instances: Union[FillInstances, SplitInstances]
  groups: Tuple[Tuple[str, ...], ...]  # Share a home scene and similar prototypes.
  also_listed_as: Tuple[Tuple[str, str], ...]  # (A, B): every A instance is listed as B too.
  companions: Tuple[Tuple[str, str, float], ...]  # (A, B, p): a video of A has B too w.p. p.
  extra_class_probability: float  # A video gets a second, unrelated class.
  # Targets measured on the real annotations (the generator test checks them).
  targets: Mapping[str, float]
  feature_model: FeatureModel = FeatureModel()
  features: str = 'i3d_like'  # One of FEATURE_MODELS.
  seconds_per_snippet: float = 0.64  # I3D: 16 frames at 25 fps.
  i3d_like: I3DLikeModel = I3DLikeModel()


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
        durations=LogNormalDurations(median=155.0, sigma=0.84, low=9.0, high=1673.0),
        foreground_beta=(1.2, 2.9),
        instances=FillInstances(length_median=3.0, length_sigma=0.89, low=0.3, high=120.0),
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
        durations=BetaDurations(a=1.2, b=1.3, low=2.0, high=239.0),
        foreground_beta=(1.3, 0.7),
        instances=SplitInstances(extra_probability=0.33, low=0.5, high=239.0),
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
  lengths = preset.instances.lengths(fraction * duration, rng)
  # Leave at least 5% of the video (and a snippet) as background between the instances.
  room = 0.95 * duration
  if lengths.sum() > room:
    lengths = lengths * (room / lengths.sum())
  return lengths


def _draw_annotation(preset: Preset, video_id: str, subset: str,
                     rng: np.random.Generator) -> _Annotation:
  duration = preset.durations.draw(rng)
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
