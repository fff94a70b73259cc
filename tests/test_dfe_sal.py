"""DFE over SAL (dfe.base='sal', `sal.FEATURE_SPLIT`): SAL's parameters and numbers
through the 'sal' base, SAL's settings in the DFE-over-SAL presets, and the smoke config end to
end. The memory, state, padding and export tests run over both bases in tests/test_dfe.py; the
multi-device and inference checks in tests/test_methods.py (variant 'dfe,base=sal').
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
from d2net_jax.methods.sal import model as sal_model
from test_dfe import C, D, _config, _init

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'


pytestmark = pytest.mark.usefixtures('fast_compile')


def test_sal_base_is_sal_with_the_same_parameters():
  """SAL's parameters load into the 'sal' base, and encode -> heads gives `SAL`'s outputs: in
  evaluation, and in training with the mix-up branch (dropout 0: the masks are drawn apart)."""
  config = _config('sal', **{'lfe.kind': 'none'})
  assert config.sal.dropout_rate == 0.0 and config.sal.mixup
  model, params, batch = _init(config)
  sal = methods.get('sal').build_model(config, C, D)
  assert isinstance(sal, sal_model.SAL)
  sal_params = sal.init(jax.random.PRNGKey(3), batch['features'], batch['mask'])['params']
  assert jax.tree.structure(sal_params) == jax.tree.structure(params['base'])
  params = dict(params, base=sal_params)
  for train in (False, True):
    expected = sal.apply({'params': sal_params}, batch['features'], batch['mask'], train=train)
    got = model.apply({'params': params}, batch['features'], batch['mask'], train=train)
    assert ('a_f_mix' in expected) == train
    assert set(expected) <= set(got)
    for name, value in expected.items():
      np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  # F is SAL's encoder output, zero at padding, of width sal.hidden.
  assert got[dfe.FEATURES_KEY].shape == (*batch['mask'].shape, config.sal.hidden)
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


@pytest.mark.parametrize('preset,arg', [('synthetic', ''), ('synthetic', ',smoke'),
                                        ('thumos14', ''), ('activitynet13', '')])
def test_dfe_over_sal_presets_are_sals_settings(preset, arg):
  """configs/<preset>.py:dfe,base=sal = configs/<preset>.py:sal (data, schedule, localizer,
  sal.hidden, smoke overrides) plus the dfe section: SAL's presets are reused, not copied."""
  module = _preset(preset)
  sal, over_sal = module.get_config('sal' + arg), module.get_config('dfe,base=sal' + arg)
  over_d2net = module.get_config('dfe' + arg)
  got, want, dfe_section = _flat(over_sal), _flat(sal), _flat(over_d2net)
  differ = {k for k in want if got[k] != (dfe_section if k.startswith('dfe.') else want)[k]}
  assert differ == {'method', 'preset', 'dfe.base'}, differ
  assert over_sal.dfe.base == 'sal' and over_sal.data.sampling == 'resample'
  assert (methods.resolve_localizer(over_sal), methods.resolve_localizer(over_d2net)) == (
      'oic', 'tcam')
  assert (methods.resolve_sampling(over_sal), methods.resolve_sampling(over_d2net)) == (
      'resample', 'crop')
  if preset == 'activitynet13':  # DFE's own ActivityNet setting applies after SAL's.
    assert over_sal.dfe.gmm.momentum == 0.99 and over_sal.data.num_segments == 50
  if arg == ',smoke':  # SAL's smoke overrides, then DFE's.
    assert (over_sal.sal.hidden, over_sal.dfe.lfe.num_heads) == (8, 2)


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
