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

from d2net_jax.methods import layers
from d2net_jax.methods import sal as sal_method
from d2net_jax.methods.sal import model as sal_model


# SAL's network already has encode / heads (module docstring); DFE calls them around its LFE.
SALBase = sal_model.SAL


def build(config, num_classes: int, feature_dim: int) -> SALBase:
  del feature_dim
  c = config.sal
  return SALBase(num_classes, c.hidden, c.encoder_kernel, c.branch_kernel, c.dropout_rate,
                 c.rgb_weight, c.bilinear_divisor, c.mixup, c.mixup_normalize,
                 layers.stream_names(config))


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
