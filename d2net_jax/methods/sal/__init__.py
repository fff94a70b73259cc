"""SAL (Li, Wang, Dong, Neural Networks 2024): multilevel semantics, adaptive actionness learning.

  model.py   the network (spec 2.3): encoder, per-stream actionness, bilinear second-order
             semantics propagated to snippets, background-weighted CAS, video mix-up
  losses.py  MIL, background KL, AAL pseudo-labels with the adaptive mask, mix-up, consistency
             and second-order terms (spec 2.4-2.5)

Re-implemented from `../shared/methods/SAL-DFE-spec.md` section 2 (the authors' code has no
license). Config section `sal`; defaults = the authors' THUMOS14 code; `presets` hold the
ActivityNet recipes. Method state {'prob_max_mu', 'prob_max_var'}: the running mean and variance
of the max class probability behind the adaptive mask (init 1/C and 1). Inference hands the raw
CAS, both actionness streams and the second-order logits to the 'oic' localizer (spec 2.7).
"""

import jax
import jax.numpy as jnp
import ml_collections

from d2net_jax.methods import base
from d2net_jax.methods import layers
from d2net_jax.methods.sal import losses
from d2net_jax.methods.sal import model as model_lib


def _config_sections():
  c = ml_collections.ConfigDict()
  # Model (spec 2.3). hidden: width of the encoder / actionness embeddings; the second-order
  # projection fc1 is hidden^2 x hidden (512: 134 M parameters; shrink it for demos).
  c.hidden = 512
  c.encoder_kernel = 3  # ActivityNet: 7.
  c.branch_kernel = 3  # The per-stream actionness convolutions.
  c.dropout_rate = 0.5
  c.rgb_weight = 0.1  # a = (1 - w) a_flow + w a_rgb. ActivityNet: 0.3.
  # Bilinear pooling divisor: 't_squared' (sum / T^2, the code) or 't' (a plain mean).
  c.bilinear_divisor = 't_squared'
  c.mixup = True  # Video mix-up branch (L_mix); pairs = (b, b - 1) of the global batch.
  c.mixup_normalize = False  # The code sums the two videos' features; True: their mean.
  # Losses (spec 2.4-2.5).
  c.topk_ratio = 8  # MIL k = max(1, T // ratio). ActivityNet: 4.
  c.topk_source = 'comb'  # MIL selection: 'comb' (softmax + a_f + a_r) / 3 or raw 'cas' (ANet).
  c.bg_topk_ratio = 8
  c.pl_rgb_weight = 0.1  # Pseudo-label actionness mix (ActivityNet: 0.3).
  c.pl_topk = -1  # Pseudo-label positives; -1: T // topk_ratio + pl_topk_extra. ActivityNet: 40.
  c.pl_topk_extra = 17
  c.pl_conf_gate = True  # AND top T // pl_gate_ratio of sum_c relu(cas) (THUMOS14 code only).
  c.pl_gate_ratio = 2
  c.gce_q = 0.5
  c.mask_ema = 0.7  # ActivityNet: 0.99.
  c.mask_denominator = 0.5  # w = exp(-min(pm - mu, 0)^2 / (denominator * var)). ActivityNet: 6.
  c.w_mil = 1.0
  c.w_bg = 10.0  # ActivityNet: 1.
  c.w_act = 1.0
  c.w_mix = 1.0
  c.w_mc = 5.0  # ActivityNet: 20.
  c.w_se = 3.0
  return {'sal': c}


def build_model(config, num_classes: int, feature_dim: int):
  del feature_dim
  c = config.sal
  return model_lib.SAL(num_classes=num_classes, hidden=c.hidden, encoder_kernel=c.encoder_kernel,
                       branch_kernel=c.branch_kernel, dropout_rate=c.dropout_rate,
                       rgb_weight=c.rgb_weight, bilinear_divisor=c.bilinear_divisor,
                       mixup=c.mixup, mixup_normalize=c.mixup_normalize,
                       streams=layers.stream_names(config))


def init_state(config, num_classes: int, feature_dim: int):
  """mu = 1/C, var = 1 (the code's initial values)."""
  del config, feature_dim
  return {'prob_max_mu': jnp.asarray(1.0 / num_classes, jnp.float32),
          'prob_max_var': jnp.asarray(1.0, jnp.float32)}


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """`losses.sal_loss` on the `sal` section (no randomness: mix-up pairs are fixed)."""
  del key
  return losses.sal_loss(outputs, batch, state, config.sal, axis_name=axis_name,
                         num_streams=len(layers.stream_names(config)))


def inference_arrays(out, mask):
  """(snippet, video) of SAL's outputs `out` (the model's dict) for the 'oic' localizer.

  Per snippet: 'cas' (B, T, C) raw logits, 'a_f', 'a_r' (B, T) actionness; for plotting 'tcam' =
  softmax(cas) over classes (B, T, C) and 'attention' = the fused actionness a = (1 - rgb_weight)
  a_f + rgb_weight a_r (B, T), all zero at padding. Per video: 'sc' (B, C) second-order class
  logits. DFE over SAL hands its local branch's outputs here too (`FEATURE_SPLIT.inference`).
  """
  m = mask.astype(out['cas'].dtype)
  snippet = {'cas': out['cas'], 'a_f': out['a_f'], 'a_r': out['a_r'],
             'tcam': jax.nn.softmax(out['cas'], -1) * m[..., None], 'attention': out['a']}
  return snippet, {'sc': out['sc']}


