"""`d2net-jax check` and train's start-up check (issue 14, section 4): every video of every
subset read in one pass, all problems reported, a bad test video stopping `train` before any
training; the pass skipped on data already checked."""

import pathlib
import shutil

import h5py
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax.commands import cli
from d2net_jax.data import check as data_check
from d2net_jax.data import hdf5_store
from d2net_jax.data.records import DataError

SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:smoke')


@pytest.fixture(scope='module')
def good_store(tmp_path_factory):
  folder = tmp_path_factory.mktemp('smoke_data')
  assert cli.main(['check', '--config', SMOKE, f'--config.data.path={folder}']) == 0
  (store,) = folder.glob('*.h5')
  return store


def _bad_store(good_store, tmp_path):
  """A copy with NaN features in one training and one test video."""
  bad = tmp_path / 'bad.h5'
  shutil.copy(good_store, bad)
  with h5py.File(bad, 'r+') as f:
    for key in ('test_00003', 'validation_00001'):
      f['videos'][key]['features'][2] = np.nan
  return bad


def _hdf5_args(path):
  return ['--config', SMOKE, '--config.data.kind=hdf5', f'--config.data.path={path}']


def test_check_reports_every_bad_video_in_one_pass(good_store, tmp_path, capsys):
  bad = _bad_store(good_store, tmp_path)
  assert cli.main(['check', *_hdf5_args(bad)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and err[-1].endswith('2 of 22 videos cannot be used (listed above)')
  assert any(line.startswith('d2net-jax check: test/') and 'NaN' in line for line in err)
  assert any(line.startswith('d2net-jax check: validation/') and 'NaN' in line for line in err)
  assert cli.main(['check', *_hdf5_args(good_store)]) == 0
  assert 'all 22 videos' in capsys.readouterr().out


def test_train_stops_at_start_on_a_bad_test_video(good_store, tmp_path, capsys):
  bad = _bad_store(good_store, tmp_path)
  workdir = tmp_path / 'run'
  assert cli.main(['train', *_hdf5_args(bad), '--workdir', str(workdir), '--noprogress']) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and '2 of 22 videos cannot be used' in err
  assert not (workdir / 'config.json').exists() and not (workdir / 'checkpoints').exists()


def test_start_up_check_is_skipped_on_checked_data(good_store, tmp_path, monkeypatch):
  config = config_lib.base_config()
  config.data.kind, config.data.path = 'hdf5', str(good_store)
  dataset = hdf5_store.read_store(good_store)
  data_check.check_for_run(config, dataset, tmp_path, log=lambda _: None)
  assert (tmp_path / data_check.MARKER).is_file()
  calls = []
  monkeypatch.setattr(data_check, 'find_problems', lambda *a: calls.append(1) or [])
  data_check.check_for_run(config, dataset, tmp_path, log=lambda _: None)
  assert not calls  # Same files: skipped.
  copy = tmp_path / 'copy.h5'
  shutil.copy(good_store, copy)
  config.data.path = str(copy)
  data_check.check_for_run(config, dataset, tmp_path, log=lambda _: None)
  assert calls == [1]  # Other files: checked again.
  monkeypatch.setattr(data_check, 'find_problems', lambda *a: ['test/x: broken'])
  (tmp_path / data_check.MARKER).unlink()
  with pytest.raises(DataError, match='1 of 22 videos cannot be used, first test/x: broken'):
    data_check.check_for_run(config, dataset, tmp_path, log=lambda _: None)
