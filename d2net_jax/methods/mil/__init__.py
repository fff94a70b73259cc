"""`mil`: the plain weakly-supervised baseline, and the smallest example of a method.

One temporal convolution (kernel 1: a linear classifier) per stream over the RGB and flow halves
of the features, TCAM = mean of the two streams' sigmoids, video score p_c = mean of the top
ceil(s / topk_ratio) snippets of TCAM_c, binary cross-entropy of p against the video labels.
Inference hands the TCAM to the Sec. 3.3 localizer with lambda' = 1. No method state.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from d2net_jax import layers
from d2net_jax.methods import base


def _config_sections():
  c = ml_collections.ConfigDict()
  c.kernel_size = 1  # 1: a linear classifier per snippet; > 1: a temporal convolution.
  c.dropout_rate = 0.5  # On the features, training only.
  c.topk_ratio = 8  # k = ceil(s / topk_ratio) snippets per class make the video score.
  c.prob_clip = 1e-3  # p clipped to [clip, 1 - clip] inside the logarithms.
  return {'mil': c}


class MIL(nn.Module):
  """(B, T, D) features -> {'tcam' (B, T, C)}, zero at padded snippets."""
  num_classes: int
  kernel_size: int = 1
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, features, mask, train: bool = False):
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    half = features.shape[-1] // 2
    scores = [jax.nn.sigmoid(layers.masked_conv(part, mask, self.num_classes, self.kernel_size,
                                                name=name))
              for part, name in ((x[..., :half], 'rgb'), (x[..., half:], 'flow'))]
    return {'tcam': 0.5 * (scores[0] + scores[1]) * mask[..., None]}


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """Mean over valid videos (a valid snippet and a label) and classes of BCE(p, y)."""
  del key
  c, mask = config.mil, batch['mask']
  labels = batch['labels'].astype(outputs['tcam'].dtype)
  p = jnp.clip(layers.topk_pool(outputs['tcam'], mask, c.topk_ratio), c.prob_clip,
               1 - c.prob_clip)
  bce = -jnp.mean(labels * jnp.log(p) + (1 - labels) * jnp.log1p(-p), axis=-1)
  valid = ((jnp.sum(mask, -1) > 0) & (jnp.sum(labels, -1) > 0)).astype(bce.dtype)
  total, count = layers.global_sum((jnp.sum(bce * valid), jnp.sum(valid)), axis_name)
  loss = total / jnp.maximum(count, 1.0)
  return loss, {'loss': loss, 'num_valid': count, 'state': state_without_step(state)}


def state_without_step(state):
  return {k: v for k, v in state.items() if k != 'step'}


def inference_outputs(model, params, state, features, mask, config):
  del state, config
  tcam = model.apply({'params': params}, features, mask, train=False)['tcam']
  return {'tcam': tcam, 'attention': mask.astype(tcam.dtype)}, {}


def _validate(config):
  """ConfigError (one line naming the field) for `mil` values the baseline cannot run with."""
  from d2net_jax import config_checks as checks  # pylint: disable=import-outside-toplevel
  checks.check_range(config, 'mil.kernel_size', 1)
  checks.check_range(config, 'mil.dropout_rate', 0, 1, high_open=True)
  checks.check_range(config, 'mil.topk_ratio', 0, low_open=True)
  checks.check_range(config, 'mil.prob_clip', 0, 0.5, high_open=True)


METHOD = base.register(base.Method(
    name='mil',
    description='top-k MIL baseline: linear classifier per stream, BCE on video labels',
    config_sections=_config_sections,
    build_model=lambda config, num_classes, feature_dim: MIL(
        num_classes, config.mil.kernel_size, config.mil.dropout_rate),
    init_state=lambda config, num_classes, feature_dim: {},
    loss_fn=loss_fn,
    inference_outputs=inference_outputs,
    localizer='tcam',
    dropout_fields=('mil.dropout_rate',),
    validate_config=_validate,
))
