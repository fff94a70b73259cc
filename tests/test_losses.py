"""Losses: each equation against a NumPy reference, pDMI facts, gradients, jit / vmap, masking."""

import functools

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import losses

B, T, E, C = 4, 10, 6, 4


def _case(seed=0, lengths=(10, 8, 6, 9), num_classes=C, dtype=np.float32):
  """Random TCAM (B, T, C) in (0, 1), embeddings (B, T, E), mask, multi-hot labels, x_ref."""
  rng = np.random.default_rng(seed)
  b = len(lengths)
  logits = 2.0 * rng.normal(size=(b, T, num_classes)) - 1.5  # Some background snippets.
  mask = (np.arange(T)[None] < np.asarray(lengths)[:, None]).astype(dtype)
  labels = np.zeros((b, num_classes), dtype)
  labels[np.arange(b), rng.integers(0, num_classes, b)] = 1
  labels[0, (np.argmax(labels[0]) + 1) % num_classes] = 1  # One multi-label video.
  emb = rng.normal(size=(b, T, E)) + 0.5
  x_ref = rng.normal(size=E)
  return dict(logits=logits.astype(dtype), tcam=(1 / (1 + np.exp(-logits))).astype(dtype),
              emb=emb.astype(dtype), mask=mask, labels=labels, x_ref=x_ref.astype(dtype))


def _config(**overrides):
  c = config_lib.loss_config()
  c.update(overrides)
  return c


def _state(x_ref, step=1002):
  return {'x_ref': jnp.asarray(x_ref), 'step': jnp.asarray(step, jnp.int32)}


def _outputs(case):
  return {'tcam': jnp.asarray(case['tcam']), 'embeddings': jnp.asarray(case['emb'])}


def _batch(case):
  return {'mask': jnp.asarray(case['mask']), 'labels': jnp.asarray(case['labels'])}


# ---------------------------------------------------------------------------------------------
# NumPy reference, written loop-by-loop with boolean indexing as in the official code, with the
# intended per-video pairing.


def _np_cos(a, b):
  return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def _np_pdmi(u, eps=1e-5):
  s = np.linalg.svd(u, compute_uv=False)
  s = s[s > eps]
  return float(np.log(s.max() / s.min()))


def _np_reference(case, partners, c):
  tcam, emb, mask, labels = (np.asarray(case[k], np.float64) for k in ('tcam', 'emb', 'mask',
                                                                      'labels'))
  x_ref = np.asarray(case['x_ref'], np.float64)
  n, _, num_classes = tcam.shape
  p, fg, bg, cand, valid = {}, {}, {}, [], []
  for i in range(n):
    s = int(mask[i].sum())
    if s < c.min_snippets or labels[i].sum() == 0:
      continue
    valid.append(i)
    t, e = tcam[i, :s], emb[i, :s]
    k = int(np.ceil(s / c.topk_ratio))
    p[i] = np.sort(t, axis=0)[::-1][:k].mean(0)
    lam = t.max(1)
    a_fg, a_bg = lam.copy(), 1 - lam
    most_bg = np.argmax(a_bg)
    a_fg[a_fg < c.fg_threshold] = 0
    a_bg[a_bg < c.bg_threshold] = 0
    if a_fg.sum() > 0:
      fg[i] = a_fg @ e / a_fg.sum()
    if a_bg.sum() > 0:
      bg[i] = a_bg @ e / a_bg.sum()
      cand.append(e[most_bg])
  # Eq. 3 and 4.
  l_dis = []
  for i in valid:
    j = partners[i]
    w_fb = max(0.0, _np_cos(fg[i], bg[j])) if i in fg and j in bg else 0.0
    w_fg = c.gamma * (1 - _np_cos(fg[i], fg[j])) if i in fg and j in fg else 0.0
    w_bg = c.gamma * (1 - _np_cos(bg[i], bg[j])) if i in bg and j in bg else 0.0
    q = np.clip(p[i], c.prob_clip, 1 - c.prob_clip)
    y = labels[i]
    pos = num_classes * (1 - q + w_fg + w_fb) ** c.beta * np.log(q)
    neg = (q + w_bg + w_fb) ** c.beta * np.log(1 - q)
    l_dis.append(np.mean(-(y * pos + (1 - y) * neg)))
  new_ref = 0.9 * x_ref + 0.1 * np.mean(cand, 0) if cand else x_ref
  # Eq. 8, 9: snippet level.
  l_ds = []
  for i in valid:
    s = int(mask[i].sum())
    t, e = tcam[i, :s], emb[i, :s]
    lam_bu = np.array([0.5 * (1 - _np_cos(x, new_ref)) for x in e])
    is_fg, is_bg = lam_bu > c.snippet_fg_threshold, lam_bu < c.snippet_bg_threshold
    if not is_fg.any() or not is_bg.any():
      continue
    a_f = t[:, labels[i] > 0].max(1)[is_fg]
    a_b = t.max(1)[is_bg]
    u = np.array([[a_f.mean(), (1 - a_f).mean()], [a_b.mean(), (1 - a_b).mean()]])
    l_ds.append(_np_pdmi(u))
  # Eq. 10: video level.
  rows = []
  for i in valid:
    q = np.clip(p[i], c.prob_clip, 1 - c.prob_clip)
    q = q * (q > c.video_score_floor * q.max())
    rows.append(q / q.sum())
  y = labels[valid]
  u2 = (y / np.maximum(y.sum(0), 1)).T @ np.array(rows)
  l_dv = _np_pdmi(u2)
  l_dis, l_ds = np.mean(l_dis), np.mean(l_ds)
  return dict(loss=l_dis + c.w_ds * l_ds + c.w_dv * l_dv, loss_dis=l_dis, loss_ds=l_ds,
              loss_dv=l_dv, x_ref=new_ref, num_valid=len(valid))


