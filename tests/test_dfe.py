"""DFE (d2net_jax/methods/dfe): NumPy references of the memory update, the GFE attention and the
distillation terms, float64 finite-difference gradients, the stop-gradient teacher, padding
invariance, the local-only inference export (the state and export tests for both bases), and
D2-Net's numbers through the 'd2net' base. DFE over SAL's own checks: tests/test_dfe_sal.py; the
base interface and the global branch's terms: tests/test_dfe_bases.py.

The method-generic checks (pmap / jit == one device, exact resume, inference padding) run for
'dfe' (and 'dfe' over SAL) in tests/test_methods.py.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.methods import dfe
from d2net_jax.methods.d2net import model as d2net_model
from d2net_jax.methods.dfe import memory as memory_lib
from d2net_jax.methods.dfe import modules
import train_fixtures

C, D, T = train_fixtures.NUM_CLASSES, train_fixtures.FEATURE_DIM, train_fixtures.LENGTH


pytestmark = pytest.mark.usefixtures('fast_compile')


@contextlib.contextmanager
def float64():
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', previous)


def _config(base='d2net', **dfe_overrides):
  """The tiny config with DFE over `base` (its smoke overrides, no dropout); D2-Net's denoising
  terms off (SVDs are slow to compile and tests/test_methods.py runs them through DFE)."""
  config = train_fixtures.tiny_config()
  config.method = 'dfe'
  config.dfe.base = base
  config.loss.denoising = 'none'
  config_lib.apply_overrides(config, methods.resolve_smoke_overrides(config))
  config_lib.apply_overrides(config, {f: 0.0 for f in methods.resolve_dropout_fields(config)})
  config_lib.apply_overrides(config, {f'dfe.{k}': v for k, v in dfe_overrides.items()})
  return config


def _init(config, seed=0):
  model = dfe.build_model(config, C, D)
  batch = train_fixtures.random_batch(seed)
  params = model.init(jax.random.PRNGKey(seed), batch['features'], batch['mask'])['params']
  return model, params, batch


def _train_forward(model, params, batch, state, config):
  """The training forward as the trainer runs it: with DFE's `train_inputs` (the memory)."""
  return model.apply({'params': params}, batch['features'], batch['mask'], train=True,
                     rngs={'dropout': jax.random.PRNGKey(1)},
                     **dfe.train_inputs(state, batch, config))


