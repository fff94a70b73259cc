"""Every registered method through the shared trainer: the checks a new method gets by registering.

For each method of `d2net_jax.methods.names()`, and DFE over its other bases (VARIANTS), on a tiny
config (its `smoke_overrides` and those of the method it wraps applied):
one training step compiles once (under jit on one device and pmap over 4); pmap and jit over 4
simulated devices give the single-device update (params, optimizer state, method state, metrics)
over 3 steps; a run checkpointed after step 1 and restored continues exactly as an uninterrupted
one; the inference forward ignores
padding and returns the arrays `d2net-jax plot` draws; its localizer turns them into detections.
"""

import chex
import jax
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import inference
from d2net_jax import localize
from d2net_jax import methods
from d2net_jax.training import checkpointing
from d2net_jax.training import parallel
from d2net_jax.training import train
import train_fixtures

NUM_STEPS = 3
# Preset arguments (configs/<preset>.py:<arg>): every method ('dfe': over its default base,
# co2net), and DFE over SAL (DFE over D2-Net: tests/test_dfe.py, whose default base it is).
# Such a combination gets the checks the combination can break: pmap over 4 devices (SAL's mix-up
# pairs and running statistics next to DFE's memory, over the global batch) and inference
# (padding, its base's localizer); the trace, resume, jit and bfloat16 checks run the same code
# as its method's and its base's own variants, and are skipped to keep the suite short.
VARIANTS = methods.names() + ('dfe,base=sal',)


pytestmark = pytest.mark.usefixtures('fast_compile')


def _config(variant):
  config = train_fixtures.tiny_config()
  config.preset = f'tests/test_methods.py:{variant}'
  config.method, _, values = config_lib.parse_preset_arg(variant, 'tests/test_methods.py',
                                                         keys=config_lib.PRESET_KEYS)
  config_lib.apply_preset_values(config, values, 'tests/test_methods.py')
  config_lib.apply_overrides(config, methods.resolve_smoke_overrides(config))
  # Dropout masks differ between device counts by construction: compare without dropout.
  config_lib.apply_overrides(config, {f: 0.0 for f in methods.resolve_dropout_fields(config)})
  return config


def _skip_combination(config, check: str):
  """Skips `check` for the VARIANTS that are combinations (see VARIANTS)."""
  variant = config.preset.partition(':')[2]
  if variant not in methods.names():
    pytest.skip(f'{check} of {variant}: the same code as its method\'s and base\'s variants')


def _batches(config):
  """Global batches of the method's sampling (resample: every row fully valid)."""
  from d2net_jax.data import batching  # pylint: disable=import-outside-toplevel
  full = methods.resolve_sampling(config) == 'resample'
  batches = [train_fixtures.random_batch(seed) for seed in range(NUM_STEPS)]
  if full:
    for b in batches:
      b['features'] = train_fixtures.random_batch(100)['features'] + b['features']
      b['mask'] = np.ones_like(b['mask'])
  if methods.resolve_batch_sampler(config) == 'similar_pairs':  # Groups share a class (CO2-Net).
    size = config.data.similar_size
    for b in batches:
      for g in range(config.data.num_similar):
        b['labels'][g * size:(g + 1) * size] = b['labels'][g * size]
  return batches


def _counted(step_fn):
  """`step_fn` and a list that gets one entry per trace (Python runs only while tracing)."""
  traces = []

  def counted(state, batch, axis_name=None):
    traces.append(axis_name)
    return step_fn(state, batch, axis_name=axis_name)

  return counted, traces


def _run(runner, state, batches):
  state = runner.put_state(state)
  history = []
  for batch in batches:
    state, metrics = runner(state, runner.put_batch(batch))
    history.append(jax.device_get(metrics))
  return jax.device_get(state), history


def _close(actual, expected, what, rtol=2e-5, atol=1e-6):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
                               err_msg=f'{what} {jax.tree_util.keystr(path)}')