def test_d2net_loss_matches_numpy_reference():
  case = _case(0, lengths=(10, 8, 4, 9))  # Video 2 is too short: skipped.
  c = _config()
  key = jax.random.key(7)
  partners = np.asarray(losses.random_partners(key, B))
  loss, aux = jax.jit(functools.partial(losses.d2net_loss, config=c))(
      _outputs(case), _batch(case), _state(case['x_ref']), key=key)
  ref = _np_reference(case, partners, c)
  assert ref['num_valid'] == 3 and float(aux['num_valid']) == 3
  assert float(aux['denoise_on']) == 1
  for k in ('loss', 'loss_dis', 'loss_ds', 'loss_dv'):
    np.testing.assert_allclose(aux[k], ref[k], rtol=2e-4, err_msg=k)
  np.testing.assert_allclose(loss, ref['loss'], rtol=2e-4)
  np.testing.assert_allclose(aux['x_ref'], ref['x_ref'], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Building blocks.


@pytest.mark.parametrize('ratio', [8, 4, 3])
def test_topk_pool(ratio):
  case = _case(1, lengths=(10, 8, 1, 0))
  p = np.asarray(losses.topk_pool(case['tcam'], case['mask'], ratio))
  for i in range(3):
    s = int(case['mask'][i].sum())
    k = int(np.ceil(s / ratio))
    ref = np.sort(case['tcam'][i, :s], axis=0)[::-1][:k].mean(0)
    np.testing.assert_allclose(p[i], ref, rtol=1e-6)
  np.testing.assert_array_equal(p[3], 0)  # No valid snippet.


def test_video_validity():
  mask = np.zeros((4, 8), np.float32)
  mask[0, :5] = mask[1, :4] = mask[2, :8] = mask[3, :6] = 1
  labels = np.eye(4, dtype=np.float32)
  labels[3] = 0
  np.testing.assert_array_equal(losses.video_validity(mask, labels, 5), [True, False, True, False])


def test_foreground_background_embeddings():
  case = _case(2)
  i, s = 1, 8
  for normalize, bg_threshold in ((True, 0.5), (False, 0.8)):
    out = losses.foreground_background_embeddings(case['emb'][i], case['tcam'][i], case['mask'][i],
                                                  0.5, bg_threshold, normalize)
    lam = case['tcam'][i, :s].max(1)
    a_fg = np.where(lam >= 0.5, lam, 0)
    a_bg = np.where(1 - lam >= bg_threshold, 1 - lam, 0)
    x_fg, x_bg = a_fg @ case['emb'][i, :s], a_bg @ case['emb'][i, :s]
    if normalize:
      x_fg, x_bg = x_fg / a_fg.sum(), x_bg / a_bg.sum()
    np.testing.assert_allclose(out['x_fg'], x_fg, rtol=1e-5)
    np.testing.assert_allclose(out['x_bg'], x_bg, rtol=1e-5)
    np.testing.assert_array_equal(out['x_most_bg'], case['emb'][i, np.argmin(lam)])
    assert bool(out['has_fg']) == (a_fg.sum() > 0) and bool(out['has_bg']) == (a_bg.sum() > 0)
  none = losses.foreground_background_embeddings(case['emb'][i], 0.1 * case['tcam'][i],
                                                 case['mask'][i])
  assert not bool(none['has_fg'])
  np.testing.assert_array_equal(none['x_fg'], 0)


def test_random_partners():
  for n in (2, 3, 10):
    for seed in range(5):
      partners = np.asarray(losses.random_partners(jax.random.key(seed), n))
      assert sorted(partners) == list(range(n))
      assert np.all(partners != np.arange(n))
      # A single cycle: following partners from 0 visits every video.
      seen, j = set(), 0
      for _ in range(n):
        seen.add(j)
        j = partners[j]
      assert len(seen) == n
  np.testing.assert_array_equal(losses.random_partners(jax.random.key(0), 1), [0])
  draws = {tuple(np.asarray(losses.random_partners(jax.random.key(s), 4))) for s in range(30)}
  assert len(draws) > 1


def test_pair_weights():
  rng = np.random.default_rng(3)
  x_fg, x_bg = rng.normal(size=(4, E)), rng.normal(size=(4, E))
  has_fg = np.array([True, True, False, True])
  has_bg = np.array([True, False, True, True])
  partners = np.array([1, 2, 3, 0])
  w = losses.pair_weights(x_fg, x_bg, has_fg, has_bg, partners, gamma=0.5)
  # Video 0 vs 1: 1 has no background.
  np.testing.assert_allclose(w['w_fb'][0], 0)
  np.testing.assert_allclose(w['w_bg'][0], 0)
  np.testing.assert_allclose(w['w_fg'][0], 0.5 * (1 - _np_cos(x_fg[0], x_fg[1])), rtol=1e-5)
  # Video 1 vs 2: 2 has no foreground; 1 has no background.
  np.testing.assert_allclose([w['w_fb'][1], w['w_fg'][1], w['w_bg'][1]], [
      max(0, _np_cos(x_fg[1], x_bg[2])), 0, 0], rtol=1e-5)
  # Video 3 vs 0: everything defined.
  np.testing.assert_allclose([w['w_fb'][3], w['w_fg'][3], w['w_bg'][3]], [
      max(0, _np_cos(x_fg[3], x_bg[0])), 0.5 * (1 - _np_cos(x_fg[3], x_fg[0])),
      0.5 * (1 - _np_cos(x_bg[3], x_bg[0]))], rtol=1e-5)


def test_bottom_up_attention_and_x_ref_update():
  case = _case(4)
  lam = losses.bottom_up_attention(case['emb'], case['x_ref'])
  assert lam.shape == (B, T)
  np.testing.assert_allclose(lam[1, 2], 0.5 * (1 - _np_cos(case['emb'][1, 2], case['x_ref'])),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.bottom_up_attention(case['emb'], np.zeros(E)), 0.5)
  grad = jax.grad(lambda r: losses.bottom_up_attention(case['emb'], r).sum())(case['x_ref'])
  np.testing.assert_array_equal(grad, 0)
  cands = case['emb'][:, 0]
  weights = np.array([1, 0, 1, 1], np.float32)
  new = losses.update_x_ref(case['x_ref'], cands, weights, 0.9)
  np.testing.assert_allclose(new, 0.9 * case['x_ref'] + 0.1 * cands[[0, 2, 3]].mean(0), rtol=1e-5)
  np.testing.assert_array_equal(losses.update_x_ref(case['x_ref'], cands, 0 * weights),
                                case['x_ref'])


# ---------------------------------------------------------------------------------------------
# pDMI / DMI (Eq. 5, 7).


def test_joint_distribution():
  rng = np.random.default_rng(5)
  pred = rng.uniform(size=(6, 3))
  labels = np.eye(3)[[0, 1, 1, 0, 0, 1]]
  u = np.asarray(losses.joint_distribution(pred, labels))
  np.testing.assert_allclose(u[0], pred[[0, 3, 4]].mean(0), rtol=1e-6)
  np.testing.assert_allclose(u[1], pred[[1, 2, 5]].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(u[2], 0)  # Missing class: zero row.
  np.testing.assert_allclose(losses.normalize_columns(labels).sum(0), [1, 1, 0])


def test_pdmi_perfect_and_scale_invariant():
  assert float(losses.pdmi_from_joint(jnp.eye(4))) == pytest.approx(0, abs=1e-6)
  labels = np.eye(3)[[0, 1, 2, 2, 1]]
  assert float(losses.pdmi_loss(labels, labels)) == pytest.approx(0, abs=1e-6)
  assert float(losses.dmi_loss(labels, labels)) == pytest.approx(0, abs=1e-6)
  u = np.random.default_rng(6).uniform(size=(3, 3))
  for scale in (1e-2, 7.0):
    np.testing.assert_allclose(losses.pdmi_from_joint(scale * u), losses.pdmi_from_joint(u),
                               rtol=1e-4)
  assert float(losses.pdmi_from_joint(u)) > 0


def test_pdmi_closed_form_2x2():
  a, b, c, d = 0.7, 0.2, 0.3, 0.6
  u = np.array([[a, b], [c, d]])
  ssq, det = (u ** 2).sum(), a * d - b * c
  root = np.sqrt(ssq ** 2 - 4 * det ** 2)
  s1, s2 = np.sqrt((ssq + root) / 2), np.sqrt((ssq - root) / 2)
  np.testing.assert_allclose(losses.pdmi_from_joint(u), np.log(s1 / s2), rtol=1e-5)
  np.testing.assert_allclose(losses.dmi_from_joint(u), -np.log(abs(det)), rtol=1e-5)
  # The same U from predictions and labels: two fg snippets, one bg snippet.
  pred = np.array([[0.6, 0.4], [0.8, 0.0], [0.3, 0.6]])
  labels = np.array([[1, 0], [1, 0], [0, 1]], np.float64)
  np.testing.assert_allclose(losses.pdmi_loss(pred, labels), np.log(s1 / s2), rtol=1e-5)


def test_pdmi_ignores_tiny_singular_values():
  u = np.diag([0.9, 0.3, 1e-7])
  np.testing.assert_allclose(losses.pdmi_from_joint(u), np.log(3.0), rtol=1e-5)
  np.testing.assert_allclose(losses.pdmi_from_joint(u, eps=1e-9), np.log(0.9 / 1e-7), rtol=1e-3)
  assert float(losses.pdmi_from_joint(np.zeros((3, 3)))) == 0


def test_missing_class_pdmi_finite_dmi_not():
  rng = np.random.default_rng(8)
  pred = jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 3))), axis=-1)
  labels = jnp.asarray(np.eye(3)[[0, 1, 1, 0, 1]])  # Class 2 missing.
  value, grad = jax.value_and_grad(losses.pdmi_loss)(pred, labels)
  assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0)
  dmi = float(losses.dmi_loss(pred, labels))
  assert not np.isfinite(dmi)
  # guarded(): 0 with a NaN-free (zero) gradient where DMI is undefined.
  fn = lambda p: losses.guarded(losses.dmi_from_joint, losses.joint_distribution(p, labels),
                                jnp.array(True))[0]
  g = jax.grad(fn)(pred)
  assert float(fn(pred)) == 0 and np.all(g == 0)


