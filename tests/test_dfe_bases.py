"""DFE's bases (`methods.base.FeatureSplit`) and its global branch.

The global branch adds only the base-loss terms that depend on the enhanced features. Over SAL,
the terms computed from the actionness branches (L_act, L_mix, L_mc, and the rgb / flow
second-order CEs) never see F: a second copy of them in the global branch only trains those
branches twice (issue 21). Over CO2-Net (DFE's default base) those are the mutual and norm terms
of the attentions, which CO2-Net computes before the fused features F. The references are written
from each base's own outputs, not from the bases' declarations; the declarations themselves are
checked for every method that has one (encode -> heads is the method, the terms add up to its
loss, the declared feature terms are the ones with a gradient into F). Also: the global
branch's float64 gradients, its global_updates_backbone=False and restrict_to_labels options,
and the one-line errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.methods import base as base_lib
from d2net_jax.methods import dfe
from d2net_jax.methods.sal import losses as sal_losses
from d2net_jax.training import train
from test_dfe import C, D, _config, float64
import train_fixtures

pytestmark = pytest.mark.usefixtures('fast_compile')


def _feature_loss_reference(base, outputs, batch, config, key):
  """The base's loss terms whose gradient reaches F, weighted, from the base's outputs: all of
  D2-Net's loss (its outputs all come from F); over SAL w_mil L_mil + w_bg L_bg + w_se CE(sc);
  over CO2-Net both MILs, alpha3 L_co and alpha2 guide (p_bg comes from cas)."""
  state = dict(methods.get(base).init_state(config, C, D), step=jnp.array(0))
  loss, aux = methods.get(base).loss_fn(outputs, batch, state, config, key)
  if base == 'd2net':
    return loss
  if base == 'co2net':
    c = config.co2net
    return (aux['loss_mil_orig'] + aux['loss_mil_supp'] + c.alpha3 * aux['loss_contrastive']
            + c.alpha2 * aux['loss_guide'])
  c = config.sal
  ce_video = jnp.mean(sal_losses.ce_per_video(outputs['sc'], batch['labels']))
  return c.w_mil * aux['loss_mil'] + c.w_bg * aux['loss_bg'] + c.w_se * ce_video


@pytest.mark.parametrize('base', ['d2net', 'sal', 'co2net'])
def test_global_branch_does_not_count_feature_independent_terms_twice(base):
  """With an empty memory F_G = F_L, so the global branch's outputs are the local branch's and
  its loss must be the reference above; the whole base loss there (loss_global == loss_local
  over SAL) is the double count."""
  config = _config(base, **{'loss.w_local': 0.0, 'loss.lambda_kd': 0.0})
  model, _, state = train.build(config, C, D)
  batch = train_fixtures.random_batch(0)
  (loss, aux), _ = jax.jit(lambda s, b: train.loss_and_grads(
      s, b, model=model, config=config, loss_fn=dfe.loss_fn))(state, batch)
  assert not np.any(state.method_state['filled'])
  outputs = model.apply({'params': state.params}, batch['features'], batch['mask'], train=True,
                        rngs={'dropout': jax.random.PRNGKey(1)})
  loss_key = jax.random.split(jax.random.fold_in(state.key, state.step))[0]  # The trainer's.
  want = _feature_loss_reference(base, outputs, batch, config, loss_key)
  np.testing.assert_allclose(aux['loss_global'], want, rtol=1e-5)
  np.testing.assert_allclose(loss, config.dfe.loss.w_global * want, rtol=1e-5)
  independent = {'sal': {'loss_act', 'loss_mix', 'loss_mc', 'loss_se_streams'}, 'd2net': set(),
                 'co2net': {'loss_mutual', 'loss_norm'}}
  assert not {f'global_{t}' for t in independent[base]} & set(aux), sorted(aux)


# ---------------------------------------------------------------------------------------------
# The base interface (methods/base.py `FeatureSplit`), for every method that declares one.

SPLIT_METHODS = tuple(m.name for m in methods.all_methods() if m.feature_split is not None)


def test_the_bases_are_registered_with_a_feature_split():
  assert {'d2net', 'sal', 'co2net'} <= set(SPLIT_METHODS)
  assert 'mil' not in SPLIT_METHODS and 'dfe' not in SPLIT_METHODS


def test_bases_out_of_scope_fail_in_one_line():
  config = _config()
  for name, why in (('mil', "method 'mil' declares no feature split"),
                    ('no_such_method', 'no registered method of that name')):
    config.dfe.base = name
    for check in (methods.get('dfe').validate_config, methods.resolve_localizer):
      with pytest.raises(ValueError, match=f"config.dfe.base='{name}': {why}.*d2net, sal"):
        check(config)
  methods.get('dfe').validate_config(_config('sal'))
  config = _config('sal')
  config.dfe.lfe.num_heads = 3  # E = sal.hidden = 8, not D = 16.
  with pytest.raises(ValueError, match=r"num_heads=3: must divide the feature width E=8 of base"):
    methods.get('dfe').validate_config(config)


def _method_config(name, overrides=None):
  """The tiny config of method `name` alone (its smoke overrides, no dropout, `overrides`)."""
  config = train_fixtures.tiny_config()
  config.method = name
  config_lib.apply_overrides(config, methods.resolve_smoke_overrides(config))
  config_lib.apply_overrides(config, {f: 0.0 for f in methods.resolve_dropout_fields(config)})
  config_lib.apply_overrides(config, overrides or {})
  return config


def _split_setup(name, overrides=None):
  config = _method_config(name, overrides)
  method = methods.get(name)
  model = method.build_model(config, C, D)
  batch = train_fixtures.random_batch(0)
  params = model.init(jax.random.PRNGKey(0), batch['features'], batch['mask'])['params']
  state = dict(method.init_state(config, C, D), step=jnp.array(2))
  return config, method, model, params, batch, state


@pytest.mark.parametrize('name', SPLIT_METHODS)
def test_encode_then_heads_is_the_method(name):
  """__call__ = heads(*encode(...)) in training (mix-up included) and evaluation; F has the
  declared width and is zero at padding; the terms add up to the method's loss."""
  config, method, model, params, batch, state = _split_setup(name)
  split = method.feature_split
  for train_mode in (True, False):
    call = lambda *a, **k: model.apply({'params': params}, *a, train=train_mode, **k)
    f, context = call(batch['features'], batch['mask'], method='encode')
    assert f.shape == batch['mask'].shape + (split.feature_width(config, D),)
    assert np.all(np.asarray(f)[batch['mask'] == 0] == 0)
    got = call(f, context, batch['mask'], method='heads')
    want = call(batch['features'], batch['mask'])
    assert set(got) == set(want)
    for key, value in want.items():
      np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
  loss, aux = method.loss_fn(want, batch, state, config, jax.random.PRNGKey(2))
  terms, terms_aux = split.loss_terms(want, batch, state, config, jax.random.PRNGKey(2))
  assert set(split.feature_terms) <= set(terms)
  np.testing.assert_allclose(base_lib.weighted_sum(terms), loss, rtol=1e-6)
  assert jax.tree.structure(terms_aux['state']) == jax.tree.structure(aux['state'])
  for got_state, want_state in zip(jax.tree.leaves(terms_aux['state']),
                                   jax.tree.leaves(aux['state'])):
    np.testing.assert_array_equal(got_state, want_state)


