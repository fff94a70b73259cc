"""The training step: pmap and jit-over-mesh on 8 simulated CPU devices give the single-device
update; one compilation across the pDMI switch; non-finite batches are skipped; coupled decay."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from d2net_jax.training import parallel
from d2net_jax.training import train
from d2net_jax.training import train_state as train_state_lib
import train_fixtures

NUM_STEPS = 4  # pDMI is on at step 2 (start 1, every 2): the comparison covers both phases.


pytestmark = pytest.mark.usefixtures('fast_compile')


def _setup(**train_overrides):
  config = train_fixtures.tiny_config(**train_overrides)
  model, optimizer, state = train.build(config, config.data.num_classes, config.data.feature_dim)
  return config, train.make_step_fn(config, model, optimizer), state


def _run(runner, state, batches):
  state = runner.put_state(state)
  history = []
  for batch in batches:
    state, metrics = runner(state, runner.put_batch(batch))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


@pytest.fixture(scope='module')
def reference():
  """NUM_STEPS single-device steps on the global batches."""
  config, step_fn, state = _setup()
  batches = [train_fixtures.random_batch(seed) for seed in range(NUM_STEPS)]
  single = parallel.StepRunner(step_fn, 'jit', devices=jax.devices()[:1])
  return step_fn, state, batches, _run(single, state, batches)


def _assert_trees_close(actual, expected, what):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6,
                               err_msg=f'{what} {jax.tree_util.keystr(path)}')


@pytest.mark.parametrize('parallelism', ['pmap', 'jit'])
def test_eight_devices_match_single_device(reference, parallelism):
  step_fn, state, batches, (expected, expected_metrics) = reference
  assert jax.device_count() == 8
  runner = parallel.StepRunner(step_fn, parallelism)
  assert runner.num_devices == 8
  actual, metrics = _run(runner, state, batches)
  assert [m['denoise_on'] for m in metrics] == [m['denoise_on'] for m in expected_metrics]
  assert expected_metrics[-2]['denoise_on'] == 1.0 and expected_metrics[-1]['loss_dv'] != 0.0
  _assert_trees_close(actual.params, expected.params, 'params')
  _assert_trees_close(actual.opt_state, expected.opt_state, 'opt_state')
  _assert_trees_close(actual.x_ref, expected.x_ref, 'x_ref')
  assert np.any(actual.x_ref != 0)
  assert int(actual.step) == NUM_STEPS
  for got, want in zip(metrics, expected_metrics):
    for name in ('loss', 'loss_dis', 'loss_ds', 'loss_dv', 'grad_norm'):
      np.testing.assert_allclose(got[name], want[name], rtol=2e-5, err_msg=name)


def test_pmap_gradient_is_not_summed_over_devices(reference):
  """The trap this guards against: a gradient 8x too large (Adam's update alone would hide it)."""
  step_fn, state, batches, _ = reference
  first_moment = lambda s: optax.tree_utils.tree_get(s.opt_state, 'mu')
  single, _ = _run(parallel.StepRunner(step_fn, 'jit', devices=jax.devices()[:1]), state,
                   batches[:1])
  for parallelism in ('pmap', 'jit'):
    multi, _ = _run(parallel.StepRunner(step_fn, parallelism), state, batches[:1])
    ratio = optax.tree.norm(first_moment(multi)) / optax.tree.norm(first_moment(single))
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-4, err_msg=parallelism)


def test_step_compiles_once_across_pdmi_switch(reference):
  """No retrace from step 0 (pDMI off) through steps 2 (on) and 3 (off)."""
  step_fn, state, batches, _ = reference

  @chex.assert_max_traces(n=1)
  def counted(state, batch, axis_name=None):
    return step_fn(state, batch, axis_name=axis_name)

  runner = parallel.StepRunner(counted, 'pmap')
  _, metrics = _run(runner, state, batches)
  assert [m['denoise_on'] for m in metrics] == [0.0, 0.0, 1.0, 0.0]