def test_pdmi_gradients_match_finite_differences():
  with jax.enable_x64(True):
    # Distinct singular values: SVD gradients are undefined where they repeat.
    u = jnp.asarray(np.random.default_rng(9).uniform(size=(3, 3)) + np.diag([1.0, 0.5, 0.0]))
    assert len(set(np.round(np.linalg.svd(np.asarray(u), compute_uv=False), 6))) == 3
    check_grads(losses.pdmi_from_joint, (u,), order=1, eps=1e-6)
    check_grads(losses.dmi_from_joint, (u,), order=1, eps=1e-6)
    pred = jax.nn.sigmoid(jnp.asarray(np.random.default_rng(10).normal(size=(7, 3))))
    labels = jnp.asarray(np.eye(3)[[0, 1, 2, 2, 1, 0, 1]])
    check_grads(lambda p: losses.pdmi_loss(p, labels), (pred,), order=1, eps=1e-6)
    check_grads(lambda p: losses.dmi_loss(p, labels), (pred,), order=1, eps=1e-6)
    missing = jnp.asarray(np.eye(3)[[0, 1, 1, 0, 1, 0, 1]])
    check_grads(lambda p: losses.pdmi_loss(p, missing), (pred,), order=1, eps=1e-6)


# ---------------------------------------------------------------------------------------------
# Discriminative term and baselines (Eq. 4).


