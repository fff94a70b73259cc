"""One-stream (RGB-only) features: `data.streams='rgb'` for every method (docs/data.md).

End to end: every registered method (and DFE over SAL) trains and localizes with `d2net-jax train`
on an RGB-only HDF5 store (the smoke synthetic store's RGB half, written with streams='rgb'), and
records its streams in RUN/model.json. Refusals: a config saying 'rgb+flow' on that store, a model
trained on two streams given it, an odd feature_dim only with two streams. Exact relations of each
method's one-stream code path to its two-stream path fed the same stream twice:
  d2net (and DFE's 'd2net' base): both streams with the one stream's parameters give its outputs
    and its loss (the mean over two equal streams is the stream);
  mil: both classifiers with half the one stream's kernel and bias give its logits;
  co2net: its one CCM (the stream as main and aux) as both CCMs, the fusion and classifier kernels
    split over the two copies: the same cas and attentions, fused features [X, X], every loss
    term equal (the mutual attention term 0 in both);
  sal: both actionness branches with the one branch's parameters (and the encoder's kernel halved
    over each copy of x) give its outputs; the loss terms
    summed over the streams (L_act, L_mix, the stream part of L_se) are half the two-stream ones,
    L_mc is 0 in both, every other term equal.
"""

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.commands import cli
from d2net_jax.config import checks
from d2net_jax.data import hdf5_store, loading, synthetic
from d2net_jax.data.records import DataError
from d2net_jax.methods.sal import losses as sal_losses
from d2net_jax.runs import run_dir
from d2net_jax.training import run_data
import train_fixtures

SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py')
VARIANTS = methods.names() + ('dfe,base=sal',)
D1 = 8  # One stream's width in the smoke store (feature_dim 16 = RGB 8 + flow 8).

pytestmark = pytest.mark.usefixtures('fast_compile')


