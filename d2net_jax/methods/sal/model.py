"""The SAL network (spec section 2.3): encoder, per-stream actionness, second-order semantics.

Inputs x (B, T, D) with RGB in x[..., :D/2] and optical flow in x[..., D/2:], mask (B, T).
With one stream (`streams`) x is that stream alone and one actionness branch (h, a) stands for
both: h_r = h_f, a_r = a_f, a = (1 - lambda) a_r + lambda a_r (= a_r up to rounding).

  e      = Dropout(ReLU(Conv_k(x)))                     encoder, k = 3 (THUMOS14) or 7 (ANet)
  h_r    = Dropout(ReLU(Conv_3(rgb))), h_f likewise      actionness embeddings, one per stream
  a_r    = sigmoid(Conv_1(h_r)),  a_f likewise           (B, T) actionness
  a      = (1 - lambda) a_f + lambda a_r                 lambda = rgb_weight (THUMOS14 0.1)
  s      = bilinear(e)                                   (B, H^2) second-order video semantics
  e'     = e + a[..., None] * fc1(s)[:, None, :]         propagation of s to the snippets
  cas    = Conv_1(e')  (B, T, C);  cas_bg = cas * (1 - a)
  sc     = fc(s),  sc_rgb = fc(bilinear(h_r)),  sc_flow = fc(bilinear(h_f))   one shared `fc`

bilinear(A) = l2normalize(ssqrt(vec(sum_t m_t A_t A_t^T) / T_valid^2)), ssqrt(g) =
sign(g) sqrt(|g| + 1e-5) with sign(0) = 0: padded snippets are left out of the sum and out of
the length (the authors' code never pads; with every snippet valid both are theirs).

Video mix-up (training only): the actionness branches also see x_mix = x + x_partner, the
UNNORMALISED sum of each video and its partner (`mixup_normalize=True` averages instead), where
the partner of row b is row b - 1 of the GLOBAL batch, cyclically (the authors' roll(x, 1, 0)).
Under pmap the batch is all-gathered over `layers.BATCH_AXIS` first, so any device count pairs
the same videos as one device does (under jit the batch is already global).
"""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods import layers

SSQRT_EPS = 1e-5
L2_EPS = 1e-12


def bound_axis(name: str = layers.BATCH_AXIS) -> Optional[str]:
  """`name` when traced inside a pmap over that axis, else None (decided at trace time)."""
  try:
    lax.axis_index(name)
  except NameError:
    return None
  return name


def global_roll(x: jax.Array, shift: int = 1, axis_name: Optional[str] = None) -> jax.Array:
  """jnp.roll(x, shift, axis=0) over the global batch: row b gets global row b - shift.

  Inside pmap (axis_name) x is this device's rows; the batch is all-gathered, rolled, and this
  device's rows taken back, so the result is the rows of the single-device roll.
  """
  if axis_name is None:
    return jnp.roll(x, shift, axis=0)
  full = lax.all_gather(x, axis_name, tiled=True)
  rolled = jnp.roll(full, shift, axis=0)
  start = lax.axis_index(axis_name) * x.shape[0]
  return lax.dynamic_slice_in_dim(rolled, start, x.shape[0], axis=0)


def signed_sqrt(g: jax.Array, eps: float = SSQRT_EPS) -> jax.Array:
  """sign(g) * sqrt(|g| + eps), with sign(0) = 0 (jnp.sign), elementwise."""
  return jnp.sign(g) * jnp.sqrt(jnp.abs(g) + eps)


def bilinear_pool(x: jax.Array, mask: jax.Array, divisor: str = 't_squared') -> jax.Array:
  """Second-order pooling (B, T, H) -> (B, H*H), spec 2.3.

  G_b = sum_t m_bt x_bt x_bt^T / n_b with n_b = T_valid^2 ('t_squared', the authors' code) or
  T_valid ('t', a plain average); g = ssqrt(vec G); return g / max(||g||_2, 1e-12).
  """
  m = mask.astype(x.dtype)
  valid = jnp.maximum(jnp.sum(m, axis=-1), 1.0)
  norm = valid ** 2 if divisor == 't_squared' else valid
  gram = jnp.einsum('btd,bte->bde', x * m[..., None], x) / norm[:, None, None]
  g = signed_sqrt(gram.reshape(x.shape[0], -1))
  return g / jnp.maximum(jnp.linalg.norm(g, axis=-1, keepdims=True), L2_EPS)


def _dense_init(fan_in: int):
  return layers.torch_default_init(fan_in)


class ConvBlock(nn.Module):
  """Dropout(ReLU(masked Conv1d(kernel))): (B, T, D_in) -> (B, T, width), torch default init."""
  width: int
  kernel_size: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, mask, train: bool):
    kernel_init, bias_init = _dense_init(x.shape[-1] * self.kernel_size)
    h = nn.relu(layers.masked_conv(x, mask, self.width, self.kernel_size, name='conv',
                                   kernel_init=kernel_init, bias_init=bias_init))
    return nn.Dropout(self.dropout_rate, deterministic=not train)(h)


class Head(nn.Module):
  """Kernel-1 convolution (B, T, D_in) -> (B, T, out), torch default init."""
  out: int

  @nn.compact
  def __call__(self, x):
    kernel_init, bias_init = _dense_init(x.shape[-1])
    return nn.Dense(self.out, kernel_init=kernel_init, bias_init=bias_init, name='conv')(x)