@pytest.mark.parametrize('name,overrides', [(n, {}) for n in SPLIT_METHODS] + [
    ('co2net', {'co2net.guide_detach_background': True})], ids=lambda v: str(v or ''))
def test_feature_terms_are_the_terms_that_reach_the_features(name, overrides):
  """The declaration `feature_terms` is right: d term / dF (through `heads`, the context fixed)
  is nonzero for each declared term and exactly zero for every other term, which therefore must
  stay out of DFE's global branch (it would train the context's parameters twice). CO2-Net with
  the guide's p_bg detached: the guide reads only the attentions, and is named so."""
  config, method, model, params, batch, state = _split_setup(name, overrides)
  split = method.feature_split
  apply = lambda *a, **k: model.apply({'params': params}, *a, train=True, **k)
  f, context = apply(batch['features'], batch['mask'], method='encode')

  def term(f, term_name):
    outputs = apply(f, context, batch['mask'], method='heads')
    terms, _ = split.loss_terms(outputs, batch, state, config, jax.random.PRNGKey(2))
    return terms[term_name][1]  # Unweighted: whether it reaches F, whatever its weight.

  terms, _ = split.loss_terms(apply(f, context, batch['mask'], method='heads'), batch, state,
                              config, jax.random.PRNGKey(2))
  for term_name in terms:
    grad = np.asarray(jax.jit(jax.grad(term), static_argnums=1)(f, term_name))
    if term_name in split.feature_terms:
      assert np.any(grad != 0), f'{term_name}: declared a feature term, no gradient into F'
    else:
      assert np.all(grad == 0), f'{term_name}: reaches F but is not declared a feature term'


