r"""ActivityNet1.2 (100 classes), the official D2-Net code's settings; `:paper` for the paper's.

  d2net-jax train --config configs/activitynet12.py --workdir runs/anet12 \
      --config.data.kind=wtalc --config.data.path=/path/to/features_and_annotations

The official code switches these with `--activity-net` (and `num_class == 100`); the ones below
that differ from THUMOS14 are each set here. `PAPER` holds the paper's values where they differ,
`OFFICIAL_PROTOCOL` the official code's protocol (arg 'official_protocol').
"""

import importlib.util
import pathlib


def _thumos_preset():
  path = pathlib.Path(__file__).with_name('thumos14.py')
  spec = importlib.util.spec_from_file_location('d2net_configs_thumos14', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_THUMOS = _thumos_preset()

PAPER = dict(_THUMOS.PAPER)
PAPER.update({
    'model.classifier_kernel_size': 5,  # "(5, 2) for ActivityNet1.2": all three layers.
    'model.classifier_dilation': 2,
    'loss.topk_ratio': 8,  # paper: k = ceil(s / 8) for both datasets.
    'loss.w_ds': 1e-3,  # alpha = 1e-3.
    'loss.w_dv': 1e-3,
    'localize.topk_ratio': 8,
    'loss.bg_threshold': 0.5,
    'loss.snippet_bg_threshold': 0.5,
    'localize.activitynet_class_rule': False,
    'localize.rescale_attention': False,
})

# The official protocol (arg 'official_protocol'): THUMOS14's, with the official ActivityNet1.2
# scorer branch (the annotations on the snippet grid, tIoU 0.5:0.95, selection on the mean), and
# the official loader's drop of videos with at most 5 snippets.
OFFICIAL_PROTOCOL = dict(_THUMOS.OFFICIAL_PROTOCOL)
OFFICIAL_PROTOCOL.update({
    'train.selection_iou': -1.0,
    'evaluation.official_gt': 'annotations',
    'evaluation.use_ambiguous': False,
    'evaluation.tiou_thresholds': tuple(round(0.5 + 0.05 * i, 2) for i in range(10)),
    'data.drop_short_videos': True,
})


def get_config(arg=None):
  """arg: '[METHOD][,paper|,official_protocol][,base=BASE]' as configs/thumos14.py: a registered
  method (default d2net), 'paper' for D2-Net's paper values, 'official_protocol' for the official
  code's protocol end to end, base=BASE for a method that wraps one (dfe,base=sal; `dfe` alone:
  DFE over CO2-Net with CO2-Net's ActivityNet1.2 settings, dfe.gmm.momentum 0.99)."""
  config_lib = _THUMOS.config_lib
  method, flags, values = config_lib.parse_preset_arg(arg, 'configs/activitynet12.py',
                                                      flags=_THUMOS.FLAGS,
                                                      keys=config_lib.PRESET_KEYS)
  _THUMOS.check_flags(flags, 'configs/activitynet12.py')
  config = _THUMOS.get_config(config_lib.format_preset_arg(method, (), values), method_preset=None)
  config.preset = f'configs/activitynet12.py:{arg or ""}'

  config.data.name = 'ActivityNet1.2'
  config.data.num_classes = 100
  config.data.train_subset = 'training'
  config.data.test_subset = 'validation'
  config.data.ambiguous_file = ''

  config.model.kernel_size = 5  # (kernel, dilation) = (5, 2).
  config.model.dilation = 2
  config.model.classifier_kernel_size = 5  # Official; the same as the paper's (5, 2) here.
  config.model.classifier_dilation = 2

  config.loss.topk_ratio = 4  # Official: k = ceil(s / 4) for 100 classes. paper: 8.
  config.loss.bg_threshold = 0.8  # Official: background attention kept above 0.8. paper: 0.5.
  config.loss.snippet_bg_threshold = 0.3  # Official: pseudo-background lambda' < 0.3. paper: 0.5.
  config.loss.w_ds = 0.1  # Official options.py defaults. paper: alpha = 1e-3.
  config.loss.w_dv = 0.1

  config.train.selection_iou = -1.0  # Official code selects on the mean mAP over 0.5:0.95.

  config.localize.topk_ratio = 4  # Official. paper: 8.
  config.localize.activitynet_class_rule = True  # Official: at most two classes per video.
  config.localize.rescale_attention = True  # Official: lambda' scaled by 2 / max(lambda').
  config.evaluation.tiou_thresholds = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
  config.evaluation.use_ambiguous = False
  config.evaluation.official_gt = 'annotations'  # The official scorer's ActivityNet1.2 branch.

  if 'paper' in flags:
    _THUMOS.apply_overrides(config, PAPER)
  if 'official_protocol' in flags:  # D2-Net's (mil's, DFE over D2-Net's); SAL has none here.
    _THUMOS.apply_overrides(config, _THUMOS.official_protocol(
        config, 'activitynet12', OFFICIAL_PROTOCOL, 'configs/activitynet12.py'))
  _THUMOS.config_lib.apply_method_preset(config, 'activitynet12')
  return config
