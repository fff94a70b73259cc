"""The CO2-Net network (Hong et al., ACM MM 2021; co2net-facts.md Sec. 1, SAL-DFE-spec Sec. 3.2).

Inputs x (B, T, D) with RGB in x[..., :D/2] and optical flow in x[..., D/2:], mask (B, T); E = D/2.

Cross-modal consensus module CCM(main, aux) (the code's `BWA_fusion_dropout_feat_v2`), one with
main = RGB / aux = flow, one with main = flow / aux = RGB:
  g        = Drop_0.5(LReLU(Conv_k(mean_t main)))         (B, 1, E) global channel descriptor; the
                                                           conv (k = 3) sees a length-1 sequence,
                                                           so only its centre tap acts
  b        = Drop_0.5(LReLU(Conv_3(aux)))                 (B, T, E) cross-modal local gate
  filtered = sigmoid(b * g) * main                         (B, T, E)
  att      = sigmoid(Drop_0.5(Conv_1(LReLU(Conv_3(Drop_0.5(LReLU(Conv_3(filtered))))))))   (B, T)
             (hidden width 512; the dropout sits on the LOGIT: a dropped logit gives 0.5)
Then
  feat = Drop_0.7(LReLU(Conv_1(concat(filtered_rgb, filtered_flow))))   (B, T, D) fused features
  cas  = Conv_1(Drop_0.7(LReLU(Conv_3(Drop_0.7(feat)))))               (B, T, C + 1), bg last
  attn = (att_rgb + att_flow) / 2
ActivityNet (`ANT_CO2`): cas, attn, att_rgb and att_flow are smoothed over time by an average
pool (kernel `smooth_kernel` = 13, stride 1, zero padding counted in the mean), in training and
at test; feat is not. LReLU has slope 0.2. Every convolution starts kaiming-uniform (gain sqrt 2,
fan_in = in channels x kernel), biases 0. The code's unused `feat_encoder` is left out.

One stream (`streams` = ('rgb',) or ('flow',); `data.streams`): x (B, T, D) is that stream alone,
E = D. There is no other modality to filter it by, so its one CCM takes it as both main and
auxiliary, CCM(x, x) (a self-gate: the video's channel descriptor times a local gate of the same
stream), named after the stream ('v_attn' for RGB, 'f_attn' for flow). The fusion reads the
filtered stream alone (Conv_1 D -> D), and the one attention stands for all three: attn = v_atn =
f_atn, so the mutual attention loss is 0 and the norm and guide terms are that attention's. This is
exactly the two-stream network fed concat(x, x) with both CCMs equal to the one, the fusion kernel
[[W/2, W/2], [W/2, W/2]] (bias [b, b]: its fused features are [X, X]) and the classifier's k3 kernel
halved over each copy (tests/test_one_stream.py).

Padding: the authors' code never sees any (training rows are resampled to a fixed length, test
videos are fed whole one by one). Here snippets with mask 0 are zeroed before every temporal
convolution, left out of the time mean, and zeroed in the outputs, so a padded video gives its
unpadded outputs exactly (`mask_padding=False`: the mask is ignored, padding enters as zero
features, which is what the code would compute on a padded batch).

`__call__` = `heads(*encode(...))`: `encode` gives the fused features and the attentions, `heads`
the classifier and the smoothing, so a wrapper can enhance the features in between.
"""

from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2


def kaiming_uniform():
  """torch.nn.init.kaiming_uniform_ with its defaults (a = 0, fan_in): U(+-sqrt(6 / fan_in))."""
  return nn.initializers.variance_scaling(2.0, 'fan_in', 'uniform')


def _lrelu(x):
  return nn.leaky_relu(x, LEAKY_SLOPE)


def average_pool(x: jax.Array, kernel: int) -> jax.Array:
  """AvgPool1d(kernel, stride 1, padding kernel // 2, count_include_pad=True) over axis 1 of
  x (B, T, ...): the sum over the zero-padded window divided by `kernel` (odd)."""
  pad = kernel // 2
  padded = jnp.pad(x, ((0, 0), (pad, pad)) + ((0, 0),) * (x.ndim - 2))
  length = x.shape[1]
  return sum(padded[:, j:j + length] for j in range(kernel)) / kernel


class CCM(nn.Module):
  """Cross-modal consensus module: (main, aux (B, T, E), m (B, T)) -> (att (B, T), filtered
  (B, T, E)), both zero where m = 0. Submodule names follow the code's (`channel_conv`,
  `bit_wise_attn`, `attention_0/1/2` for its attention.0/3/5)."""
  attention_hidden: int = 512
  channel_kernel: int = 3
  dropout_rate: float = 0.5
  logit_dropout: float = 0.5

  @nn.compact
  def __call__(self, main, aux, m, train: bool = False) -> Tuple[jax.Array, jax.Array]:
    dim = main.shape[-1]
    conv = lambda width, k, name: nn.Conv(width, (k,), padding='SAME', name=name,
                                          kernel_init=kaiming_uniform())
    drop = lambda x, rate: nn.Dropout(rate, deterministic=not train)(x)
    mv = m[..., None]
    count = jnp.maximum(jnp.sum(mv, axis=1, keepdims=True), 1.0)
    descriptor = jnp.sum(main * mv, axis=1, keepdims=True) / count  # (B, 1, E)
    channel = drop(_lrelu(conv(dim, self.channel_kernel, 'channel_conv')(descriptor)),
                   self.dropout_rate)
    bitwise = drop(_lrelu(conv(dim, 3, 'bit_wise_attn')(aux * mv)), self.dropout_rate)
    filtered = jax.nn.sigmoid(bitwise * channel) * main * mv
    h = drop(_lrelu(conv(self.attention_hidden, 3, 'attention_0')(filtered)), self.dropout_rate)
    h = _lrelu(conv(self.attention_hidden, 3, 'attention_1')(h * mv))
    logit = drop(conv(1, 1, 'attention_2')(h), self.logit_dropout)[..., 0]
    return jax.nn.sigmoid(logit) * m, filtered


