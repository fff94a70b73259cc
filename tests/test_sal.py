"""SAL (d2net_jax/methods/sal): NumPy references of the network and of every loss term, float64
finite-difference gradients, jit == eager, padding invariance, the adaptive mask mid-training.

Multi-device equality (mix-up pairs and running statistics over the global batch), one trace and
exact resume come from tests/test_methods.py, which runs every registered method.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.methods.sal import losses
from d2net_jax.methods.sal import model as model_lib

B, T, D, C, H = 3, 12, 8, 4, 5


pytestmark = pytest.mark.usefixtures('fast_compile')


def _cfg(**overrides):
  config = config_lib.base_config()
  for name, value in overrides.items():
    config.sal[name] = value
  return config.sal


# ---------------------------------------------------------------- NumPy references (spec 2.3-2.5)

def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_softmax(z):
  return np.exp(np_log_softmax(z))


def np_ce(z, y):
  y_hat = y / np.maximum(y.sum(-1, keepdims=True), 1) + 1e-10
  return np.mean(-(y_hat * np_log_softmax(z)).sum(-1))


def np_kl_uniform(z):
  u = np.full(z.shape[-1], 1.0 / z.shape[-1])
  return np.mean((u * (np.log(u) - np_log_softmax(z))).sum(-1))


def np_gce(p, g, w, q):
  eps = 1e-7
  total = 0.0
  for b in range(p.shape[0]):
    pos, neg = w[b] * g[b], w[b] * (1 - g[b])
    total += (pos * (1 - (p[b] + eps) ** q) / q).sum() / (pos.sum() + eps)
    total += (neg * (1 - (1 - p[b] + eps) ** q) / q).sum() / (neg.sum() + eps)
  return total / p.shape[0]


def np_topk_mean(select, values, valid_len, k):
  """(B, C): per (b, c), mean of values at the k largest `select` among the first valid_len[b]."""
  out = np.zeros(select.shape[::2])
  for b in range(select.shape[0]):
    n = valid_len[b]
    for c in range(select.shape[2]):
      order = np.argsort(-select[b, :n, c], kind='stable')[:k[b]]
      out[b, c] = values[b, order, c].mean()
  return out


def np_topk_ind(scores, valid_len, k):
  out = np.zeros(scores.shape)
  for b in range(scores.shape[0]):
    order = np.argsort(-scores[b, :valid_len[b]], kind='stable')[:min(k[b], valid_len[b])]
    out[b, order] = 1
  return out


def np_bilinear(x, valid_len):
  out = []
  for b in range(x.shape[0]):
    a = x[b, :valid_len[b]].astype(np.float64)
    g = (a.T @ a / valid_len[b] ** 2).reshape(-1)
    g = np.sign(g) * np.sqrt(np.abs(g) + 1e-5)
    out.append(g / max(np.linalg.norm(g), 1e-12))
  return np.stack(out)


def np_conv(x, kernel, bias):
  """'same' Conv1d: x (T, D_in), kernel (k, D_in, D_out)."""
  k = kernel.shape[0]
  pad = (k - 1) // 2
  xp = np.pad(x, ((pad, k - 1 - pad), (0, 0)))
  return sum(xp[j:j + x.shape[0]] @ kernel[j] for j in range(k)) + bias


def np_forward(params, x, valid_len, rgb_weight=0.1, mix=False):
  """The SAL forward of spec 2.3 for videos x (B, T, D) with valid lengths (no dropout)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  sig = lambda z: 1 / (1 + np.exp(-z))
  dense = lambda v, q: v @ q['kernel'] + q['bias']
  conv = lambda v, q: np.maximum(np_conv(v, q['conv']['kernel'], q['conv']['bias']), 0)
  out = {k: [] for k in ('cas', 'cas_bg', 'a_f', 'a_r', 'sc', 'sc_rgb', 'sc_flow', 'a_f_mix',
                         'a_r_mix')}
  half = x.shape[-1] // 2
  for b in range(x.shape[0]):
    n = valid_len[b]
    v = x[b, :n].astype(np.float64)
    h_r, h_f = conv(v[:, :half], p['action_rgb']), conv(v[:, half:], p['action_flow'])
    a_r = sig(dense(h_r, p['cls_rgb']['conv']))[:, 0]
    a_f = sig(dense(h_f, p['cls_flow']['conv']))[:, 0]
    if mix:
      vm = v + x[b - 1, :n]  # The previous video (cyclic); same valid length in this test.
      a_r_mix = sig(dense(conv(vm[:, :half], p['action_rgb']), p['cls_rgb']['conv']))[:, 0]
      a_f_mix = sig(dense(conv(vm[:, half:], p['action_flow']), p['cls_flow']['conv']))[:, 0]
      out['a_r_mix'].append(a_r_mix)
      out['a_f_mix'].append(a_f_mix)
    a = (1 - rgb_weight) * a_f + rgb_weight * a_r
    e = conv(v, p['encoder'])
    s = np_bilinear(e[None], [n])[0]
    e2 = e + a[:, None] * dense(s, p['fc1'])[None]
    cas = dense(e2, p['cls']['conv'])
    out['cas'].append(cas)
    out['cas_bg'].append(cas * (1 - a)[:, None])
    out['a_f'].append(a_f)
    out['a_r'].append(a_r)
    out['sc'].append(dense(s, p['fc']))
    out['sc_rgb'].append(dense(np_bilinear(h_r[None], [n])[0], p['fc']))
    out['sc_flow'].append(dense(np_bilinear(h_f[None], [n])[0], p['fc']))
  return out