def test_discriminative_loss_formula_and_switches():
  case = _case(11)
  p = losses.topk_pool(case['tcam'], case['mask'])
  valid = np.array([True, True, False, True])
  rng = np.random.default_rng(11)
  w = {k: jnp.asarray(rng.uniform(0, 0.3, size=B), jnp.float32) for k in ('w_fb', 'w_fg', 'w_bg')}
  q = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
  y = case['labels']
  wfb, wfg, wbg = (np.asarray(w[k])[:, None] for k in ('w_fb', 'w_fg', 'w_bg'))
  pos = (1 - q + wfg + wfb) ** 2 * np.log(q)
  neg = (q + wbg + wfb) ** 2 * np.log(1 - q)
  per_class = -(C * y * pos + (1 - y) * neg)
  np.testing.assert_allclose(losses.discriminative_loss(p, y, valid, w),
                             per_class.mean(1)[valid].mean(), rtol=1e-5)
  np.testing.assert_allclose(
      losses.discriminative_loss(p, y, valid, w, positive_class_weight=False,
                                 class_reduction='sum'),
      (-(y * pos + (1 - y) * neg)).sum(1)[valid].mean(), rtol=1e-5)
  zeros = {k: jnp.zeros(B) for k in w}
  np.testing.assert_allclose(losses.focal_loss(p, y, valid),
                             losses.discriminative_loss(p, y, valid, zeros), rtol=1e-6)
  bce = -(C * y * np.log(q) + (1 - y) * np.log(1 - q)).mean(1)[valid].mean()
  np.testing.assert_allclose(losses.bce_loss(p, y, valid), bce, rtol=1e-5)
  with pytest.raises(ValueError, match='class_reduction'):
    losses.discriminative_loss(p, y, valid, w, class_reduction='max')


