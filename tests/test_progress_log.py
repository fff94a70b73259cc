"""The training bar and log lines do not overwrite each other (issue 14, section 5)."""

import contextlib
import io
import sys

import numpy as np
import tqdm

from d2net_jax.utils import progress as progress_lib


def test_log_lines_clear_the_progress_bar(monkeypatch):
  """On a terminal, a log line during training is written in tqdm's external write mode."""
  events = []

  @contextlib.contextmanager
  def external_write_mode(**kwargs):
    events.append('clear')
    yield
    events.append('redraw')

  monkeypatch.setattr(tqdm.tqdm, 'external_write_mode', external_write_mode)
  bar = progress_lib.Progress(0, 10, disable=False)
  bar.wrap(events.append)('step 5: validation ...')
  bar.close()
  assert events == ['clear', 'step 5: validation ...', 'redraw']
  plain = progress_lib.Progress(0, 10, disable=True)
  assert plain.wrap(print) is print
  plain.close()


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_store_writes_and_evaluation_passes_show_a_bar_on_a_terminal_only(tmp_path, monkeypatch):
  """convert / import / synthetic (all write through write_store) and the evaluation passes show
  a tqdm bar on stderr when it is a terminal and the pass is long, never in logs or with the flag
  off."""
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from d2net_jax import inference  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  from test_data_readers import tiny_dataset  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(progress_lib, 'PROGRESS_DELAY_S', 0.0)  # Every pass counts as long.

  def stderr_of(fn, terminal=True):
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, 'stderr', stream)
    fn()
    return stream.getvalue()

  dataset = tiny_dataset()
  assert 'writing a.h5' in stderr_of(lambda: hdf5_store.write_store(tmp_path / 'a.h5', dataset))
  assert not stderr_of(lambda: hdf5_store.write_store(tmp_path / 'b.h5', dataset),
                       terminal=False)
  assert not stderr_of(lambda: hdf5_store.write_store(tmp_path / 'c.h5', dataset,
                                                      progress=False))
  feats = tmp_path / 'feats'
  feats.mkdir()
  np.save(feats / 'clip0.npy', np.ones((4, 2), np.float32))
  (tmp_path / 'labels.csv').write_text('video,labels\nclip0,A\n')
  argv = ['import', '--features', str(feats), '--labels', str(tmp_path / 'labels.csv'), '--out',
          str(tmp_path / 'd.h5')]
  assert 'writing d.h5' in stderr_of(lambda: cli.main(argv))
  assert 'writing d.h5' not in stderr_of(lambda: cli.main(argv + ['--no-progress']))
  # An evaluation pass: the localizer over every video.
  outputs = [inference.VideoOutputs({'tcam': np.full((5, 3), 0.5, np.float32),
                                     'attention': np.ones(5, np.float32)}, {}, 0.64)] * 2
  config = config_lib.base_config()
  assert 'localizing' in stderr_of(lambda: inference.detect(outputs, dataset.videos, config))
  assert not stderr_of(lambda: inference.detect(outputs, dataset.videos, config, progress=False))


def test_training_lines_show_window_means_and_say_so(capsys):
  """Issue 23.8: the console showed the last step's losses (noise with SAL's batch of 2) while
  metrics.jsonl has every step; now the means of the log window, said in the line."""
  window = [{'loss': 1.0, 'loss_a': 2.0}, {'loss': float('nan'), 'loss_a': 4.0},
            {'loss': 3.0, 'loss_a': 6.0}]
  means = progress_lib.window_means(window, ['loss', 'loss_a', 'absent'])
  assert means == {'loss': 2.0, 'loss_a': 4.0}  # A skipped step's NaN is left out.
  assert np.isnan(progress_lib.window_means([{'loss': float('nan')}], ['loss'])['loss'])
  bar = progress_lib.Progress(0, 10, disable=True)
  bar.update(3, means, window=3)
  bar.close()
  line = capsys.readouterr().err.strip()
  assert line.startswith('step 3: loss=2 loss_a=4 (means of 3 steps;'), line