def np_sal_loss(o, labels, mu, var, cfg):
  """The total loss of spec 2.5 from the model outputs (B, T, ...) of full-length videos."""
  cas, a_f, a_r = o['cas'], o['a_f'], o['a_r']
  b, t, _ = cas.shape
  full = [t] * b
  k = [max(1, t // cfg.topk_ratio)] * b
  comb = (np_softmax(cas) + a_f[..., None] + a_r[..., None]) / 3
  l_mil = np_ce(np_topk_mean(comb if cfg.topk_source == 'comb' else cas, cas, full, k), labels)
  kb = [max(1, t // cfg.bg_topk_ratio)] * b
  l_bg = np_kl_uniform(np_topk_mean(np_softmax(o['cas_bg']), o['cas_bg'], full, kb))
  l_se = np_ce(o['sc'], labels) + np_ce(o['sc_flow'], labels) + np_ce(o['sc_rgb'], labels)
  l_mc = np.mean((a_r - a_f) ** 2)
  a_pl = (1 - cfg.pl_rgb_weight) * a_f + cfg.pl_rgb_weight * a_r
  kp = cfg.pl_topk if cfg.pl_topk > 0 else t // cfg.topk_ratio + cfg.pl_topk_extra
  g = np_topk_ind(a_pl, full, [kp] * b)
  if cfg.pl_conf_gate:
    g = g * np_topk_ind(np.maximum(cas, 0).sum(-1), full, [t // cfg.pl_gate_ratio] * b)
  pm = np_softmax(cas).max(-1).reshape(-1)
  mu = cfg.mask_ema * mu + (1 - cfg.mask_ema) * pm.mean()
  var = cfg.mask_ema * var + (1 - cfg.mask_ema) * pm.var(ddof=1)
  w = np.exp(-np.minimum(np_softmax(cas).max(-1) - mu, 0) ** 2 / (cfg.mask_denominator * var))
  q = cfg.gce_q
  l_act = np_gce(a_f, g, w, q) + np_gce(a_r, g, w, q)
  g_mix = ((g + np.roll(g, 1, 0)) >= 1).astype(float)
  w_mix = (w + np.roll(w, 1, 0)) / 2
  l_mix = np_gce(o['a_f_mix'], g_mix, w_mix, q) + np_gce(o['a_r_mix'], g_mix, w_mix, q)
  total = (cfg.w_mil * l_mil + cfg.w_bg * l_bg + cfg.w_act * l_act + cfg.w_mix * l_mix
           + cfg.w_mc * l_mc + cfg.w_se * l_se)
  return total, mu, var


# ---------------------------------------------------------------- fixtures

def _inputs(seed=0, length=T, batch=B):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, length, D)).astype(np.float32)
  labels = np.zeros((batch, C), np.float32)
  labels[np.arange(batch), rng.integers(0, C, batch)] = 1
  labels[0, (np.argmax(labels[0]) + 1) % C] = 1  # A two-label video.
  return x, np.ones((batch, length), np.float32), labels


def _model(**kwargs):
  kwargs.setdefault('dropout_rate', 0.0)
  return model_lib.SAL(num_classes=C, hidden=H, **kwargs)


def _params(model, x, mask):
  init = jax.jit(lambda x, mask: model.init({'params': jax.random.PRNGKey(0)}, x, mask))
  return init(x, mask)['params']


def _apply(model, params, x, mask, train):
  """Jitted forward (no dropout in these tests: dropout_rate = 0)."""
  fn = jax.jit(lambda p, x, m: model.apply({'params': p}, x, m, train=train,
                                           rngs={'dropout': jax.random.PRNGKey(0)}))
  return fn(params, x, mask)


# ---------------------------------------------------------------- tests

def test_bilinear_pool_matches_numpy_and_ignores_padding():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 7, 3)).astype(np.float32)
  mask = np.ones((2, 7), np.float32)
  mask[1, 4:] = 0
  x_pad = x.copy()
  x_pad[1, 4:] = 9.0  # Garbage at padding.
  got = model_lib.bilinear_pool(jnp.asarray(x_pad), jnp.asarray(mask))
  np.testing.assert_allclose(got, np_bilinear(x, [7, 4]), rtol=1e-5, atol=1e-6)
  assert model_lib.signed_sqrt(jnp.zeros(1))[0] == 0  # sign(0) = 0.


def test_forward_matches_numpy_reference():
  x, mask, _ = _inputs()
  model = _model()
  params = _params(model, x, mask)
  got = _apply(model, params, x, mask, True)
  want = np_forward(params, x, [T] * B, mix=True)
  for name, value in want.items():
    np.testing.assert_allclose(got[name], np.stack(value), rtol=2e-4, atol=2e-5, err_msg=name)
  np.testing.assert_allclose(got['a'], 0.9 * got['a_f'] + 0.1 * got['a_r'], rtol=1e-6)
  assert 'a_f_mix' not in _apply(model, params, x, mask, False)


def test_fc1_init_is_kaiming_normal():
  model = model_lib.SAL(num_classes=C, hidden=32)
  x = np.zeros((1, 4, D), np.float32)
  params = _params(model, x, np.ones((1, 4), np.float32))
  kernel = np.asarray(params['fc1']['kernel'])
  assert kernel.shape == (32 * 32, 32)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / 1024), rtol=0.05)
  assert not np.any(params['fc1']['bias'])
  assert np.abs(params['fc']['kernel']).max() <= 1 / 32