def inference_outputs(model, params, state, features, mask, config):
  """`inference_arrays` of the network in eval mode (no dropout, no mix-up)."""
  del state, config
  return inference_arrays(model.apply({'params': params}, features, mask, train=False), mask)


def loss_terms(outputs, batch, state, config, key, *, axis_name=None):
  """`losses.sal_loss_terms` on the `sal` section: `loss_fn` as named weighted terms."""
  del key
  return losses.sal_loss_terms(outputs, batch, state, config.sal, axis_name=axis_name,
                               num_streams=len(layers.stream_names(config)))


def kd_view(outputs):
  """DFE's view: cas = the class logits; att = the fused actionness a (context: computed from
  the raw features, so the same in DFE's two branches)."""
  return {'cas': outputs['cas'], 'att': outputs['a']}


# Split at the encoder output e (E = sal.hidden), `model_lib.SAL.encode` / `heads`: the context is
# the actionness branches on the raw features (a_r, a_f, a, the mix-up a_*_mix, sc_rgb, sc_flow);
# the heads s = bilinear(e), e' = e + a fc1(s), cas, cas_bg, sc. Feature terms: L_mil, L_bg and
# the CE of sc; L_act, L_mix, L_mc and the CEs of sc_rgb / sc_flow read only the context.
FEATURE_SPLIT = base.FeatureSplit(
    feature_width=lambda config, feature_dim: config.sal.hidden,  # The encoder's width H.
    loss_terms=loss_terms,
    feature_terms=losses.FEATURE_TERMS,  # L_mil, L_bg, CE(sc).
    inference=lambda outputs, state, mask, config: inference_arrays(outputs, mask),
    kd_view=kd_view,
    has_attention=True,  # The fused actionness a.
)


def _validate(config):
  c = config.sal
  choices = {'topk_source': ('comb', 'cas'), 'bilinear_divisor': ('t_squared', 't')}
  for field, allowed in choices.items():
    if c[field] not in allowed:
      raise ValueError(f'config.sal.{field}={c[field]!r}: must be one of {allowed}')
  if not 0 <= c.dropout_rate < 1:
    raise ValueError(f'config.sal.dropout_rate={c.dropout_rate}: must be in [0, 1)')
  for field in ('hidden', 'topk_ratio', 'bg_topk_ratio', 'pl_gate_ratio', 'mask_denominator',
                'gce_q'):
    if not c[field] > 0:
      raise ValueError(f'config.sal.{field}={c[field]}: must be > 0')
  if not 0 <= c.mask_ema < 1:
    raise ValueError(f'config.sal.mask_ema={c.mask_ema}: must be in [0, 1)')