@pytest.fixture(scope='module', params=VARIANTS, ids=lambda v: v.replace(',base=', '_over_'))
def method_run(request):
  """(config, model, step_fn, initial state, batches, single-device result, the single-device
  runner, its traces over the NUM_STEPS steps) of one method. The runner is compiled once per
  module and reused by the tests that need a single-device step."""
  config = _config(request.param)
  model, optimizer, state = train.build(config, train_fixtures.NUM_CLASSES,
                                        train_fixtures.FEATURE_DIM)
  step_fn = train.make_step_fn(config, model, optimizer)
  batches = _batches(config)
  counted, traces = _counted(step_fn)
  single = parallel.StepRunner(counted, 'jit', devices=jax.devices()[:1])
  result = _run(single, state, batches)
  return config, model, step_fn, state, batches, result, single, list(traces)


# DFE over SAL: SAL's signed square root sign(g) sqrt(|g| + 1e-5) in its bilinear pooling has a
# second derivative of order 1 / (4 (|g| + 1e-5)^1.5). SAL pools ReLU features (gram entries >= 0);
# over DFE it pools LFE's / GFE's signed features, whose gram entries come within 1e-5 of 0, where
# the float32 rounding that differs between 1 and 4 devices moves the gradient of CE(sc) by ~6e-6
# relative (measured on this test's third step; the other terms 4e-7 to 2e-6). Adam's first
# moment of SAL's encoder then differs by up to 4e-6 after three steps (2.3e-6 before the global
# branch was limited to the feature terms): noise, not a different update.
OPT_STATE_ATOL = {'dfe,base=sal': 5e-6}


@pytest.mark.parametrize('parallelism', ['pmap', 'jit'])
def test_four_devices_match_single_device(method_run, parallelism):
  config, _, step_fn, state, batches, (expected, expected_metrics), _, _ = method_run
  if parallelism == 'jit':
    _skip_combination(config, 'jit over 4 devices')
  counted, traces = _counted(step_fn)
  runner = parallel.StepRunner(counted, parallelism, devices=jax.devices()[:4])
  assert runner.num_devices == 4
  actual, metrics = _run(runner, state, batches)
  assert int(actual.step) == NUM_STEPS
  assert len(traces) == 1  # One compilation for all steps, across the pDMI switch.
  assert not any(m['skipped'] for m in expected_metrics), config.method
  _close(actual.params, expected.params, 'params')
  _close(actual.opt_state, expected.opt_state, 'opt_state',
         atol=OPT_STATE_ATOL.get(config.preset.partition(':')[2], 1e-6))
  _close(actual.method_state, expected.method_state, 'method_state')
  for got, want in zip(metrics, expected_metrics):
    assert set(got) == set(want)
    for name in want:
      np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=1e-6, err_msg=name)
  # The update really moved the parameters.
  moved = [np.any(a != b) for a, b in zip(jax.tree.leaves(actual.params),
                                          jax.tree.leaves(jax.device_get(state.params)))]
  assert any(moved)


def test_step_compiles_once(method_run):
  """The fixture's NUM_STEPS single-device steps (both pDMI phases) traced the step once; pmap
  over 4 devices is checked in test_four_devices_match_single_device (the same compilation)."""
  config, *_, traces = method_run
  _skip_combination(config, 'one trace')
  assert traces == [None]


def test_exact_resume(method_run, tmp_path):
  """Checkpoint after step 1, restore into a fresh template, continue: bit-identical."""
  config, _, _, state, batches, (expected, _), runner, _ = method_run
  _skip_combination(config, 'exact resume')
  first, _ = _run(runner, state, batches[:1])  # The fixture's compiled single-device step.
  checkpointer = checkpointing.Checkpointer(tmp_path, async_save=False)
  checkpointer.save(first)
  checkpointer.wait()
  _, _, template = train.build(config, train_fixtures.NUM_CLASSES, train_fixtures.FEATURE_DIM)
  restored = checkpointer.restore_latest(template)
  checkpointer.close()
  chex.assert_trees_all_equal(restored, first)
  resumed, _ = _run(runner, restored, batches[1:])
  chex.assert_trees_all_equal(resumed, expected)


