"""Fields removed from the schema (config.REMOVED_FIELDS): a run's config.json written before
still loads (`run_config`) and resumes (`check_resume`); an unknown field is still an error."""

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
