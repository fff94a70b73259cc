"""The paper/official switches of D2-Net's loss and data sections; each test fails when its switch
does nothing (loss.pairing, loss.snippet_pdmi, loss.snippet_fg_attention,
loss.joint_normalization, data.drop_short_videos)."""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import losses  # The documented re-export: the terms and `d2net_loss`.
from d2net_jax.data import loading
from d2net_jax.data.records import Dataset, VideoRecord
from d2net_jax.methods.d2net import dmi
from d2net_jax.methods.d2net import pairing

GAMMA = 0.01


pytestmark = pytest.mark.usefixtures('fast_compile')


def _cos(a, b):
  return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def _official_weights_numpy(x_fg, x_bg, has_fg, has_bg, valid, perms, gamma=GAMMA):
  """The official DISLOSS lists, written loop by loop: rows = the valid videos in batch order."""
  valid_rows = [i for i in range(len(valid)) if valid[i]]
  fg_rows = [i for i in valid_rows if has_fg[i]]
  bg_rows = [i for i in valid_rows if has_bg[i]]
  restrict = lambda perm, n: [int(p) for p in perm if p < n]
  wt = np.zeros((len(valid_rows), 3))
  q = restrict(perms[0], len(fg_rows))
  for r, i in enumerate(fg_rows):
    wt[valid_rows.index(i), 0] = gamma * (1 - _cos(x_fg[i], x_fg[fg_rows[q[r]]]))
  q = restrict(perms[1], len(bg_rows))
  for r, i in enumerate(bg_rows):
    wt[valid_rows.index(i), 1] = gamma * (1 - _cos(x_bg[i], x_bg[bg_rows[q[r]]]))
  m = min(len(fg_rows), len(bg_rows))
  fg_idx = restrict(perms[2], len(fg_rows))[:m]
  bg_idx = restrict(perms[3], len(bg_rows))[:m]
  for a, b in zip(fg_idx, bg_idx):
    wt[a, 2] = max(0.0, _cos(x_fg[fg_rows[a]], x_bg[bg_rows[b]]))  # Row = fg-LIST position.
  out = {k: np.zeros(len(valid)) for k in ('w_fg', 'w_bg', 'w_fb')}
  for r, i in enumerate(valid_rows):
    out['w_fg'][i], out['w_bg'][i], out['w_fb'][i] = wt[r]
  return out


def _embeddings(seed, b=5, d=4):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(b, d)) + 0.3).astype(np.float32), \
      (rng.normal(size=(b, d)) + 0.3).astype(np.float32)


def _official(x_fg, x_bg, has_fg, has_bg, valid, perms):
  w = pairing.official_pair_weights(jnp.asarray(x_fg), jnp.asarray(x_bg), jnp.asarray(has_fg),
                                    jnp.asarray(has_bg), jnp.asarray(valid),
                                    jnp.asarray(perms, jnp.int32), GAMMA,
                                    losses.cosine_similarity)
  return {k: np.asarray(v) for k, v in w.items()}


def test_official_pairing_matches_numpy_lists_and_differs_from_cycle():
  x_fg, x_bg = _embeddings(0)
  valid = np.array([True, True, False, True, True])
  has_fg = np.array([False, True, False, True, True])  # Video 0 has no foreground.
  has_bg = np.array([True, True, False, False, True])
  rng = np.random.default_rng(1)
  for _ in range(5):
    perms = np.stack([rng.permutation(5) for _ in range(4)])
    got = _official(x_fg, x_bg, has_fg, has_bg, valid, perms)
    ref = _official_weights_numpy(x_fg, x_bg, has_fg, has_bg, valid, perms)
    for k in got:
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-7, err_msg=k)
  # The fg-bg weights land on fg-list positions among the valid rows: video 0 (no foreground)
  # gets one whenever fg-list position 0 is drawn; the cycle pairing never gives it one.
  perms = np.stack([np.arange(5)] * 4)
  got = _official(x_fg, x_bg, has_fg, has_bg, valid, perms)
  assert got['w_fb'][0] > 0 and got['w_fb'][4] == 0
  cycle = losses.pair_weights(jnp.asarray(x_fg), jnp.asarray(x_bg), jnp.asarray(has_fg),
                              jnp.asarray(has_bg), jnp.asarray([1, 2, 3, 4, 0]), GAMMA)
  assert float(cycle['w_fb'][0]) == 0