# ---------------------------------------------------------------------------------------------
# Denoising terms (Eq. 8-11).


def test_snippet_terms():
  case = _case(12)
  i = 0
  args = (case['tcam'][i], case['emb'][i], case['mask'][i], case['labels'][i], case['x_ref'])
  pred, pl = losses.snippet_predictions(*args)
  lam_bu = np.asarray(losses.bottom_up_attention(case['emb'][i], case['x_ref']))
  is_fg, is_bg = lam_bu > 0.5, lam_bu < 0.5
  assert is_fg.any() and is_bg.any()
  np.testing.assert_array_equal(pl, np.stack([is_fg, is_bg], -1))
  a_gt = case['tcam'][i][:, case['labels'][i] > 0].max(1)
  np.testing.assert_allclose(pred[:, 0], np.where(is_fg, a_gt, case['tcam'][i].max(1)), rtol=1e-6)
  value, ok = losses.snippet_denoising_term(*args)
  u, defined = losses.snippet_joint_distribution(*args)
  assert bool(ok) and bool(defined)
  np.testing.assert_allclose(value, _np_pdmi(np.asarray(u, np.float64)), rtol=1e-4)
  target = is_fg.astype(float)
  sel = is_fg | is_bg
  l1, _ = losses.snippet_denoising_term(*args, kind='l1')
  np.testing.assert_allclose(l1, np.abs(np.asarray(pred[:, 0]) - target)[sel].mean(), rtol=1e-5)
  bce, _ = losses.snippet_denoising_term(*args, kind='bce')
  a = np.clip(np.asarray(pred[:, 0], np.float64), 1e-3, 1 - 1e-3)
  np.testing.assert_allclose(
      bce, (-(target * np.log(a) + (1 - target) * np.log(1 - a)))[sel].mean(), rtol=1e-5)
  # No pseudo-background: undefined, 0.
  for kind in ('pdmi', 'dmi', 'l1', 'bce'):
    value, ok = losses.snippet_denoising_term(*args, kind=kind, bg_threshold=-1.0)
    assert not bool(ok) and float(value) == 0
  with pytest.raises(ValueError, match='kind'):
    losses.snippet_denoising_term(*args, kind='kl')


