"""Building blocks several methods share: masked temporal convolutions, masked means, top-k pooling.

Every function keeps shapes static (masks, never boolean indexing) and treats snippets with mask 0
(padding) as absent: they never reach a valid snippet's output, a mean or a top-k.
"""

from typing import Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from d2net_jax.data import records

# The named axis a pmapped training step splits the batch over (training/parallel.py uses it; a
# method that needs the global batch, e.g. SAL's mix-up, asks for it by this name).
BATCH_AXIS = 'batch'


def stream_names(config) -> Tuple[str, ...]:
  """The streams of `config.data.streams`: ('rgb', 'flow') (the default), ('rgb',) or ('flow',).
  A method builds one branch per name over an equal share of the D feature channels."""
  return records.stream_names(config.data.get('streams', records.TWO_STREAMS))


def split_streams(features: jax.Array, count: int) -> Tuple[jax.Array, ...]:
  """(B, T, D) features as `count` equal channel blocks (RGB first, flow second with two);
  ValueError (one line) when D is not divisible."""
  dim = features.shape[-1]
  if dim % count:
    raise ValueError(f'feature dimension must be even (RGB + flow halves), got {dim}')
  width = dim // count
  return tuple(features[..., i * width:(i + 1) * width] for i in range(count))


def masked_conv(x: jax.Array, mask: jax.Array, features: int, kernel_size: int, *,
                dilation: int = 1, name: Optional[str] = None,
                kernel_init: Callable = nn.linear.default_kernel_init,
                bias_init: Callable = nn.initializers.zeros) -> jax.Array:
  """'SAME' temporal convolution of x (B, T, D_in) -> (B, T, features) that ignores padding.

  Padded snippets are zeroed before the convolution, so a valid snippet near the end of a video
  sees zeros there, exactly as it would in an unpadded sequence. The output at padded snippets is
  not zeroed (multiply by the mask where it matters). Call it inside a Flax `@nn.compact` method:
  the `nn.Conv` it makes is a submodule of the caller, named `name`.
  """
  m = mask[..., None].astype(x.dtype)
  return nn.Conv(features, (kernel_size,), kernel_dilation=(dilation,), padding='SAME',
                 kernel_init=kernel_init, bias_init=bias_init, name=name)(x * m)


def torch_default_init(fan_in: int):
  """(kernel_init, bias_init) of PyTorch's Conv1d / Linear default: U(+-1/sqrt(fan_in)) for both
  (kaiming_uniform with a = sqrt(5) is U(+-1/sqrt(fan_in)) for the kernel too)."""
  bound = 1.0 / max(fan_in, 1) ** 0.5

  def uniform(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return uniform, uniform


def masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """sum(values * weights) / max(sum(weights), 1) over all entries; NaN/inf at weight 0 ignored."""
  weights = weights.astype(values.dtype)
  total = jnp.sum(jnp.where(weights > 0, values * weights, 0.0))
  return total / jnp.maximum(jnp.sum(weights), 1.0)


def masked_time_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """(..., F) mean over the valid snippets of values (..., T, F); 0 without valid snippets."""
  m = mask[..., None].astype(values.dtype)
  return jnp.sum(values * m, axis=-2) / jnp.maximum(jnp.sum(m, axis=-2), 1.0)


def topk_pool(tcam: jax.Array, mask: jax.Array, ratio: float = 8) -> jax.Array:
  """Video-level prediction p (..., C): per class, the mean of the top-k valid activations.

  tcam (..., T, C), mask (..., T); k = ceil(s / ratio) with s the number of valid snippets
  (D2-Net Eq. 4's pooling: ratio 8; official code: 4 for the 100 classes of ActivityNet1.2).
  Static shapes: the masked TCAM is sorted and the first k ranks averaged. 0 for a video without
  valid snippets.
  """
  valid = mask > 0
  length = jnp.sum(valid, axis=-1).astype(tcam.dtype)
  k = jnp.ceil(length / ratio)
  ranked = -jnp.sort(-jnp.where(valid[..., None], tcam, -jnp.inf), axis=-2)
  rank = jnp.arange(tcam.shape[-2], dtype=tcam.dtype)[:, None]
  top = rank < k[..., None, None]
  return jnp.sum(jnp.where(top, ranked, 0.0), axis=-2) / jnp.maximum(k, 1.0)[..., None]


def topk_gather_mean(select: jax.Array, values: jax.Array, mask: jax.Array,
                     k: jax.Array) -> jax.Array:
  """Per column, the mean of `values` at the k valid snippets where `select` is largest.

  select, values (..., T, C); mask (..., T); k (...,) or a scalar, the count per video (clipped
  to [1, valid snippets]). Selection carries no gradient; the mean is differentiable in `values`.
  Ties in `select` are broken by the lower snippet index (a stable sort). This is the MIL pooling
  of SAL and the CO2-Net lineage ("select by one score, average another"); with select = values
  and k = ceil(s / r) it equals `topk_pool`.
  """
  valid = mask > 0
  length = jnp.sum(valid, axis=-1)
  k = jnp.clip(jnp.asarray(k), 1, jnp.maximum(length, 1)).astype(values.dtype)
  order = jnp.argsort(-jnp.where(valid[..., None], jax.lax.stop_gradient(select), -jnp.inf),
                      axis=-2, stable=True)
  ranked = jnp.take_along_axis(values, order, axis=-2)
  rank = jnp.arange(values.shape[-2], dtype=values.dtype)[:, None]
  top = rank < k[..., None, None]
  total = jnp.sum(jnp.where(top, ranked, 0.0), axis=-2)
  return jnp.where((length > 0)[..., None], total / k[..., None], 0.0)


def topk_indicator(scores: jax.Array, mask: jax.Array, k: jax.Array) -> jax.Array:
  """(..., T) float 1 on the k valid snippets of largest `scores` (..., T), else 0 (no gradient).

  Ties broken by the lower index. k (...,) or scalar, clipped to the valid count.
  """
  valid = mask > 0
  order = jnp.argsort(-jnp.where(valid, jax.lax.stop_gradient(scores), -jnp.inf), axis=-1,
                      stable=True)
  ranks = jnp.argsort(order, axis=-1, stable=True)
  k = jnp.minimum(jnp.asarray(k), jnp.sum(valid, axis=-1))
  return ((ranks < jnp.asarray(k)[..., None]) & valid).astype(scores.dtype)


def global_sum(x, axis_name: Optional[str]):
  """psum over the device axis inside pmap (global-batch sums); x itself without an axis."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def cast_floats(tree, dtype):
  """Every floating-point leaf of `tree` as `dtype`, other leaves unchanged (mixed precision)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tree)
