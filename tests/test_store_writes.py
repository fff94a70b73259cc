"""Writing outputs (issue 14, section 4): every bad file or video of `convert` / `import` and every
NaN / inf video of a store reported in one pass; a failed write (disk full, read-only folder) is one
line naming the path and leaves no temporary file and nothing half-written that looks valid."""

import dataclasses
import errno
import os

import h5py
import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.data import hdf5_store
from d2net_jax.data.records import DataError, DataErrors, VideoRecord
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.training import checkpointing
from d2net_jax.utils import atomic_write

import cli_process
from test_data_readers import D, VIDEOS, features_of, tiny_dataset, write_stpn, write_wtalc

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _with_features(dataset, changes):
  """`dataset` whose video i loads `changes[i]`."""
  for i, array in changes.items():
    dataset.videos[i] = VideoRecord(**{**dataset.videos[i].__dict__, 'load': lambda a=array: a})
  return dataset


def test_store_lists_every_nan_or_inf_video_in_one_message(tmp_path):
  nan, inf = features_of(0, 5), features_of(1, 5)
  nan[2, 1], inf[4, 0] = np.nan, np.inf
  dataset = _with_features(tiny_dataset(('a', 'b', 'c'), ('train', 'test', 'test')),
                           {0: nan, 2: inf})
  with pytest.raises(DataErrors) as e:
    hdf5_store.write_store(tmp_path / 's.h5', dataset)
  assert e.value.summary.endswith('2 of 3 videos cannot be written (no store written)')
  assert len(e.value.problems) == 2 and "video 'a'" in str(e.value) and "video 'c'" in str(e.value)
  assert 'NaN or Inf' in str(e.value) and len(str(e.value).splitlines()) == 1
  assert not list(tmp_path.iterdir())  # No store, no temporary file.


@pytest.mark.parametrize('layout', ['wtalc', 'stpn'])
def test_convert_reports_every_bad_file_in_one_pass_then_fails(layout, tmp_path, capsys):
  root = tmp_path / 'data'
  bad = [features_of(i, t) for i, (_, _, t, _, _) in enumerate(VIDEOS)]
  bad[1][3, 0] = np.nan
  if layout == 'wtalc':
    bad[3] = bad[3][:, :D - 2]  # Another feature dim.
    write_wtalc(root, features=bad, name='Tiny')
    argv = ['--layout', 'wtalc', '--root', str(root), '--name', 'Tiny', '--trust-pickle']
  else:
    write_stpn(root, features=bad)
    (root / 'features/test/flow/video_test_02.npy').unlink()  # A missing file.
    argv = ['--layout', 'stpn', '--root', str(root)]
  out = tmp_path / 'out.h5'
  assert cli.main(['convert', *argv, '--out', str(out)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and 'video_validation_02' in err[0] + err[1], err
  assert 'video_test_02' in err[0] + err[1], err
  assert err[2].startswith('d2net-jax convert: error: ') and '2 of 4 videos' in err[2], err
  assert not out.exists() and not list(tmp_path.glob('.*'))


def test_import_lists_every_nan_file_then_fails(tmp_path, capsys):
  feats = tmp_path / 'feats'
  feats.mkdir()
  for i in range(3):
    array = features_of(i, 6)
    if i != 1:
      array[0, 0] = np.nan
    np.save(feats / f'clip{i}.npy', array)
  (tmp_path / 'labels.csv').write_text('video,labels\nclip0,A\nclip1,A\nclip2,B\n')
  assert cli.main(['import', '--features', str(feats), '--labels', str(tmp_path / 'labels.csv'),
                   '--out', str(tmp_path / 'x.h5'), '--no-progress']) == 1
  err = capsys.readouterr().err
  assert "'clip0'" in err and "'clip2'" in err and '2 of 3 videos' in err
  assert not (tmp_path / 'x.h5').exists()


def test_disk_full_while_writing_a_store_is_one_line_and_leaves_the_old_store(tmp_path, capsys,
                                                                              monkeypatch):
  path = hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset())
  before = path.read_bytes()
  written = []

  def write_video(*args, **kwargs):
    if written:
      raise NO_SPACE
    written.append(1)

  monkeypatch.setattr(hdf5_store, '_write_video', write_video)
  with pytest.raises(OSError) as e:
    hdf5_store.write_store(path, tiny_dataset(('x', 'y')))
  assert e.value.filename == str(path) and 'No space left on device' in e.value.strerror
  assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['s.h5']
  # The commands: one line naming the path.
  write_stpn(tmp_path / 'data')
  assert cli.main(['convert', '--layout', 'stpn', '--root', str(tmp_path / 'data'), '--out',
                   str(tmp_path / 'new.h5')]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(tmp_path / 'new.h5') in err
  assert 'No space left on device' in err and not list(tmp_path.glob('.*'))


def test_a_really_full_disk_while_writing_a_store(small_disk, tmp_path):
  """Issue 23.1: a disk that fills up under HDF5 (a 300 KiB tmpfs) used to segfault at exit (rc
  139) after hundreds of lines of h5py tracebacks and leave the temporary file. Now: status 1, one
  line naming the store and the cause, nothing left on the disk; for `synthetic` and `import`."""
  disk = small_disk(300)
  result = cli_process.run('synthetic', '--preset', 'thumos14_like', '--out', disk,
                           '--feature-dim', 256, '--num-train', 16, '--num-test', 4,
                           '--no-progress')
  cli_process.assert_clean_failure(result.returncode, result.stderr, 1, disk,
                                   'No space left on device')
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not list(disk.iterdir())
  feats = tmp_path / 'feats'
  feats.mkdir()
  rows = []
  for i in range(12):
    np.save(feats / f'clip{i}.npy', np.ones((100, 64), np.float32) * i)
    rows.append(f'clip{i},A')
  (tmp_path / 'labels.csv').write_text('video,labels\n' + '\n'.join(rows) + '\n')
  result = cli_process.run('import', '--features', feats, '--labels', tmp_path / 'labels.csv',
                           '--out', disk / 'mine.h5', '--no-progress')
  cli_process.assert_clean_failure(result.returncode, result.stderr, 1, disk / 'mine.h5',
                                   'No space left on device')
  assert not list(disk.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_read_only_folder(tmp_path):
  tmp_path.chmod(0o500)
  try:
    with pytest.raises(OSError) as e:
      hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset())
    assert e.value.filename == str(tmp_path / 's.h5')
    with pytest.raises(OSError) as e:
      atomic_write.write_text(tmp_path / 'results.json', '{}')
    assert e.value.filename == str(tmp_path / 'results.json')
  finally:
    tmp_path.chmod(0o700)


def test_results_and_detections_are_never_half_written(tmp_path, monkeypatch):
  path = detections_lib.write_detections(tmp_path / 'det.json', {'v': [('A', 0.0, 1.0, 0.5)]})
  before = path.read_text()

  def no_space(fd):
    raise NO_SPACE

  monkeypatch.setattr(os, 'fsync', no_space)
  with pytest.raises(OSError) as e:
    detections_lib.write_detections(path, {'v': [('A', 0.0, 2.0, 0.9)]})
  assert e.value.filename == str(path) and 'No space left on device' in e.value.strerror
  assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ['det.json']


def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch):
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from d2net_jax.training.train_state import TrainState  # pylint: disable=import-outside-toplevel
  state = TrainState(step=jnp.asarray(1), params={'w': jnp.ones(3)}, opt_state=(),
                     method_state={}, key=jnp.zeros(2, jnp.uint32), num_skipped=jnp.asarray(0))
  checkpointer = checkpointing.Checkpointer(tmp_path)
  checkpointer.save(state)
  checkpointer.wait()

  class FailedWrite:  # A tensorstore write that fails in orbax's background commit.
    def result(self, timeout=None):
      raise NO_SPACE

  async_save = ocp.StandardCheckpointHandler.async_save

  async def no_space(*args, **kwargs):
    return list(await async_save(*args, **kwargs) or []) + [FailedWrite()]

  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'async_save', no_space)
  with pytest.raises(checkpointing.CheckpointWriteError) as e:
    checkpointer.save(state.replace(step=jnp.asarray(2)))
    checkpointer.wait()
  assert e.value.filename == str(tmp_path / 'checkpoints')
  assert 'step 2' in e.value.strerror and 'No space left on device' in e.value.strerror
  assert len(str(e.value).splitlines()) == 1
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['1']  # No temporary.
  monkeypatch.undo()
  restored = checkpointing.Checkpointer(tmp_path).restore_latest(state)
  assert int(restored.step) == 1


