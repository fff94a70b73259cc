"""DFE's 'sal' base: SAL (methods/sal) split at its encoder's features (spec section 3.2).

  encode(x (B, T, D), mask, train) -> (F, context)
    F = e (B, T, H), SAL's encoder Dropout(ReLU(Conv_k(x))), H = sal.hidden, zero at padding;
    context = what SAL computes from the raw features rather than from e: the per-stream
      actionness a_r, a_f (B, T), their fusion a = (1 - rgb_weight) a_f + rgb_weight a_r, in
      training with mix-up a_r_mix, a_f_mix (B, T) (each video mixed with its partner of the
      GLOBAL batch, as SAL), and sc_rgb, sc_flow (B, C) = fc(bilinear(h_r)), fc(bilinear(h_f)).
  heads(F, context, mask, train) -> SAL's outputs dict: the context plus
    s = bilinear(F) (B, H^2), e' = F + a fc1(s), cas = cls(e') (B, T, C), cas_bg = cas (1 - a),
    sc = fc(s) (B, C).

The parameter names are SAL's ('encoder', 'action_rgb', 'action_flow', 'cls_rgb', 'cls_flow',
'cls', 'fc', 'fc1'), so a SAL checkpoint's parameters load into DFE's 'base' unchanged and
encode -> heads computes `SAL`'s outputs (tests/test_dfe.py). One `fc` serves sc (heads) and
sc_rgb / sc_flow (context), as in SAL. The loss is `sal_loss`, the state SAL's running mean and
variance, the inference arrays SAL's (for the 'oic' localizer). DFE reads cas as the class
logits and a as the attention (`kd_view`); a is context, the same in both branches, so
L_kd_att is 0 over SAL and only the memory's 'attention' source (gmm.source) uses it.
"""

from typing import Any, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from d2net_jax import layers
from d2net_jax.methods import sal as sal_method
from d2net_jax.methods.sal import model as sal_model


class SALBase(nn.Module):
  """SAL's network as encode / heads (module docstring); fields as `sal_model.SAL`."""
  num_classes: int
  hidden: int = 512
  encoder_kernel: int = 3
  branch_kernel: int = 3
  dropout_rate: float = 0.5
  rgb_weight: float = 0.1
  bilinear_divisor: str = 't_squared'
  mixup: bool = True
  mixup_normalize: bool = False

  def setup(self):
    block = lambda kernel: sal_model.ConvBlock(self.hidden, kernel, self.dropout_rate)
    self.encoder = block(self.encoder_kernel)
    self.action_rgb = block(self.branch_kernel)
    self.action_flow = block(self.branch_kernel)
    self.cls_rgb = sal_model.Head(1)
    self.cls_flow = sal_model.Head(1)
    self.cls = sal_model.Head(self.num_classes)
    fc_kernel, fc_bias = layers.torch_default_init(self.hidden * self.hidden)
    self.fc = nn.Dense(self.num_classes, kernel_init=fc_kernel, bias_init=fc_bias)
    self.fc1 = nn.Dense(self.hidden,
                        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
                        bias_init=nn.initializers.zeros)

  def _actionness(self, features, m, train: bool):
    """(h_r, h_f (B, T, H), a_r, a_f (B, T)) of the two streams of features (B, T, D)."""
    half = features.shape[-1] // 2
    h_r = self.action_rgb(features[..., :half], m, train)
    h_f = self.action_flow(features[..., half:], m, train)
    a_r = jax.nn.sigmoid(self.cls_rgb(h_r)[..., 0]) * m
    a_f = jax.nn.sigmoid(self.cls_flow(h_f)[..., 0]) * m
    return h_r, h_f, a_r, a_f

  def _pool(self, x, m):
    return sal_model.bilinear_pool(x, m, self.bilinear_divisor)

  def encode(self, features, mask, train: bool = False):
    """(F = e (B, T, H) zero at padding, context dict); mix-up branches only in training."""
    dim = features.shape[-1]
    if dim % 2:
      raise ValueError(f'feature dimension must be even (RGB + flow halves), got {dim}')
    m = mask.astype(features.dtype)
    h_r, h_f, a_r, a_f = self._actionness(features, m, train)
    context = {'a_r': a_r, 'a_f': a_f, 'a': (1.0 - self.rgb_weight) * a_f + self.rgb_weight * a_r,
               'sc_rgb': self.fc(self._pool(h_r, m)), 'sc_flow': self.fc(self._pool(h_f, m))}
    if train and self.mixup:
      axis_name = sal_model.bound_axis()
      mixed = features + sal_model.global_roll(features, 1, axis_name)
      if self.mixup_normalize:
        mixed = 0.5 * mixed
      mix_mask = jnp.maximum(m, sal_model.global_roll(m, 1, axis_name))
      _, _, context['a_r_mix'], context['a_f_mix'] = self._actionness(mixed, mix_mask, train)
    e = self.encoder(features, m, train)
    return e * m[..., None], context

  def heads(self, f, context, mask, train: bool = False) -> Dict[str, Any]:
    """SAL's outputs dict from F (B, T, H) and the context (module docstring)."""
    del train  # No dropout after the encoder.
    m = mask.astype(f.dtype)
    a = context['a']
    s = self._pool(f, m)
    cas = self.cls(f + a[..., None] * self.fc1(s)[:, None, :]) * m[..., None]
    return dict(context, cas=cas, cas_bg=cas * (1.0 - a)[..., None], sc=self.fc(s))


def build(config, num_classes: int, feature_dim: int) -> SALBase:
  del feature_dim
  c = config.sal
  return SALBase(num_classes, c.hidden, c.encoder_kernel, c.branch_kernel, c.dropout_rate,
                 c.rgb_weight, c.bilinear_divisor, c.mixup, c.mixup_normalize)


def feature_width(config, feature_dim: int) -> int:
  """E = sal.hidden, whatever D is."""
  del feature_dim
  return config.sal.hidden


def init_state(config, num_classes: int, feature_dim: int):
  """SAL's state: the running mean and variance behind its adaptive mask."""
  return sal_method.init_state(config, num_classes, feature_dim)


def loss(outputs, batch, state, config, key, *, axis_name=None):
  """`sal_loss` on the `sal` section; aux['state'] = SAL's updated running statistics."""
  return sal_method.loss_fn(outputs, batch, state, config, key, axis_name=axis_name)


def inference(outputs, state, mask, config):
  """SAL's inference arrays (cas, a_f, a_r, tcam, attention; sc) for the 'oic' localizer."""
  del state, config
  return sal_method.inference_arrays(outputs, mask)


def kd_view(outputs):
  """cas = SAL's class logits; att = the fused actionness a (context: the same in both
  branches)."""
  return {'cas': outputs['cas'], 'att': outputs['a']}