def test_official_pairing_agrees_with_cycle_when_every_video_has_both():
  x_fg, x_bg = _embeddings(2)
  ones = np.ones(5, bool)
  partners = np.array([3, 0, 4, 1, 2])  # A single cycle.
  perms = np.stack([partners, partners, np.arange(5), partners])
  got = _official(x_fg, x_bg, ones, ones, ones, perms)
  cycle = losses.pair_weights(jnp.asarray(x_fg), jnp.asarray(x_bg), jnp.asarray(ones),
                              jnp.asarray(ones), jnp.asarray(partners), GAMMA)
  for k in got:
    np.testing.assert_allclose(got[k], np.asarray(cycle[k]), rtol=1e-5, err_msg=k)


def _case(seed=0, b=4, t=12, c=3, e=6):
  rng = np.random.default_rng(seed)
  tcam = 1 / (1 + np.exp(-(2.5 * rng.normal(size=(b, t, c)) - 1.0)))
  labels = np.zeros((b, c), np.float32)
  labels[np.arange(b), np.arange(b) % c] = 1  # Every class present, unequal counts.
  outputs = {'tcam': jnp.asarray(tcam, jnp.float32),
             'embeddings': jnp.asarray(rng.normal(size=(b, t, e)) + 0.5, jnp.float32)}
  batch = {'mask': jnp.ones((b, t), jnp.float32), 'labels': jnp.asarray(labels)}
  state = {'x_ref': jnp.asarray(rng.normal(size=e), jnp.float32),
           'step': jnp.asarray(1002, jnp.int32)}
  return outputs, batch, state


def _loss(outputs, batch, state, **overrides):
  c = config_lib.loss_config()
  c.update(overrides)
  return losses.d2net_loss(outputs, batch, state, c, jax.random.key(3))  # Eager: fewer compiles.


def test_loss_pairing_switch_uses_the_official_lists():
  outputs, batch, state = _case(0)
  _, aux = _loss(outputs, batch, state, pairing='official')
  _, aux_cycle = _loss(outputs, batch, state, pairing='cycle')
  perms = pairing.official_permutations(jax.random.key(3), 4)
  c = config_lib.loss_config()
  fgbg = jax.vmap(lambda e, t, m: losses.foreground_background_embeddings(e, t, m))(
      outputs['embeddings'], outputs['tcam'], batch['mask'])
  valid = losses.video_validity(batch['mask'], batch['labels'], c.min_snippets)
  w = pairing.official_pair_weights(fgbg['x_fg'], fgbg['x_bg'], fgbg['has_fg'] & valid,
                                    fgbg['has_bg'] & valid, valid, perms, c.gamma,
                                    losses.cosine_similarity)
  for k in ('w_fb', 'w_fg', 'w_bg'):
    np.testing.assert_allclose(aux[k], np.mean(np.asarray(w[k])), rtol=1e-5, err_msg=k)
  assert not np.allclose([aux[k] for k in ('w_fb', 'w_fg', 'w_bg')],
                         [aux_cycle[k] for k in ('w_fb', 'w_fg', 'w_bg')])


def test_snippet_pdmi_official_keeps_tiny_singular_values():
  # Rank-one U: both pseudo-label rows see the same prediction [a, 1 - a].
  u = jnp.asarray([[0.3, 0.7], [0.3, 0.7]], jnp.float32)
  assert float(dmi.pdmi_from_joint(u)) == pytest.approx(0.0)
  assert float(dmi.pdmi_official_from_joint(u)) > 5  # log(sigma_1 / ~0), not filtered out.
  # Through the training loss: a video whose attention is constant gives such a U.
  outputs, batch, state = _case(1)
  tcam = outputs['tcam'].at[0].set(0.6)
  outputs = dict(outputs, tcam=tcam)
  _, filtered = _loss(outputs, batch, state, snippet_pdmi='filtered')
  _, off = _loss(outputs, batch, state, snippet_pdmi='official')
  assert float(off['loss_ds']) != pytest.approx(float(filtered['loss_ds']), rel=1e-3)