def test_store_says_which_streams_it_holds_and_old_stores_hold_two(tmp_path):
  """`streams` round-trips; a store written before the attribute existed reads as 'rgb+flow'."""
  dataset = tiny_dataset()
  dataset.streams = 'rgb'
  path = hdf5_store.write_store(tmp_path / 'rgb.h5', dataset)
  assert hdf5_store.read_store(path).streams == 'rgb'
  with h5py.File(path, 'a') as f:
    del f.attrs['streams']
  assert hdf5_store.read_store(path).streams == 'rgb+flow'
  with pytest.raises(DataError, match="streams 'depth' is not one of"):
    dataclasses.replace(dataset, streams='depth')


def test_float16_store_reads_back_as_float32_within_half_precision(tmp_path):
  dataset = tiny_dataset()
  path = hdf5_store.write_store(tmp_path / 'half.h5', dataset, feature_dtype='float16',
                                compression='gzip')
  with h5py.File(path) as f:
    assert f['videos/a/features'].dtype == np.float16
  for original, read in zip(dataset.videos, hdf5_store.read_store(path).videos):
    features = read.features()
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, original.features(), rtol=1e-3, atol=1e-4)
  too_big = _with_features(tiny_dataset(), {0: np.full((5, D), 1e5, np.float32)})
  with pytest.raises(DataError, match=r"big.h5 \(writing 'tiny'\), video 'a': features exceed"):
    hdf5_store.write_store(tmp_path / 'big.h5', too_big, feature_dtype='float16')


def test_import_takes_an_extract_features_folder_with_its_streams(tmp_path, capsys):
  """`d2net-jax extract`'s per-video .npy folder is `import`'s input; its extractor.json says
  the features are RGB only, and the store says so too."""
  folder = tmp_path / 'new.features'
  folder.mkdir()
  np.save(folder / 'clip.npy', np.ones((3, 4), np.float32))
  (folder / 'extractor.json').write_text('{"streams": "rgb"}')
  (tmp_path / 'labels.csv').write_text('video,labels,subset\nclip,jump,train\n')
  out = tmp_path / 'mine.h5'
  assert cli.main(['import', '--features', str(folder), '--labels',
                   str(tmp_path / 'labels.csv'), '--out', str(out)]) == 0
  assert hdf5_store.read_store(out).streams == 'rgb'
  assert '(streams rgb)' in capsys.readouterr().out
