"""The Inflated 3D ConvNet (I3D; Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR
2017), DeepMind's kinetics-i3d architecture in Flax, for feature extraction (inference only).

Layout: inputs (B, T, H, W, C) channels-last, RGB in [-1, 1] (C = 3) or TV-L1 flow in [-1, 1]
(C = 2). Every convolution and max-pool pads 'SAME' the TensorFlow way (the larger half of an odd
padding at the end, as DeepMind's Sonnet model and piergiaj/pytorch-i3d's `compute_pad` do).

`Unit3D` = Conv3d (no bias) -> Sonnet batch norm -> ReLU. Sonnet v1's `BatchNorm` has an offset
(beta) and no scale: y = (x - moving_mean) / sqrt(moving_variance + 1e-3) + beta. A checkpoint
with a scale (PyTorch's BatchNorm3d weight) is folded into the convolution by the converter
(`weights.py`), so the same module holds both.

Names follow DeepMind's variable scopes with '_' for '/' (Flax names are one path segment):
`Mixed_3b/Branch_1/Conv3d_0b_3x3/conv_3d/w` is `Mixed_3b/Branch_1_Conv3d_0b_3x3/conv_3d/kernel`.

For a 16-frame 224 x 224 snippet, Mixed_5c is (B, 2, 7, 7, 1024); its global average is the
1024-d snippet feature of the WTAL literature (pytorch-i3d's `extract_features` average-pools it
with a (2, 7, 7) window, which is the same number at this size).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_EPSILON = 1e-3  # Sonnet v1's BatchNorm default (pytorch-i3d's BatchNorm3d uses the same).
FEATURE_DIM = 1024  # Channels of Mixed_5c.

# (name, kind, arguments): the network in order. 'unit': (channels, kernel, stride);
# 'pool': max-pool (window, stride); 'mixed': Inception block channels (branch 0; branch 1
# 1x1, 3x3; branch 2 1x1, 3x3; branch 3 after the pool). Kinetics-i3d's table.
LAYERS = (
    ('Conv3d_1a_7x7', 'unit', (64, (7, 7, 7), (2, 2, 2))),
    ('MaxPool3d_2a_3x3', 'pool', ((1, 3, 3), (1, 2, 2))),
    ('Conv3d_2b_1x1', 'unit', (64, (1, 1, 1), (1, 1, 1))),
    ('Conv3d_2c_3x3', 'unit', (192, (3, 3, 3), (1, 1, 1))),
    ('MaxPool3d_3a_3x3', 'pool', ((1, 3, 3), (1, 2, 2))),
    ('Mixed_3b', 'mixed', (64, 96, 128, 16, 32, 32)),
    ('Mixed_3c', 'mixed', (128, 128, 192, 32, 96, 64)),
    ('MaxPool3d_4a_3x3', 'pool', ((3, 3, 3), (2, 2, 2))),
    ('Mixed_4b', 'mixed', (192, 96, 208, 16, 48, 64)),
    ('Mixed_4c', 'mixed', (160, 112, 224, 24, 64, 64)),
    ('Mixed_4d', 'mixed', (128, 128, 256, 24, 64, 64)),
    ('Mixed_4e', 'mixed', (112, 144, 288, 32, 64, 64)),
    ('Mixed_4f', 'mixed', (256, 160, 320, 32, 128, 128)),
    ('MaxPool3d_5a_2x2', 'pool', ((2, 2, 2), (2, 2, 2))),
    ('Mixed_5b', 'mixed', (256, 160, 320, 32, 128, 128)),
    ('Mixed_5c', 'mixed', (384, 192, 384, 48, 128, 128)),
)
# The Inception branches: (name, channel index in the 'mixed' tuple, kernel), and the block's
# pooled branch 3 takes a 3x3x3 stride-1 max-pool first.
BRANCHES = (
    ('Branch_0_Conv3d_0a_1x1', 0, (1, 1, 1)),
    ('Branch_1_Conv3d_0a_1x1', 1, (1, 1, 1)),
    ('Branch_1_Conv3d_0b_3x3', 2, (3, 3, 3)),
    ('Branch_2_Conv3d_0a_1x1', 3, (1, 1, 1)),
    ('Branch_2_Conv3d_0b_3x3', 4, (3, 3, 3)),
    ('Branch_3_Conv3d_0b_1x1', 5, (1, 1, 1)),
)
LOGITS = 'Logits_Conv3d_0c_1x1'


def max_pool_same(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> jax.Array:
  """3-D max-pool of x (B, T, H, W, C), TensorFlow 'SAME' padding (padded cells never win)."""
  return nn.max_pool(x, tuple(window), strides=tuple(strides), padding='SAME')


class Unit3D(nn.Module):
  """Conv3d ('SAME', TensorFlow's asymmetric padding) -> Sonnet batch norm -> ReLU.

  Attributes:
    features: output channels.
    kernel: (kt, kh, kw).
    strides: (st, sh, sw).
    use_batch_norm: the normalisation above with the stored moving statistics (inference).
    use_bias: a convolution bias (the logits layer only).
    activation: ReLU after it all.
  """
  features: int
  kernel: Sequence[int] = (1, 1, 1)
  strides: Sequence[int] = (1, 1, 1)
  use_batch_norm: bool = True
  use_bias: bool = False
  activation: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, T, H, W, C_in) -> (B, ceil(T / st), ceil(H / sh), ceil(W / sw), features)."""
    x = nn.Conv(self.features, tuple(self.kernel), strides=tuple(self.strides), padding='SAME',
                use_bias=self.use_bias, name='conv_3d')(x)
    if self.use_batch_norm:
      beta = self.param('beta', nn.initializers.zeros, (self.features,))
      mean = self.variable('batch_stats', 'moving_mean', jnp.zeros, (self.features,))
      variance = self.variable('batch_stats', 'moving_variance', jnp.ones, (self.features,))
      x = (x - mean.value) * jax.lax.rsqrt(variance.value + BN_EPSILON) + beta
    if self.activation:
      x = nn.relu(x)
    return x


class InceptionBlock(nn.Module):
  """Four branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max-pool -> 1x1.

  channels: the 6-tuple of `LAYERS`' 'mixed' entries.
  """
  channels: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    units = {name: Unit3D(self.channels[i], kernel, name=name) for name, i, kernel in BRANCHES}
    branch_0 = units['Branch_0_Conv3d_0a_1x1'](x)
    branch_1 = units['Branch_1_Conv3d_0b_3x3'](units['Branch_1_Conv3d_0a_1x1'](x))
    branch_2 = units['Branch_2_Conv3d_0b_3x3'](units['Branch_2_Conv3d_0a_1x1'](x))
    branch_3 = units['Branch_3_Conv3d_0b_1x1'](max_pool_same(x, (3, 3, 3), (1, 1, 1)))
    return jnp.concatenate([branch_0, branch_1, branch_2, branch_3], axis=-1)


class InceptionI3d(nn.Module):
  """I3D up to Mixed_5c; the snippet feature and, with `num_classes`, the Kinetics logits.

  Attributes:
    num_classes: size of the logits layer (400 for the Kinetics-400 checkpoint); 0: no logits
      layer (a flow network converted without its classifier, or features only).
  """
  num_classes: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, *, logits: bool = False) -> dict[str, jax.Array]:
    """x (B, T, H, W, C) in [-1, 1] -> {'features': (B, 1024) mean of Mixed_5c over time and
    space, 'mixed_5c': (B, T', H', W', 1024)[, 'logits': (B, num_classes)]}.

    logits: also compute the classifier as kinetics-i3d does: a (2, 7, 7) 'VALID' average pool
    of Mixed_5c, the 1x1x1 logits convolution, the mean over what is left of time and space
    (for a 16 x 224 x 224 input that is the classifier applied to the snippet feature).
    """
    for name, kind, args in LAYERS:
      if kind == 'unit':
        channels, kernel, strides = args
        x = Unit3D(channels, kernel, strides, name=name)(x)
      elif kind == 'pool':
        x = max_pool_same(x, *args)
      else:
        x = InceptionBlock(args, name=name)(x)
    out = {'mixed_5c': x, 'features': jnp.mean(x, axis=(1, 2, 3))}
    if logits:
      if not self.num_classes:
        raise ValueError('this I3D has no logits layer (num_classes=0)')
      pooled = nn.avg_pool(x, (2, 7, 7), strides=(1, 1, 1), padding='VALID')
      scores = Unit3D(self.num_classes, use_batch_norm=False, use_bias=True, activation=False,
                      name=LOGITS)(pooled)
      out['logits'] = jnp.mean(scores, axis=(1, 2, 3))
    return out


