r"""THUMOS14 (20 classes), the official D2-Net code's settings; `:paper` for the paper's.

  d2net-jax train --config configs/thumos14.py --workdir runs/thumos14 \
      --config.data.kind=wtalc --config.data.path=/path/to/features_and_annotations

  d2net-jax train --config configs/thumos14.py:paper ...   # the paper's stated settings
  d2net-jax train --config configs/thumos14.py:official_protocol ...  # the authors' protocol
  d2net-jax train --config configs/thumos14.py:mil ...     # the MIL baseline on the same data
  d2net-jax train --config configs/thumos14.py:sal --workdir runs/sal_thumos14 \
      --config.data.path=/path/to/BaS-Net_layout  # SAL: STPN layout (data.kind='stpn'), its schedule
  d2net-jax train --config configs/thumos14.py:dfe ...  # DFE over CO2-Net, its authors' settings
  d2net-jax train --config configs/thumos14.py:dfe,base=sal ...  # DFE over SAL: SAL's settings
  d2net-jax train --config configs/thumos14.py:co2net ...  # CO2-Net: the authors' run.sh settings

The argument is a comma-separated list: a method name (d2net_jax.methods.names(), default
'd2net') and flags ('paper': D2-Net's paper values; 'official_protocol': the protocol of the
method's authors, `official_protocol` below), e.g. `configs/thumos14.py:d2net,paper`, and
`base=BASE` for a method that wraps one (DFE; default base co2net), whose settings (CO2-Net's
authors' recipe by default, SAL's data, schedule and localizer for base=sal) apply first.

'official_protocol' is D2-Net's official code's switches, its scorer and its protocol of selecting
the checkpoint on the test set every 500 steps by mAP@0.5, training on all 200 training videos;
for SAL its authors' (the test set every 10 steps, the ActivityNet-style evaluator: SAL's
'thumos14:official_protocol' preset). mil, our baseline, runs under D2-Net's (the method it is
compared with), DFE under its base's.

Every field of d2net_jax/config.py can be overridden (`--config.train.batch_size=10`). The values
below repeat the schema's defaults on purpose, so the settings that matter read in one place; each
paper/official difference is a named field with a `paper:` comment, and `PAPER` sets them all.
"""

from d2net_jax import config as config_lib
from d2net_jax import methods

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
    'loss.video_renormalize': False,  # Eq. 10: P_2 = [p_1, ..., p_n] as they are.
    'loss.snippet_fg_attention': 'all_classes',  # Eq. 9: lambda(t), the max over all classes.
    'loss.joint_normalization': 'count',  # Eq. 9 / 10: 1/z and 1/n.
    'loss.pairing': 'cycle',  # Eq. 3: x and x~ "from different videos".
    'loss.snippet_pdmi': 'filtered',  # Eq. 7: sigma_r the smallest non-zero singular value.
    'model.embeddings_after_dropout': False,  # No dropout in the paper.
    'localize.class_score_source': 'tcam',
    'localize.topk_rounding': 'ceil',
    'localize.proposal_thresholds': (0.025, 0.5, 0.025),
    'localize.outer_mean': 'pooled',
    'localize.outer_rejection': False,
    'localize.nms_threshold': 0.5,
    'localize.score_threshold_scope': 'video',
}


# The official code's protocol where d2net_jax's defaults differ (arg 'official_protocol'): its
# Eq. 3 pairing and snippet-level pDMI, checkpoint selection on the test set every 500 steps by
# mAP@0.5 (so all training videos train), and its scorer (tIoU 0.1:0.5, own GT list).
OFFICIAL_PROTOCOL = {
    'loss.pairing': 'official',
    'loss.snippet_pdmi': 'official',
    'train.selection': 'test',
    'train.eval_every': 500,
    'train.checkpoint_every': 500,
    'train.selection_iou': 0.5,
    'evaluation.protocol': 'd2net_official',
    'evaluation.official_gt': 'thumos14_npy',
    'evaluation.zero_ap_after_empty_class': True,
    'evaluation.use_ambiguous': True,
    'evaluation.tiou_thresholds': (0.1, 0.2, 0.3, 0.4, 0.5),
}
FLAGS = ('paper', 'official_protocol')


def official_protocol(config, dataset: str, d2net_protocol: dict, preset: str) -> dict:
  """The overrides of 'official_protocol' for `config.method` on `dataset`: the protocol of the
  method's authors. D2-Net's is `d2net_protocol`; mil (our baseline, compared with D2-Net) takes
  D2-Net's too; DFE (our design over a base) its base's; another method its preset
  '<dataset>:official_protocol' (SAL on THUMOS14). ValueError (one line) when there is none."""
  owner = methods.method_chain(config)[0].name  # The innermost: DFE's base.
  if owner in ('d2net', 'mil'):
    return d2net_protocol
  own = methods.get(owner).presets.get(f'{dataset}:official_protocol')
  if own is None:
    raise ValueError(f"{preset}: official_protocol is the protocol of a method's authors, and "
                     f'{owner!r} has none for {dataset} (no released code or protocol to follow); '
                     'leave out official_protocol')
  return own


def apply_overrides(config, overrides):
  """Sets 'section.field' -> value on a locked config (a misspelt field raises)."""
  return config_lib.apply_overrides(config, overrides)


def get_config(arg=None, method_preset='thumos14'):
  """arg: '[METHOD][,paper|,official_protocol][,base=BASE]': METHOD as registered (default d2net);
  'paper': D2-Net's paper values; 'official_protocol': the method's authors' protocol end to end
  (`official_protocol`); base=BASE: the base of a method that wraps one (dfe).

  method_preset: the method's dataset settings applied last (`config_lib.apply_method_preset`);
  None for the presets that build on this one with their own (configs/activitynet12.py), so
  SAL's THUMOS14 settings (its STPN layout, jit for a batch of 2) do not leak into them."""
  method, flags, values = config_lib.parse_preset_arg(arg, 'configs/thumos14.py', flags=FLAGS,
                                                      keys=config_lib.PRESET_KEYS)
  check_flags(flags, 'configs/thumos14.py')
  config = config_lib.base_config()
  config.lock()  # Presets and command-line overrides may change fields, never add them.
  config.method = method
  config.preset = f'configs/thumos14.py:{arg or ""}'

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

  config_lib.apply_preset_values(config, values, 'configs/thumos14.py')  # Before: base=sal.
  if 'paper' in flags:
    apply_overrides(config, PAPER)
  protocol = (official_protocol(config, 'thumos14', OFFICIAL_PROTOCOL, 'configs/thumos14.py')
              if 'official_protocol' in flags else None)
  if protocol is OFFICIAL_PROTOCOL:  # D2-Net's, under the method's settings.
    apply_overrides(config, protocol)
  if method_preset is not None:
    config_lib.apply_method_preset(config, method_preset)
  if protocol is not None and protocol is not OFFICIAL_PROTOCOL:  # The method's own, over them.
    apply_overrides(config, protocol)
  return config


def check_flags(flags, preset):
  if {'paper', 'official_protocol'} <= set(flags):
    raise ValueError(f'{preset}: paper and official_protocol exclude each other (the paper\'s '
                     'values vs the official code\'s)')
