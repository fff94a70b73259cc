r"""The demo: D2-Net on the `thumos14_like` synthetic benchmark, small enough for a laptop.

  d2net-jax train --config configs/synthetic.py --workdir runs/demo     # = bash dev.sh demo

Generates the synthetic features into `<workdir>/data` on first use, trains, keeps the best
checkpoint by mAP on a validation split held out from the training videos, and ends with the
test-set mAP table. Under 5 minutes on 2 CPU cores, data generation and compilation included.
Everything else is THUMOS14's official setting (configs/thumos14.py), shrunk where it says so.
"""

import importlib.util
import pathlib


def _thumos_preset():
  path = pathlib.Path(__file__).with_name('thumos14.py')
  spec = importlib.util.spec_from_file_location('d2net_configs_thumos14', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  """arg: None, or 'paper' for THUMOS14's paper settings on the same data and schedule."""
  config = _thumos_preset().get_config(arg)

  config.data.kind = 'synthetic'
  config.data.path = ''  # Generated into <workdir>/data.
  config.data.synthetic.preset = 'thumos14_like'
  config.data.feature_dim = 128  # THUMOS14: 2048.
  config.data.max_seqlen = 256  # THUMOS14: 750.
  config.data.seconds_per_snippet = 0.64

  config.train.batch_size = 10
  config.train.cache_features = True  # The whole synthetic set fits in memory.
  config.train.num_steps = 1000  # THUMOS14: 20000.
  config.train.learning_rate = 5e-4  # THUMOS14: 1e-4 (fewer steps here).
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 250
  config.loss.pdmi_start_step = 250  # THUMOS14: 1000 of 20000 steps.
  return config
