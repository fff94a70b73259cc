"""The D2-Net network (Sec. 3, Fig. 2): two temporal-convolution streams over I3D features.

Each stream (RGB: the first D/2 feature channels, optical flow: the second) has three temporal
convolutions: two D/2 -> D/2 layers with leaky ReLU (the latent embeddings) and a D/2 -> C
classifier followed by a sigmoid. The embeddings x and the TCAM T are the means of the two streams.

The official code runs both streams as one grouped convolution (groups=2) over all D channels; two
separate streams compute the same function. Unlike the official code, every convolution input is
masked, so padded snippets never leak into valid ones, and all outputs are zero at padded snippets.
"""

from typing import Dict

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from d2net_jax.methods import layers


def _conv_init(init_std: float):
  """N(0, init_std) kernels (official code); Flax's default when init_std <= 0."""
  if init_std > 0:
    return nn.initializers.normal(stddev=init_std)
  return nn.linear.default_kernel_init


class Stream(nn.Module):
  """One stream: (B, T, D/2) features -> (B, T, D/2) embeddings and (B, T, C) logits.

  __call__ = classify(encode(...)): `encode` is layers 1-2, (B, T, D/2) -> (B, T, D/2) zero at
  padding; `classify` dropout + layer 3 -> (embeddings, logits). DFE's 'd2net' base enhances the
  layer-2 activations in between.
  """
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

  def __call__(self, features, mask, train: bool):
    return self._layers(features, mask, train, 'all')

  def encode(self, features, mask):
    return self._layers(features, mask, False, 'encode')

  def classify(self, x, mask, train: bool):
    return self._layers(x, mask, train, 'classify')

  @nn.compact
  def _layers(self, x, mask, train: bool, part: str):
    """Layers 1-2 ('encode'), dropout + layer 3 ('classify') or all three ('all'); one compact
    method, so the parts share their submodules (by name) between calls."""
    m = mask[..., None].astype(x.dtype)

    def conv(x, out, kernel, dilation, name):
      # Padded snippets are zeroed before each convolution ("same" padding then sees zeros there).
      return layers.masked_conv(x, mask, out, kernel, dilation=dilation, name=name,
                                kernel_init=_conv_init(self.init_std))

    if part != 'classify':
      width = x.shape[-1]
      for i in range(2):  # Layers 1 and 2.
        h = nn.leaky_relu(conv(x, width, self.kernel_size, self.dilation, f'conv{i + 1}'),
                          self.leaky_slope)
        x = h + x if self.residual else h
      if part == 'encode':
        return x * m
    # 'Dropout_0': the name the single-call version gave it (dropout masks follow the name).
    dropped = nn.Dropout(self.dropout_rate, deterministic=not train, name='Dropout_0')(x)
    logits = conv(dropped, self.num_classes, self.classifier_kernel_size,
                  self.classifier_dilation, 'classifier')
    embeddings = dropped if (train and self.embeddings_after_dropout) else x
    return embeddings * m, logits * m


class D2Net(nn.Module):
  """Two-stream D2-Net. __call__(features (B, T, D), mask (B, T), train) -> dict of outputs.

  Outputs (all zero at padded snippets):
    'tcam' (B, T, C): mean of the two streams' sigmoid class activations (T of the paper).
    'embeddings' (B, T, D/2): mean of the two streams' layer-2 activations (x of the paper);
      during training, by default the post-dropout activations the classifier sees (official code).
    'rgb_logits', 'flow_logits' (B, T, C); 'rgb_embeddings', 'flow_embeddings' (B, T, D/2).

  __call__ = heads(*encode(...)) (`methods.base.FeatureSplit`): `encode` gives F = concat(rgb,
  flow) layer-2 activations (B, T, D) and no context; `heads` the outputs from F.
  """
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
    kwargs = dict(
        num_classes=self.num_classes, kernel_size=self.kernel_size, dilation=self.dilation,
        classifier_kernel_size=self.classifier_kernel_size,
        classifier_dilation=self.classifier_dilation, leaky_slope=self.leaky_slope,
        residual=self.residual, dropout_rate=self.dropout_rate, init_std=self.init_std,
        embeddings_after_dropout=self.embeddings_after_dropout)
    self.rgb = Stream(**kwargs)
    self.flow = Stream(**kwargs)

  def __call__(self, features, mask, train: bool = False) -> Dict[str, jax.Array]:
    dim = _check_dim(features)
    rgb = self.rgb(features[..., :dim // 2], mask, train)
    flow = self.flow(features[..., dim // 2:], mask, train)
    return _outputs(rgb, flow, mask)

  def encode(self, features, mask, train: bool = False):
    """(F (B, T, D) = concat(rgb, flow) layer-2 activations, zero at padding; context {})."""
    del train  # No dropout before layer 3.
    dim = _check_dim(features)
    return jnp.concatenate([self.rgb.encode(features[..., :dim // 2], mask),
                            self.flow.encode(features[..., dim // 2:], mask)], axis=-1), {}

  def heads(self, f, context, mask, train: bool = False) -> Dict[str, jax.Array]:
    """The outputs dict from F (B, T, D): per half dropout + layer 3."""
    del context
    half = f.shape[-1] // 2
    return _outputs(self.rgb.classify(f[..., :half], mask, train),
                    self.flow.classify(f[..., half:], mask, train), mask)


def _check_dim(features) -> int:
  dim = features.shape[-1]
  if dim % 2:
    raise ValueError(f'feature dimension must be even (RGB + flow halves), got {dim}')
  return dim


def _outputs(rgb, flow, mask) -> Dict[str, jax.Array]:
  (rgb_emb, rgb_logits), (flow_emb, flow_logits) = rgb, flow
  m = mask[..., None].astype(rgb_logits.dtype)
  tcam = 0.5 * (jax.nn.sigmoid(rgb_logits) + jax.nn.sigmoid(flow_logits)) * m
  return {
      'tcam': tcam,
      'embeddings': 0.5 * (rgb_emb + flow_emb),
      'rgb_logits': rgb_logits,
      'flow_logits': flow_logits,
      'rgb_embeddings': rgb_emb,
      'flow_embeddings': flow_emb,
  }


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> D2Net:
  """D2Net from the `model` config section."""
  c = model_config
  return D2Net(
      num_classes=num_classes,
      kernel_size=c.kernel_size,
      dilation=c.dilation,
      classifier_kernel_size=c.classifier_kernel_size,
      classifier_dilation=c.classifier_dilation,
      leaky_slope=c.leaky_slope,
      residual=c.residual,
      dropout_rate=c.dropout_rate,
      init_std=c.init_std,
      embeddings_after_dropout=c.embeddings_after_dropout,
  )