class SAL(nn.Module):
  """SAL. __call__(features (B, T, D), mask (B, T), train) -> dict (spec 2.3).

  Outputs: 'cas', 'cas_bg' (B, T, C) logits; 'a_f', 'a_r' (B, T) sigmoid actionness; 'a' (B, T)
  the fused actionness; 'sc', 'sc_rgb', 'sc_flow' (B, C) second-order class logits; in training
  with mix-up also 'a_f_mix', 'a_r_mix' (B, T). Snippet outputs are zero at padded snippets.

  __call__ = heads(*encode(...)): `encode` gives the encoder features e (B, T, H) and the context
  SAL computes from the raw features (the actionness and sc_rgb / sc_flow); `heads` the rest from
  e (`methods.base.FeatureSplit`): DFE over SAL runs its feature enhancement between the two.
  """
  num_classes: int  # C, the class logits' width.
  hidden: int = 512  # H, the width of the encoder and the actionness branches.
  encoder_kernel: int = 3  # Temporal kernel of the shared encoder (ActivityNet: 7).
  branch_kernel: int = 3  # Temporal kernel of the per-stream actionness convolutions.
  dropout_rate: float = 0.5  # After every convolution block, in training.
  rgb_weight: float = 0.1  # lambda of a = (1 - lambda) a_f + lambda a_r (ActivityNet: 0.3).
  bilinear_divisor: str = 't_squared'  # Second-order pooling: sum / T^2 (the code) or 't'.
  mixup: bool = True  # The video mix-up branch in training (a_f_mix, a_r_mix).
  mixup_normalize: bool = False  # Mix-up input: the two videos' sum (the code) or their mean.
  streams: Tuple[str, ...] = ('rgb', 'flow')  # One actionness branch each.

  def setup(self):
    block = lambda kernel: ConvBlock(self.hidden, kernel, self.dropout_rate)
    self.encoder = block(self.encoder_kernel)
    if 'rgb' in self.streams:  # One actionness branch per stream.
      self.action_rgb = block(self.branch_kernel)
      self.cls_rgb = Head(1)
    if 'flow' in self.streams:
      self.action_flow = block(self.branch_kernel)
      self.cls_flow = Head(1)
    self.cls = Head(self.num_classes)
    fc_kernel, fc_bias = _dense_init(self.hidden * self.hidden)
    self.fc = nn.Dense(self.num_classes, kernel_init=fc_kernel, bias_init=fc_bias)
    self.fc1 = nn.Dense(self.hidden,
                        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
                        bias_init=nn.initializers.zeros)

  def __call__(self, features, mask, train: bool = False) -> Dict[str, jax.Array]:
    e, context = self.encode(features, mask, train)
    return self.heads(e, context, mask, train)

  def _actionness(self, features, m, train: bool):
    """(h_r, h_f (B, T, H), a_r, a_f (B, T)) of the two streams of features (B, T, D).

    With one stream its branch runs on all D channels and stands for both: h_r = h_f and
    a_r = a_f (so a = a_r, L_mc = 0 and sc_rgb = sc_flow; losses.sal_loss counts it once)."""
    if len(self.streams) == 1:
      name = self.streams[0]
      h = getattr(self, f'action_{name}')(features, m, train)
      a = jax.nn.sigmoid(getattr(self, f'cls_{name}')(h)[..., 0]) * m
      return h, h, a, a
    half = features.shape[-1] // 2
    h_r = self.action_rgb(features[..., :half], m, train)
    h_f = self.action_flow(features[..., half:], m, train)
    a_r = jax.nn.sigmoid(self.cls_rgb(h_r)[..., 0]) * m
    a_f = jax.nn.sigmoid(self.cls_flow(h_f)[..., 0]) * m
    return h_r, h_f, a_r, a_f

  def _pool(self, x, m):
    return bilinear_pool(x, m, self.bilinear_divisor)

  def encode(self, features, mask, train: bool = False):
    """(e (B, T, H) zero at padding, context: a_r, a_f, a, sc_rgb, sc_flow and in training with
    mix-up a_r_mix, a_f_mix)."""
    layers.split_streams(features, len(self.streams))  # ValueError unless D splits evenly.
    m = mask.astype(features.dtype)
    h_r, h_f, a_r, a_f = self._actionness(features, m, train)
    context = {'a_r': a_r, 'a_f': a_f, 'a': (1.0 - self.rgb_weight) * a_f + self.rgb_weight * a_r,
               'sc_rgb': self.fc(self._pool(h_r, m)), 'sc_flow': self.fc(self._pool(h_f, m))}
    if train and self.mixup:
      axis_name = bound_axis()
      mixed = features + global_roll(features, 1, axis_name)
      if self.mixup_normalize:
        mixed = 0.5 * mixed
      mix_mask = jnp.maximum(m, global_roll(m, 1, axis_name))
      _, _, context['a_r_mix'], context['a_f_mix'] = self._actionness(mixed, mix_mask, train)
    e = self.encoder(features, m, train)
    return e * m[..., None], context

  def heads(self, e, context, mask, train: bool = False) -> Dict[str, jax.Array]:
    """The outputs dict from e (B, T, H) and the context: s = bilinear(e), e' = e + a fc1(s),
    cas = cls(e'), cas_bg = cas (1 - a), sc = fc(s)."""
    del train  # No dropout after the encoder.
    m = mask.astype(e.dtype)
    a = context['a']
    s = self._pool(e, m)
    cas = self.cls(e + a[..., None] * self.fc1(s)[:, None, :]) * m[..., None]
    return dict(context, cas=cas, cas_bg=cas * (1.0 - a)[..., None], sc=self.fc(s))