def _smoke_config():
  """configs/synthetic.py:smoke (mil: the method does not matter for its data)."""
  spec = importlib.util.spec_from_file_location('preset_synthetic', SMOKE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('mil,smoke')


@pytest.fixture(scope='module')
def stores(tmp_path_factory):
  """(two-stream smoke store, its RGB half written as an RGB-only store, the half's dataset)."""
  folder = tmp_path_factory.mktemp('stores')
  config = _smoke_config()
  config.data.path = str(folder)
  two_store = synthetic.ensure_store(config.data, progress=False)
  two = hdf5_store.read_store(two_store)
  assert two.streams == 'rgb+flow' and two.feature_dim == 2 * D1
  rgb = loading.select_streams(two, 'rgb', 'test')
  path = hdf5_store.write_store(folder / 'rgb.h5', rgb, progress=False)
  return two_store, path, two


def _train_args(variant, store, workdir, *extra):
  return ['train', '--config', f'{SMOKE}:{variant},smoke', '--workdir', str(workdir),
          '--config.data.kind=hdf5', f'--config.data.path={store}',
          f'--config.data.feature_dim={D1}', '--config.data.streams=rgb',
          '--config.train.num_steps=2', '--config.train.eval_every=2',
          '--config.train.checkpoint_every=2', *extra]


# mil is the quick one (seconds); the others compile their training step and inference for
# half a minute each on 2 cores: `slow`.
@pytest.mark.parametrize('variant', [v if v == 'mil' else pytest.param(v, marks=pytest.mark.slow)
                                     for v in VARIANTS])
def test_every_method_trains_and_localizes_on_an_rgb_only_store(variant, stores, tmp_path):
  _, rgb_store, _ = stores
  assert hdf5_store.read_store(rgb_store).streams == 'rgb'
  workdir = tmp_path / 'run'
  assert cli.main(_train_args(variant, rgb_store, workdir)) == 0
  model = json.loads((workdir / 'model.json').read_text())
  assert (model['streams'], model['feature_dim']) == ('rgb', D1)
  assert json.loads((workdir / 'detections_test.json').read_text())  # Test videos localized.


def test_two_streams_are_refused_on_an_rgb_only_store_in_one_line(stores, tmp_path, capsys):
  _, rgb_store, _ = stores
  args = _train_args('mil', rgb_store, tmp_path / 'run')
  args = [a for a in args if not a.startswith('--config.data.streams')]
  assert cli.main(args) != 0
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert str(rgb_store) in err and "'rgb'" in err and "'rgb+flow'" in err, err


def _workdir_with_model(tmp_path, streams, feature_dim, class_names):
  workdir = tmp_path / 'trained'
  workdir.mkdir()
  run_dir.write_model_info(workdir, class_names, feature_dim, 'd2net', streams)
  return workdir


def test_a_two_stream_model_refuses_an_rgb_only_store(stores, tmp_path):
  _, rgb_store, two = stores
  workdir = _workdir_with_model(tmp_path, 'rgb+flow', 2 * D1, two.class_names)
  config = _smoke_config()
  with pytest.raises(DataError) as e:
    run_data.load_for_run(config, workdir, data_path=str(rgb_store))
  message = str(e.value)
  assert '\n' not in message and str(rgb_store) in message
  assert "'rgb'" in message and "'rgb+flow'" in message and str(workdir) in message


def test_an_rgb_model_takes_the_rgb_half_of_a_two_stream_store(stores, tmp_path):
  two_store, _, two = stores
  workdir = _workdir_with_model(tmp_path, 'rgb', D1, two.class_names)
  config = _smoke_config()
  config.data.streams, config.data.feature_dim = 'rgb', D1
  dataset, _, dim = run_data.load_for_run(config, workdir, data_path=str(two_store))
  assert (dataset.streams, dim) == ('rgb', D1)
  np.testing.assert_array_equal(dataset.videos[0].features(), two.videos[0].features()[:, :D1])
  # A one-stream store cannot give the other stream.
  with pytest.raises(DataError, match="holds 'rgb' features, the config says data.streams='flow'"):
    loading.select_streams(loading.select_streams(two, 'rgb', 'x'), 'flow', 'x')


def test_streams_config_checks():
  config = train_fixtures.tiny_config()
  config.data.streams = 'rgb'
  config.data.feature_dim = 7  # One stream: no halves, so no parity rule.
  checks.validate_config(config, check_data_path=False)
  config.data.streams = 'rgb+flow'
  with pytest.raises(checks.ConfigError, match='must be even'):
    checks.validate_config(config, check_data_path=False)
  config.data.streams = 'depth'
  with pytest.raises(checks.ConfigError, match=r"config.data.streams='depth'"):
    checks.validate_config(config, check_data_path=False)


# ---------------------------------------------------------------------------------------------
# One stream == the two-stream path fed the same stream twice (module docstring).


def _configs(method, **overrides):
  """(one-stream config, two-stream config) of `method` on tiny dims, without dropout."""
  out = []
  for streams in ('rgb', 'rgb+flow'):
    config = train_fixtures.tiny_config()
    config.method = method
    config_lib.apply_overrides(config, methods.resolve_smoke_overrides(config))
    config_lib.apply_overrides(config, {f: 0.0 for f in methods.resolve_dropout_fields(config)})
    config_lib.apply_overrides(config, overrides)
    config.data.streams = streams
    out.append(config)
  return out


def _one_and_twice(method, duplicate, **overrides):
  """(outputs, params, model, config) of the one-stream model on x and of the two-stream model
  on concat(x, x) with params `duplicate(one-stream params)`, in training mode (no dropout)."""
  batch = train_fixtures.random_batch(0)
  x, mask = jnp.asarray(batch['features']), jnp.asarray(batch['mask'])
  results = []
  for config, features in zip(_configs(method, **overrides), (x, jnp.concatenate([x, x], -1))):
    model = methods.get(method).build_model(config, batch['labels'].shape[-1], features.shape[-1])
    if not results:
      params = model.init(jax.random.PRNGKey(0), features, mask)['params']
    else:
      params = duplicate(results[0][1])
    out = model.apply({'params': params}, features, mask, train=True,
                      rngs={'dropout': jax.random.PRNGKey(1)})
    results.append((out, params, model, config))
  return results, batch


def _assert_close(a, b, names):
  for name in names:
    np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-5, atol=1e-6,
                               err_msg=name)


def _loss(config, out, batch, params_width):
  method = methods.get(config.method)
  state = dict(method.init_state(config, batch['labels'].shape[-1], params_width),
               step=jnp.asarray(3, jnp.int32))
  return method.loss_fn(out, {k: jnp.asarray(v) for k, v in batch.items()}, state, config,
                        jax.random.PRNGKey(2))


def test_d2net_one_stream_is_two_equal_streams():
  (one, two), batch = _one_and_twice('d2net', lambda p: {'rgb': p['rgb'], 'flow': p['rgb']})
  _assert_close(one[0], two[0], ('tcam', 'embeddings', 'rgb_logits'))
  _assert_close(two[0], dict(two[0], flow_logits=one[0]['rgb_logits']), ('flow_logits',))
  loss1, aux1 = _loss(one[3], one[0], batch, train_fixtures.FEATURE_DIM)
  loss2, aux2 = _loss(two[3], two[0], batch, 2 * train_fixtures.FEATURE_DIM)
  _assert_close(aux1, aux2, ('loss', 'loss_dis', 'loss_ds', 'loss_dv'))
  np.testing.assert_allclose(aux1['state']['x_ref'], aux2['state']['x_ref'], rtol=1e-5, atol=1e-6)


def test_mil_one_stream_is_two_half_classifiers():
  half = lambda p: jax.tree.map(lambda v: v / 2, p['rgb'])
  (one, two), batch = _one_and_twice('mil', lambda p: {'rgb': half(p), 'flow': half(p)})
  _assert_close(one[0], two[0], ('logits', 'tcam'))
  _assert_close(_loss(one[3], one[0], batch, 16)[1], _loss(two[3], two[0], batch, 32)[1],
                ('loss',))