class CO2Net(nn.Module):
  """CO2-Net. __call__(features (B, T, D), mask (B, T), train) -> dict of
  'feat' (B, T, D) fused features (after their dropout, as the contrastive loss reads them),
  'cas' (B, T, C + 1) class logits with the background last, 'attn', 'v_atn', 'f_atn' (B, T)
  the mean attention and the RGB / flow CCMs' attentions; all zero at padded snippets."""
  num_classes: int
  feature_dim: int
  attention_hidden: int = 512
  classifier_hidden: int = 0  # 0: feature_dim, the code's (2048).
  channel_kernel: int = 3
  dropout_rate: float = 0.7  # --dropout_ratio: after the fusion, before the classifier.
  classifier_dropout: float = 0.7  # Hard-coded inside the classifier.
  ccm_dropout: float = 0.5
  attention_logit_dropout: float = 0.5
  smooth_kernel: int = 0  # ActivityNet (ANT_CO2): 13; 0 or 1: none.
  mask_padding: bool = True
  streams: Tuple[str, ...] = ('rgb', 'flow')  # One stream: its CCM takes it as main and aux.

  def setup(self):
    if len(self.streams) == 2 and self.feature_dim % 2:
      raise ValueError(f'feature dimension must be even (RGB + flow halves), got '
                       f'{self.feature_dim}')
    ccm = lambda: CCM(self.attention_hidden, self.channel_kernel, self.ccm_dropout,
                      self.attention_logit_dropout)
    if 'rgb' in self.streams:
      self.v_attn = ccm()  # main = RGB (the code's vAttn)
    if 'flow' in self.streams:
      self.f_attn = ccm()  # main = flow (fAttn)
    self.fusion = nn.Dense(self.feature_dim, kernel_init=kaiming_uniform())
    self.classifier_conv = nn.Conv(self.classifier_hidden or self.feature_dim, (3,),
                                   padding='SAME', kernel_init=kaiming_uniform())
    self.classifier_out = nn.Dense(self.num_classes + 1, kernel_init=kaiming_uniform())
    self.drop = nn.Dropout(self.dropout_rate)
    self.drop_classifier = nn.Dropout(self.classifier_dropout)

  def _mask(self, mask, dtype):
    return (mask if self.mask_padding else jnp.ones_like(mask)).astype(dtype)

  def __call__(self, features, mask, train: bool = False) -> Dict[str, jax.Array]:
    feat, context = self.encode(features, mask, train)
    return self.heads(feat, context, mask, train)

  def encode(self, features, mask, train: bool = False):
    """(feat (B, T, D), {'attn', 'v_atn', 'f_atn'} (B, T) before any smoothing)."""
    m = self._mask(mask, features.dtype)
    x = features * m[..., None]
    if len(self.streams) == 1:  # CCM(x, x); its attention stands for all three.
      ccm = self.v_attn if self.streams[0] == 'rgb' else self.f_attn
      atn, filtered = ccm(x, x, m, train)
      attentions = {'attn': atn, 'v_atn': atn, 'f_atn': atn}
    else:
      half = self.feature_dim // 2
      rgb, flow = x[..., :half], x[..., half:]
      v_atn, v_feat = self.v_attn(rgb, flow, m, train)
      f_atn, f_feat = self.f_attn(flow, rgb, m, train)
      filtered = jnp.concatenate([v_feat, f_feat], axis=-1)
      attentions = {'attn': (v_atn + f_atn) / 2, 'v_atn': v_atn, 'f_atn': f_atn}
    feat = self.drop(_lrelu(self.fusion(filtered)), deterministic=not train) * m[..., None]
    return feat, attentions

  def heads(self, feat, context, mask, train: bool = False) -> Dict[str, jax.Array]:
    """The outputs dict from the fused features feat (B, T, D) and `encode`'s attentions."""
    mv = self._mask(mask, feat.dtype)[..., None]
    h = self.drop(feat, deterministic=not train)
    h = self.drop_classifier(_lrelu(self.classifier_conv(h * mv)), deterministic=not train)
    out = dict(context, feat=feat, cas=self.classifier_out(h) * mv)
    if self.smooth_kernel > 1:
      out['cas'] = average_pool(out['cas'], self.smooth_kernel) * mv
      for name in ('attn', 'v_atn', 'f_atn'):
        out[name] = (average_pool(out[name][..., None], self.smooth_kernel) * mv)[..., 0]
    return out