def test_video_joint_distribution():
  p = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.05], [0.3, 0.3, 0.3]], np.float32)
  labels = np.eye(3, dtype=np.float32)[[0, 1, 1]]
  valid = np.array([True, True, False])
  u = np.asarray(losses.video_joint_distribution(p, labels, valid))
  row0 = np.array([0.9, 0.0, 0.5]) / 1.4  # 0.1 <= 0.2 * 0.9 zeroed.
  row1 = np.array([0.2, 0.8, 0.0]) / 1.0
  np.testing.assert_allclose(u, np.stack([row0, row1, np.zeros(3)]), rtol=1e-5)
  raw = np.asarray(losses.video_joint_distribution(p, labels, valid, renormalize=False))
  np.testing.assert_allclose(raw[:2], p[:2], rtol=1e-6)
  value, ok = losses.video_denoising_loss(p, labels, valid)
  assert bool(ok) and np.isfinite(value) and value > 0
  value, ok = losses.video_denoising_loss(p, labels, valid, kind='dmi')  # Class 2 missing.
  assert not bool(ok) and float(value) == 0
  value, ok = losses.video_denoising_loss(p, labels, np.zeros(3, bool))
  assert not bool(ok) and float(value) == 0
  np.testing.assert_allclose(losses.denoising_loss(2.0, 3.0, 0.1, 0.5), 1.7, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# d2net_loss behaviour.


def test_schedule_switches_without_retracing():
  case = _case(13)
  traces = []

  @jax.jit
  def f(outputs, batch, state, key):
    traces.append(1)
    return losses.d2net_loss(outputs, batch, state, _config(), key)

  results = {}
  for step in (0, 1000, 1001, 1002, 1003, 5000):
    loss, aux = f(_outputs(case), _batch(case), _state(case['x_ref'], step), jax.random.key(0))
    results[step] = (float(loss), float(aux['denoise_on']))
  assert len(traces) == 1
  assert [results[s][1] for s in (0, 1000, 1001, 1002, 1003, 5000)] == [0, 0, 0, 1, 0, 1]
  off, on = results[1001][0], results[1002][0]
  _, aux = f(_outputs(case), _batch(case), _state(case['x_ref'], 1002), jax.random.key(0))
  np.testing.assert_allclose(on - off, 0.1 * aux['loss_ds'] + 0.1 * aux['loss_dv'], rtol=1e-4)
  np.testing.assert_allclose(off, aux['loss_dis'], rtol=1e-6)


def test_zero_x_ref_gives_no_snippet_term_and_no_nan():
  case = _case(14)
  c = _config(x_ref_momentum=1.0)  # Keeps x_ref at zero.

  def f(tcam, emb):
    return losses.d2net_loss({'tcam': tcam, 'embeddings': emb}, _batch(case),
                             _state(np.zeros(E, np.float32)), c, jax.random.key(0))

  (loss, aux), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(
      jnp.asarray(case['tcam']), jnp.asarray(case['emb']))
  assert float(aux['loss_ds']) == 0 and float(aux['num_ds']) == 0
  assert np.isfinite(float(loss)) and all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_array_equal(aux['x_ref'], 0)


@pytest.mark.parametrize('discriminative,denoising', [
    ('d2net', 'pdmi'), ('d2net', 'dmi'), ('d2net', 'l1'), ('d2net', 'bce'), ('d2net', 'none'),
    ('focal', 'pdmi'), ('bce', 'none')])
def test_variants_finite(discriminative, denoising):
  case = _case(15)
  c = _config(discriminative=discriminative, denoising=denoising, x_ref_source='mean_bg',
              normalize_attention=False, video_renormalize=False)
  f = lambda t, e: losses.d2net_loss({'tcam': t, 'embeddings': e}, _batch(case),
                                     _state(case['x_ref']), c, jax.random.key(1))
  (loss, aux), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(
      jnp.asarray(case['tcam']), jnp.asarray(case['emb']))
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in grads) and np.any(grads[0] != 0)
  # Embeddings get gradient only through the Eq. 3 weights (thresholds of Eq. 8, 9 are flat).
  assert np.any(grads[1] != 0) == (discriminative == 'd2net')
  if denoising == 'none':
    assert float(aux['loss_ds']) == 0 and float(aux['loss_dv']) == 0
  else:
    assert float(aux['num_ds']) > 0 and float(aux['loss_ds']) != 0
  if denoising == 'dmi':  # Classes are missing from this batch: L_DV undefined, zero.
    assert float(aux['dv_defined']) == 0 and float(aux['loss_dv']) == 0
  if discriminative != 'd2net':
    assert float(aux['w_fb']) == 0 and float(aux['w_fg']) == 0


def test_bad_config_values_raise():
  case = _case(0)
  for field, value in (('discriminative', 'hinge'), ('denoising', 'kl'),
                       ('x_ref_source', 'last')):
    with pytest.raises(ValueError, match=field):
      losses.d2net_loss(_outputs(case), _batch(case), _state(case['x_ref']),
                        _config(**{field: value}), jax.random.key(0))


