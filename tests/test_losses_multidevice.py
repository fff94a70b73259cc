"""d2net_loss with `axis_name` inside pmap equals the single-device loss on the global batch.

4 of the 8 simulated CPU devices (tests/conftest.py), global batch of 8 videos, 2 per device.
JAX (0.10.2 checked) transposes psum and all_gather by summing the cotangents over the devices, so
each device's gradient is N times its share of the global gradient and lax.pmean of the
per-device parameter gradients is the global gradient.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import losses
from d2net_jax import model as model_lib

N_DEV, B, T, D, C = 4, 8, 12, 8, 3


def _global_batch(seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.array([12, 9, 7, 12, 4, 10, 6, 11])  # Video 4: too short, skipped.
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float64)
  features = rng.normal(size=(B, T, D)) * mask[..., None]
  labels = np.zeros((B, C))
  labels[np.arange(B), rng.integers(0, C - 1, B)] = 1  # The last class is missing.
  labels[5] = 0  # No positive label: skipped.
  return {'features': features, 'mask': mask, 'labels': labels}


def _shard(tree):
  return jax.tree_util.tree_map(lambda x: x.reshape((N_DEV, -1) + x.shape[1:]), tree)


def _unshard(x):
  return x.reshape((-1,) + x.shape[2:])


@pytest.fixture(scope='module')
def setup():
  with jax.enable_x64(True):
    mc = config_lib.model_config()
    mc.init_std = 0.3  # Spread activations well away from every threshold.
    mc.dropout_rate = 0.0
    model = model_lib.build_model(mc, C)
    batch = jax.tree_util.tree_map(jnp.asarray, _global_batch())
    params = model.init(jax.random.key(0), batch['features'], batch['mask'])['params']
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    x_ref = jnp.asarray(np.random.default_rng(1).normal(size=D // 2))
    state = {'x_ref': x_ref, 'step': jnp.asarray(1002, jnp.int32)}
    yield model, params, batch, state


@pytest.mark.parametrize('overrides', [
    {}, dict(x_ref_source='mean_bg', denoising='l1'),
    dict(pairing='official', snippet_pdmi='official', snippet_fg_attention='all_classes',
         joint_normalization='count')])
def test_pmap_loss_aux_and_gradients_equal_single_device(setup, overrides):
  model, params, batch, state = setup
  cfg = config_lib.loss_config()
  cfg.update(overrides)
  key = jax.random.key(5)
  with jax.enable_x64(True):

    def loss_fn(params, batch, axis_name=None):
      out = model.apply({'params': params}, batch['features'], batch['mask'], train=True)
      return losses.d2net_loss(out, batch, state, cfg, key, axis_name=axis_name)

    (loss, aux), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, batch)

    def per_device(params, batch):
      (loss, aux), g = jax.value_and_grad(
          functools.partial(loss_fn, axis_name='d'), has_aux=True)(params, batch)
      return loss, aux, lax.pmean(g, 'd')

    p_loss, p_aux, p_grads = jax.pmap(per_device, axis_name='d', in_axes=(None, 0),
                                      devices=jax.devices()[:N_DEV])(params, _shard(batch))

  assert float(aux['num_valid']) == 6 and float(aux['denoise_on']) == 1
  assert float(aux['num_ds']) > 0 and float(aux['dv_defined']) == 1
  assert float(aux['w_fb']) > 0
  for d in range(N_DEV):  # Identical global values on every device.
    np.testing.assert_allclose(p_loss[d], loss, rtol=1e-10)
    for k in aux:
      np.testing.assert_allclose(p_aux[k][d], aux[k], rtol=1e-10, atol=1e-14, err_msg=k)
  flat, flat_p = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(p_grads)
  assert any(np.any(np.asarray(g) != 0) for g in flat)
  for g, gp in zip(flat, flat_p):
    assert g.dtype == jnp.float64
    for d in range(N_DEV):
      np.testing.assert_allclose(gp[d], g, rtol=1e-8, atol=1e-12)


def test_output_gradients_are_n_times_the_local_share(setup):
  """Without pmean: each device's gradient w.r.t. its own outputs is N x the global gradient."""
  model, params, batch, state = setup
  cfg = config_lib.loss_config()
  key = jax.random.key(5)
  with jax.enable_x64(True):
    outputs = model.apply({'params': params}, batch['features'], batch['mask'])
    outputs = {k: outputs[k] for k in ('tcam', 'embeddings')}

    def loss_fn(outputs, batch, axis_name=None):
      return losses.d2net_loss(outputs, batch, state, cfg, key, axis_name=axis_name)[0]

    grads = jax.jit(jax.grad(loss_fn))(outputs, batch)
    p_grads = jax.pmap(jax.grad(functools.partial(loss_fn, axis_name='d')), axis_name='d',
                       devices=jax.devices()[:N_DEV])(_shard(outputs), _shard(batch))
  for k in outputs:
    assert np.any(np.asarray(grads[k]) != 0)
    np.testing.assert_allclose(_unshard(p_grads[k]), N_DEV * grads[k], rtol=1e-8, atol=1e-12)