def _normalize(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# The 'd2net' base is D2-Net.


def test_d2net_base_is_d2net_with_the_same_parameters():
  config = _config(**{'lfe.kind': 'none'})
  model, params, batch = _init(config)
  d2 = d2net_model.build_model(config.model, C)
  d2_params = d2.init(jax.random.PRNGKey(3), batch['features'], batch['mask'])['params']
  assert (jax.tree.structure(d2_params) == jax.tree.structure(params['base']))
  params = dict(params, base=d2_params)
  expected = d2.apply({'params': d2_params}, batch['features'], batch['mask'])
  got = model.apply({'params': params}, batch['features'], batch['mask'])
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Memory (GMM).


def _reference_update(memory, filled, features, cas, mask, labels, ratio, momentum):
  """NumPy: r_bc over the top-k_m of cas, label-weighted batch means, EMA with normalisation."""
  memory = memory.copy()
  filled = filled.copy()
  num = np.zeros(memory.shape[::2])
  den = np.zeros(memory.shape[0])
  for b in range(features.shape[0]):
    s = int(mask[b].sum())
    if s == 0:
      continue
    k = max(1, s // ratio)
    for c in range(memory.shape[0]):
      if labels[b, c] > 0:
        top = np.argsort(-cas[b, :s, c], kind='stable')[:k]
        num[c] += features[b, top].mean(0)
        den[c] += 1
  for c in range(memory.shape[0]):
    if den[c] == 0:
      continue  # Absent: untouched.
    rbar = _normalize(num[c] / den[c])
    if filled[c]:
      memory[c, 0] = _normalize(momentum * memory[c, 0] + (1 - momentum) * rbar)
    else:
      memory[c, 0] = rbar
    filled[c] = True
  return memory, filled


def _memory_step(memory, filled, features, cas, mask, labels, ratio, momentum, axis_name=None):
  r = memory_lib.class_representations(features, cas, mask, ratio)
  rbar, present = memory_lib.batch_class_means(r, labels, mask, True, axis_name)
  return memory_lib.update_memory(memory, filled, rbar, present, momentum, True)


def test_memory_update_matches_numpy():
  rng = np.random.default_rng(0)
  num_classes, width, batch_size = 4, 5, 6
  features = rng.normal(size=(batch_size, T, width)).astype(np.float32)
  cas = rng.normal(size=(batch_size, T, num_classes)).astype(np.float32)
  mask = (np.arange(T)[None] < rng.integers(3, T + 1, batch_size)[:, None]).astype(np.float32)
  mask[-1] = 0  # A video without valid snippets adds nothing.
  labels = np.zeros((batch_size, num_classes), np.float32)
  labels[:, 0] = 1  # Class 0 in every video; class 1 in two; class 2 only in the empty video.
  labels[1:3, 1] = 1
  labels[-1, 2] = 1  # Class 3 is absent.
  features *= mask[..., None]
  memory = _normalize(rng.normal(size=(num_classes, 1, width))).astype(np.float32)
  filled = np.array([True, False, True, True])  # 0: EMA; 1: first fill; 2, 3: untouched.
  got_m, got_f = _memory_step(memory, filled, features, cas, mask, labels, 3, 0.9)
  want_m, want_f = _reference_update(memory, filled, features, cas, mask, labels, 3, 0.9)
  np.testing.assert_allclose(got_m, want_m, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got_f, want_f)
  np.testing.assert_array_equal(got_m[2:], memory[2:])  # Absent classes untouched.
  assert not np.allclose(got_m[:2], memory[:2])  # Present classes moved.
  # From an empty memory: the first fill is the normalised batch mean itself.
  empty = memory_lib.init_memory(num_classes, 1, width)
  got_m, got_f = _memory_step(empty['memory'], empty['filled'], features, cas, mask, labels, 3,
                              0.9)
  want_m, _ = _reference_update(np.zeros_like(memory), np.zeros(num_classes, bool), features,
                                cas, mask, labels, 3, 0.9)
  np.testing.assert_allclose(got_m, want_m, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got_f, [True, True, False, False])


def test_memory_update_under_pmap_uses_the_global_batch():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(8, T, 5)).astype(np.float32)
  cas = rng.normal(size=(8, T, 3)).astype(np.float32)
  mask = np.ones((8, T), np.float32)
  labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
  empty = memory_lib.init_memory(3, 1, 5)
  want = _memory_step(empty['memory'], empty['filled'], features, cas, mask, labels, 4, 0.9)
  shard = lambda x: x.reshape((4, 2) + x.shape[1:])
  got = jax.pmap(lambda f, c, m, y: _memory_step(empty['memory'], empty['filled'], f, c, m, y,
                                                  4, 0.9, axis_name='d'),
                 axis_name='d', devices=jax.devices()[:4])(
                     shard(features), shard(cas), shard(mask), shard(labels))
  for device in range(4):
    np.testing.assert_allclose(got[0][device], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1][device], want[1])


# The base's own state, as dfe.init_state holds it next to the memory.
BASE_STATE = {'d2net': ('x_ref',), 'sal': ('prob_max_mu', 'prob_max_var')}


@pytest.mark.parametrize('base', ['d2net', 'sal'])
def test_training_updates_the_memory_and_keeps_the_base_state(base):
  """A memory that is never updated (or never filled), or a base state that is lost or frozen
  (D2-Net's x_ref, SAL's running mean and variance), fails here."""
  config = _config(base)
  model, params, batch = _init(config)
  initial = dfe.init_state(config, C, D)
  assert set(initial) == set(BASE_STATE[base]) | {'memory', 'filled'}
  width = config.sal.hidden if base == 'sal' else D
  assert initial['memory'].shape == (C, 1, width)
  state = dict(initial, step=jnp.array(0))

  @jax.jit
  def step(params, batch, state):
    outputs = _train_forward(model, params, batch, state, config)
    return dfe.loss_fn(outputs, batch, state, config, jax.random.PRNGKey(2))[1]

  aux = step(params, batch, state)
  new = aux['state']
  assert set(new) == set(initial)
  present = batch['labels'].max(0) > 0
  np.testing.assert_array_equal(new['filled'], present)
  assert np.all(np.abs(np.asarray(new['memory'])[present]).sum(-1) > 0)
  np.testing.assert_allclose(np.linalg.norm(new['memory'][present], axis=-1), 1.0, rtol=1e-5)
  for name in BASE_STATE[base]:  # The base's state is still updated.
    assert np.any(np.asarray(new[name]) != np.asarray(initial[name])), name
  if base == 'sal':  # SAL's terms, mix-up included, are in the local loss.
    assert float(aux['loss_mix']) > 0 and 'global_loss_mix' not in aux  # Not in the global.
    assert float(aux['global_loss_mil']) > 0
    assert float(aux['kd_att']) == 0.0  # a comes from the raw features: the same in both.