def conv_flops(shape: Sequence[int], in_channels: int = 3) -> int:
  """Multiply-adds x 2 of every convolution of I3D up to Mixed_5c on one input (T, H, W): the
  analytic FLOP count of a snippet (pools, batch norm and ReLU are < 1% and not counted)."""
  t, h, w = shape
  total, c = 0, in_channels

  def conv(t, h, w, c_in, c_out, kernel, strides):
    t, h, w = (-(-t // strides[0]), -(-h // strides[1]), -(-w // strides[2]))
    return (t, h, w), 2 * t * h * w * c_out * c_in * kernel[0] * kernel[1] * kernel[2]

  for _, kind, args in LAYERS:
    if kind == 'unit':
      channels, kernel, strides = args
      (t, h, w), flops = conv(t, h, w, c, channels, kernel, strides)
      total, c = total + flops, channels
    elif kind == 'pool':
      _, strides = args
      t, h, w = (-(-t // strides[0]), -(-h // strides[1]), -(-w // strides[2]))
    else:
      ch = args
      inputs = (c, c, ch[1], c, ch[3], c)
      for (_, i, kernel), c_in in zip(BRANCHES, inputs):
        total += conv(t, h, w, c_in, ch[i], kernel, (1, 1, 1))[1]
      c = ch[0] + ch[2] + ch[4] + ch[5]
  return total
