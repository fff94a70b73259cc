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
from d2net_jax.methods.d2net import config as d2net_config
from d2net_jax.methods.d2net import losses
from d2net_jax.methods.d2net import model as model_lib


def _config_sections():
  return {'model': d2net_config.model_config(), 'loss': d2net_config.loss_config()}


def build_model(config, num_classes: int, feature_dim: int):
  del feature_dim  # The streams take their width from the features.
  return model_lib.build_model(config.model, num_classes)


def init_state(config, num_classes: int, feature_dim: int):
  """x_ref = 0 (as the official `running_bg`)."""
  del config, num_classes
  return {'x_ref': jnp.zeros((feature_dim // 2,), jnp.float32)}


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """`losses.d2net_loss` on the `loss` section; aux['state'] = {'x_ref': the new reference}."""
  loss, aux = losses.d2net_loss(outputs, batch, state, config.loss, key, axis_name=axis_name)
  aux = dict(aux)
  aux['state'] = {'x_ref': aux.pop('x_ref')}
  return loss, aux


def inference_outputs(model, params, state, features, mask, config):
  """snippet: 'tcam' (B, T, C) and 'attention' lambda' (B, T) of Eq. 8, zero at padding."""
  del config
  outputs = model.apply({'params': params}, features, mask, train=False)
  attention = losses.bottom_up_attention(outputs['embeddings'], state['x_ref']) * mask
  return {'tcam': outputs['tcam'], 'attention': attention}, {}


def _validate(config):
  c = config.loss
  choices = {'discriminative': ('d2net', 'focal', 'bce'),
             'denoising': ('pdmi', 'dmi', 'l1', 'bce', 'none'),
             'x_ref_source': ('most_background', 'mean_bg'),
             'class_reduction': ('mean', 'sum'),
             'pairing': ('cycle', 'official'),
             'snippet_pdmi': ('filtered', 'official'),
             'snippet_fg_attention': ('gt_classes', 'all_classes'),
             'joint_normalization': ('per_class', 'count')}
  for field, allowed in choices.items():
    if c[field] not in allowed:
      raise ValueError(f'config.loss.{field}={c[field]!r}: must be one of {allowed}')
  if not 0 <= config.model.dropout_rate < 1:
    raise ValueError(f'config.model.dropout_rate={config.model.dropout_rate}: must be in [0, 1)')
  if not c.topk_ratio > 0:
    raise ValueError(f'config.loss.topk_ratio={c.topk_ratio}: must be > 0')


METHOD = base.register(base.Method(
    name='d2net',
    description='D2-Net: discriminative embeddings and denoised activations (ICCV 2021)',
    config_sections=_config_sections,
    build_model=build_model,
    init_state=init_state,
    loss_fn=loss_fn,
    inference_outputs=inference_outputs,
    localizer='tcam',
    sampling='crop',
    progress_metrics=('loss', 'loss_dis', 'loss_ds', 'loss_dv'),
    dropout_fields=('model.dropout_rate',),
    validate_config=_validate,
))
