r"""THUMOS14 (20 classes), the official D2-Net code's settings; `:paper` for the paper's.

  d2net-jax train --config configs/thumos14.py --workdir runs/thumos14 \
      --config.data.kind=wtalc --config.data.path=/path/to/features_and_annotations

  d2net-jax train --config configs/thumos14.py:paper ...   # the paper's stated settings
  d2net-jax train --config configs/thumos14.py:mil ...     # the MIL baseline on the same data

The argument is a comma-separated list: a method name (d2net_jax.methods.names(), default
'd2net') and flags ('paper': D2-Net's paper values), e.g. `configs/thumos14.py:d2net,paper`.

Every field of d2net_jax/config.py can be overridden (`--config.train.batch_size=10`). The values
below repeat the schema's defaults on purpose, so the settings that matter read in one place; each
paper/official difference is a named field with a `paper:` comment, and `PAPER` sets them all.
"""

from d2net_jax import config as config_lib

# The paper's values where the official code differs (arg 'paper').
PAPER = {
    'train.batch_size': 10,
    'train.weight_decay': 5e-3,
    'model.classifier_kernel_size': 3,  # "(3, 1) for the temporal convolutional layers".
    'model.residual': False,
    'model.dropout_rate': 0.0,
    'loss.positive_class_weight': False,
    'loss.class_reduction': 'sum',
    'loss.normalize_attention': False,
    'loss.x_ref_source': 'mean_bg',
    'loss.w_ds': 0.2,  # alpha.
    'loss.w_dv': 0.2,
    'loss.pdmi_start_step': -1,  # On from the first step...
    'loss.pdmi_every': 1,  # ...at every step.
    'localize.class_score_source': 'tcam',
    'localize.topk_rounding': 'ceil',
    'localize.proposal_thresholds': (0.025, 0.5, 0.025),
    'localize.outer_mean': 'pooled',
    'localize.outer_rejection': False,
    'localize.nms_threshold': 0.5,
    'localize.score_threshold_scope': 'video',
}


def apply_overrides(config, overrides):
  """Sets 'section.field' -> value on a locked config (a misspelt field raises)."""
  return config_lib.apply_overrides(config, overrides)


def get_config(arg=None):
  """arg: '[METHOD][,paper][,base=BASE]': METHOD as registered (default d2net); 'paper': D2-Net's
  paper values; base=BASE: the base of a method that wraps one (dfe)."""
  method, flags, values = config_lib.parse_preset_arg(arg, 'configs/thumos14.py',
                                                      flags=('paper',),
                                                      keys=config_lib.PRESET_KEYS)
  config = config_lib.base_config()
  config.lock()  # Presets and command-line overrides may change fields, never add them.
  config.method = method

  config.data.kind = 'wtalc'
  config.data.name = 'Thumos14reduced'
  config.data.num_classes = 20
  config.data.feature_dim = 2048
  config.data.train_subset = 'validation'  # THUMOS14 trains on its validation videos.
  config.data.test_subset = 'test'
  config.data.max_seqlen = 750

  config.model.kernel_size = 3  # (kernel, dilation) = (3, 1).
  config.model.dilation = 1
  config.model.classifier_kernel_size = 1  # paper: 3.
  config.model.dropout_rate = 0.7  # paper: none.

  config.loss.topk_ratio = 8  # k = ceil(s / 8).
  config.loss.beta = 2.0
  config.loss.gamma = 0.01
  config.loss.w_ds = 0.1  # paper: alpha = 0.2.
  config.loss.w_dv = 0.1  # paper: alpha = 0.2.
  config.loss.pdmi_start_step = 1000  # paper: from the start.
  config.loss.pdmi_every = 2  # paper: every step.

  config.train.seed = 1
  config.train.batch_size = 20  # Official options.py default. paper: 10.
  config.train.num_steps = 20000
  config.train.learning_rate = 1e-4
  config.train.weight_decay = 5e-4  # paper: 0.005.
  config.train.weight_decay_mode = 'coupled'
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.selection = 'validation'  # Official code: best test mAP ('test').
  config.train.selection_iou = 0.5  # Official code selects on mAP@0.5.

  config.localize.nms_threshold = 0.3  # paper: 0.5.
  config.evaluation.tiou_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

  if 'paper' in flags:
    apply_overrides(config, PAPER)
  config_lib.apply_method_preset(config, 'thumos14')
  config_lib.apply_preset_values(config, values, 'configs/thumos14.py')
  return config
