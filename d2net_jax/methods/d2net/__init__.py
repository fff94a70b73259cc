"""D2-Net (Narayan et al., ICCV 2021) as a method of the framework.

  model.py   the two-stream temporal-conv network (Sec. 3, Fig. 2)
  losses.py  L = L_Dis + L_D (Eq. 1-11) and `d2net_loss`, the training loss
  pairing.py the official code's Eq. 3 pairing (loss.pairing = 'official')
  dmi.py     DMI / pDMI (Eq. 5-7)
  config.py  the `model` and `loss` config sections

Method state: {'x_ref': (D/2,)}, the running background reference of Eq. 8. Inference returns the
TCAM and the bottom-up attention lambda' (Eq. 8) that the Sec. 3.3 localizer ('tcam') reads.
"""

import jax.numpy as jnp

from d2net_jax.methods import base
from d2net_jax.methods import layers
from d2net_jax.methods.d2net import config as d2net_config
from d2net_jax.methods.d2net import losses
from d2net_jax.methods.d2net import model as model_lib
from d2net_jax.methods.d2net import objective
from d2net_jax.utils import checks


def _config_sections():
  return {'model': d2net_config.model_config(), 'loss': d2net_config.loss_config()}


def build_model(config, num_classes: int, feature_dim: int):
  del feature_dim  # The streams take their width from the features.
  return model_lib.build_model(config.model, num_classes, layers.stream_names(config))


def init_state(config, num_classes: int, feature_dim: int):
  """x_ref = 0 (as the official `running_bg`), one stream's width (D/2; D with one stream)."""
  del num_classes
  return {'x_ref': jnp.zeros((feature_dim // len(layers.stream_names(config)),), jnp.float32)}


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """`objective.d2net_loss` on the `loss` section; aux['state'] = {'x_ref': the new reference}."""
  loss, aux = objective.d2net_loss(outputs, batch, state, config.loss, key, axis_name=axis_name)
  aux = dict(aux)
  aux['state'] = {'x_ref': aux.pop('x_ref')}
  return loss, aux


def inference_arrays(outputs, state, mask, config=None):
  """snippet: 'tcam' (B, T, C) and 'attention' lambda' (B, T) of Eq. 8 against the state's
  x_ref, zero at padding, from the model's outputs dict; no per-video arrays."""
  del config
  attention = losses.bottom_up_attention(outputs['embeddings'], state['x_ref']) * mask
  return {'tcam': outputs['tcam'], 'attention': attention}, {}


def inference_outputs(model, params, state, features, mask, config):
  """`inference_arrays` of the network in evaluation mode."""
  outputs = model.apply({'params': params}, features, mask, train=False)
  return inference_arrays(outputs, state, mask, config)


def loss_terms(outputs, batch, state, config, key, *, axis_name=None):
  """`loss_fn` as one term: every D2-Net output comes from F (`model.D2Net.encode`), so all of
  its loss is a feature term (`base.FeatureSplit`)."""
  loss, aux = loss_fn(outputs, batch, state, config, key, axis_name=axis_name)
  return {'loss_d2net': (1.0, loss)}, aux


def kd_view(outputs):
  """DFE's view: cas = the mean of the streams' class logits (their sigmoids make the TCAM; one
  stream: its logits); no attention head."""
  logits = [v for k, v in outputs.items() if k.endswith('_logits')]
  return {'cas': sum(logits) / len(logits), 'att': None}


# Split at F = concat(rgb, flow) layer-2 activations (E = D); heads = the layer-3 classifiers.
FEATURE_SPLIT = base.FeatureSplit(
    feature_width=lambda config, feature_dim: feature_dim,
    loss_terms=loss_terms,
    feature_terms=('loss_d2net',),
    inference=inference_arrays,
    kd_view=kd_view,
    has_attention=False,
)


def _validate(config):
  """ConfigError (one line naming the field) for `model` / `loss` values D2-Net cannot run with."""
  checks.check_choices(config, {
      'loss.discriminative': ('d2net', 'focal', 'bce'),
      'loss.denoising': ('pdmi', 'dmi', 'l1', 'bce', 'none'),
      'loss.x_ref_source': ('most_background', 'mean_bg'),
      'loss.class_reduction': ('mean', 'sum'),
      'loss.pairing': ('cycle', 'official'),
      'loss.snippet_pdmi': ('filtered', 'official'),
      'loss.snippet_fg_attention': ('gt_classes', 'all_classes'),
      'loss.joint_normalization': ('per_class', 'count')})
  checks.check_range(config, 'model.dropout_rate', 0, 1, high_open=True)
  for name in ('model.kernel_size', 'model.dilation', 'model.classifier_kernel_size',
               'model.classifier_dilation', 'loss.pdmi_every'):
    checks.check_range(config, name, 1)
  checks.check_range(config, 'model.init_std', 0)  # <= 0 would mean Flax's default init.
  checks.check_range(config, 'loss.topk_ratio', 0, low_open=True)
  checks.check_range(config, 'loss.prob_clip', 0, 0.5, high_open=True)
  for name in ('model.leaky_slope', 'loss.beta', 'loss.gamma', 'loss.pdmi_eps', 'loss.w_ds',
               'loss.w_dv', 'loss.min_snippets'):
    checks.check_range(config, name, 0)
  for name in ('loss.fg_threshold', 'loss.bg_threshold', 'loss.snippet_fg_threshold',
               'loss.snippet_bg_threshold', 'loss.video_score_floor', 'loss.x_ref_momentum'):
    checks.check_range(config, name, 0, 1)


METHOD = base.register(base.Method(
    name='d2net',
    description='D2-Net: discriminative embeddings and denoised activations (ICCV 2021)',
    config_sections=_config_sections,
    build_model=build_model,  # Two streams of three temporal convolutions (Sec. 3.1).
    init_state=init_state,  # The background reference x_ref of the attention (Eq. 8).
    loss_fn=loss_fn,  # Eq. 1: L_Dis + L_D, L_D = L_DS + L_DV (Eq. 11; pDMI, Eq. 7).
    inference_outputs=inference_outputs,  # TCAM and the bottom-up attention lambda' (Eq. 8).
    localizer='tcam',  # Sec. 3.3: thresholds on the attention-refined TCAM (localize/tcam.py).
    sampling='crop',  # The official loader: a random crop of data.max_seqlen snippets.
    progress_metrics=('loss', 'loss_dis', 'loss_ds', 'loss_dv'),  # L, L_dis, L_DS, L_DV.
    dropout_fields=('model.dropout_rate',),
    validate_config=_validate,
    feature_split=FEATURE_SPLIT,
))
