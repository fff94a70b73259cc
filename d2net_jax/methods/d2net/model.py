"""The D2-Net network (Sec. 3, Fig. 2): two temporal-convolution streams over I3D features.

Each stream (RGB: the first D/2 feature channels, optical flow: the second) has three temporal
convolutions: two D/2 -> D/2 layers with leaky ReLU (the latent embeddings) and a D/2 -> C
classifier followed by a sigmoid. The embeddings x and the TCAM T are the means of the two streams.

The official code runs both streams as one grouped convolution (groups=2) over all D channels; two
separate streams compute the same function. Unlike the official code, every convolution input is
masked, so padded snippets never leak into valid ones, and all outputs are zero at padded snippets.
"""

from typing import Dict, Tuple

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


class StreamSettings(nn.Module):
  """The `model` section's settings of one D2-Net stream (Stream and D2Net share them)."""
  num_classes: int  # C, the classifier's outputs.
  kernel_size: int = 3  # Temporal kernel of layers 1-2 (the embedding convolutions).
  dilation: int = 1  # Their dilation.
  classifier_kernel_size: int = 1  # Temporal kernel of layer 3 (the classifier).
  classifier_dilation: int = 1  # Its dilation.
  leaky_slope: float = 0.2  # Negative slope of the leaky ReLU after layers 1 and 2.
  residual: bool = True  # Layers 1 and 2 add their input: x + leaky_relu(conv(x)).
  dropout_rate: float = 0.7  # Before the classifier, in training.
  init_std: float = 0.01  # Kernels ~ N(0, init_std) (official); <= 0: Flax's default init.
  embeddings_after_dropout: bool = True  # Training embeddings: post-dropout (the code) or pre.


class Stream(StreamSettings):
  """One stream: (B, T, D/2) features -> (B, T, D/2) embeddings and (B, T, C) logits.

  __call__ = classify(encode(...)): `encode` is layers 1-2, (B, T, D/2) -> (B, T, D/2) zero at
  padding; `classify` dropout + layer 3 -> (embeddings, logits). DFE's 'd2net' base enhances the
  layer-2 activations in between.
  """

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


class D2Net(StreamSettings):
  """D2-Net, one Stream per name of `streams`. __call__(features (B, T, D), mask (B, T), train)
  -> dict of outputs.

  Outputs (all zero at padded snippets), with two streams (the default):
    'tcam' (B, T, C): mean of the two streams' sigmoid class activations (T of the paper).
    'embeddings' (B, T, D/2): mean of the two streams' layer-2 activations (x of the paper);
      during training, by default the post-dropout activations the classifier sees (official code).
    'rgb_logits', 'flow_logits' (B, T, C); 'rgb_embeddings', 'flow_embeddings' (B, T, D/2).
  With one stream (`streams` = ('rgb',) or ('flow',)) that stream alone over all D channels:
  'tcam' its sigmoid scores, 'embeddings' its (B, T, D) activations, '<name>_logits' and
  '<name>_embeddings'; every loss term then runs on these as it does on the two-stream means.

  __call__ = heads(*encode(...)) (`methods.base.FeatureSplit`): `encode` gives F = the streams'
  layer-2 activations side by side (B, T, D) and no context; `heads` the outputs from F.
  """
  streams: Tuple[str, ...] = ('rgb', 'flow')  # One Stream each, over equal channel blocks.

  def setup(self):
    kwargs = dict(
        num_classes=self.num_classes, kernel_size=self.kernel_size, dilation=self.dilation,
        classifier_kernel_size=self.classifier_kernel_size,
        classifier_dilation=self.classifier_dilation, leaky_slope=self.leaky_slope,
        residual=self.residual, dropout_rate=self.dropout_rate, init_std=self.init_std,
        embeddings_after_dropout=self.embeddings_after_dropout)
    for name in self.streams:  # Attribute names 'rgb' / 'flow': the parameter names.
      setattr(self, name, Stream(**kwargs))

  def _per_stream(self, x):
    return zip(self.streams, layers.split_streams(x, len(self.streams)))

  def __call__(self, features, mask, train: bool = False) -> Dict[str, jax.Array]:
    return _outputs(self.streams, [getattr(self, name)(part, mask, train)
                                   for name, part in self._per_stream(features)], mask)

  def encode(self, features, mask, train: bool = False):
    """(F (B, T, D) = the streams' layer-2 activations side by side, zero at padding; {})."""
    del train  # No dropout before layer 3.
    return jnp.concatenate([getattr(self, name).encode(part, mask)
                            for name, part in self._per_stream(features)], axis=-1), {}

  def heads(self, f, context, mask, train: bool = False) -> Dict[str, jax.Array]:
    """The outputs dict from F (B, T, D): per stream block dropout + layer 3."""
    del context
    return _outputs(self.streams, [getattr(self, name).classify(part, mask, train)
                                   for name, part in self._per_stream(f)], mask)


def _outputs(streams, per_stream, mask) -> Dict[str, jax.Array]:
  """The outputs dict of the streams' (embeddings, logits); means over the streams (with two,
  0.5 * (rgb + flow) exactly)."""
  outputs = {}
  for name, (embeddings, logits) in zip(streams, per_stream):
    outputs[f'{name}_embeddings'], outputs[f'{name}_logits'] = embeddings, logits
  m = mask[..., None].astype(per_stream[0][1].dtype)
  scale = 1.0 / len(streams)
  tcam = scale * sum(jax.nn.sigmoid(outputs[f'{n}_logits']) for n in streams) * m
  embeddings = scale * sum(outputs[f'{n}_embeddings'] for n in streams)
  return dict(outputs, tcam=tcam, embeddings=embeddings)


def build_model(model_config: ml_collections.ConfigDict, num_classes: int,
                streams: Tuple[str, ...] = ('rgb', 'flow')) -> D2Net:
  """D2Net from the `model` config section, one Stream per name in `streams`."""
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
      streams=tuple(streams),
  )