def _pad(case, extra, rng):
  """The same videos with `extra` masked snippets of garbage appended (masked ones already are)."""
  out = dict(case)
  for k in ('tcam', 'emb'):
    garbage = rng.uniform(size=case[k].shape[:1] + (extra,) + case[k].shape[2:])
    out[k] = np.concatenate([case[k], garbage], 1).astype(np.float32)
  out['mask'] = np.pad(case['mask'], ((0, 0), (0, extra)))
  return out


def test_padding_invariance_of_loss_and_gradients():
  case = _case(16)
  padded = _pad(case, 7, np.random.default_rng(0))

  def run(cs):
    f = lambda t, e: losses.d2net_loss({'tcam': t, 'embeddings': e}, _batch(cs),
                                       _state(cs['x_ref']), _config(), jax.random.key(3))
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(
        jnp.asarray(cs['tcam']), jnp.asarray(cs['emb']))

  (loss, aux), grads = run(case)
  (loss_p, aux_p), grads_p = run(padded)
  assert float(aux['num_ds']) > 0 and float(aux['denoise_on']) == 1
  np.testing.assert_allclose(loss_p, loss, rtol=1e-5)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
                         aux_p, aux)
  m = case['mask'] > 0
  pm = padded['mask'] > 0
  for g, gp in zip(grads, grads_p):
    np.testing.assert_allclose(np.asarray(gp)[:, :T][m], np.asarray(g)[m], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(gp)[~pm], 0)


def test_skipped_videos_change_nothing():
  case = _case(17, lengths=(10, 8, 6, 4))  # Video 3: too short.
  case['labels'][2] = 0  # Video 2: no positive label.
  c = _config(discriminative='focal')
  kept = {k: v[:2] if k != 'x_ref' else v for k, v in case.items()}
  run = jax.jit(functools.partial(losses.d2net_loss, config=c))
  loss, aux = run(_outputs(case), _batch(case), _state(case['x_ref']), key=jax.random.key(0))
  loss_k, aux_k = run(_outputs(kept), _batch(kept), _state(case['x_ref']), key=jax.random.key(0))
  assert float(aux['num_valid']) == 2
  np.testing.assert_allclose(loss, loss_k, rtol=1e-6)
  np.testing.assert_allclose(aux['x_ref'], aux_k['x_ref'], rtol=1e-6)
  f = lambda t, e: losses.d2net_loss({'tcam': t, 'embeddings': e}, _batch(case),
                                     _state(case['x_ref']), _config(), jax.random.key(0))[0]
  g_t, g_e = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(case['tcam']),
                                                   jnp.asarray(case['emb']))
  np.testing.assert_array_equal(g_t[2:], 0)
  np.testing.assert_array_equal(g_e[2:], 0)
  assert np.any(g_t[:2] != 0) and np.any(g_e[:2] != 0)


# ---------------------------------------------------------------------------------------------
# Gradients against finite differences (float64), jit vs eager, vmap vs loop.


def _per_video_functions(c):
  return {
      'topk_pool': lambda t, e, m, y, r: losses.topk_pool(t, m, c.topk_ratio),
      'fg_bg_embeddings': lambda t, e, m, y, r: losses.foreground_background_embeddings(
          e, t, m, c.fg_threshold, c.bg_threshold, c.normalize_attention),
      'bottom_up_attention': lambda t, e, m, y, r: losses.bottom_up_attention(e, r),
      **{f'snippet_{kind}': functools.partial(
          lambda t, e, m, y, r, kind: losses.snippet_denoising_term(t, e, m, y, r, kind=kind)[0],
          kind=kind) for kind in ('pdmi', 'dmi', 'l1', 'bce')},
  }