# ---------------------------------------------------------------------------------------------
# DFE's global branch, computed in the model's forward pass.


def _filled_state(config, seed=0):
  state = dict(dfe.init_state(config, C, D), step=jnp.array(0))
  rng = np.random.default_rng(seed)
  memory = rng.normal(size=state['memory'].shape)
  state['memory'] = (memory / np.linalg.norm(memory, axis=-1, keepdims=True)).astype(np.float32)
  state['filled'] = np.array([True, True, False])
  return state


def _dfe_setup(base, **overrides):
  config = _config(base, **overrides)
  model = dfe.build_model(config, C, D)
  batch = train_fixtures.random_batch(0)
  params = model.init(jax.random.PRNGKey(0), batch['features'], batch['mask'])['params']
  state = _filled_state(config)
  forward = lambda p, b=batch: model.apply(
      {'params': p}, b['features'], b['mask'], train=True, rngs={'dropout': jax.random.PRNGKey(1)},
      **dfe.train_inputs(state, b, config))
  return config, model, params, batch, state, forward


# The outputs that do not depend on F which a base's feature terms read: CO2-Net's attentions
# (before the fusion) enter L_mil_supp (attn) and the guide terms (attn, v_atn, f_atn).
READ_BY_FEATURE_TERMS = {'co2net': {'attn', 'v_atn', 'f_atn'}}


@pytest.mark.parametrize('base', ['d2net', 'sal', 'co2net'])
def test_global_loss_reads_no_output_that_does_not_come_from_the_features(base):
  """d L / d out_G = w_global d reference / d out_G (the reference: the feature terms written from
  the base's own aux) for every global-branch output, with the memory filled (F_G != F_L): so
  d L / d out_G[k] = 0 for an output k that does not depend on F_G (jvp of the base's heads) and
  that no feature term reads (READ_BY_FEATURE_TERMS), and over CO2-Net its mutual and norm terms,
  which read only the attentions, are absent; the metrics name only the declared feature terms."""
  config, model, params, batch, state, forward = _dfe_setup(
      base, **{'loss.w_local': 0.0, 'loss.lambda_kd': 0.0})
  outputs = forward(params)
  out_g = outputs[dfe.GLOBAL_KEY]
  f_g = out_g[dfe.GLOBAL_FEATURES_KEY]
  f_l, context = model.apply({'params': params}, batch['features'], batch['mask'], True,
                             method=dfe.DFE.local_features)
  assert not np.allclose(f_g, f_l)  # GFE read the filled memory.
  heads = lambda f: model.base.apply({'params': params['base']}, f, context, batch['mask'], True,
                                     method='heads')
  tangent = jax.random.normal(jax.random.PRNGKey(7), f_g.shape) * batch['mask'][..., None]
  _, moved = jax.jvp(heads, (f_g,), (tangent,))
  independent = {k for k, v in moved.items() if np.all(np.asarray(v) == 0)}
  dependent = set(moved) - independent
  assert dependent
  key = jax.random.PRNGKey(2)
  (loss, aux), grads = jax.value_and_grad(
      lambda o: dfe.loss_fn(o, batch, state, config, key), has_aux=True)(outputs)
  for k in independent - READ_BY_FEATURE_TERMS.get(base, set()):
    assert np.all(np.asarray(grads[dfe.GLOBAL_KEY][k]) == 0), f'global loss reads {k}'
  assert any(np.any(np.asarray(grads[dfe.GLOBAL_KEY][k]) != 0) for k in dependent)
  want, want_grads = jax.value_and_grad(
      lambda o: _feature_loss_reference(base, o, batch, config, key))(out_g)
  w_global = config.dfe.loss.w_global
  np.testing.assert_allclose(aux['loss_global'], want, rtol=1e-5)
  np.testing.assert_allclose(loss, w_global * want, rtol=1e-5)
  for k, value in want_grads.items():
    np.testing.assert_allclose(grads[dfe.GLOBAL_KEY][k], w_global * value, rtol=1e-5, atol=1e-8,
                               err_msg=k)
  split = methods.get(base).feature_split
  assert {k for k in aux if k.startswith('global_')} == {f'global_{t}'
                                                           for t in split.feature_terms}