def test_sal_one_stream_counts_its_branch_once():
  def duplicate(p):
    # The encoder reads all channels: concat(x, x) through [K/2; K/2] is x through K.
    kernel = p['encoder']['conv']['kernel'] / 2
    encoder = {'conv': dict(p['encoder']['conv'], kernel=jnp.concatenate([kernel, kernel], 1))}
    return dict(p, encoder=encoder, action_flow=p['action_rgb'], cls_flow=p['cls_rgb'])

  (one, two), batch = _one_and_twice('sal', duplicate)
  _assert_close(one[0], two[0], ('cas', 'cas_bg', 'a', 'a_r', 'a_f', 'sc', 'sc_rgb',
                                 'sc_flow', 'a_r_mix', 'a_f_mix'))
  np.testing.assert_array_equal(one[0]['a_r'], one[0]['a_f'])
  _, a1 = _loss(one[3], one[0], batch, 16)
  _, a2 = _loss(two[3], two[0], batch, 32)
  _assert_close(a1, a2, ('loss_mil', 'loss_bg', 'loss_mc', 'mask_mu', 'mask_var'))
  assert float(a1['loss_mc']) == 0.0
  _assert_close(a1, {k: a2[k] / 2 for k in ('loss_act', 'loss_mix')}, ('loss_act', 'loss_mix'))
  labels = jnp.asarray(batch['labels'])
  ce_sc = float(jnp.mean(sal_losses.ce_per_video(one[0]['sc'], labels)))
  np.testing.assert_allclose(float(a1['loss_se']) - ce_sc, (float(a2['loss_se']) - ce_sc) / 2,
                             rtol=1e-5)
  total = sum(w * float(a1[f'loss_{t}']) for t, w in (
      ('mil', 'w_mil'), ('bg', 'w_bg'), ('act', 'w_act'), ('mix', 'w_mix'), ('mc', 'w_mc'),
      ('se', 'w_se')) for w in [one[3].sal[w]])
  np.testing.assert_allclose(float(_loss(one[3], one[0], batch, 16)[0]), total, rtol=1e-5)


def test_dfe_d2net_base_one_stream_is_d2net_one_stream():
  config, _ = _configs('d2net')
  batch = train_fixtures.random_batch(0)
  x, mask = jnp.asarray(batch['features']), jnp.asarray(batch['mask'])
  d2 = methods.get('d2net').build_model(config, 3, x.shape[-1])
  params = d2.init(jax.random.PRNGKey(0), x, mask)['params']
  assert list(params) == ['rgb']
  # DFE wraps D2-Net's own module: encode -> heads is the one-stream model.
  got = d2.apply({'params': params}, x, mask,
                 method=lambda m, f, k: m.heads(m.encode(f, k)[0], {}, k))
  expected = d2.apply({'params': params}, x, mask)
  _assert_close(got, expected, ('tcam', 'embeddings', 'rgb_logits', 'rgb_embeddings'))
  np.testing.assert_array_equal(methods.get('d2net').feature_split.kd_view(got)['cas'],
                                got['rgb_logits'])


def test_co2net_one_stream_is_two_equal_streams():
  """CCM(x, x) with its attention standing for all three == the two-stream CO2-Net fed (x, x)
  with both CCMs the one, the fusion [[W/2, W/2], [W/2, W/2]] (fused features [X, X]) and the
  classifier's k3 kernel halved over each copy; every loss term equal, the mutual term 0."""
  def duplicate(p):
    half = lambda a: jnp.concatenate([a / 2, a / 2], -2)  # The input axis of a kernel.
    fusion = {'kernel': jnp.concatenate([half(p['fusion']['kernel'])] * 2, -1),
              'bias': jnp.concatenate([p['fusion']['bias']] * 2)}
    conv = dict(p['classifier_conv'], kernel=half(p['classifier_conv']['kernel']))
    return dict(p, f_attn=p['v_attn'], fusion=fusion, classifier_conv=conv)

  width = {'co2net.classifier_hidden': 12}  # Not D (which differs): the same classifier.
  (one, two), batch = _one_and_twice('co2net', duplicate, **width)
  assert 'f_attn' not in one[1]
  _assert_close(one[0], two[0], ('cas', 'attn', 'v_atn', 'f_atn'))
  np.testing.assert_array_equal(one[0]['v_atn'], one[0]['f_atn'])
  _assert_close({'feat': jnp.concatenate([one[0]['feat']] * 2, -1)}, two[0], ('feat',))
  _, a1 = _loss(one[3], one[0], batch, 16)
  _, a2 = _loss(two[3], two[0], batch, 32)
  assert float(a1['shared_classes']) > 0 and float(a1['loss_contrastive']) > 0
  _assert_close(a1, a2, ('loss', 'loss_mil_orig', 'loss_mil_supp', 'loss_contrastive',
                         'loss_mutual', 'loss_norm', 'loss_guide'))
  assert float(a1['loss_mutual']) == 0.0
