"""CO2-Net (Hong, Feng, Xu, Shan, Zheng, ACM MM 2021): cross-modal consensus network.

  model.py   two cross-modal consensus modules (RGB filtered by flow, flow by RGB), their
             attentions, the fused features, a classifier with a background class, the
             ActivityNet output smoothing
  losses.py  the code's `criterion`: MIL on cas and on the attention-suppressed cas, co-activity
             similarity over similar pairs, mutual attention MSE, norm and guide terms

Re-implemented from `../shared/methods/SAL-DFE-spec.md` Sec. 3.2-3.5 and `co2net-facts.md`
(observed by running harlanhong/MM2021-CO2-Net, which has no license; nothing copied). Config
section `co2net`; every default is the authors' THUMOS14 code, `presets` hold their ActivityNet1.2
settings (docs/co2net.md lists every switch). Training batches: videos resampled to
`data.num_segments` snippets, the similar-pair sampler (rows (0, 1), (2, 3), (4, 5) share a
class). Test: whole videos, the 'hamnet' localizer (d2net_jax/localize/hamnet.py). No method
state. DFE's default base: `FEATURE_SPLIT` splits it at the fused features (docs/co2net.md).
"""

import jax
import ml_collections

from d2net_jax.methods import base
from d2net_jax.methods import layers
from d2net_jax.methods.co2net import losses
from d2net_jax.methods.co2net import model as model_lib
from d2net_jax.utils import checks

DROPOUT_FIELDS = ('co2net.dropout_rate', 'co2net.classifier_dropout', 'co2net.ccm_dropout',
                  'co2net.attention_logit_dropout')


def _config_sections():
  c = ml_collections.ConfigDict()
  # Network (co2net-facts.md Sec. 1). The CCM width is D/2 (the code: 1024).
  c.attention_hidden = 512  # Width of each CCM's attention convolutions.
  c.classifier_hidden = 0  # Width of the classifier's k3 convolution; 0: D (the code: 2048).
  # Kernel of the CCM channel convolution. It runs on a length-1 sequence (the time mean), so only
  # its centre tap acts; the side taps only feel the coupled weight decay. 1: the same outputs.
  c.channel_kernel = 3
  c.dropout_rate = 0.7  # --dropout_ratio: after the fusion and before the classifier.
  c.classifier_dropout = 0.7  # The classifier's second dropout (hard-coded 0.7).
  c.ccm_dropout = 0.5  # Inside each CCM (hard-coded 0.5; --dropout_ratio does not reach it).
  c.attention_logit_dropout = 0.5  # On the attention LOGIT (a dropped one gives sigmoid 0 = 0.5).
  # ActivityNet (ANT_CO2): cas and the attentions averaged over time, kernel (60 // 5) // 2 * 2 + 1
  # = 13, zero padding counted; 0: none (THUMOS14).
  c.smooth_kernel = 0
  # Padded snippets (mask 0) change nothing (the code never sees padding; False: padding enters
  # every convolution, mean and top-k as zero features, as the code would on a padded batch).
  c.mask_padding = True
  # Loss (co2net-facts.md Sec. 2).
  c.topk_ratio = 7.0  # --k: k = max(1, floor(T / k_ratio)). ActivityNet1.2: 5.
  c.contrastive_pairs = 3  # Rows (0, 1), (2, 3), (4, 5) (hard-coded); 0: no co-activity term.
  # No pair sharing a class: 'zero' (the term is 0) or 'nan' (the code's 0 / 0, which skips the
  # update here and poisons the weights in the code). The similar-pair sampler always shares one.
  c.contrastive_no_pairs = 'zero'
  c.guide_detach_background = False  # The code trains the classifier through p_bg too.
  c.alpha1 = 0.8  # Norm terms.
  c.alpha2 = 0.8  # Guide terms.
  c.alpha3 = 1.0  # Co-activity similarity.
  c.alpha4 = 1.0  # Mutual attention MSE (ANT_CO2 ignores --alpha4: always 1).
  return {'co2net': c}


