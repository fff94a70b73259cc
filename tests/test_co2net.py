"""CO2-Net (d2net_jax/methods/co2net): NumPy references of the network and of every loss term,
float64 finite-difference gradients, jit == eager, padding (masked, and the mask_padding=False
switch), the smoothing's edges, the attention-logit dropout, the presets, the smoke run end to end.

Multi-device equality (the contrastive pairs over the all-gathered batch), one trace, exact resume
and the localizer on the inference outputs come from tests/test_methods.py, which runs every
registered method; the 'hamnet' localizer has tests/test_localize_hamnet.py.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.methods.co2net import losses
from d2net_jax.methods.co2net import model as model_lib

B, T, D, C, H = 6, 10, 8, 3, 5
CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'

pytestmark = pytest.mark.usefixtures('fast_compile')


def _config(**overrides):
  config = config_lib.base_config()
  config.method = 'co2net'
  config.co2net.attention_hidden = H
  for field in methods.get('co2net').dropout_fields:
    config_lib.apply_overrides(config, {field: 0.0})
  for name, value in overrides.items():
    config.co2net[name] = value
  return config


def _batch(seed=0, lengths=(T,) * B, dtype=np.float32):
  """Non-negative features (like I3D's), pairs (0, 1), (2, 3), (4, 5) sharing a class."""
  rng = np.random.default_rng(seed)
  mask = (np.arange(T)[None] < np.asarray(lengths)[:, None]).astype(dtype)
  features = np.abs(rng.normal(size=(B, T, D))).astype(dtype) * mask[..., None]
  labels = np.zeros((B, C), dtype)
  labels[np.arange(B), [0, 0, 1, 1, 2, 0]] = 1
  labels[1, 2] = 1  # Pair (0, 1) shares class 0 only; pair (4, 5) shares nothing.
  return {'features': features, 'mask': mask, 'labels': labels}


def _init(config, batch):
  model = methods.get('co2net').build_model(config, C, D)
  params = jax.jit(lambda x, m: model.init({'params': jax.random.PRNGKey(0)}, x, m))(
      batch['features'], batch['mask'])['params']
  return model, params


def _apply(model, params, features, mask, train=False, seed=0):
  """model.apply under jit (eager Flax is slow), dropout key `seed` in training."""
  return jax.device_get(jax.jit(lambda p, x, m: model.apply(
      {'params': p}, x, m, train=train, rngs={'dropout': jax.random.PRNGKey(seed)}))(
          params, features, mask))


# ---------------------------------------------------------------- NumPy references

def np_conv(x, kernel, bias):
  """'same' Conv1d of x (T, D_in) with a Flax kernel (k, D_in, D_out)."""
  k = kernel.shape[0]
  xp = np.pad(x, ((k // 2, k // 2), (0, 0)))
  return sum(xp[j:j + x.shape[0]] @ kernel[j] for j in range(k)) + bias


def np_lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_pool(x, k):
  """AvgPool1d(k, 1, k // 2, count_include_pad=True) over axis 0."""
  xp = np.pad(x, ((k // 2, k // 2),) + ((0, 0),) * (x.ndim - 1))
  return sum(xp[j:j + x.shape[0]] for j in range(k)) / k


def np_forward(params, features, lengths, smooth_kernel=0):
  """The network of model.py's docstring, per video on its valid snippets (no dropout)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  conv = lambda x, q: np_conv(x, q['kernel'], q['bias'])
  out = {k: [] for k in ('feat', 'cas', 'attn', 'v_atn', 'f_atn')}
  half = features.shape[-1] // 2
  for b, n in enumerate(lengths):
    x = features[b, :n].astype(np.float64)
    rgb, flow = x[:, :half], x[:, half:]
    atts, filtered = [], []
    for main, aux, q in ((rgb, flow, p['v_attn']), (flow, rgb, p['f_attn'])):
      g = np_lrelu(conv(main.mean(0, keepdims=True), q['channel_conv']))
      bw = np_lrelu(conv(aux, q['bit_wise_attn']))
      f = np_sigmoid(bw * g) * main
      h = np_lrelu(conv(np_lrelu(conv(f, q['attention_0'])), q['attention_1']))
      atts.append(np_sigmoid(conv(h, q['attention_2']))[:, 0])
      filtered.append(f)
    feat = np_lrelu(np.concatenate(filtered, -1) @ p['fusion']['kernel'] + p['fusion']['bias'])
    h = np_lrelu(conv(feat, p['classifier_conv']))
    cas = h @ p['classifier_out']['kernel'] + p['classifier_out']['bias']
    attn = (atts[0] + atts[1]) / 2
    values = {'feat': feat, 'cas': cas, 'attn': attn, 'v_atn': atts[0], 'f_atn': atts[1]}
    if smooth_kernel:
      for name in ('cas', 'attn', 'v_atn', 'f_atn'):
        values[name] = np_pool(values[name], smooth_kernel)
    for name, value in values.items():
      out[name].append(value)
  return out


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_terms(out, labels, ratio=7.0, pairs=3, no_pairs='zero'):
  """Each loss term from per-video outputs (lists of (n, ...) arrays), float64 loops."""
  terms = {'loss_mil_orig': 0.0, 'loss_mil_supp': 0.0}
  highs, lows = [], []
  for b, cas in enumerate(out['cas']):
    n = cas.shape[0]
    k = max(1, int(n // ratio))
    supp = out['attn'][b][:, None] * (cas - cas.min(1, keepdims=True)) + cas.min(1, keepdims=True)
    for name, z, bg in (('loss_mil_orig', cas, 1.0), ('loss_mil_supp', supp, 0.0)):
      y = np.append(labels[b], bg)
      y = y / (y.sum() + 1e-4)
      video = np.sort(z, axis=0)[-k:].mean(0)
      terms[name] += -(y * np_log_softmax(video)).sum() / len(out['cas'])
    a = np.exp(supp - supp.max(0)) / np.exp(supp - supp.max(0)).sum(0)
    highs.append(out['feat'][b].T @ a)
    lows.append(out['feat'][b].T @ (1 - a) / max(n - 1, 1))
  cos = lambda u, v: (u * v).sum(0) / (np.linalg.norm(u, axis=0) * np.linalg.norm(v, axis=0))
  total, shared = 0.0, 0.0
  for i in range(0, 2 * pairs, 2):
    d1 = 1 - cos(highs[i], highs[i + 1])
    d2 = 1 - cos(highs[i], lows[i + 1])
    d3 = 1 - cos(highs[i + 1], lows[i])
    s = np.append(labels[i] * labels[i + 1], 0.0)
    total += (0.5 * np.maximum(d1 - d2 + 0.5, 0) * s + 0.5 * np.maximum(d1 - d3 + 0.5, 0) * s).sum()
    shared += s.sum()
  terms['loss_contrastive'] = total / shared if shared or no_pairs == 'nan' else 0.0
  cat = lambda name: np.concatenate(out[name])
  attn, v, f = cat('attn'), cat('v_atn'), cat('f_atn')
  cas = np.concatenate(out['cas'])
  p_bg = np.exp(np_log_softmax(cas))[:, -1]
  terms['loss_mutual'] = np.mean((v - f) ** 2)
  terms['loss_norm'] = (attn.mean() + v.mean() + f.mean()) / 3
  terms['loss_guide'] = sum(np.abs(1 - a - p_bg).mean() for a in (attn, v, f)) / 3
  terms['loss'] = (terms['loss_mil_orig'] + terms['loss_mil_supp'] + terms['loss_contrastive']
                   + terms['loss_mutual'] + 0.8 * terms['loss_norm'] + 0.8 * terms['loss_guide'])
  return terms


def _padded(per_video, length=T):
  """Stack (n, ...) arrays zero-padded to `length`."""
  return np.stack([np.pad(v, ((0, length - v.shape[0]),) + ((0, 0),) * (v.ndim - 1))
                   for v in per_video])


# ---------------------------------------------------------------- the network

def test_forward_matches_numpy_ignores_padding_and_starts_kaiming_uniform():
  """The whole network (with the ActivityNet smoothing, kernel 5 here) against the loop
  reference, on videos of different valid lengths padded to T: every output equals the unpadded
  video's, and is zero at padding. Every kernel starts U(+-sqrt(6 / fan_in)), every bias 0."""
  lengths = (T, 7, 4, T, 9, 1)
  batch = _batch(1, lengths)
  model, params = _init(_config(smooth_kernel=5), batch)
  got = _apply(model, params, batch['features'], batch['mask'])
  want = np_forward(params, batch['features'], lengths, 5)
  for name, values in want.items():
    np.testing.assert_allclose(got[name], _padded(values), rtol=2e-5, atol=2e-6, err_msg=name)
  for path, value in jax.tree_util.tree_leaves_with_path(params):
    value, name = np.asarray(value), jax.tree_util.keystr(path)
    if 'bias' in name:
      assert np.all(value == 0), name
    else:
      bound = np.sqrt(6 / np.prod(value.shape[:-1]))  # fan_in = kernel size x in channels.
      assert 0.5 * bound < np.abs(value).max() <= bound, name


def test_smoothing_edges_count_the_padding():
  """A constant 1 pooled with kernel 13: 7/13 at snippet 0, 1 from snippet 6 (ANT_CO2)."""
  pooled = np.asarray(model_lib.average_pool(jnp.ones((1, 20, 1)), 13))[0, :, 0]
  np.testing.assert_allclose(pooled[:7], np.arange(7, 14) / 13, rtol=1e-6)
  np.testing.assert_allclose(pooled[6:14], 1.0, rtol=1e-6)
  # Differentiable (training smooths too): d sum(pool(x)) / d x_t = (windows holding t) / 13.
  grad = np.asarray(jax.grad(lambda x: model_lib.average_pool(x, 13).sum())(jnp.ones((1, 20, 1))))
  t = np.arange(20)
  windows = np.minimum(t, 6) + np.minimum(19 - t, 6) + 1
  np.testing.assert_allclose(grad[0, :, 0], windows / 13, rtol=1e-6)


def test_mask_padding_false_lets_padding_in():
  """co2net.mask_padding=False: the mask is ignored, i.e. a padded video gives what an
  all-valid batch of the zero-padded features gives (the code on a padded batch)."""
  batch = _batch(2, (T, 6, 6, T, 5, 8))
  config = _config(mask_padding=False)
  model, params = _init(config, batch)
  ignored = _apply(model, params, batch['features'], batch['mask'])
  ones = _apply(model, params, batch['features'], np.ones_like(batch['mask']))
  for name in ignored:
    np.testing.assert_allclose(ignored[name], ones[name], rtol=1e-6, atol=1e-7, err_msg=name)
  masked = _apply(methods.get('co2net').build_model(_config(), C, D), params,
                  batch['features'], batch['mask'])
  # The padded video's valid snippets see the padding (the time mean, the convolutions' edges).
  assert not np.allclose(ignored['cas'][1, :6], masked['cas'][1, :6], rtol=1e-4)
  np.testing.assert_allclose(ignored['cas'][0], masked['cas'][0], rtol=1e-5, atol=1e-6)


def test_attention_logit_dropout_gives_one_half():
  """Dropout on the attention logit (the code): a dropped logit is 0, its sigmoid exactly 0.5,
  about half of the snippets of each CCM in training; never at test."""
  config = _config(attention_logit_dropout=0.5)
  batch = _batch(3)
  model, params = _init(config, batch)
  out = _apply(model, params, batch['features'], batch['mask'], train=True, seed=5)
  half = np.mean(np.asarray(out['v_atn']) == 0.5)
  assert 0.3 < half < 0.7, half
  test = _apply(model, params, batch['features'], batch['mask'])
  assert not np.any(np.asarray(test['v_atn']) == 0.5)


# ---------------------------------------------------------------- the loss

def _outputs(seed=0, lengths=(T,) * B, dtype=np.float32):
  """Random network outputs (attentions in (0, 1), non-negative features), zero at padding."""
  rng = np.random.default_rng(seed)
  mask = (np.arange(T)[None] < np.asarray(lengths)[:, None]).astype(dtype)
  sig = lambda z: 1 / (1 + np.exp(-z))
  out = {'cas': rng.normal(size=(B, T, C + 1)) * 2, 'feat': np.abs(rng.normal(size=(B, T, D))),
         'v_atn': sig(rng.normal(size=(B, T))), 'f_atn': sig(rng.normal(size=(B, T)))}
  out['attn'] = (out['v_atn'] + out['f_atn']) / 2
  out = {k: (v * (mask[..., None] if v.ndim == 3 else mask)).astype(dtype) for k, v in out.items()}
  return out, mask


def _per_video(out, lengths):
  return {k: [v[b, :n] for b, n in enumerate(lengths)] for k, v in out.items()}


@pytest.mark.parametrize('no_pairs', ['zero', 'nan'])
def test_loss_terms_match_numpy(no_pairs):
  lengths = (T, 8, 9, 5, T, 3)
  out, mask = _outputs(1, lengths)
  batch = _batch(0, lengths)
  cfg = _config(contrastive_no_pairs=no_pairs).co2net
  loss, aux = jax.jit(lambda o: losses.co2net_loss(o, batch, cfg))(out)
  want = np_terms(_per_video(out, lengths), batch['labels'], no_pairs=no_pairs)
  for name, value in want.items():
    got = loss if name == 'loss' else aux[name]
    np.testing.assert_allclose(got, value, rtol=2e-5, err_msg=name)
  if no_pairs == 'zero':  # jit == eager (eager is slow on a busy CPU: once).
    eager_loss, eager = losses.co2net_loss(out, batch, cfg)
    np.testing.assert_allclose(eager_loss, loss, rtol=1e-6)
    for name in eager:
      np.testing.assert_allclose(eager[name], aux[name], rtol=1e-6, atol=1e-7, err_msg=name)
  assert float(aux['shared_classes']) == 2  # Pairs (0, 1) and (2, 3) share one each.
  # No pair sharing a class: 0 ('zero') or 0 / 0 (the code).
  alone = dict(batch, labels=np.eye(B, C, dtype=np.float32)[[0, 1, 2, 0, 1, 2]])
  _, aux = jax.jit(lambda o: losses.co2net_loss(o, alone, cfg))(out)
  assert (float(aux['loss_contrastive']) == 0) if no_pairs == 'zero' else np.isnan(
      float(aux['loss_contrastive']))


def test_mutual_term_gives_each_side_half_the_gradient_and_guide_trains_the_classifier():
  out, _ = _outputs(3)
  batch = _batch(0)

  def grads(cfg):  # d loss_mutual / d v_atn, d loss_guide / d cas
    term = lambda o, name: losses.co2net_loss(o, batch, cfg)[1][name]
    return jax.jit(lambda o: (jax.grad(lambda v: term(dict(o, v_atn=v), 'loss_mutual'))(o['v_atn']),
                              jax.grad(lambda c: term(dict(o, cas=c), 'loss_guide'))(o['cas'])))(out)

  mutual, guide = grads(_config().co2net)
  plain = 2 * (out['v_atn'] - out['f_atn']) / (B * T)
  np.testing.assert_allclose(mutual, 0.5 * plain, rtol=1e-5, atol=1e-9)
  assert np.any(np.asarray(guide) != 0)  # p_bg is not detached: the classifier learns from it.
  _, detached = grads(_config(guide_detach_background=True).co2net)
  assert not np.any(np.asarray(detached) != 0)


def test_finite_difference_gradients_float64(x64):
  """The loss's gradient in every output against central differences in float64 (random inputs
  keep away from the kinks). Without the mutual term: its stop-gradients halve its gradient on
  purpose (tested above), so no difference quotient fits. Gradients through the network, the
  smoothing included, are compared with the authors' code's autograd in
  tests/test_parity_co2net.py."""
  lengths = (T, 8, 9, 5, T, 7)
  out, _ = _outputs(4, lengths, np.float64)
  batch = _batch(0, lengths, np.float64)
  cfg = _config(alpha4=0.0).co2net
  kw = dict(order=1, modes=['rev'], eps=1e-6, atol=1e-5, rtol=1e-4)
  names = ('cas', 'feat', 'attn', 'v_atn', 'f_atn')
  total = jax.jit(lambda *xs: losses.co2net_loss(dict(zip(names, xs)), batch, cfg)[0])
  check_grads(total, tuple(out[n] for n in names), **kw)


def test_topk_count_and_suppressed_cas():
  mask = np.zeros((4, 800), np.float32)
  for b, n in enumerate((13, 14, 500, 750)):
    mask[b, :n] = 1
  np.testing.assert_array_equal(losses.topk_count(mask, 7.0), [1, 2, 71, 107])
  cas = np.array([[[1.0, -2.0, 3.0]]])
  np.testing.assert_allclose(losses.suppressed_cas(cas, np.array([[0.5]])),
                             [[[-0.5, -2.0, 0.5]]])  # The minimum over classes, -2, is kept.


# ---------------------------------------------------------------- presets and the smoke run

def _preset(name):
  spec = importlib.util.spec_from_file_location(f'{name}_co2net', CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config


def test_presets_carry_the_authors_settings():
  thumos = _preset('thumos14')('co2net')
  anet = _preset('activitynet12')('co2net')
  anet13 = _preset('activitynet13')('co2net')
  for config in (thumos, anet, anet13):
    assert methods.resolve_sampling(config) == 'resample'
    assert methods.resolve_batch_sampler(config) == 'similar_pairs'
    assert methods.resolve_test_sampling(config) == 'whole'
    assert methods.resolve_localizer(config) == 'hamnet'
    assert (config.train.batch_size, config.train.seed, config.train.lr_schedule) == (
        10, 3552, 'constant')
    assert config.train.weight_decay_mode == 'coupled'
  assert (thumos.data.num_segments, thumos.co2net.topk_ratio, thumos.train.learning_rate,
          thumos.train.weight_decay, thumos.train.num_steps) == (500, 7.0, 5e-5, 1e-3, 5000)
  assert thumos.co2net.smooth_kernel == 0 and thumos.data.kind == 'wtalc'
  assert (anet.data.num_segments, anet.co2net.topk_ratio, anet.train.learning_rate,
          anet.train.weight_decay, anet.train.num_steps, anet.co2net.smooth_kernel) == (
              60, 5.0, 3e-5, 5e-4, 22000, 13)
  assert anet.data.num_classes == 100 and anet13.data.num_classes == 200
  assert anet.evaluation.tiou_thresholds[0] == 0.5 and not anet.evaluation.use_ambiguous
  smoke = _preset('synthetic')('co2net,smoke')
  assert smoke.co2net.attention_hidden == 8 and smoke.train.batch_size >= 6


@pytest.mark.slow
def test_smoke_config_trains_and_evaluates(tmp_path, capsys):
  """`d2net-jax train --config configs/synthetic.py:co2net,smoke` end to end: similar-pair
  batches, the loss with its co-activity term, whole test videos, the 'hamnet' localizer."""
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  smoke = str(CONFIGS / 'synthetic.py:co2net,smoke')
  assert cli.main(['train', '--config', smoke, '--workdir', str(tmp_path), '--noprogress',
                   '--config.train.num_steps=4', '--config.train.eval_every=4',
                   '--config.train.checkpoint_every=4', '--config.train.log_every=1']) == 0
  assert 'mAP (%)' in capsys.readouterr().out
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['method'] == 'co2net' and config['data']['sampler'] == 'similar_pairs'
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert len(lines) == 4 and all(np.isfinite(l['loss']) for l in lines)
  assert all(l['shared_classes'] >= 3 for l in lines)  # Every pair shares a class.
  results = json.loads((tmp_path / 'results.json').read_text())
  assert len(results['test']['mAP']) == 7
  assert json.loads((tmp_path / 'detections_test.json').read_text())['results']
