"""Fields removed from the schema (config.REMOVED_FIELDS): a run's config.json written before
still loads (`run_config`) and resumes (`check_resume`); an unknown field is still an error.
Defaults changed since (config.CHANGED_DEFAULTS, dfe.base 'd2net' -> 'co2net'): an old config
keeps its meaning, and a run of another method still resumes."""

import json

import pytest

from d2net_jax import config as config_lib
from d2net_jax.commands import config_cli
from d2net_jax.runs import run_dir


def _flat(config):
  return run_dir._flatten(run_dir.config_dict(config))  # pylint: disable=protected-access


def _old_run(tmp_path, extra):
  """A started run whose config.json is today's DFE config plus the fields `extra`."""
  config = config_lib.base_config()
  config.method = 'dfe'
  saved = run_dir.config_dict(config)
  for dotted, value in extra.items():
    *path, field = dotted.split('.')
    node = saved
    for part in path:
      node = node[part]
    node[field] = value
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')
  return config


def test_removed_fields_are_gone_from_the_schema():
  assert config_lib.REMOVED_FIELDS
  assert not set(config_lib.REMOVED_FIELDS) & set(_flat(config_lib.base_config()))


def test_an_old_config_json_with_removed_fields_loads_and_resumes(tmp_path):
  # The values they had (defaults 0.0 and 0.1), and others: none ever changed a run.
  config = _old_run(tmp_path, {'dfe.loss.w_mem': 0.5, 'dfe.loss.mem_temperature': 0.1})
  loaded = config_cli.run_config(tmp_path)
  assert _flat(loaded) == _flat(config)
  assert run_dir.check_resume(tmp_path, config) == {}


def test_an_unknown_field_is_still_refused(tmp_path):
  config = _old_run(tmp_path, {'dfe.loss.w_nothing': 1.0})
  with pytest.raises(config_cli.UsageError, match="unknown config field 'w_nothing'"):
    config_cli.run_config(tmp_path)
  with pytest.raises(run_dir.RunDirError, match='dfe.loss.w_nothing'):
    run_dir.check_resume(tmp_path, config)


def test_without_removed_fields_copies():
  saved = {'dfe': {'loss': {'w_mem': 0.0, 'w_global': 1.0}}, 'method': 'dfe'}
  assert config_lib.without_removed_fields(saved) == {'dfe': {'loss': {'w_global': 1.0}},
                                                      'method': 'dfe'}
  assert saved['dfe']['loss']['w_mem'] == 0.0
  assert config_lib.without_removed_fields({'method': 'd2net'}) == {'method': 'd2net'}


def _write_run(tmp_path, saved):
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')


def test_a_dfe_config_json_without_dfe_base_means_dfe_over_d2net(tmp_path):
  """A DFE run's config.json without dfe.base was DFE over D2-Net (the default then): it loads as
  such, and a resume with today's default base (co2net) is refused, not silently switched."""
  config = config_lib.base_config()
  config.method = 'dfe'
  assert config.dfe.base == 'co2net' and config_lib.CHANGED_DEFAULTS['dfe.base'] == 'd2net'
  saved = run_dir.config_dict(config)
  del saved['dfe']['base']
  _write_run(tmp_path, saved)
  assert config_cli.run_config(tmp_path).dfe.base == 'd2net'
  with pytest.raises(run_dir.RunDirError, match=r"dfe.base \('d2net' -> 'co2net'\)"):
    run_dir.check_resume(tmp_path, config)
  config.dfe.base = 'd2net'
  assert run_dir.check_resume(tmp_path, config) == {}
  # The old default fills only the section of the run's method (a D2-Net run has no dfe.base).
  assert config_lib.saved_config({'method': 'd2net'}) == {'method': 'd2net'}
  assert config_lib.saved_config({}) == {}
  assert config_lib.saved_config({'method': 'dfe'}) == {'method': 'dfe', 'dfe': {'base': 'd2net'}}


def test_a_run_of_another_method_resumes_across_a_changed_dfe_default(tmp_path):
  """A D2-Net run written before holds dfe.base='d2net' (config.json holds every section): the
  new default changes nothing D2-Net reads, so the resume goes on (the change recorded); a
  change in D2-Net's own sections is still refused."""
  config = config_lib.base_config()
  assert config.method == 'd2net'
  saved = run_dir.config_dict(config)
  saved['dfe']['base'] = 'd2net'
  _write_run(tmp_path, saved)
  assert run_dir.unused_sections(config) >= {'dfe', 'sal', 'co2net'}
  assert run_dir.check_resume(tmp_path, config) == {'dfe.base': ('d2net', 'co2net')}
  config.loss.w_ds = 0.5
  with pytest.raises(run_dir.RunDirError, match='loss.w_ds'):
    run_dir.check_resume(tmp_path, config)