# SAL's own settings on each dataset preset (spec 2.6, 2.9); THUMOS14's localizer settings are the
# defaults of `localize.oic`.
_THUMOS14 = {
    'data.kind': 'stpn',
    'data.sampling': 'resample',
    'data.num_segments': 750,
    'data.resample_short': 'repeat',
    'data.shuffle': 'epoch',
    'train.seed': 1,
    'train.batch_size': 2,
    'train.num_steps': 10000,  # scripts/train.sh: 100 epochs of 100 steps.
    'train.learning_rate': 1e-4,
    'train.lr_schedule': 'constant',
    'train.weight_decay': 5e-4,
    'train.weight_decay_mode': 'coupled',
    'train.skip_nonpositive_loss': False,  # The loss is always positive; the code never skips.
    'train.parallelism': 'jit',  # B = 2: the global batch on one device mesh.
    'train.eval_every': 100,  # Code: every 10 steps on the test set (train.selection='test').
    'train.checkpoint_every': 100,
    'train.selection_iou': -1.0,  # Mean mAP over 0.1:0.7, as the code selects.
    'evaluation.tiou_thresholds': (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    'evaluation.use_ambiguous': False,  # SAL's evaluation filters nothing.
}
# SAL's authors' protocol on THUMOS14 (arg 'official_protocol' of configs/thumos14.py and
# configs/synthetic.py): their code tests every 10 steps on the test set and keeps the best by
# the mean mAP over 0.1:0.7, with the ActivityNet-style evaluator (no ambiguous regions).
_THUMOS14_OFFICIAL_PROTOCOL = {
    'train.selection': 'test',
    'train.eval_every': 10,
    'train.selection_iou': -1.0,
    'evaluation.protocol': 'activitynet',
    'evaluation.use_ambiguous': False,
    'evaluation.tiou_thresholds': (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
}
_ACTIVITYNET13 = {
    'data.sampling': 'resample',
    'data.num_segments': 50,
    'data.resample_short': 'keep',  # Test: videos of <= 50 snippets keep all of them.
    'data.resample_train': 'sorted_random',  # The ActivityNet code's `random_sample`.
    'data.shuffle': 'epoch',
    'train.seed': 0,
    'train.batch_size': 32,  # argparse default of the released code (an unused constant: 8).
    'train.num_steps': 50000,
    'train.learning_rate': 1e-4,
    'train.lr_schedule': 'constant',
    'train.weight_decay': 5e-4,
    'train.weight_decay_mode': 'coupled',
    'train.skip_nonpositive_loss': False,
    'train.eval_every': 200,
    'train.checkpoint_every': 200,
    'train.selection_iou': -1.0,
    'evaluation.use_ambiguous': False,
    'sal.encoder_kernel': 7,
    'sal.rgb_weight': 0.3,
    'sal.topk_ratio': 4,
    'sal.topk_source': 'cas',
    'sal.bg_topk_ratio': 8,
    'sal.pl_rgb_weight': 0.3,
    'sal.pl_topk': 40,
    'sal.pl_conf_gate': False,
    'sal.mask_ema': 0.99,
    'sal.mask_denominator': 6.0,
    'sal.w_bg': 1.0,
    'sal.w_mc': 20.0,
    'localize.oic.class_threshold': 0.1,
    'localize.oic.comb_weights': (0.6, 0.2, 0.2),
    'localize.oic.topk_ratio': 4,
    'localize.oic.topk_min_one': False,  # The code's T // 4: no detection below 4 snippets.
    'localize.oic.beta_sc': 0.5,
    'localize.oic.nms_threshold': 0.7,
    'localize.oic.soft_alpha': 0.35,
    'evaluation.tiou_thresholds': tuple(round(0.5 + 0.05 * i, 2) for i in range(10)),
}
# ActivityNet1.2: no code was released. OUR ASSUMPTION: the 1.3 recipe with its 100 classes.
_ACTIVITYNET12 = dict(_ACTIVITYNET13)
_SYNTHETIC = {
    'data.sampling': 'resample',
    'data.num_segments': 0,  # = data.max_seqlen (256; the smoke preset: 32).
    'data.resample_short': 'repeat',
    'data.shuffle': 'epoch',
    'train.skip_nonpositive_loss': False,
    'evaluation.use_ambiguous': False,
    # Chosen on the validation split by `python experiments/sal_sweep.py --mode quick --narrow 3`
    # (docs/sal.md, "The preset re-chosen on the validation split"; runs at b3d4ede and 207217a,
    # same library code): validation mean mAP 0.1:0.7 (%) on the 40 held-out videos, 5 passes a run,
    # seed 1 (and 2 within 3 points of the best): the authors' THUMOS14 recipe scaled down (batch
    # 2, Adam 1e-4 constant, mix-up on, hidden 128, 8000 steps) 1.99; the same without the mix-up
    # 7.71 / 8.18 (kept); with lr 3e-4 2.27; lr 1e-4 constant, mix-up, hidden 128 at batch 10 and
    # 1000 steps 1.94; the earlier preset (batch 10, 1000 steps, lr 1e-3 cosine, no mix-up,
    # hidden 64) 4.90 / 5.33; it with mix-up and hidden 128 2.15. The code's mix-up sums two
    # videos' non-negative features, an input unlike any single video's; the published presets
    # keep it.
    'train.batch_size': 2,
    'train.num_steps': 8000,
    'train.learning_rate': 1e-4,
    'train.lr_schedule': 'constant',
    'train.eval_every': 1600,  # 5 validation passes, as in the sweep.
    'train.checkpoint_every': 1600,
    'sal.hidden': 128,
    'sal.mixup': False,
}

METHOD = base.register(base.Method(
    name='sal',
    description='SAL: multilevel semantics and adaptive actionness learning (NN 2024)',
    config_sections=_config_sections,
    build_model=build_model,  # Encoder, two actionness branches, CAS and second-order heads.
    init_state=init_state,  # Running mean / variance of the top class probability (spec 2.5).
    loss_fn=loss_fn,  # Spec 2.4-2.5: L_mil, L_bg, L_act, L_mix, L_se.
    inference_outputs=inference_outputs,  # CAS, both actionness sequences and sc.
    localizer='oic',  # Spec 2.7: multi-threshold proposals scored by OIC (localize/oic.py).
    sampling='resample',  # The authors' loader: every video resampled to data.num_segments.
    progress_metrics=('loss', 'loss_mil', 'loss_act', 'loss_se'),  # Spec 2.4-2.5's terms.
    smoke_overrides={'sal.hidden': 8},
    presets={'thumos14': _THUMOS14, 'thumos14:official_protocol': _THUMOS14_OFFICIAL_PROTOCOL,
             'activitynet13': _ACTIVITYNET13,
             'activitynet12': _ACTIVITYNET12, 'synthetic': _SYNTHETIC},
    dropout_fields=('sal.dropout_rate',),
    validate_config=_validate,
    feature_split=FEATURE_SPLIT,
))