def test_snippet_fg_attention_switch():
  outputs, batch, state = _case(2)
  tcam, emb = outputs['tcam'][0], outputs['embeddings'][0]
  mask, labels = batch['mask'][0], batch['labels'][0]
  gt_rows, pseudo = losses.snippet_predictions(tcam, emb, mask, labels, state['x_ref'])
  all_rows, _ = losses.snippet_predictions(tcam, emb, mask, labels, state['x_ref'],
                                           fg_attention='all_classes')
  is_fg = np.asarray(pseudo[:, 0]) > 0
  gt_max = np.max(np.where(np.asarray(labels)[None] > 0, np.asarray(tcam), 0), axis=-1)
  np.testing.assert_allclose(np.asarray(gt_rows[:, 0])[is_fg], gt_max[is_fg], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(all_rows[:, 0]), np.asarray(tcam).max(-1), rtol=1e-6)
  assert not np.allclose(gt_rows, all_rows)
  _, a = _loss(outputs, batch, state, snippet_fg_attention='gt_classes')
  _, b = _loss(outputs, batch, state, snippet_fg_attention='all_classes')
  assert float(a['loss_ds']) != pytest.approx(float(b['loss_ds']), rel=1e-4)


def test_joint_normalization_switch():
  p = np.asarray([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]], np.float32)
  y = np.asarray([[1, 0], [1, 0], [0, 1], [1, 0], [0, 0]], np.float32)  # n_f 3, n_b 1, 1 none.
  np.testing.assert_allclose(dmi.normalized_joint(p, y, 'count'), y.T @ p / 4, rtol=1e-6)
  np.testing.assert_allclose(dmi.normalized_joint(p, y, 'per_class'),
                             (y / y.sum(0)).T @ p, rtol=1e-6)
  assert float(dmi.pdmi_from_joint(dmi.normalized_joint(p, y, 'count'))) != pytest.approx(
      float(dmi.pdmi_from_joint(dmi.normalized_joint(p, y, 'per_class'))), rel=1e-3)
  outputs, batch, state = _case(3)
  _, a = _loss(outputs, batch, state, joint_normalization='per_class')
  _, b = _loss(outputs, batch, state, joint_normalization='count')
  assert float(a['loss_ds']) != pytest.approx(float(b['loss_ds']), rel=1e-4)
  assert float(a['loss_dv']) != pytest.approx(float(b['loss_dv']), rel=1e-4)


def test_video_renormalize_switch():
  outputs, batch, state = _case(4)
  _, a = _loss(outputs, batch, state, video_renormalize=True)
  _, b = _loss(outputs, batch, state, video_renormalize=False)
  assert float(a['loss_dv']) != pytest.approx(float(b['loss_dv']), rel=1e-4)


def _record(video_id, subset, num_snippets):
  return VideoRecord(video_id=video_id, subset=subset, labels=np.ones(1, np.float32),
                     segments=np.zeros((0, 2)), segment_classes=np.zeros(0, np.int32),
                     duration=10.0, seconds_per_snippet=0.64, num_snippets=num_snippets,
                     load=lambda: None)


def test_drop_short_videos_switch(monkeypatch):
  videos = [_record('a', 'training', 5), _record('b', 'training', 6),
            _record('c', 'validation', 3), _record('d', 'validation', 40)]
  dataset = Dataset(name='x', class_names=['k'], videos=videos, train_subset='training',
                    test_subset='validation', feature_dim=4)
  printed = []
  kept = loading.drop_short_videos(dataset, 5, log=printed.append)
  assert [v.video_id for v in kept.videos] == ['b', 'd']
  assert 'dropped 2 of 4' in printed[0] and 'a (training, 5)' in printed[0] and 'c (' in printed[0]
  # Through load_dataset: off keeps every video, on drops them.
  monkeypatch.setattr(loading, '_check_against_config', lambda d, *a: d)
  monkeypatch.setattr(loading.hdf5_store, 'read_store',
                      lambda path: dataclasses.replace(dataset, videos=list(videos)))
  monkeypatch.setattr(loading, '_use_config_subsets', lambda d, *a: d)
  monkeypatch.setattr(loading.validation, 'check_timing', lambda *a, **k: None)
  data = config_lib.data_config()
  data.kind, data.path = 'hdf5', '/nonexistent/store.h5'
  assert len(loading.load_dataset(data).videos) == 4
  data.drop_short_videos = True
  assert [v.video_id for v in loading.load_dataset(data).videos] == ['b', 'd']