# ---------------------------------------------------------------------------------------------
# GFE: cross-attention to the memory with empty slots masked out.


def _gfe_reference(p, f_l, mask, memory, filled, temperature):
  """NumPy GFE (no gate, no dropout)."""
  def dense(x, q):
    return x @ np.asarray(q['kernel'], np.float64) + np.asarray(q.get('bias', 0.0), np.float64)
  mu = f_l.mean(-1, keepdims=True)
  var = f_l.var(-1, keepdims=True)
  ln = (f_l - mu) / np.sqrt(var + 1e-6) * np.asarray(p['ln']['scale']) + np.asarray(p['ln']['bias'])
  mem = memory.reshape(-1, memory.shape[-1])
  q, k, v = dense(ln, p['query']), dense(mem, p['key']), dense(mem, p['value'])
  ok = np.repeat(filled, memory.shape[1])
  if not ok.any():
    return f_l * mask[..., None]
  logits = q @ k.T / (np.sqrt(q.shape[-1]) * temperature)
  logits = np.where(ok, logits, -np.inf)
  a = np.exp(logits - logits.max(-1, keepdims=True))
  a /= a.sum(-1, keepdims=True)
  g = dense(a @ v, p['out'])
  return (f_l + g) * mask[..., None]


@pytest.mark.parametrize('filled', [[True, False, True], [False, False, False],
                                    [False, True, False]])
def test_gfe_matches_numpy_with_masked_slots(filled):
  rng = np.random.default_rng(2)
  width, slots = 6, 2
  gfe = modules.GFE(proj_dim=4, temperature=0.7, dropout=0.0)
  f_l = rng.normal(size=(2, 5, width)).astype(np.float32)
  mask = np.ones((2, 5), np.float32)
  mask[1, 3:] = 0
  f_l *= mask[..., None]
  memory = rng.normal(size=(3, slots, width)).astype(np.float32)
  filled = np.array(filled)
  params = gfe.init(jax.random.PRNGKey(0), f_l, mask, memory, filled)['params']
  got = gfe.apply({'params': params}, f_l, mask, memory, filled)
  want = _gfe_reference(jax.device_get(params), f_l.astype(np.float64), mask, memory, filled, 0.7)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # An empty slot's content never matters.
  changed = memory.copy()
  changed[~filled] += 100.0
  np.testing.assert_allclose(gfe.apply({'params': params}, f_l, mask, changed, filled), got,
                             rtol=1e-6, atol=1e-6)