def build_model(config, num_classes: int, feature_dim: int):
  c = config.co2net
  return model_lib.CO2Net(
      num_classes=num_classes, feature_dim=feature_dim, attention_hidden=c.attention_hidden,
      classifier_hidden=c.classifier_hidden, channel_kernel=c.channel_kernel,
      dropout_rate=c.dropout_rate, classifier_dropout=c.classifier_dropout,
      ccm_dropout=c.ccm_dropout, attention_logit_dropout=c.attention_logit_dropout,
      smooth_kernel=c.smooth_kernel, mask_padding=c.mask_padding,
      streams=layers.stream_names(config))


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """`losses.co2net_loss` on the `co2net` section (no randomness, no state)."""
  del state, key
  loss, aux = losses.co2net_loss(outputs, batch, config.co2net, axis_name=axis_name)
  return loss, dict(aux, loss=loss, state={})


def inference_arrays(out, mask):
  """(snippet, video) of CO2-Net's outputs `out` for the 'hamnet' localizer.

  Per snippet: 'cas' (B, T, C + 1) logits with the background last, 'attention' (B, T) the mean
  attention, 'v_atn' / 'f_atn' (B, T) the RGB / flow CCMs' attentions, and for plotting 'tcam'
  (B, T, C) = softmax(cas) without the background column; all zero at padding. No per-video
  arrays.
  """
  m = mask.astype(out['cas'].dtype)
  tcam = jax.nn.softmax(out['cas'], -1)[..., :-1] * m[..., None]
  return {'cas': out['cas'], 'attention': out['attn'], 'v_atn': out['v_atn'],
          'f_atn': out['f_atn'], 'tcam': tcam}, {}


def inference_outputs(model, params, state, features, mask, config):
  """`inference_arrays` of the network in eval mode (no dropout)."""
  del state, config
  return inference_arrays(model.apply({'params': params}, features, mask, train=False), mask)


def loss_terms(outputs, batch, state, config, key, *, axis_name=None):
  """`loss_fn` as named weighted terms (`losses.co2net_loss_terms`), for DFE."""
  del state, key
  terms, aux = losses.co2net_loss_terms(outputs, batch, config.co2net, axis_name=axis_name)
  return terms, dict(aux, state={})


def kd_view(outputs):
  """DFE's view: cas = the class logits with the background last (B, T, C + 1); att = the mean
  attention (B, T), from `encode` (before the fusion), so the same in DFE's two branches."""
  return {'cas': outputs['cas'], 'att': outputs['attn']}


# Split at F = the fused features 'feat' (B, T, E = D): Drop(LReLU(fusion(concat(filtered_rgb,
# filtered_flow)))), what the classifier and the co-activity term read (`model_lib.CO2Net.encode`
# / `heads`). The context is the CCMs' attentions attn, v_atn, f_atn (B, T): CO2-Net computes them
# from the filtered features before the fusion, so they do not depend on F. heads = the classifier
# (cas) and, on ActivityNet, the smoothing. Feature terms: both MILs, L_co and the guide (through
# p_bg); the mutual and norm terms read only the attentions.
FEATURE_SPLIT = base.FeatureSplit(
    feature_width=lambda config, feature_dim: feature_dim,  # F keeps the D channels.
    loss_terms=loss_terms,
    feature_terms=losses.FEATURE_TERMS,  # Both MILs, L_co, the guide.
    inference=lambda outputs, state, mask, config: inference_arrays(outputs, mask),
    kd_view=kd_view,
    has_attention=True,  # The mean CCM attention.
)


