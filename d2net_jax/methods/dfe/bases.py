"""Base methods DFE wraps: what DFE needs of a base, and the adapters 'd2net' and 'sal'.

A base is split at its feature map F (B, T, E) (spec section 3.2):

  module = base.build(config, C, D)          a Flax module with two methods:
    module.encode(features, mask, train) -> (F (B, T, E) zero at padded snippets, context)
    module.heads(F, context, mask, train) -> outputs dict, what the base's loss reads
    context: a dict of the base's outputs that do not come from F (D2-Net: none; SAL: the
    actionness branches on the raw features), handed unchanged to both branches' heads
  base.init_state(config, C, D)          -> the base's method state (D2-Net: {'x_ref'}; SAL:
                                            {'prob_max_mu', 'prob_max_var'})
  base.loss(outputs, batch, state, config, key, axis_name) -> (loss, aux with aux['state'])
  base.inference(outputs, state, mask, config) -> (snippet, video), the base's inference arrays
  base.kd_view(outputs) -> {'cas': (B, T, C') class logits, 'att': (B, T) or None}: what the
    distillation (spec 3.4) and the memory's top-k (spec 3.3) read

DFE runs encode -> LFE -> heads (local branch) and encode -> LFE -> GFE -> heads (global branch)
with the same head parameters. Adding a base is one `Base` record in `BASES`; a base's name is
also the registered method whose localizer, sampling, dataset presets, smoke overrides and
dropout fields DFE takes (`Method.wraps`, methods/base.py), and whose `validate_config` checks
its sections.

  'd2net'  below: F = concat(rgb, flow) after layer 2 (E = D); heads = the layer-3 classifiers.
  'sal'    sal_base.py: F = SAL's encoder output e (E = sal.hidden); context = the actionness
           branches on the raw features (a, a_f, a_r, the mix-up a_*_mix, sc_rgb, sc_flow);
           heads = s = bilinear(F), e' = F + a fc1(s), cas = cls(e'), cas_bg = cas (1 - a),
           sc = fc(s), with SAL's parameter names; loss = `sal_loss`; inference = SAL's 'oic'
           arrays; kd_view = {'cas': cas, 'att': a}.
"""

import dataclasses
from typing import Any, Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from d2net_jax.methods import d2net
from d2net_jax.methods import layers
from d2net_jax.methods.d2net import losses as d2net_losses
from d2net_jax.methods.d2net import model as d2net_model
from d2net_jax.methods.dfe import sal_base


_conv_init = d2net_model._conv_init  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class Base:
  """A base method as DFE sees it (module docstring)."""
  name: str
  build: Callable[..., nn.Module]
  feature_width: Callable[[Any, int], int]  # (config, D) -> E
  init_state: Callable[..., Dict[str, Any]]
  loss: Callable[..., Any]
  inference: Callable[..., Any]
  kd_view: Callable[[Dict[str, Any]], Dict[str, Any]]
  has_attention: bool = False


# ---------------------------------------------------------------------------------------------
# D2-Net: F = concat(rgb, flow) layer-2 activations (E = D); heads = the two layer-3 classifiers.


class _StreamParts(nn.Module):
  """D2-Net's `Stream` (d2net/model.py) cut after layer 2, with the same parameter names
  ('conv1', 'conv2', 'classifier'), so D2Net's parameters load here unchanged and both compute
  the same numbers (tests/test_dfe.py)."""
  width: int
  num_classes: int
  kernel_size: int = 3
  dilation: int = 1
  classifier_kernel_size: int = 1
  classifier_dilation: int = 1
  leaky_slope: float = 0.2
  residual: bool = True
  dropout_rate: float = 0.7
  init_std: float = 0.01
  embeddings_after_dropout: bool = True

  def setup(self):
    def conv(out, kernel, dilation):
      return nn.Conv(out, (kernel,), kernel_dilation=(dilation,), padding='SAME',
                     kernel_init=_conv_init(self.init_std),
                     bias_init=nn.initializers.zeros)
    self.conv1 = conv(self.width, self.kernel_size, self.dilation)
    self.conv2 = conv(self.width, self.kernel_size, self.dilation)
    self.classifier = conv(self.num_classes, self.classifier_kernel_size,
                           self.classifier_dilation)
    self.dropout = nn.Dropout(self.dropout_rate)

  def encode(self, x, mask):
    """Layers 1-2 (masked inputs, as `layers.masked_conv`): (B, T, D/2) -> (B, T, D/2)."""
    m = mask[..., None].astype(x.dtype)
    for conv in (self.conv1, self.conv2):
      h = nn.leaky_relu(conv(x * m), self.leaky_slope)
      x = h + x if self.residual else h
    return x * m

  def classify(self, x, mask, train: bool):
    """Dropout + layer 3: (B, T, D/2) -> (embeddings (B, T, D/2), logits (B, T, C))."""
    m = mask[..., None].astype(x.dtype)
    dropped = self.dropout(x, deterministic=not train)
    logits = self.classifier(dropped * m)
    embeddings = dropped if (train and self.embeddings_after_dropout) else x
    return embeddings * m, logits * m