def test_gfe_gradients_float64():
  with float64():
    rng = np.random.default_rng(3)
    gfe = modules.GFE(proj_dim=3, temperature=1.0, dropout=0.0, gate=True)
    f_l = jnp.asarray(rng.normal(size=(1, 4, 4)))
    mask = jnp.asarray([[1.0, 1.0, 1.0, 0.0]])
    memory = jnp.asarray(rng.normal(size=(3, 1, 4)))
    filled = jnp.asarray([True, False, True])
    params = gfe.init(jax.random.PRNGKey(0), f_l, mask, memory, filled)['params']
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    fn = jax.jit(lambda p, f: jnp.sum(jnp.sin(gfe.apply({'params': p}, f, mask, memory,
                                                          filled))))
    check_grads(fn, (params, f_l), order=1, modes=['rev'], atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Distillation terms.


def _kd_inputs(seed=4, dtype=np.float32):
  rng = np.random.default_rng(seed)
  cas_l, cas_g = (rng.normal(size=(3, 6, 4)).astype(dtype) for _ in range(2))
  mask = np.ones((3, 6), dtype)
  mask[1, 4:] = 0
  mask[2, 2:] = 0
  return cas_l, cas_g, mask


def test_distillation_terms_match_numpy():
  cas_l, cas_g, mask = _kd_inputs()
  tau = 2.0
  def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))
  lp, lq = log_softmax(cas_g / tau), log_softmax(cas_l / tau)
  kl = (np.exp(lp) * (lp - lq)).sum(-1)
  want = tau ** 2 * (kl * mask).sum() / mask.sum()
  np.testing.assert_allclose(memory_lib.kd_cas(cas_l, cas_g, mask, tau), want, rtol=1e-5)
  sig = lambda x: 1 / (1 + np.exp(-x))
  p, q = sig(cas_g / tau), sig(cas_l / tau)
  bkl = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).sum(-1)
  np.testing.assert_allclose(memory_lib.kd_cas(cas_l, cas_g, mask, tau, 'sigmoid'),
                             tau ** 2 * (bkl * mask).sum() / mask.sum(), rtol=1e-5)
  att_l, att_g = cas_l[..., 0], cas_g[..., 0]
  np.testing.assert_allclose(memory_lib.kd_att(att_l, att_g, mask),
                             (((att_l - att_g) ** 2) * mask).sum() / mask.sum(), rtol=1e-5)
  np.testing.assert_allclose(memory_lib.kd_feat(cas_l, cas_g, mask),
                             (((cas_l - cas_g) ** 2).mean(-1) * mask).sum() / mask.sum(),
                             rtol=1e-5)
  # Teacher == student: zero.
  assert abs(float(memory_lib.kd_cas(cas_l, cas_l, mask))) < 1e-6


def test_distillation_gradients_float64_and_teacher_gets_none():
  with float64():
    cas_l, cas_g, mask = (jnp.asarray(x) for x in _kd_inputs(5, np.float64))
    for fn in (lambda l, g: memory_lib.kd_cas(l, g, mask, 1.5),
               lambda l, g: memory_lib.kd_cas(l, g, mask, 1.5, 'sigmoid'),
               lambda l, g: memory_lib.kd_att(l[..., 0], g[..., 0], mask),
               lambda l, g: memory_lib.kd_feat(l, g, mask)):
      check_grads(lambda l: fn(l, cas_g), (cas_l,), order=1, modes=['rev'], atol=1e-7,
                  rtol=1e-6)
      assert np.all(np.asarray(jax.grad(fn, argnums=1)(cas_l, cas_g)) == 0)


def test_distillation_does_not_train_the_teacher():
  """d L_kd / d(GFE parameters) = 0 (a gradient leaking into the teacher fails here), while the
  local branch (LFE) does get a gradient from L_kd."""
  config = _config(**{'loss.w_local': 0.0, 'loss.w_global': 0.0, 'loss.lambda_kd': 1.0,
                      'loss.w_kd_feat': 1.0})
  model, params, batch = _init(config)
  empty = dfe.init_state(config, C, D)
  rng = np.random.default_rng(0)
  memory = _normalize(rng.normal(size=empty['memory'].shape)).astype(np.float32)
  state = dict(empty, memory=memory, filled=np.array([True, True, False]), step=jnp.array(0))

  def loss(p):
    outputs = _train_forward(model, p, batch, state, config)
    return dfe.loss_fn(outputs, batch, state, config, jax.random.PRNGKey(2))

  (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert float(aux['kd_cas']) > 0 and float(aux['kd_feat']) > 0
  np.testing.assert_allclose(value, aux['loss_kd'], rtol=1e-6)
  for leaf in jax.tree.leaves(grads['gfe']):
    assert np.all(np.asarray(leaf) == 0)
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads['lfe']))


# ---------------------------------------------------------------------------------------------
# Padding, inference export, configuration.


@pytest.mark.parametrize('kind,base', [('self_attention', 'd2net'), ('dilated_conv', 'd2net'),
                                       ('self_attention', 'sal')])