def test_forward_ignores_padding():
  x, mask, _ = _inputs(3)
  lengths = [T, 9, 5]
  for b, n in enumerate(lengths):
    mask[b, n:] = 0
    x[b, n:] = 5.0
  model = _model(encoder_kernel=7)
  params = _params(model, x, mask)
  got = _apply(model, params, x, mask, False)
  for b, n in list(enumerate(lengths))[1:]:
    alone = _apply(model, params, x[b:b + 1, :n], mask[b:b + 1, :n], False)
    for name, value in alone.items():
      per_snippet = name.startswith(('cas', 'a'))  # (B, T, ...); 'sc*' are per video (B, C).
      padded = got[name][b:b + 1, :n] if per_snippet else got[name][b:b + 1]
      np.testing.assert_allclose(padded, value, rtol=1e-5, atol=1e-6, err_msg=f'{name} {b}')
  assert not np.any(np.asarray(got['cas'])[1, 9:])


def test_loss_terms_match_numpy():
  rng = np.random.default_rng(4)
  z = rng.normal(size=(B, C)).astype(np.float32)
  _, _, y = _inputs()
  p = rng.uniform(0.01, 0.99, (B, T)).astype(np.float32)
  g = (rng.uniform(size=(B, T)) > 0.5).astype(np.float32)
  w = rng.uniform(size=(B, T)).astype(np.float32)
  np.testing.assert_allclose(jnp.mean(losses.ce_per_video(z, y)), np_ce(z, y), rtol=1e-5)
  np.testing.assert_allclose(jnp.mean(losses.kl_uniform_per_video(z)), np_kl_uniform(z),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(jnp.mean(losses.gce_masked_per_video(p, g, w, 0.5)),
                             np_gce(p, g, w, 0.5), rtol=1e-5)
  mask = np.ones((B, T), np.float32)
  np.testing.assert_allclose(losses.consistency_sum(p, w, mask) / mask.sum(),
                             np.mean((p - w) ** 2), rtol=1e-5)
  # A video without labels: no NaN (the code divides by zero).
  assert np.isfinite(losses.ce_per_video(z[:1], np.zeros((1, C), np.float32))).all()


def test_mil_scores_and_pseudo_labels_match_numpy():
  rng = np.random.default_rng(5)
  outputs = {'cas': rng.normal(size=(B, T, C)).astype(np.float32),
             'a_f': rng.uniform(size=(B, T)).astype(np.float32),
             'a_r': rng.uniform(size=(B, T)).astype(np.float32)}
  outputs['cas_bg'] = outputs['cas'] * (1 - outputs['a_f'])[..., None]
  mask = np.ones((B, T), np.float32)
  mask[2, 7:] = 0
  lengths = [T, T, 7]
  o = {k: np.asarray(v, np.float64) for k, v in outputs.items()}
  for source in ('comb', 'cas'):
    top, top_bg = losses.mil_scores(outputs, mask, topk_ratio=4, topk_source=source,
                                    bg_topk_ratio=8)
    comb = (np_softmax(o['cas']) + o['a_f'][..., None] + o['a_r'][..., None]) / 3
    sel = comb if source == 'comb' else o['cas']
    np.testing.assert_allclose(top, np_topk_mean(sel, o['cas'], lengths, [3, 3, 1]), rtol=1e-5)
    np.testing.assert_allclose(top_bg, np_topk_mean(np_softmax(o['cas_bg']), o['cas_bg'],
                                                    lengths, [1, 1, 1]), rtol=1e-5)
  # T < 4: k = 0 in the code (NaN); here k = 1.
  short = losses.mil_scores({k: v[:, :3] for k, v in outputs.items()}, mask[:, :3], topk_ratio=4)
  assert np.isfinite(np.asarray(short[0])).all()
  _, _, y = _inputs()
  g = losses.pseudo_labels(outputs['a_f'], outputs['a_r'], outputs['cas'], y, mask,
                           rgb_weight=0.1, topk_ratio=4, topk_extra=2, conf_gate=True,
                           gate_ratio=2)
  a_pl = 0.9 * o['a_f'] + 0.1 * o['a_r']
  want = np_topk_ind(a_pl, lengths, [5, 5, 3]) * np_topk_ind(
      np.maximum(o['cas'], 0).sum(-1), lengths, [6, 6, 3])
  np.testing.assert_array_equal(g, want)
  g40 = losses.pseudo_labels(outputs['a_f'], outputs['a_r'], outputs['cas'], y, mask,
                             rgb_weight=0.3, topk=8, conf_gate=False)
  np.testing.assert_array_equal(g40, np_topk_ind(0.7 * o['a_f'] + 0.3 * o['a_r'], lengths,
                                                 [8, 8, 8]))


def test_adaptive_mask_from_a_mid_training_state():
  """From mu = 1/C, var = 1 the mask is ~1; from a trained state it down-weights low confidence."""
  rng = np.random.default_rng(6)
  pm = rng.uniform(0.25, 1.0, (B, T)).astype(np.float32)
  mask = np.ones((B, T), np.float32)
  mask[1, 8:] = 0
  mu0, var0 = 0.62, 0.01  # A mid-training state.
  mu, var = losses.update_mask_statistics(pm, mask, mu0, var0, ema=0.7)
  valid = pm[mask > 0].astype(np.float64)
  np.testing.assert_allclose(mu, 0.7 * mu0 + 0.3 * valid.mean(), rtol=1e-5)
  np.testing.assert_allclose(var, 0.7 * var0 + 0.3 * valid.var(ddof=1), rtol=1e-4)
  w = np.asarray(losses.adaptive_mask(pm, mu, var, 0.5))
  want = np.exp(-np.minimum(pm - float(mu), 0) ** 2 / (0.5 * float(var)))
  np.testing.assert_allclose(w, want, rtol=1e-5)
  assert w.min() < 0.5 and np.all(w[pm >= float(mu)] == 1)
  g = (pm > 0.5).astype(np.float32)
  g_mix, w_mix = losses.mixup_targets(g, w)
  np.testing.assert_array_equal(g_mix, np.maximum(g, np.roll(g, 1, 0)))
  np.testing.assert_allclose(w_mix, (w + np.roll(w, 1, 0)) / 2, rtol=1e-6)


@pytest.mark.parametrize('preset', ['thumos14', 'activitynet13'])
def test_total_loss_matches_numpy(preset):
  config = config_lib.base_config()
  config_lib.apply_overrides(config, {k: v for k, v in methods.get('sal').presets[preset].items()
                                      if k.startswith('sal.')})
  cfg = config.sal
  x, mask, labels = _inputs(7, length=16, batch=4)
  model = _model(rgb_weight=cfg.rgb_weight)
  params = _params(model, x, mask)
  outputs = _apply(model, params, x, mask, True)
  state = {'prob_max_mu': jnp.asarray(0.4), 'prob_max_var': jnp.asarray(0.05)}
  batch = {'mask': mask, 'labels': labels}
  loss, aux = jax.jit(lambda o: losses.sal_loss(o, batch, state, cfg))(outputs)
  o = {k: np.asarray(v, np.float64) for k, v in outputs.items()}
  want, mu, var = np_sal_loss(o, labels, 0.4, 0.05, cfg)
  np.testing.assert_allclose(loss, want, rtol=1e-4)
  np.testing.assert_allclose(aux['state']['prob_max_mu'], mu, rtol=1e-5)
  np.testing.assert_allclose(aux['state']['prob_max_var'], var, rtol=1e-4)
  if preset == 'activitynet13':  # jit == eager (eager is slow on a busy CPU: once).
    eager, _ = losses.sal_loss(outputs, batch, state, cfg)
    np.testing.assert_allclose(eager, loss, rtol=1e-5)


def test_finite_difference_gradients_float64(x64):
  rng = np.random.default_rng(8)
  z = rng.normal(size=(B, C))
  y = np.eye(C)[rng.integers(0, C, B)]
  p = rng.uniform(0.1, 0.9, (B, T))
  g = (rng.uniform(size=(B, T)) > 0.5).astype(np.float64)
  w = rng.uniform(size=(B, T))
  mask = np.ones((B, T))
  kw = dict(order=1, modes=['rev'], eps=1e-6, atol=1e-6, rtol=1e-5)
  check_grads(jax.jit(lambda z: jnp.mean(losses.ce_per_video(z, y))), (z,), **kw)
  check_grads(jax.jit(lambda z: jnp.mean(losses.kl_uniform_per_video(z))), (z,), **kw)
  check_grads(jax.jit(lambda p: jnp.mean(losses.gce_masked_per_video(p, g, w, 0.5))), (p,), **kw)
  check_grads(jax.jit(lambda a, b: losses.consistency_sum(a, b, mask)), (p, w), **kw)
  # Bilinear pooling: random inputs have no zero Gram entries (sign(0) is a jump, spec 2.12).
  xb = rng.normal(size=(2, 6, 3))
  check_grads(jax.jit(lambda v: jnp.sum(model_lib.bilinear_pool(v, jnp.ones((2, 6)))
                                         * jnp.arange(9.0))), (xb,), **kw)
  # MIL pooling: differentiable in the values; selection fixed (no ties in random data).
  cas = rng.normal(size=(B, T, C))
  outs = lambda c, af, ar: {'cas': c, 'cas_bg': c * (1 - af)[..., None], 'a_f': af, 'a_r': ar}
  check_grads(jax.jit(lambda c, af: jnp.sum(jnp.stack(losses.mil_scores(outs(c, af, p), mask))
                                             ** 2)), (cas, p), **kw)
  # The whole loss through the model parameters (no dropout). The pseudo-labels g and the mask w
  # are functions of the parameters without gradient (stop_gradient, as coded), so finite
  # differences see them move: the terms that use them (L_act, L_mix) are checked above with g, w
  # fixed and left out here.
  x, m, labels = _inputs(9, length=16, batch=4)
  x = x.astype(np.float64)
  model = _model()
  params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(model, x, m))
  state = {'prob_max_mu': jnp.asarray(0.4), 'prob_max_var': jnp.asarray(0.05)}
  cfg = _cfg(w_act=0.0, w_mix=0.0)

  @jax.jit
  def total(params):
    outputs = model.apply({'params': params}, x, m, train=True)
    return losses.sal_loss(outputs, {'mask': m, 'labels': labels}, state, cfg)[0]

  check_grads(total, (params,), order=1, modes=['rev'], eps=1e-7, atol=1e-5, rtol=1e-4)