def _batch_functions(c):
  partners = jnp.array([2, 3, 1, 0])

  def fgbg(t, e, m):
    return jax.vmap(losses.foreground_background_embeddings)(e, t, m)

  def weights(t, e, m, y):
    out = fgbg(t, e, m)
    return losses.pair_weights(out['x_fg'], out['x_bg'], out['has_fg'], out['has_bg'], partners,
                               c.gamma)

  def dis(t, e, m, y):
    valid = losses.video_validity(m, y)
    return losses.discriminative_loss(losses.topk_pool(t, m), y, valid, weights(t, e, m, y))

  def d2net(t, e, m, y, r):
    out = {'tcam': t, 'embeddings': e}
    batch = {'mask': m, 'labels': y}
    cfg = _config(x_ref_momentum=1.0)  # FD would see x_ref's (stopped) dependence otherwise.
    return losses.d2net_loss(out, batch, {'x_ref': r, 'step': jnp.int32(1002)}, cfg,
                             jax.random.key(0))[0]

  return {
      'pair_weights': lambda t, e, m, y, r: weights(t, e, m, y),
      'discriminative_loss': lambda t, e, m, y, r: dis(t, e, m, y),
      'focal_loss': lambda t, e, m, y, r: losses.focal_loss(
          losses.topk_pool(t, m), y, losses.video_validity(m, y)),
      'bce_loss': lambda t, e, m, y, r: losses.bce_loss(
          losses.topk_pool(t, m), y, losses.video_validity(m, y)),
      'video_pdmi': lambda t, e, m, y, r: losses.video_denoising_loss(
          losses.topk_pool(t, m), y, losses.video_validity(m, y))[0],
      'video_dmi_full_labels': lambda t, e, m, y, r: losses.video_denoising_loss(
          losses.topk_pool(t, m), jnp.eye(C)[:B], losses.video_validity(m, y), kind='dmi')[0],
      'd2net_loss': d2net,
  }


def _combined(fns, per_video, args):
  """Scalar sum_i sum(sin(3 (i + 1) f_i)) over every float output of every function."""

  @jax.jit
  def scalar(logits, emb):
    total = 0.0
    for i, fn in enumerate(fns.values()):
      if per_video:
        out = jax.vmap(fn, in_axes=(0, 0, 0, 0, None))(jax.nn.sigmoid(logits), emb, *args)
      else:
        out = fn(jax.nn.sigmoid(logits), emb, *args)
      total += sum(jnp.sum(jnp.sin(3.0 * (i + 1) * x)) for x in jax.tree_util.tree_leaves(out)
                   if jnp.issubdtype(x.dtype, jnp.floating))
    return total

  return scalar


@pytest.mark.parametrize('group', ['per_video', 'batch', 'd2net_loss'])
def test_gradients_match_finite_differences(group):
  with jax.enable_x64(True):
    case = _case(18, dtype=np.float64)
    c = _config()
    args = (jnp.asarray(case['mask']), jnp.asarray(case['labels']), jnp.asarray(case['x_ref']))
    fns = _per_video_functions(c) if group == 'per_video' else _batch_functions(c)
    if group != 'per_video':
      fns = {k: v for k, v in fns.items() if (k == 'd2net_loss') == (group == 'd2net_loss')}
    scalar = _combined(fns, group == 'per_video', args)
    assert scalar(jnp.asarray(case['logits']), jnp.asarray(case['emb'])).dtype == jnp.float64
    check_grads(scalar, (jnp.asarray(case['logits']), jnp.asarray(case['emb'])), order=1,
                modes=('rev',), eps=1e-6)


def test_jit_equals_eager_and_vmap_equals_loop():
  case = _case(19)
  c = _config()
  t, e, m, y, r = (jnp.asarray(case[k]) for k in ('tcam', 'emb', 'mask', 'labels', 'x_ref'))
  for name, fn in _per_video_functions(c).items():
    batched = jax.vmap(fn, in_axes=(0, 0, 0, 0, None))
    one = jax.jit(fn)
    looped = [one(t[i], e[i], m[i], y[i], r) for i in range(B)]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6,
                                             err_msg=name), batched(t, e, m, y, r), stacked)
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6,
                                             err_msg=name),
                           jax.jit(batched)(t, e, m, y, r), stacked)
  for name, fn in _batch_functions(c).items():
    jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6,
                                             err_msg=name),
                           jax.jit(fn)(t, e, m, y, r), fn(t, e, m, y, r))
  # Batch-level Eq. 4 per video equals one video at a time; pDMI vmapped over problems.
  p = losses.topk_pool(t, m)
  w = jnp.asarray(np.random.default_rng(0).uniform(0, 0.2, size=(3, B)), jnp.float32)
  per_video = losses.discriminative_loss_per_video(p, y, *w)
  for i in range(B):
    np.testing.assert_allclose(
        per_video[i],
        losses.discriminative_loss_per_video(p[i:i + 1], y[i:i + 1], *w[:, i:i + 1])[0],
        rtol=1e-6)
  preds = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(5, 7, 3))), -1)
  labs = jnp.asarray(np.eye(3)[np.random.default_rng(2).integers(0, 3, size=(5, 7))])
  for fn in (losses.pdmi_loss, losses.dmi_loss):
    np.testing.assert_allclose(jax.vmap(fn)(preds, labs),
                               [fn(preds[i], labs[i]) for i in range(5)], rtol=1e-5)
