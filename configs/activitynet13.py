r"""ActivityNet1.3 (200 classes). SAL's recipe is its authors' code (lizhilin-ustc/SAL_ActivityNet);
other methods get ActivityNet1.2's settings (configs/activitynet12.py) with 200 classes.

  d2net-jax import --features anet13_features/ --labels gt.json --out anet13.h5
  d2net-jax train --config configs/activitynet13.py:sal --workdir runs/sal_anet13 \
      --config.data.path=anet13.h5

The features: one (T, 2048) .npy per video, RGB first then flow (I3D, 16 frames at 25 fps, as
ACM-Net's, which SAL uses); `gt.json` is the ActivityNet ground truth, whose 'training' videos
train and 'validation' videos are scored (mean mAP over tIoU 0.5:0.95).
"""

import importlib.util
import pathlib


def _preset(name):
  path = pathlib.Path(__file__).with_name(f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'd2net_configs_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_ANET12 = _preset('activitynet12')


def get_config(arg=None):
  """arg: '[METHOD][,base=BASE]': a registered method (default d2net), base=BASE for a method
  that wraps one (dfe,base=sal: SAL's ActivityNet1.3 recipe, then DFE's)."""
  config_lib = _ANET12._THUMOS.config_lib  # pylint: disable=protected-access
  method, _, values = config_lib.parse_preset_arg(arg, 'configs/activitynet13.py',
                                                  keys=config_lib.PRESET_KEYS)
  config = _ANET12.get_config(config_lib.format_preset_arg(method, (), values))
  config.data.kind = 'hdf5'  # Written by `d2net-jax import`.
  config.data.name = 'ActivityNet1.3'
  config.data.num_classes = 200
  config.data.train_subset = 'training'
  config.data.test_subset = 'validation'
  config_lib.apply_method_preset(config, 'activitynet13')
  return config
