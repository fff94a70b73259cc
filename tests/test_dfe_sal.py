"""DFE over SAL (dfe.base='sal', `sal.FEATURE_SPLIT`) and over CO2-Net (the default base,
`co2net.FEATURE_SPLIT`): the base's parameters and numbers through DFE's 'base', the base's
settings in the DFE presets, and the DFE-over-SAL smoke config end to end. The memory, state,
padding and export tests run over D2-Net and SAL in tests/test_dfe.py; the multi-device and
inference checks in tests/test_methods.py (variants 'dfe', over CO2-Net, and 'dfe,base=sal').
"""

import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from d2net_jax import methods
from d2net_jax.data import sampling
from d2net_jax.methods import dfe
from d2net_jax.methods.co2net import model as co2net_model
from d2net_jax.methods.sal import model as sal_model
from test_dfe import C, D, _config, _init

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'


pytestmark = pytest.mark.usefixtures('fast_compile')


@pytest.mark.parametrize('base,module,width', [('sal', sal_model.SAL, 8),
                                               ('co2net', co2net_model.CO2Net, D)])
def test_base_is_the_method_with_the_same_parameters(base, module, width):
  """The base method's own parameters (its names: SAL's 'cls', CO2-Net's 'v_attn', 'fusion',
  'classifier_out', ...) load into DFE's 'base', and encode -> heads gives the method's outputs:
  in evaluation, and in training (SAL: with the mix-up branch; dropout 0: the masks are drawn
  apart). F is zero at padding, of width sal.hidden (SAL's encoder output) or D (CO2-Net's fused
  features)."""
  config = _config(base, **{'lfe.kind': 'none'})
  assert base != 'sal' or (config.sal.dropout_rate == 0.0 and config.sal.mixup)
  model, params, batch = _init(config)
  method = methods.get(base).build_model(config, C, D)
  assert isinstance(method, module)
  own = method.init(jax.random.PRNGKey(3), batch['features'], batch['mask'])['params']
  assert jax.tree.structure(own) == jax.tree.structure(params['base'])
  params = dict(params, base=own)
  for train in (False, True):
    expected = method.apply({'params': own}, batch['features'], batch['mask'], train=train)
    got = model.apply({'params': params}, batch['features'], batch['mask'], train=train)
    assert base != 'sal' or ('a_f_mix' in expected) == train
    assert set(expected) <= set(got)
    for name, value in expected.items():
      np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  assert got[dfe.FEATURES_KEY].shape == (*batch['mask'].shape, width)
  assert np.all(np.asarray(got[dfe.FEATURES_KEY])[batch['mask'] == 0] == 0)


def _preset(name):
  spec = importlib.util.spec_from_file_location(f'{name}_preset', CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flat(config, prefix=''):
  out = {}
  for key, value in config.items():
    out.update(_flat(value, f'{prefix}{key}.') if hasattr(value, 'items')
               else {prefix + key: value})
  return out


@pytest.mark.parametrize('base', ['sal', 'co2net'])
@pytest.mark.parametrize('preset,arg', [('synthetic', ''), ('synthetic', ',smoke'),
                                        ('thumos14', ''), ('activitynet12', ''),
                                        ('activitynet13', '')])
def test_dfe_presets_are_the_bases_settings(base, preset, arg):
  """configs/<preset>.py:dfe,base=B = configs/<preset>.py:B (data, sampler, schedule, localizer,
  the base's model settings and smoke overrides) plus the dfe section: the base's presets are
  reused, not copied. `:dfe` alone is DFE over CO2-Net (the spec's default base) with CO2-Net's
  authors' settings (max_seqlen 500, lr 5e-5, 5000 steps on THUMOS14; 60, 3e-5, 22000 and the
  smoothing on ActivityNet); `:dfe,base=d2net` keeps DFE over D2-Net."""
  module = _preset(preset)
  alone, over = module.get_config(base + arg), module.get_config(f'dfe,base={base}' + arg)
  over_d2net = module.get_config('dfe,base=d2net' + arg)
  got, want, dfe_section = _flat(over), _flat(alone), _flat(over_d2net)
  differ = {k for k in want if got[k] != (dfe_section if k.startswith('dfe.') else want)[k]}
  assert differ == {'method', 'preset', 'dfe.base'}, differ
  assert over.dfe.base == base and over.data.sampling == 'resample'
  assert (methods.resolve_localizer(over), methods.resolve_localizer(over_d2net)) == (
      {'sal': 'oic', 'co2net': 'hamnet'}[base], 'tcam')
  assert (methods.resolve_sampling(over), methods.resolve_sampling(over_d2net)) == (
      'resample', 'crop')
  if base == 'co2net':
    default = _flat(module.get_config('dfe' + arg))
    assert {k for k in got if got[k] != default[k]} == {'preset'}
    assert methods.resolve_batch_sampler(over) == 'similar_pairs'
    assert methods.resolve_test_sampling(over) == 'whole'
    if not arg:
      assert (over.data.num_segments, over.train.learning_rate, over.train.num_steps) == {
          'synthetic': (0, 1e-3, 1000), 'thumos14': (500, 5e-5, 5000),
          'activitynet12': (60, 3e-5, 22000), 'activitynet13': (60, 3e-5, 22000)}[preset]
  if preset.startswith('activitynet'):  # DFE's own ActivityNet setting applies after the base's.
    assert over.dfe.gmm.momentum == 0.99
  if arg == ',smoke':  # The base's smoke overrides, then DFE's.
    assert (over[base].hidden if base == 'sal' else over.co2net.attention_hidden,
            over.dfe.lfe.num_heads) == (8, 2)


@pytest.mark.slow
def test_smoke_config_trains_and_evaluates(tmp_path, capsys):
  """`d2net-jax train --config configs/synthetic.py:dfe,base=sal,smoke` end to end: resampled
  batches, SAL's loss with mix-up, the memory, the 'oic' localizer's detections scored."""
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  smoke = str(CONFIGS / 'synthetic.py:dfe,base=sal,smoke')
  assert cli.main(['train', '--config', smoke, '--workdir', str(tmp_path), '--noprogress',
                   '--config.train.num_steps=4', '--config.train.eval_every=4',
                   '--config.train.checkpoint_every=4']) == 0
  assert 'mAP (%)' in capsys.readouterr().out
  config = json.loads((tmp_path / 'config.json').read_text())
  assert (config['method'], config['dfe']['base'], config['sal']['hidden']) == ('dfe', 'sal', 8)
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  # SAL's synthetic preset (and so DFE over it) trains without mix-up: its term stays 0.
  assert config['sal']['mixup'] is False
  assert lines and all(np.isfinite(l['loss']) and l['loss_mix'] == 0 for l in lines)
  assert lines[-1]['memory_filled'] > 0
  results = json.loads((tmp_path / 'results.json').read_text())
  assert len(results['test']['mAP']) == 7
  assert json.loads((tmp_path / 'detections_test.json').read_text())['results']