@pytest.mark.parametrize('base', ['d2net', 'sal', 'co2net'])
def test_global_branch_gradients_float64(base):
  """Finite differences of the global-branch loss (float64; filled memory) against its
  gradient in GFE's and the base heads' parameters, through the one forward pass."""
  with float64():
    config, _, params, batch, state, forward = _dfe_setup(
        base, **{'loss.w_local': 0.0, 'loss.lambda_kd': 0.0})
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    batch = {k: (jnp.asarray(v, jnp.float64) if v.dtype == np.float32 else v)
             for k, v in batch.items()}
    state = dict(state, memory=jnp.asarray(state['memory'], jnp.float64))
    heads = {'d2net': ('rgb', 'classifier'), 'sal': ('cls',), 'co2net': ('classifier_out',)}[base]

    def loss(gfe, head):
      p = dict(params, gfe=gfe, base=_replace(params['base'], heads, head))
      return dfe.loss_fn(forward(p, batch), batch, state, config, jax.random.PRNGKey(2))[0]

    # eps 1e-6: SAL's top-k selections switch within 1e-4 along a random direction (a kink).
    check_grads(jax.jit(loss), (params['gfe'], _get(params['base'], heads)), order=1,
                modes=['rev'], atol=1e-6, rtol=1e-5, eps=1e-6)


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _replace(tree, path, value):
  if not path:
    return value
  return dict(tree, **{path[0]: _replace(tree[path[0]], path[1:], value)})


@pytest.mark.parametrize('base', ['d2net', 'sal'])  # Base-independent code (_frozen_heads).
def test_global_branch_without_the_backbone_trains_gfe_alone(base):
  """dfe.loss.global_updates_backbone=False: the same global loss, whose gradient reaches GFE
  and nothing else (the base, LFE)."""
  overrides = {'loss.w_local': 0.0, 'loss.lambda_kd': 0.0}
  results = {}
  for flag in (True, False):
    config, _, params, batch, state, forward = _dfe_setup(
        base, **overrides, **{'loss.global_updates_backbone': flag})
    loss = lambda p: dfe.loss_fn(forward(p), batch, state, config, jax.random.PRNGKey(2))[0]
    results[flag] = jax.jit(jax.value_and_grad(loss))(params)
  (with_backbone, grads_all), (alone, grads) = results[True], results[False]
  np.testing.assert_allclose(alone, with_backbone, rtol=1e-6)
  for name, tree in grads.items():
    leaves = [np.asarray(g) for g in jax.tree.leaves(tree)]
    if name == 'gfe':
      assert any(np.any(g != 0) for g in leaves)
      for got, want in zip(leaves, jax.tree.leaves(grads_all['gfe'])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    else:
      assert all(np.all(g == 0) for g in leaves), name
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads_all['base']))


def test_restrict_to_labels_reads_only_the_videos_classes():
  """gfe.restrict_to_labels: a video's global branch never reads the memory of a class it is
  not labelled with."""
  config, _, params, batch, state, _ = _dfe_setup('d2net', **{'gfe.restrict_to_labels': True})
  state['filled'] = np.ones((C,), bool)
  model = dfe.build_model(config, C, D)
  inputs = dfe.train_inputs(state, batch, config)
  assert set(inputs) == {'memory', 'filled', 'labels'}
  run = lambda memory: model.apply({'params': params}, batch['features'], batch['mask'],
                                   train=True, **dict(inputs, memory=memory))[dfe.GLOBAL_KEY]
  before = run(state['memory'])
  changed = np.asarray(state['memory']).copy()
  changed[0] = -changed[0]
  after = run(changed)
  labelled = batch['labels'][:, 0] > 0
  assert labelled.any() and (~labelled).any()
  for key in ('tcam', dfe.GLOBAL_FEATURES_KEY):
    np.testing.assert_array_equal(np.asarray(after[key])[~labelled],
                                  np.asarray(before[key])[~labelled])
    assert not np.allclose(np.asarray(after[key])[labelled], np.asarray(before[key])[labelled])


def test_loss_without_the_global_outputs_fails_in_one_line():
  config, model, params, batch, state, _ = _dfe_setup('d2net')
  outputs = model.apply({'params': params}, batch['features'], batch['mask'], train=True)
  assert dfe.GLOBAL_KEY not in outputs  # No memory given: no global branch.
  with pytest.raises(ValueError, match="needs the global branch's outputs"):
    dfe.loss_fn(outputs, batch, state, config, jax.random.PRNGKey(2))
  config.dfe.loss.w_global, config.dfe.loss.lambda_kd = 0.0, 0.0  # The 'lfe' ablation.
  assert dfe.train_inputs(state, batch, config) == {}
  dfe.loss_fn(outputs, batch, state, config, jax.random.PRNGKey(2))
