"""D2Net: shapes, masking, dropout switches, init, equality with a NumPy two-stream reference."""

import jax
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import model as model_lib

B, T, D, C = 3, 16, 8, 4


def _model(**overrides):
  c = config_lib.model_config()
  c.update(overrides)
  return model_lib.build_model(c, C)


def _inputs(seed=0, lengths=(16, 11, 7)):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(B, T, D)).astype(np.float32)
  mask = (np.arange(T)[None] < np.asarray(lengths)[:, None]).astype(np.float32)
  return features * mask[..., None], mask


def _init(m, features, mask):
  # Larger weights than N(0, 0.01) so that every path visibly changes the outputs.
  params = m.init(jax.random.key(0), features, mask)['params']
  return jax.tree_util.tree_map(
      lambda p: p + 0.3 * jax.random.normal(jax.random.key(p.size), p.shape), params)


@pytest.fixture(scope='module')
def thumos():
  m = _model()
  features, mask = _inputs()
  return m, _init(m, features, mask), features, mask


def test_output_shapes_and_zero_padding(thumos):
  m, params, features, mask = thumos
  out = m.apply({'params': params}, features, mask)
  expected = {'tcam': (B, T, C), 'embeddings': (B, T, D // 2), 'rgb_logits': (B, T, C),
              'flow_logits': (B, T, C), 'rgb_embeddings': (B, T, D // 2),
              'flow_embeddings': (B, T, D // 2)}
  assert {k: v.shape for k, v in out.items()} == expected
  tcam = np.asarray(out['tcam'])
  assert np.all(tcam[mask > 0] > 0) and np.all(tcam[mask > 0] < 1)
  for v in out.values():
    assert np.all(np.asarray(v)[mask == 0] == 0)
  np.testing.assert_allclose(
      out['tcam'], 0.5 * (jax.nn.sigmoid(out['rgb_logits']) + jax.nn.sigmoid(out['flow_logits']))
      * mask[..., None], rtol=1e-6)
  np.testing.assert_allclose(out['embeddings'],
                             0.5 * (out['rgb_embeddings'] + out['flow_embeddings']), rtol=1e-6)


@pytest.mark.parametrize('overrides', [{}, dict(kernel_size=5, dilation=2, classifier_kernel_size=5,
                                                classifier_dilation=2)])
def test_padded_snippets_do_not_affect_valid_outputs(overrides):
  m = _model(**overrides)
  features, mask = _inputs(1)
  params = _init(m, features, mask)
  garbage = features + 5.0 * (1 - mask[..., None]) * np.random.default_rng(2).normal(
      size=features.shape).astype(np.float32)
  padded = m.apply({'params': params}, garbage, mask)
  for i, length in enumerate(mask.sum(1).astype(int)):
    alone = m.apply({'params': params}, features[i:i + 1, :length], mask[i:i + 1, :length])
    for k in padded:
      np.testing.assert_allclose(padded[k][i, :length], alone[k][0], rtol=1e-5, atol=1e-6,
                                 err_msg=k)


def _numpy_reference(params, features, leaky=0.2, residual=True):
  """Official-style forward of an unpadded video: x1 = act(conv(F)) + F, x2 = act(conv(x1)) + x1."""

  def conv_same(x, kernel, bias, dilation):
    k = kernel.shape[0]
    pad = (k - 1) // 2 * dilation
    xp = np.pad(x, ((pad, pad), (0, 0)))
    return sum(xp[j * dilation:j * dilation + len(x)] @ kernel[j] for j in range(k)) + bias

  def act(x):
    return np.where(x > 0, x, leaky * x)

  outs = []
  for name, x in (('rgb', features[:, :D // 2]), ('flow', features[:, D // 2:])):
    p = jax.tree_util.tree_map(np.asarray, params[name])
    x1 = act(conv_same(x, p['conv1']['kernel'], p['conv1']['bias'], 1)) + residual * x
    x2 = act(conv_same(x1, p['conv2']['kernel'], p['conv2']['bias'], 1)) + residual * x1
    outs.append((x2, conv_same(x2, p['classifier']['kernel'], p['classifier']['bias'], 1)))
  return outs


def test_matches_two_stream_numpy_reference(thumos):
  m, params, features, mask = thumos
  out = m.apply({'params': params}, features, mask)
  (rgb_x, rgb_l), (flow_x, flow_l) = _numpy_reference(params, features[0])
  np.testing.assert_allclose(out['rgb_embeddings'][0], rgb_x, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['flow_logits'][0], flow_l, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['rgb_logits'][0], rgb_l, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['embeddings'][0], 0.5 * (rgb_x + flow_x), rtol=1e-4, atol=1e-5)


def test_no_residual_switch():
  m = _model(residual=False)
  features, mask = _inputs()
  params = _init(m, features, mask)
  out = m.apply({'params': params}, features, mask)
  (rgb_x, rgb_l), _ = _numpy_reference(params, features[0], residual=False)
  np.testing.assert_allclose(out['rgb_embeddings'][0], rgb_x, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['rgb_logits'][0], rgb_l, rtol=1e-4, atol=1e-5)


def test_deterministic_without_dropout(thumos):
  m, params, features, mask = thumos
  a = m.apply({'params': params}, features, mask, train=False)
  b = m.apply({'params': params}, features, mask, train=False)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  no_dropout = _model(dropout_rate=0.0)
  c = no_dropout.apply({'params': params}, features, mask, train=True,
                       rngs={'dropout': jax.random.key(3)})
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, c)


def test_dropout_in_training_and_embedding_switch(thumos):
  m, params, features, mask = thumos
  ev = m.apply({'params': params}, features, mask, train=False)
  tr = [m.apply({'params': params}, features, mask, train=True, rngs={'dropout': jax.random.key(s)})
        for s in (1, 2)]
  assert not np.allclose(tr[0]['tcam'], tr[1]['tcam'])
  # Post-dropout embeddings (official default): zeros where dropped, scaled by 1 / (1 - rate).
  emb = np.asarray(tr[0]['rgb_embeddings'])
  kept = emb != 0
  assert 0.15 < kept[mask > 0].mean() < 0.45
  np.testing.assert_allclose(emb[kept], np.asarray(ev['rgb_embeddings'])[kept] / 0.3, rtol=1e-5)
  clean = _model(embeddings_after_dropout=False)
  out = clean.apply({'params': params}, features, mask, train=True,
                    rngs={'dropout': jax.random.key(1)})
  np.testing.assert_allclose(out['embeddings'], ev['embeddings'], rtol=1e-6)
  np.testing.assert_allclose(out['tcam'], tr[0]['tcam'], rtol=1e-6)


def test_initialisation_and_config():
  features, mask = _inputs()
  params = _model().init(jax.random.key(0), np.zeros((1, 200, 256), np.float32),
                         np.ones((1, 200), np.float32))['params']
  kernel = np.asarray(params['rgb']['conv1']['kernel'])
  assert kernel.shape == (3, 128, 128)
  assert abs(kernel.std() - 0.01) < 0.001
  assert all(np.all(np.asarray(v) == 0) for k, v in jax.tree_util.tree_leaves_with_path(params)
             if 'bias' in jax.tree_util.keystr(k))
  anet = _model(kernel_size=5, dilation=2, classifier_kernel_size=5, classifier_dilation=2)
  p = anet.init(jax.random.key(0), features, mask)['params']
  assert p['flow']['conv2']['kernel'].shape == (5, D // 2, D // 2)
  assert p['flow']['classifier']['kernel'].shape == (5, D // 2, C)
  with pytest.raises(ValueError, match='even'):
    _model().init(jax.random.key(0), np.zeros((1, 4, 7), np.float32), np.ones((1, 4), np.float32))
