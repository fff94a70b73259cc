"""Shared building blocks (d2net_jax/methods/layers.py) against NumPy references; padding ignored."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax.methods import layers


def _random(seed, shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _mask(lengths, length):
  return (np.arange(length)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


def _topk_gather_mean_reference(select, values, mask, k):
  """Per video and class: mean of values at the k valid snippets of largest select (stable)."""
  batch, _, classes = select.shape
  out = np.zeros((batch, classes))
  for b in range(batch):
    valid = np.flatnonzero(mask[b] > 0)
    if valid.size == 0:
      continue
    kb = int(min(max(k[b], 1), valid.size))
    for c in range(classes):
      order = valid[np.argsort(-select[b, valid, c], kind='stable')][:kb]
      out[b, c] = values[b, order, c].mean()
  return out


def test_topk_gather_mean_matches_reference():
  select, values = _random(0, (4, 12, 3)), _random(1, (4, 12, 3))
  select[2, :, 1] = 0.5  # Ties: broken by the lower index.
  mask = _mask([12, 7, 1, 0], 12)
  k = np.array([3, 2, 5, 4])
  got = layers.topk_gather_mean(jnp.asarray(select), jnp.asarray(values), jnp.asarray(mask), k)
  np.testing.assert_allclose(got, _topk_gather_mean_reference(select, values, mask, k),
                             rtol=1e-6, atol=1e-7)


def test_topk_gather_mean_equals_topk_pool_when_select_is_values():
  tcam = jax.nn.sigmoid(_random(2, (3, 20, 4)))
  mask = _mask([20, 13, 5], 20)
  k = np.ceil(mask.sum(-1) / 8)
  np.testing.assert_allclose(layers.topk_gather_mean(tcam, tcam, mask, k),
                             layers.topk_pool(tcam, mask, 8), rtol=1e-6)


def test_topk_gather_mean_gradient_reaches_values_only():
  select, values = jnp.asarray(_random(3, (2, 9, 2))), jnp.asarray(_random(4, (2, 9, 2)))
  mask = jnp.asarray(_mask([9, 6], 9))
  g_select, g_values = jax.grad(
      lambda s, v: jnp.sum(layers.topk_gather_mean(s, v, mask, jnp.array([2, 3]))),
      argnums=(0, 1))(select, values)
  assert not np.any(g_select)
  # Each selected (video, class) snippet gets 1 / k; padded snippets get nothing.
  np.testing.assert_allclose(np.asarray(g_values).sum(axis=1), [[1, 1], [1, 1]], rtol=1e-6)
  assert not np.any(np.asarray(g_values)[1, 6:])


def test_topk_indicator():
  scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.2], [3.0, 2.0, 1.0, 0.0, 9.0]], np.float32)
  mask = _mask([5, 3], 5)
  got = layers.topk_indicator(jnp.asarray(scores), jnp.asarray(mask), jnp.array([2, 5]))
  np.testing.assert_array_equal(got, [[0, 1, 0, 1, 0], [1, 1, 1, 0, 0]])


def test_masked_means():
  values = _random(5, (2, 6, 3))
  mask = _mask([6, 2], 6)
  np.testing.assert_allclose(layers.masked_time_mean(values, mask),
                             [values[0].mean(0), values[1, :2].mean(0)], rtol=1e-6)
  weights = np.array([1.0, 0.0, 2.0])
  np.testing.assert_allclose(layers.masked_mean(jnp.array([1.0, jnp.nan, 4.0]), weights), 3.0)


class _Conv(nn.Module):
  @nn.compact
  def __call__(self, x, mask):
    return layers.masked_conv(x, mask, 4, 3, dilation=2, name='conv')


def test_masked_conv_ignores_padding():
  """Valid outputs of a padded video equal those of the unpadded video."""
  x = _random(6, (1, 7, 5))
  model = _Conv()
  params = model.init(jax.random.PRNGKey(0), x, np.ones((1, 7), np.float32))
  short = model.apply(params, x, np.ones((1, 7), np.float32))
  padded_x = np.concatenate([x, np.full((1, 5, 5), 9.0, np.float32)], axis=1)
  padded = model.apply(params, padded_x, _mask([7], 12))
  np.testing.assert_allclose(padded[:, :7], short, rtol=1e-6, atol=1e-6)
  assert set(params['params']) == {'conv'}  # The Conv is the caller's submodule, named.


@pytest.mark.parametrize('fan_in', [3, 512])
def test_torch_default_init_bounds(fan_in):
  kernel_init, bias_init = layers.torch_default_init(fan_in)
  w = kernel_init(jax.random.PRNGKey(0), (1000,))
  bound = 1 / np.sqrt(fan_in)
  assert np.all(np.abs(w) <= bound) and np.abs(w).max() > 0.9 * bound
  assert bias_init(jax.random.PRNGKey(1), (3,)).shape == (3,)
