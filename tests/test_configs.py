"""Config presets load, differ from the paper exactly where they say so, and the `train` command
reports config errors in one line before anything is built or compiled."""

import importlib.util
import pathlib

import pytest

from d2net_jax.commands import cli
from d2net_jax.commands import config_cli
from d2net_jax.training import train

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'
PRESETS = ('thumos14', 'activitynet12', 'activitynet13', 'synthetic')


def load(name):
  spec = importlib.util.spec_from_file_location(f'preset_{name}', CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name', PRESETS)
def test_preset_loads_and_is_locked(name):
  config = load(name).get_config()
  assert config.data.feature_dim % 2 == 0
  with pytest.raises(AttributeError):
    config.train.no_such_field = 1  # Presets may change fields, never add them.


@pytest.mark.parametrize('name', ['thumos14', 'activitynet12'])
def test_paper_variant_changes_exactly_the_listed_fields(name):
  module = load(name)
  official, paper = module.get_config(), module.get_config('paper')
  for dotted in module.PAPER:
    section, field = dotted.split('.')
    assert paper[section][field] == module.PAPER[dotted], dotted
  assert official.method == paper.method == 'd2net'
  sections = [s for s in official if s not in ('method', 'preset')]
  differing = {f'{s}.{f}' for s in sections for f in official[s]
               if official[s][f] != paper[s][f]}
  assert differing <= set(module.PAPER) | {'loss.bg_threshold', 'loss.snippet_bg_threshold',
                                            'localize.activitynet_class_rule',
                                            'localize.rescale_attention'}
  assert {'train.batch_size', 'train.weight_decay', 'loss.w_ds'} <= differing
  with pytest.raises(ValueError, match='unknown argument'):
    module.get_config('nonsense')


def test_official_settings_of_the_presets():
  thumos, anet = load('thumos14').get_config(), load('activitynet12').get_config()
  assert (thumos.train.num_steps, thumos.train.learning_rate, thumos.train.weight_decay) == (
      20000, 1e-4, 5e-4)
  assert thumos.train.weight_decay_mode == 'coupled'
  assert (thumos.model.kernel_size, thumos.model.dilation) == (3, 1)
  assert (anet.model.kernel_size, anet.model.dilation) == (5, 2)
  assert (anet.loss.topk_ratio, anet.localize.topk_ratio) == (4, 4)
  assert anet.train.selection_iou == -1 and thumos.train.selection_iou == 0.5
  assert thumos.train.selection == anet.train.selection == 'validation'


def test_synthetic_preset_is_valid_without_a_data_path():
  train.validate_config(load('synthetic').get_config())


def test_command_line_overrides(tmp_path):
  config, flag_values = config_cli.parse('t', [
      '--config', str(CONFIGS / 'thumos14.py:paper'), '--config.train.batch_size=4',
      '--config.train.parallelism', 'jit', '--config.evaluation.tiou_thresholds=(0.3,0.5)'])
  assert config.train.batch_size == 4 and config.train.parallelism == 'jit'
  assert tuple(config.evaluation.tiou_thresholds) == (0.3, 0.5)
  assert config.loss.w_ds == 0.2  # From ':paper'.
  del flag_values


@pytest.fixture
def no_training(monkeypatch):
  """Fails the test if the command gets as far as training."""
  def refuse(*args, **kwargs):
    raise AssertionError('train_and_evaluate must not run for a bad config')
  monkeypatch.setattr(train, 'train_and_evaluate', refuse)


@pytest.mark.parametrize('args, message', [
    (['--config.train.batch_sise=4'], "unknown config field 'train.batch_sise'"),
    (['--config.train.batch_size=four'], 'batch_size=four'),
    (['--config.train.parallelism=spmd'], "config.train.parallelism='spmd'"),
    (['--config.data.kind=hdf5', '--config.data.path=/no/such/store.h5'],
     "config.data.path='/no/such/store.h5': no such file"),
    (['--config.data.kind=wtalc'], 'config.data.path is empty'),
    (['--config.train.selection_iou=0.55'], 'selection_iou=0.55'),
])
def test_config_errors_are_one_line(args, message, capsys, tmp_path, no_training):
  argv = ['train', '--config', str(CONFIGS / 'synthetic.py'), '--workdir', str(tmp_path)] + args
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert message in err
  assert err.count('\n') == 1, err


def test_missing_config_file_and_workdir(capsys, tmp_path, no_training):
  assert cli.main(['train', '--config', str(tmp_path / 'none.py'), '--workdir', 'x']) == 2
  assert 'none.py' in capsys.readouterr().err
  assert cli.main(['train', '--config', str(CONFIGS / 'synthetic.py')]) == 2
  assert '--workdir is required' in capsys.readouterr().err


def test_sal_presets():
  """SAL's recipes per dataset (SAL-DFE-spec 2.6, 2.9); ActivityNet1.2 = 1.3's (our assumption)."""
  thumos = load('thumos14').get_config('sal')
  assert (thumos.method, thumos.data.kind, thumos.data.sampling) == ('sal', 'stpn', 'resample')
  assert (thumos.data.num_segments, thumos.train.batch_size, thumos.train.num_steps) == (
      750, 2, 10000)
  assert (thumos.sal.topk_source, thumos.sal.w_bg, thumos.sal.w_mc, thumos.sal.mask_ema) == (
      'comb', 10.0, 5.0, 0.7)
  assert thumos.localize.oic.class_threshold == 0.25 and not thumos.evaluation.use_ambiguous
  for name in ('activitynet12', 'activitynet13'):
    anet = load(name).get_config('sal')
    assert (anet.data.num_segments, anet.data.resample_short, anet.train.batch_size) == (
        50, 'keep', 32)
    assert (anet.sal.encoder_kernel, anet.sal.topk_source, anet.sal.pl_topk) == (7, 'cas', 40)
    assert anet.data.resample_train == 'sorted_random'
    assert (anet.sal.w_bg, anet.sal.w_mc, anet.sal.mask_denominator) == (1.0, 20.0, 6.0)
    assert (anet.localize.oic.class_threshold, anet.localize.oic.nms_threshold) == (0.1, 0.7)
    assert len(anet.evaluation.tiou_thresholds) == 10
  assert load('activitynet12').get_config('sal').data.num_classes == 100
  assert load('activitynet13').get_config('sal').data.num_classes == 200
  demo = load('synthetic').get_config('sal')
  assert demo.sal.hidden < 512 and demo.data.sampling == 'resample'
  # The recipe experiments/sal_sweep.py chose on the validation split (docs/sal.md).
  t = demo.train
  assert (t.batch_size, t.num_steps, t.learning_rate, t.lr_schedule, t.eval_every) == (
      2, 8000, 1e-4, 'constant', 1600)
  assert (demo.sal.hidden, demo.sal.mixup, t.selection) == (128, False, 'validation')
  assert load('synthetic').get_config('sal,smoke').sal.hidden == 8


def test_mil_presets():
  """mil on ActivityNet: the two-class cap of the class rule without D2-Net's absolute 0.5 floor
  (mil's sigmoid scores sit near 1/C); its own synthetic learning rate; D2-Net's unchanged."""
  for name in ('activitynet12', 'activitynet13'):
    mil, d2net = load(name).get_config('mil'), load(name).get_config('d2net')
    assert mil.localize.activitynet_class_rule and mil.localize.activitynet_class_floor == 0.0
    assert d2net.localize.activitynet_class_floor == 0.5
  assert load('synthetic').get_config('mil').train.learning_rate == 3e-3
  assert load('synthetic').get_config('d2net').train.learning_rate == 1e-3
  assert load('thumos14').get_config('mil').localize.activitynet_class_floor == 0.5


def test_official_protocol_is_the_methods_authors(capsys):
  """Issue 23.8: `thumos14.py:sal,official_protocol` scored SAL with D2-Net's official scorer and
  its ground-truth file. A protocol belongs to a method's authors: SAL's selects on the test set
  every 10 steps with the ActivityNet-style evaluator. mil (our baseline, compared with D2-Net)
  runs under D2-Net's, DFE under its base's; a method without one on a dataset is refused."""
  thumos, synthetic = load('thumos14'), load('synthetic')
  for config in (thumos.get_config('sal,official_protocol'),
                 thumos.get_config('dfe,base=sal,official_protocol'),
                 synthetic.get_config('sal,official_protocol')):
    assert config.evaluation.protocol == 'activitynet', config.preset
    assert (config.train.selection, config.train.eval_every) == ('test', 10), config.preset
    assert config.train.selection_iou == -1.0 and not config.evaluation.use_ambiguous
    assert config.loss.pairing != 'official'  # D2-Net's switches stay D2-Net's.
  for arg in ('official_protocol', 'mil,official_protocol', 'dfe,base=d2net,official_protocol'):
    config = thumos.get_config(arg)
    assert (config.evaluation.protocol, config.train.eval_every) == ('d2net_official', 500), arg
  assert load('activitynet12').get_config('official_protocol').evaluation.protocol == (
      'd2net_official')
  with pytest.raises(ValueError, match="official_protocol.*'sal'.*activitynet12"):
    load('activitynet12').get_config('sal,official_protocol')
  assert cli.main(['train', '--config', f'{CONFIGS / "activitynet12.py"}:sal,official_protocol',
                   '--workdir', 'x', '--print-config']) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'official_protocol' in err, err


def test_activitynet12_sal_reads_the_wtalc_layout_not_sals_thumos14_settings():
  """Issue 23.8: activitynet12.py:sal (and DFE over SAL) carried data.kind='stpn' (and jit
  parallelism) from SAL's THUMOS14 settings; the README added --config.data.kind=wtalc by hand."""
  d2net = load('activitynet12').get_config()
  for arg in ('sal', 'dfe,base=sal'):
    config = load('activitynet12').get_config(arg)
    assert config.data.kind == 'wtalc' == d2net.data.kind, arg
    assert config.train.parallelism == d2net.train.parallelism, arg
  assert load('activitynet13').get_config('sal').data.kind == 'hdf5'
  assert load('thumos14').get_config('sal').data.kind == 'stpn'  # SAL's own THUMOS14 layout.