def _validate(config):
  c = config.co2net
  checks.check_choices(config, {'co2net.contrastive_no_pairs': ('zero', 'nan'),
                                'co2net.mask_padding': (True, False),
                                'co2net.guide_detach_background': (True, False)})
  for field in DROPOUT_FIELDS:
    checks.check_range(config, field, 0, 1, high_open=True)
  checks.check_range(config, 'co2net.topk_ratio', 0, low_open=True)
  for field in ('alpha1', 'alpha2', 'alpha3', 'alpha4'):
    checks.check_range(config, f'co2net.{field}', 0)
  for field, low in (('attention_hidden', 1), ('classifier_hidden', 0), ('channel_kernel', 1),
                     ('smooth_kernel', 0), ('contrastive_pairs', 0)):
    value = c[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise checks.ConfigError(f'config.co2net.{field}={value!r}: must be an integer >= {low}')
  for field in ('channel_kernel', 'smooth_kernel'):
    if c[field] > 1 and c[field] % 2 == 0:
      raise checks.ConfigError(f'config.co2net.{field}={c[field]}: must be odd (centred)')
  if c.contrastive_pairs and config.data.similar_size != 2:
    raise checks.ConfigError(
        f'config.data.similar_size={config.data.similar_size}: co2net compares rows (2i, 2i + 1) '
        'as pairs, so the similar groups must be pairs (2), or co2net.contrastive_pairs=0')
  if 2 * c.contrastive_pairs > config.train.batch_size:
    raise checks.ConfigError(
        f'config.co2net.contrastive_pairs={c.contrastive_pairs} with config.train.batch_size='
        f'{config.train.batch_size}: the pairs need a batch of at least {2 * c.contrastive_pairs}')


# The authors' settings per dataset preset (run.sh, options.py; co2net-facts.md Sec. 6).
_COMMON = {
    'data.sampling': 'resample',
    'data.resample_train': 'perturb',  # random_perturb: always num_segments snippets.
    'data.shuffle': 'replacement',
    'data.sampler': 'similar_pairs',
    'data.num_similar': 3,
    'data.similar_size': 2,
    'data.test_sampling': 'whole',  # test.py feeds every snippet of a video.
    'train.seed': 3552,
    'train.batch_size': 10,
    'train.lr_schedule': 'constant',
    'train.weight_decay_mode': 'coupled',  # torch.optim.Adam(weight_decay=...).
    'train.skip_nonpositive_loss': False,  # The loss is positive; the code never skips.
    'train.eval_every': 200,  # --interval (the code tests on the test set: train.selection).
    'train.checkpoint_every': 200,
    'train.selection_iou': -1.0,  # The code keeps the best sum (THUMOS14) / mean of the mAPs.
}
_THUMOS14 = dict(_COMMON, **{
    'data.num_segments': 500,  # --max-seqlen 500 (options.py default: 320).
    'train.num_steps': 5000,  # run.sh; the README's "train your own": 20000.
    'train.learning_rate': 5e-5,
    'train.weight_decay': 1e-3,
    'co2net.topk_ratio': 7.0,
    'evaluation.tiou_thresholds': (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    'evaluation.use_ambiguous': True,  # The code drops detections touching ambiguous regions.
})
_ACTIVITYNET12 = dict(_COMMON, **{
    'data.num_segments': 60,
    'train.num_steps': 22000,
    'train.learning_rate': 3e-5,
    'train.weight_decay': 5e-4,  # options.py default (run.sh sets none).
    'co2net.topk_ratio': 5.0,
    'co2net.smooth_kernel': 13,  # (60 // 5) // 2 * 2 + 1.
    'co2net.alpha4': 1.0,  # ANT_CO2 adds the mutual term with weight 1 whatever --alpha4 says.
    'evaluation.use_ambiguous': False,
})
# ActivityNet1.3 is not in CO2-Net: its ActivityNet1.2 settings (SAL-DFE-spec Sec. 3.5).
_ACTIVITYNET13 = dict(_ACTIVITYNET12)
_SYNTHETIC = {k: v for k, v in _COMMON.items() if not k.startswith('train.')}
_SYNTHETIC.update({
    'data.num_segments': 0,  # = data.max_seqlen (256; the smoke preset: 32).
    'train.seed': 1,  # The demo's (every method's synthetic runs: seeds 1 and 2), not 3552.
    'train.batch_size': 10,  # 3 similar pairs + 4.
    'train.skip_nonpositive_loss': False,
    'evaluation.use_ambiguous': False,
    'co2net.attention_hidden': 64,  # D = 256: E = 128, the code's 512 of E = 1024 scaled.
})

METHOD = base.register(base.Method(
    name='co2net',
    description='CO2-Net: cross-modal consensus modules, co-activity similarity (ACM MM 2021)',
    config_sections=_config_sections,
    build_model=build_model,
    init_state=lambda config, num_classes, feature_dim: {},
    loss_fn=loss_fn,
    inference_outputs=inference_outputs,
    localizer='hamnet',
    sampling='resample',
    batch_sampler='similar_pairs',
    test_sampling='whole',
    progress_metrics=('loss', 'loss_mil_orig', 'loss_contrastive'),
    smoke_overrides={'co2net.attention_hidden': 8},
    presets={'thumos14': _THUMOS14, 'activitynet12': _ACTIVITYNET12,
             'activitynet13': _ACTIVITYNET13, 'synthetic': _SYNTHETIC},
    dropout_fields=DROPOUT_FIELDS,
    validate_config=_validate,
    feature_split=FEATURE_SPLIT,
))