class D2NetBase(nn.Module):
  """encode: the two streams' layers 1-2, F = concat(rgb, flow) (B, T, D); heads: per half
  dropout + layer 3, TCAM = mean of the sigmoids: `D2Net`'s outputs dict."""
  width: int  # D
  num_classes: int
  stream_kwargs: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # One _StreamParts each over an equal channel block; one stream: F = its layer 2 (E = D).
  streams: Tuple[str, ...] = ('rgb', 'flow')

  def setup(self):
    # Attributes named after the streams ('rgb', 'flow'): D2-Net's parameter names.
    width = self.width // len(self.streams)
    if 'rgb' in self.streams:
      self.rgb = _StreamParts(width, self.num_classes, **self.stream_kwargs)
    if 'flow' in self.streams:
      self.flow = _StreamParts(width, self.num_classes, **self.stream_kwargs)

  def encode(self, features, mask, train: bool = False):
    del train  # No dropout before layer 3.
    blocks = layers.split_streams(features, len(self.streams))
    return jnp.concatenate([getattr(self, name).encode(x, mask)
                            for name, x in zip(self.streams, blocks)], axis=-1), {}

  def heads(self, f, context, mask, train: bool = False):
    del context
    outputs = {}
    for name, x in zip(self.streams, layers.split_streams(f, len(self.streams))):
      outputs[f'{name}_embeddings'], outputs[f'{name}_logits'] = getattr(self, name).classify(
          x, mask, train)
    m = mask[..., None].astype(f.dtype)
    scale = 1.0 / len(self.streams)  # 0.5 * (rgb + flow) with two streams.
    return dict(
        outputs,
        tcam=scale * sum(jax.nn.sigmoid(outputs[f'{n}_logits']) for n in self.streams) * m,
        embeddings=scale * sum(outputs[f'{n}_embeddings'] for n in self.streams))


def _d2net_build(config, num_classes: int, feature_dim: int) -> D2NetBase:
  c = config.model
  kwargs = dict(kernel_size=c.kernel_size, dilation=c.dilation,
                classifier_kernel_size=c.classifier_kernel_size,
                classifier_dilation=c.classifier_dilation, leaky_slope=c.leaky_slope,
                residual=c.residual, dropout_rate=c.dropout_rate, init_std=c.init_std,
                embeddings_after_dropout=c.embeddings_after_dropout)
  return D2NetBase(feature_dim, num_classes, kwargs, layers.stream_names(config))


def _d2net_loss(outputs, batch, state, config, key, *, axis_name=None):
  return d2net.loss_fn(outputs, batch, state, config, key, axis_name=axis_name)


def _d2net_init_state(config, num_classes, feature_dim):
  return d2net.init_state(config, num_classes, feature_dim)


def _d2net_inference(outputs, state, mask, config):
  """D2-Net's inference arrays: the TCAM and lambda' (Eq. 8) against the base's x_ref."""
  del config
  attention = d2net_losses.bottom_up_attention(outputs['embeddings'], state['x_ref']) * mask
  return {'tcam': outputs['tcam'], 'attention': attention}, {}


def _d2net_kd_view(outputs):
  """cas = the mean of the streams' class logits (their sigmoids make D2-Net's TCAM); with one
  stream its logits."""
  if 'flow_logits' not in outputs or 'rgb_logits' not in outputs:
    return {'cas': outputs.get('rgb_logits', outputs.get('flow_logits')), 'att': None}
  return {'cas': 0.5 * (outputs['rgb_logits'] + outputs['flow_logits']), 'att': None}


BASES = {
    'd2net': Base('d2net', _d2net_build, lambda config, dim: dim, _d2net_init_state,
                  _d2net_loss, _d2net_inference, _d2net_kd_view, has_attention=False),
    'sal': Base('sal', sal_base.build, sal_base.feature_width, sal_base.init_state,
                sal_base.loss, sal_base.inference, sal_base.kd_view, has_attention=True),
}
UNAVAILABLE = {
    'co2net': 'the CO2-Net base is not implemented (a later issue); use base=d2net or base=sal',
}


def get(name: str) -> Base:
  """The adapter of base `name`; ValueError (one line) for the bases not available."""
  if name in BASES:
    return BASES[name]
  if name in UNAVAILABLE:
    raise ValueError(f'config.dfe.base={name!r}: {UNAVAILABLE[name]}')
  raise ValueError(f'config.dfe.base={name!r}: must be one of '
                   f'{tuple(BASES) + tuple(UNAVAILABLE)}')