def test_inference_ignores_padding_and_localizes(method_run):
  config, model, _, _, batches, (trained, _), _, _ = method_run
  forward = inference.make_forward(model, config)
  batch = batches[0]
  length = train_fixtures.LENGTH
  snippet, video = jax.device_get(forward(trained.params, trained.method_state,
                                          batch['features'][:1], batch['mask'][:1]))
  assert snippet['tcam'].shape == (1, length, train_fixtures.NUM_CLASSES)
  assert snippet['attention'].shape == (1, length)
  padded_features = np.concatenate([batch['features'][:1], np.full((1, 8, train_fixtures.FEATURE_DIM), 7.0,
                                                                    np.float32)], axis=1)
  padded_mask = np.concatenate([batch['mask'][:1], np.zeros((1, 8), np.float32)], axis=1)
  padded, padded_video = jax.device_get(forward(trained.params, trained.method_state,
                                                padded_features, padded_mask))
  for name, value in snippet.items():
    np.testing.assert_allclose(padded[name][:, :length], value, rtol=1e-5, atol=1e-6,
                               err_msg=name)
  for name, value in video.items():
    np.testing.assert_allclose(padded_video[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  s = int(batch['mask'][0].sum())
  found = localize.localize_outputs(
      methods.resolve_localizer(config), {k: v[0, :s] for k, v in snippet.items()},
      {k: v[0] for k, v in video.items()}, 0.64, config)
  assert isinstance(found, localize.Detections)
  assert np.all(found.end > found.start) and np.all(found.start >= 0)
  assert np.all(found.end <= s * 0.64 + 1e-6)


def test_unknown_method_is_one_line():
  config = train_fixtures.tiny_config()
  config.method = 'no_such_method'
  with pytest.raises(train.ConfigError, match="config.method='no_such_method'.*d2net"):
    train.validate_config(config)


# bfloat16 against float32, one step from the same state: relative error of the loss and of the
# gradient (as a vector) below these bounds, and the gradients' cosine above BF16_GRAD_COSINE.
# bfloat16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.2% per operation). The gradient bound
# is looser because losses with thresholds (D2-Net's Eq. 2 attention and Eq. 9 pseudo-labels, SAL's
# top-k pseudo-labels) are piecewise: bfloat16 rounding moves a few snippets across a threshold
# or a top-k boundary (D2-Net's tiny config: 14% relative, cosine 0.99).
BF16_LOSS_RTOL = 0.05
BF16_GRAD_RTOL = 0.2
BF16_GRAD_COSINE = 0.98


def test_bfloat16_step_stays_close_to_float32(method_run):
  config, model, _, state, batches, *_ = method_run
  _skip_combination(config, 'bfloat16')
  loss_fn = methods.get(config.method).loss_fn
  results = {}
  for dtype in ('float32', 'bfloat16'):
    config.train.compute_dtype = dtype
    results[dtype] = jax.device_get(jax.jit(lambda s, b: train.loss_and_grads(
        s, b, model=model, config=config, loss_fn=loss_fn))(state, batches[0]))
  config.train.compute_dtype = 'float32'
  (loss32, _), grads32 = results['float32']
  (loss16, _), grads16 = results['bfloat16']
  assert np.isfinite(loss16) and loss16.dtype == np.float32
  assert abs(loss16 - loss32) <= BF16_LOSS_RTOL * abs(loss32), (loss16, loss32)
  g32 = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads32)])
  g16 = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads16)])
  assert all(g.dtype == np.float32 for g in jax.tree.leaves(grads16))
  assert np.linalg.norm(g16 - g32) <= BF16_GRAD_RTOL * np.linalg.norm(g32)
  cosine = g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32))
  assert cosine >= BF16_GRAD_COSINE, cosine
