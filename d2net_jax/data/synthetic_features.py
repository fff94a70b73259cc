"""Features of the synthetic benchmark: the latent Gaussian model (`FeatureWorld`, 'gaussian') and
the rectified, I3D-like model built on it ('i3d_like'). d2net_jax/data/synthetic.py describes both.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy import ndimage, special

from d2net_jax.data.synthetic_presets import (_FEATURES, _I3D_VIDEO, _I3D_WORLD, _PROJECTION,
                                              _WORLD, FEATURE_MODELS, FeatureModel, I3DLikeModel,
                                              StreamModel)

# ------------------------------------------------------------------------------------------------
# The latent Gaussian model ('gaussian').


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
  """The fixed random vectors of one benchmark (class prototypes, scenes, projections).

  features='gaussian': the latent model's features as they are; 'i3d_like': rectified by
  `I3DLike` (same latent draws, so both feature models show the same videos).
  """

  def __init__(self, class_names: Sequence[str], groups: Sequence[Sequence[str]],
               feature_dim: int, seed: int, model: FeatureModel = FeatureModel(),
               seconds_per_snippet: float = 0.64, features: str = 'gaussian',
               i3d_like: I3DLikeModel = I3DLikeModel()):
    if feature_dim < 2 or feature_dim % 2:
      raise ValueError(f'feature_dim={feature_dim} must be even and >= 2 (RGB half, flow half)')
    if features not in FEATURE_MODELS:
      raise ValueError(f'unknown synthetic feature model {features!r}; one of {FEATURE_MODELS}')
    self.features = features
    self.rectifier = I3DLike(i3d_like, feature_dim, seed) if features == 'i3d_like' else None
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
    if self.rectifier is not None:
      halves = [self.rectifier(x, stream_key, video_key) for stream_key, x in enumerate(halves)]
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
# The I3D-like model ('i3d_like').


class I3DLike:
  r"""Rectifies the Gaussian features into non-negative, I3D-like ones, per stream and channel c:

    x_c(t) = scale * g_c * max(0, h_c(t) + b_c + v_c)

  h: the Gaussian model's features of the stream (zero mean, about unit std per channel for every
  D, and they carry every class / context / scene signal); b_c ~ N(offset_mean, offset_std) and
  g_c ~ LogNormal fixed per benchmark (seed, D; stratified quantiles clipped at 2.5 std, in a
  random channel order), like the biases and scales of the network's last layer; v_c ~ N(0, video_style^2) per video, constant in time (camera, light, set). Real I3D
  features (Mixed_5c, average-pooled over 16 frames and 7x7 positions, RGB and flow) are outputs of
  a ReLU network; the real feature files are not in this repository, so the targets are our
  reading of what is known about such features, not measurements, and what matters for WTAL is
  the geometry they give. Targets (tests/test_synthetic_features.py measures them on generated
  videos, D = 256, and fails outside these ranges):

  - every value >= 0, exact zeros common: a fraction 0.18-0.35 (RGB) and 0.28-0.45 (flow) of the
    values is below 1% of the stream's mean (ReLU outputs; flow sparser: most motion channels are
    silent in a static shot);
  - a heavy-tailed per-channel profile: channel means spread with a coefficient of variation of
    0.6-1.4, the top 10% of channels hold 20-40% of the mass (a flat profile would give 10%),
    per-channel std of the same order as the channel's mean (median std / mean 0.6-1.5, higher
    in flow: bursty motion channels);
  - a high cosine between any two snippets (all vectors in the positive orthant): mean cosine
    0.75-0.90 (RGB) / 0.60-0.80 (flow) within a video and 0.50-0.70 between different videos,
    within - between >= 0.1 (RGB, strong video look) and >= 0.05 (flow); the Gaussian model
    gives 0.05-0.25 within a video and 0.00-0.02 between videos;
  - RGB vs flow: flow is sparser, burstier, less tied to the video (lower within-video cosine)
    and less smooth in time (lag-1 autocorrelation of the centred features lower than RGB's), as
    optical flow is; RGB carries the scene and the context (the Gaussian model's parameters).

  Difficulty hardly depends on D: every channel is an independent draw of the same per-channel
  law, so cosines and class evidence are averages over channels. Deterministic per video: v is
  keyed by (seed, video, stream), b and g by (seed, stream, D); the Gaussian draws are unchanged,
  so 'gaussian' and 'i3d_like' show the same videos.
  """

  def __init__(self, model: I3DLikeModel, feature_dim: int, seed: int):
    self.model = model
    self.seed = seed
    half = feature_dim // 2
    self.offsets, self.gains = [], []
    # Stratified normal quantiles, clipped at 2.5 std, in a random channel order: every D gets
    # the same per-channel law without sampling noise (a few extreme channels would otherwise
    # dominate the cosines, differently for every D).
    quantiles = np.clip(special.ndtri((np.arange(half) + 0.5) / half), -2.5, 2.5)
    for stream_key, s in enumerate((model.rgb, model.flow)):
      rng = np.random.default_rng([seed, _I3D_WORLD, stream_key, feature_dim])
      offsets = s.offset_mean + s.offset_std * rng.permutation(quantiles)
      gains = np.exp(s.gain_sigma * rng.permutation(quantiles) - 0.5 * s.gain_sigma ** 2)
      self.offsets.append(offsets.astype(np.float32))
      self.gains.append((s.scale * gains).astype(np.float32))

  def __call__(self, h: np.ndarray, stream_key: int, video_key: int) -> np.ndarray:
    """(T, D/2) non-negative float32 features of one stream from its Gaussian features h."""
    s = (self.model.rgb, self.model.flow)[stream_key]
    rng = np.random.default_rng([self.seed, _I3D_VIDEO, video_key, stream_key])
    style = (s.video_style * rng.standard_normal(h.shape[1])).astype(np.float32)
    return self.gains[stream_key] * np.maximum(h + (self.offsets[stream_key] + style), 0.0)


# ------------------------------------------------------------------------------------------------
# Statistics (the targets above; tests/test_synthetic_features.py checks them).


def _unit_rows(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def feature_statistics(videos: Sequence[np.ndarray], pairs_per_video: int = 20,
                       seed: int = 0) -> dict:
  """Statistics of one stream's features, from a list of (T_i, d) arrays (one per video).

  Returns min; near_zero (fraction of values < 1% of the mean value); channel_cv (std / mean of
  the per-channel means); top10_share (share of the total mass in the 10% of channels with the
  largest means); std_over_mean (median over channels of std / mean, channels with mean > 0);
  cosine_within (mean over videos of the mean cosine between two distinct snippets of the video);
  cosine_between (mean cosine between `pairs_per_video` random snippets of each of two videos,
  over all pairs of videos); lag1 (lag-1 autocorrelation of the per-video centred features).
  """
  x = np.concatenate(videos).astype(np.float64)
  mean = float(x.mean())
  channel_means = x.mean(0)
  channel_stds = x.std(0)
  order = np.sort(channel_means)[::-1]
  live = channel_means > 0
  within = []
  for v in videos:
    if len(v) > 1:
      u = _unit_rows(np.asarray(v, np.float64))
      n = len(u)
      within.append((np.sum(u.sum(0) ** 2) - n) / (n * n - n))  # Mean over i != j of u_i . u_j.
  rng = np.random.default_rng(seed)
  picks = [_unit_rows(np.asarray(v, np.float64)[rng.integers(len(v), size=pairs_per_video)])
           for v in videos]
  between = [np.mean(picks[i] @ picks[j].T) for i in range(len(picks))
             for j in range(i + 1, len(picks))]
  lag_num = lag_den = 0.0
  for v in videos:
    c = np.asarray(v, np.float64) - np.mean(v, 0)
    lag_num += float(np.sum(c[1:] * c[:-1]))
    lag_den += float(np.sum(c * c))
  return {
      'min': float(x.min()),
      'mean': mean,
      'near_zero': float(np.mean(x < 0.01 * mean)),
      'channel_cv': float(channel_means.std() / channel_means.mean()),
      'top10_share': float(order[:max(1, len(order) // 10)].sum() / order.sum()),
      'std_over_mean': float(np.median(channel_stds[live] / channel_means[live])),
      'cosine_within': float(np.mean(within)),
      'cosine_between': float(np.mean(between)),
      'lag1': lag_num / max(lag_den, 1e-12),
  }


def stream_statistics(videos: Sequence[np.ndarray], feature_dim: int, **kwargs) -> dict:
  """{'rgb': ..., 'flow': ...}: `feature_statistics` of each half of (T_i, D) features."""
  half = feature_dim // 2
  return {name: feature_statistics([np.asarray(v)[:, k * half:(k + 1) * half] for v in videos],
                                   **kwargs)
          for k, name in enumerate(('rgb', 'flow'))}