def test_inference_outputs_contract():
  x, mask, _ = _inputs(10)
  config = config_lib.base_config()
  config.method = 'sal'
  config.sal.hidden = H
  config.sal.dropout_rate = 0.0
  method = methods.get('sal')
  model = method.build_model(config, C, D)
  params = _params(model, x, mask)
  state = method.init_state(config, C, D)
  snippet, video = jax.jit(lambda p, s, x, m: method.inference_outputs(model, p, s, x, m, config))(
      params, state, x, mask)
  assert method.localizer == 'oic'
  assert set(snippet) == {'cas', 'a_f', 'a_r', 'tcam', 'attention'} and set(video) == {'sc'}
  np.testing.assert_allclose(np.sum(snippet['tcam'], -1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(snippet['attention'], 0.9 * snippet['a_f'] + 0.1 * snippet['a_r'],
                             rtol=1e-6)
  assert float(state['prob_max_mu']) == pytest.approx(1 / C)
  assert float(state['prob_max_var']) == 1.0


@pytest.mark.slow
def test_smoke_config_trains_evaluates_and_plots(tmp_path, capsys):
  """`d2net-jax train --config configs/synthetic.py:sal,smoke` end to end, then `plot`."""
  import json  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  smoke = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:sal,smoke')
  assert cli.main(['train', '--config', smoke, '--workdir', str(tmp_path), '--noprogress']) == 0
  assert 'mAP (%)' in capsys.readouterr().out
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['method'] == 'sal' and config['sal']['hidden'] == 8
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert all(np.isfinite(l['loss']) and 'loss_mix' in l for l in lines)
  results = json.loads((tmp_path / 'results.json').read_text())
  assert len(results['test']['mAP']) == 7
  video = next(iter(json.loads((tmp_path / 'detections_test.json').read_text())['results']))
  assert cli.main(['plot', '--workdir', str(tmp_path), '--video', video]) == 0
  assert (tmp_path / 'plots' / f'{video}.png').stat().st_size > 1000


def test_random_sample_activitynet_training_draw():
  """sampling.random_sample (spec 2.2): sorted draws with replacement below T, one per bin above
  (bins include the next bin's start), the last from the previous draw to the end."""
  from d2net_jax.data import sampling  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(sampling.random_sample(50, 50, rng), np.arange(50))
  seen_last = set()
  for _ in range(200):
    short = sampling.random_sample(13, 50, rng)
    assert short.shape == (50,) and np.all(np.diff(short) >= 0)
    assert short.min() >= 0 and short.max() <= 12
    idx = sampling.random_sample(123, 50, rng)
    starts = np.floor(np.arange(50) * 123 / 50).astype(int)
    assert np.all(idx[:-1] >= starts[:-1]) and np.all(idx[:-1] <= starts[1:])
    assert idx[-2] <= idx[-1] <= 122
    seen_last.add(int(idx[-1] - idx[-2]))
  assert 0 in seen_last and max(seen_last) >= 3  # The last bin reaches the end of the video.
  # Through the batcher (data.resample_train='sorted_random'): rows hold the drawn snippets.
  from d2net_jax.data import batching  # pylint: disable=import-outside-toplevel
  from d2net_jax.data.records import VideoRecord  # pylint: disable=import-outside-toplevel
  videos = []
  for i, n in enumerate([7, 20, 45]):
    feats = np.stack([np.full(n, i), np.arange(n)], 1).astype(np.float32)
    videos.append(VideoRecord(f'v{i}', 'training', np.eye(2, dtype=np.float32)[i % 2],
                              np.zeros((0, 2)), np.zeros(0, np.int32), n * 0.64, 0.64, n,
                              load=lambda f=feats: f))
  batcher = batching.TrainBatcher(videos, 3, 20, seed=0, sampling='resample', num_segments=20,
                                  shuffle='epoch', resample_train='sorted_random')
  batch = batcher.batch(0)
  for row, index in enumerate(batch['video_index']):
    t = batch['features'][row, :, 1]
    assert np.all(np.diff(t) >= 0) and t.max() < videos[index].num_snippets
    if videos[index].num_snippets == 20:
      np.testing.assert_array_equal(t, np.arange(20))
  with pytest.raises(ValueError, match='resample_train'):
    batching.TrainBatcher(videos, 3, 20, seed=0, resample_train='nope')