def test_training_loss_ignores_padding(kind, base):
  config = _config(base, **{'lfe.kind': kind, 'lfe.window': 3})
  model, params, batch = _init(config)
  rng = np.random.default_rng(0)
  state = dict(dfe.init_state(config, C, D), step=jnp.array(5))
  state['memory'] = _normalize(rng.normal(size=state['memory'].shape)).astype(np.float32)
  state['filled'] = np.array([True, False, True])
  pad = lambda x, v: np.concatenate([x, np.full(x.shape[:1] + (7,) + x.shape[2:], v, x.dtype)], 1)
  padded = dict(batch, features=pad(batch['features'], 5.0), mask=pad(batch['mask'], 0.0))

  @jax.jit
  def run(b):
    outputs = _train_forward(model, params, b, state, config)
    return dfe.loss_fn(outputs, b, state, config, jax.random.PRNGKey(2))

  (loss, aux), (loss_p, aux_p) = run(batch), run(padded)
  np.testing.assert_allclose(loss_p, loss, rtol=1e-5)
  for name in ('kd_cas', 'kd_feat', 'loss_local', 'loss_global'):
    np.testing.assert_allclose(aux_p[name], aux[name], rtol=1e-5, atol=1e-7, err_msg=name)
  for name in ('memory',) + BASE_STATE[base]:
    np.testing.assert_allclose(aux_p['state'][name], aux['state'][name], rtol=1e-5, atol=1e-6)


# The base's inference arrays: per snippet, and per video.
INFERENCE_KEYS = {'d2net': ({'tcam', 'attention'}, set()),
                  'sal': ({'cas', 'a_f', 'a_r', 'tcam', 'attention'}, {'sc'})}


@pytest.mark.parametrize('base', ['d2net', 'sal'])
def test_local_only_export_equals_the_full_models_local_branch(base):
  config = _config(base)
  model, params, batch = _init(config)
  state = dfe.init_state(config, C, D)
  if base == 'd2net':
    state['x_ref'] = jnp.ones((D // 2,))
  state['memory'] = jnp.ones_like(state['memory'])
  state['filled'] = jnp.array([True, True, True])
  small_params, small_state = dfe.export_inference(params, state)
  assert 'gfe' not in small_params and 'memory' not in small_state
  full = model.apply({'params': params}, batch['features'], batch['mask'], train=False)
  args = (batch['features'], batch['mask'], config)
  snippet, video = dfe.inference_outputs(model, small_params, small_state, *args)
  assert (set(snippet), set(video)) == INFERENCE_KEYS[base]
  shared = set(snippet) & set(full)  # d2net: tcam; sal: cas, a_f, a_r.
  assert shared
  for name in shared:
    np.testing.assert_allclose(snippet[name], full[name], rtol=1e-6, atol=1e-7, err_msg=name)
  full_snippet, full_video = dfe.inference_outputs(model, params, state, *args)
  for name in snippet:
    np.testing.assert_allclose(snippet[name], full_snippet[name], rtol=1e-6, atol=1e-7)
  for name in video:
    np.testing.assert_allclose(video[name], full_video[name], rtol=1e-6, atol=1e-7)
  # The 'global' ablation reads GFE and the memory: different numbers; equal when memory empty.
  config.dfe.inference_branch = 'global'
  global_snippet, _ = dfe.inference_outputs(model, params, state, *args)
  assert not np.allclose(global_snippet['tcam'], snippet['tcam'])
  empty = dict(state, filled=jnp.zeros((C,), bool))
  global_empty, _ = dfe.inference_outputs(model, params, empty, *args)
  np.testing.assert_allclose(global_empty['tcam'], snippet['tcam'], rtol=1e-6, atol=1e-7)


def test_lfe_attention_mask_and_positions():
  mask = np.array([[1, 1, 1, 1, 0]], np.float32)
  allowed = np.asarray(modules.attention_mask(mask, window=1))[0, 0]
  t = np.arange(5)
  want = (np.abs(t[:, None] - t[None]) <= 1) & (mask[0][:, None] > 0) & (mask[0][None] > 0)
  np.testing.assert_array_equal(allowed, want)
  code = np.asarray(modules.sinusoidal_positions(4, 6))
  np.testing.assert_allclose(code[2, 2], np.sin(2 / 10000 ** (2 / 6)), rtol=1e-5)
  np.testing.assert_allclose(code[3, 1], np.cos(3.0), rtol=1e-5)


def test_preset_argument_sets_the_base():
  import importlib.util  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py'
  spec = importlib.util.spec_from_file_location('synthetic_preset', path)
  preset = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(preset)
  assert preset.get_config('dfe').dfe.base == 'co2net'  # The spec's default base.
  assert preset.get_config('dfe,base=d2net').dfe.base == 'd2net'
  assert preset.get_config('dfe,base=sal,smoke').dfe.base == 'sal'
  with pytest.raises(ValueError, match="synthetic.py: base=sal does not apply to method 'mil'"):
    preset.get_config('mil,base=sal')