def test_non_finite_batch_is_skipped():
  config, step_fn, state = _setup()
  runner = parallel.StepRunner(step_fn, 'pmap')
  batch = train_fixtures.random_batch(0)
  batch['features'][3, 2, 5] = np.nan
  new, metrics = _run(runner, state, [batch])
  assert metrics[0]['skipped'] == 1.0 and metrics[0]['num_skipped'] == 1.0
  assert not np.isfinite(metrics[0]['loss']) or not np.isfinite(metrics[0]['grad_norm'])
  chex.assert_trees_all_equal(new.params, jax.device_get(state.params))
  chex.assert_trees_all_equal(new.opt_state, jax.device_get(state.opt_state))
  chex.assert_trees_all_equal(new.x_ref, jax.device_get(state.x_ref))
  assert int(new.step) == 1 and int(new.num_skipped) == 1
  # The next, finite batch updates again.
  newer, metrics = _run(runner, new, [train_fixtures.random_batch(1)])
  assert metrics[0]['skipped'] == 0.0 and int(newer.num_skipped) == 1
  assert not np.allclose(newer.params['rgb']['conv1']['kernel'],
                         new.params['rgb']['conv1']['kernel'])
  del config


def test_coupled_weight_decay_is_adam_on_gradient_plus_decay():
  """torch.optim.Adam(weight_decay=wd): Adam of (g + wd * p); AdamW decays outside the moments."""
  config = train_fixtures.tiny_config(weight_decay=0.5, learning_rate=0.1)
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  grads = {'w': jnp.array([0.1, 0.2, -0.3])}
  coupled = train_state_lib.make_optimizer(config.train)
  updates, _ = coupled.update(grads, coupled.init(params), params)
  g = grads['w'] + 0.5 * params['w']
  # First Adam step: m_hat = g, v_hat = g^2, update = -lr * g / (|g| + eps).
  np.testing.assert_allclose(updates['w'], -0.1 * g / (jnp.abs(g) + 1e-8), rtol=1e-5, atol=1e-6)
  config.train.weight_decay_mode = 'decoupled'
  decoupled = train_state_lib.make_optimizer(config.train)
  updates, _ = decoupled.update(grads, decoupled.init(params), params)
  expected = -0.1 * (grads['w'] / (jnp.abs(grads['w']) + 1e-8) + 0.5 * params['w'])
  np.testing.assert_allclose(updates['w'], expected, rtol=1e-5, atol=1e-6)
  config.train.weight_decay_mode = 'l2'
  with pytest.raises(ValueError, match='weight_decay_mode'):
    train_state_lib.make_optimizer(config.train)


@pytest.mark.parametrize('dropout_rate', [0.0, 0.5])
def test_devices_draw_different_dropout_masks(dropout_rate):
  """The dropout key folds in the device index: two devices fed the same video drop differently."""
  config = train_fixtures.tiny_config()
  config.model.dropout_rate = dropout_rate
  config.train.seed = 0
  model, optimizer, state = train.build(config, config.data.num_classes, config.data.feature_dim)

  def spy_loss(outputs, batch, loss_state, loss_config, key, *, axis_name=None):
    """Loss: mean TCAM; aux: how much the two devices' TCAMs differ."""
    del batch, loss_config, key
    local = jnp.sum(outputs['tcam'])
    both = jax.lax.all_gather(local, axis_name)
    return jax.lax.pmean(local, axis_name), {'state': {'x_ref': loss_state['x_ref']},
                                             'device_gap': jnp.abs(both[0] - both[1])}

  step_fn = train.make_step_fn(config, model, optimizer, loss_fn=spy_loss)
  runner = parallel.StepRunner(step_fn, 'pmap', devices=jax.devices()[:2])
  video = train_fixtures.random_batch(0, batch_size=1)
  batch = {k: np.concatenate([v, v]) for k, v in video.items()}
  _, metrics = _run(runner, state, [batch])
  if dropout_rate:
    assert metrics[0]['device_gap'] > 1e-3
  else:
    assert metrics[0]['device_gap'] == 0.0


@pytest.mark.parametrize('compute_dtype', ['float32', 'bfloat16'])
def test_loss_decreases_on_a_small_set(compute_dtype):
  """40 steps over 4 fixed batches: the discriminative loss falls well below its start (in
  bfloat16 too: training still learns)."""
  config, step_fn, state = _setup(learning_rate=3e-3, compute_dtype=compute_dtype)
  runner = parallel.StepRunner(step_fn, 'jit', devices=jax.devices()[:1])
  batches = [train_fixtures.random_batch(seed % 4) for seed in range(40)]
  _, metrics = _run(runner, state, batches)
  losses = np.array([m['loss_dis'] for m in metrics])
  assert losses[-8:].mean() < 0.7 * losses[:8].mean(), losses
  del config
