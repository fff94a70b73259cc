"""Errors before work, in one line (issue 14, section 4): every config value checked with the field
named, bad preset arguments naming the valid ones, every command's --help listing its flags."""

import importlib.util
import pathlib

import pytest

from d2net_jax import config as config_lib
from d2net_jax import methods
from d2net_jax.commands import cli
from d2net_jax.config import checks as config_checks

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / 'configs'
SMOKE = str(CONFIGS / 'synthetic.py:smoke')


def _preset(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize('name,arg', [
    ('synthetic', None), ('synthetic', 'smoke'), ('synthetic', 'mil,smoke'), ('thumos14', None),
    ('thumos14', 'paper'), ('thumos14', 'mil'), ('activitynet12', None),
    ('activitynet12', 'paper'), ('thumos14', 'co2net'), ('activitynet12', 'co2net'),
    ('activitynet13', 'co2net'), ('synthetic', 'co2net,smoke')])
def test_every_preset_passes(name, arg, tmp_path):
  config = _preset(name, arg)
  config.data.path = str(tmp_path)
  config_checks.validate_config(config)


BAD = [  # (method, field, value, what the message says)
    (None, 'loss.denoising', 'pdmI', "must be one of ('pdmi'"),
    (None, 'localize.nms_threshold', 1.5, 'in (0, 1]'),
    (None, 'localize.nms_threshold', 0.0, 'in (0, 1]'),
    (None, 'model.dropout_rate', 1.0, 'in [0, 1)'),
    (None, 'train.learning_rate', 0.0, '> 0'),
    (None, 'train.learning_rate', float('nan'), '> 0'),
    (None, 'loss.topk_ratio', 0, '> 0'),
    (None, 'localize.topk_ratio', -1, '> 0'),
    (None, 'loss.prob_clip', 0.5, 'in [0, 0.5)'),
    (None, 'loss.fg_threshold', 1.2, 'in [0, 1]'),
    (None, 'loss.pdmi_every', 0, '>= 1'),
    (None, 'model.kernel_size', 0, '>= 1'),
    (None, 'train.weight_decay', -1e-4, '>= 0'),
    (None, 'train.adam_b2', 1.0, 'in [0, 1)'),
    (None, 'data.seconds_per_snippet', 0.0, '> 0'),
    (None, 'data.segment_policy', 'clamp', "one of ('clip', 'refuse')"),
    (None, 'localize.class_threshold', 2.0, 'in [0, 1]'),
    (None, 'localize.topk_rounding', 'round', "'floor' or 'ceil'"),
    (None, 'evaluation.unknown_videos', 'ignore', 'must be one of'),
    (None, 'evaluation.tiou_thresholds', (0.5, 1.5), 'in (0, 1]'),
    ('mil', 'mil.dropout_rate', -0.1, 'in [0, 1)'),
    ('mil', 'mil.topk_ratio', 0, '> 0'),
    ('mil', 'mil.kernel_size', 0, '>= 1'),
    ('co2net', 'co2net.topk_ratio', 0.0, '> 0'),
    ('co2net', 'co2net.smooth_kernel', 12, 'odd'),
    ('co2net', 'co2net.contrastive_no_pairs', 'inf', "one of ('zero', 'nan')"),
    ('co2net', 'co2net.contrastive_pairs', 11, 'need a batch of at least 22'),
    ('co2net', 'data.similar_size', 3, 'must be pairs'),
    ('co2net', 'data.sampler', 'pairs', "one of ('auto', 'uniform', 'similar_pairs')"),
    ('co2net', 'data.test_sampling', 'all', "one of ('auto', 'whole', 'resample')"),
    ('co2net', 'train.batch_size', 5, 'the pairs need a batch of at least 6'),
    ('co2net', 'data.num_similar', 11, 'the similar-pair sampler needs 22 rows'),
]


@pytest.mark.parametrize('method,field,value,says', BAD)
def test_bad_values_are_refused_naming_the_field(method, field, value, says):
  config = config_lib.base_config()
  config.data.kind = 'synthetic'
  if method:
    config.method = method
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate_config(config)
  message = str(e.value)
  assert f'config.{field}' in message and says in message and '\n' not in message


def test_every_method_checks_its_own_dropout():
  """Each registered method rejects dropout 1 in its own section (its validate_config runs)."""
  for name in methods.names():
    method = methods.get(name)
    for field in method.dropout_fields:
      config = config_lib.base_config()
      config.data.kind, config.method = 'synthetic', name
      config_lib.apply_overrides(config, {field: 1.0})
      with pytest.raises(config_checks.ConfigError, match=field.replace('.', r'\.')):
        config_checks.validate_config(config)


def test_bad_value_on_the_command_line_stops_before_any_work(tmp_path, capsys):
  workdir = tmp_path / 'run'
  assert cli.main(['train', '--config', SMOKE, '--workdir', str(workdir),
                   '--config.localize.nms_threshold=1.5']) == 2
  err = capsys.readouterr().err.strip()
  assert err == 'd2net-jax train: error: config.localize.nms_threshold=1.5: must be a number in ' \
                '(0, 1]'
  assert not workdir.exists()


def test_bad_preset_argument_names_the_valid_ones(capsys):
  assert cli.main(['train', '--config', str(CONFIGS / 'thumos14.py:bogus'),
                   '--workdir', 'x']) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "unknown argument 'bogus'" in err and 'd2net' in err and 'paper' in err


@pytest.mark.parametrize('command,flags', [
    ('train', ('--workdir', '--config', '--[no]progress', '--[no]allow-config-change',
               '--[no]print-config')),
    ('localize', ('--workdir', '--data', '--subset', '--output', '--checkpoint')),
    ('plot', ('--workdir', '--video', '--data', '--output', '--classes', '--checkpoint',
              '--start', '--end')),
    ('check', ('--config', '--workdir')),
])
def test_help_lists_every_flag_and_config_field(command, flags, capsys):
  assert cli.main([command, '--help']) == 0
  out = capsys.readouterr().out
  listed = out[out.index('All flags:'):]
  for flag in flags:
    assert f'  {flag} ' in listed, flag
  for field in ('--config.train.learning_rate=', '--config.localize.nms_threshold=',
                '--config.loss.denoising=', '--config.mil.topk_ratio='):
    assert field in listed, field


@pytest.fixture
def fake_run(tmp_path):
  """A folder with a run's config.json only: enough for the command-line checks."""
  config = config_lib.base_config()
  config.data.kind = 'synthetic'
  (tmp_path / 'config.json').write_text(config.to_json_best_effort())
  return tmp_path


@pytest.mark.parametrize('args,says', [
    (['train', '--config', SMOKE, '--workdir', 'x', '--config.train.lerning_rate=1'],
     "unknown config field 'train.lerning_rate'"),
    (['train', '--config', SMOKE, '--workdir', 'x', '--bogus'], "Unknown command line flag 'bogus'"),
    (['train', '--config', 'no/such.py', '--workdir', 'x'], 'No such file'),
    (['localize', '--workdir', '{run}', '--config.localize.nms_treshold=0.5'],
     "unknown config field 'localize.nms_treshold'"),
    (['localize', '--workdir', '{run}', '--bogus'], "Unknown command line flag 'bogus'"),
    (['localize', '--workdir', '{run}/missing'], 'config.json not found'),
    (['plot', '--workdir', '{run}', '--video', 'v', '--config.loss.btea=1'],
     "unknown config field 'loss.btea'"),
    (['plot', '--workdir', '{run}', '--video', 'v', '--colour=red'],
     "Unknown command line flag 'colour'"),
    (['plot', '--workdir', '{run}', '--video', 'v', '--output', 'v.jpg'],
     'one of .png, .pdf, .svg (got .jpg)'),
    (['plot', '--workdir', '{run}', '--video', 'v', '--start', '9', '--end', '3'], 'start < end'),
    (['check', '--config', SMOKE, '--config.data.pth=x'], "unknown config field 'data.pth'"),
    (['check', '--config', SMOKE, '--config.data.kind=hdf5', '--config.data.path=/no/such.h5'],
     "config.data.path='/no/such.h5': no such file or folder"),
])
def test_command_line_errors_are_one_line(args, says, fake_run, capsys):
  assert cli.main([a.replace('{run}', str(fake_run)) for a in args]) != 0
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and says in err, err


def test_unwritable_workdir_is_one_line_naming_the_path(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  assert cli.main(['train', '--config', SMOKE, '--workdir', str(blocker / 'run')]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(blocker / 'run') in err
