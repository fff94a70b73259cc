"""CO2-Net's training loss (the code's `criterion`; co2net-facts.md Sec. 2), each term a pure
function.

Notation: B videos, T snippets (mask m (B, T)), C classes plus the background (last), y (B, C)
multi-hot labels, cas (B, T, C + 1) logits, a / a_v / a_f (B, T) the mean / RGB / flow attention,
X (B, T, D) the fused features. k_b = max(1, floor(T_b / k_ratio)) with T_b the valid snippets.

  L = L_mil(cas, [y, 1]) + L_mil(cas_supp, [y, 0]) + alpha3 L_co + alpha4 L_mutual
      + alpha1 (mean a + mean a_v + mean a_f) / 3
      + alpha2 (mean |1 - a - p_bg| + mean |1 - a_v - p_bg| + mean |1 - a_f - p_bg|) / 3

  L_mil(z, y')   mean_b -sum_c y'_bc / (sum_c y'_bc + 1e-4) log_softmax(topk-mean_t z_b)_c
  cas_supp       a (cas - min_c cas) + min_c cas      (the minimum over classes, per snippet)
  p_bg           softmax(cas)[..., C] (not detached: the guide term trains the classifier too)
  L_mutual       0.5 mean (a_v - sg a_f)^2 + 0.5 mean (a_f - sg a_v)^2
  L_co           co-activity similarity over the pairs of rows (0, 1), (2, 3), ... (`coactivity`)

Means over (b, t) are over valid snippets. Inside pmap (axis_name) every batch mean is
psum(sum) / psum(count) and the pairs are rows of the all-gathered global batch, so the loss and
its gradient are those of one device holding the whole batch.
"""

from typing import Dict, Optional

import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods import base
from d2net_jax.methods import layers

LABEL_EPS = 1e-4
MARGIN = 0.5


def topk_count(mask: jax.Array, ratio: float) -> jax.Array:
  """k_b = max(1, floor(T_b / ratio)) (B,), the code's max(1, int(T // k))."""
  return jnp.maximum(jnp.floor(jnp.sum(mask, -1) / ratio), 1.0)


def with_background(labels: jax.Array, value: float) -> jax.Array:
  """[y, value] (B, C + 1)."""
  return jnp.concatenate([labels, jnp.full(labels.shape[:-1] + (1,), value, labels.dtype)], -1)


def mil_per_video(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                  ratio: float) -> jax.Array:
  """(B,) -sum_c y'_c log_softmax(v)_c with v (B, C + 1) the mean of the top-k_b valid logits
  per column and y' = labels / (sum labels + 1e-4); labels (B, C + 1) include the background."""
  video = layers.topk_gather_mean(logits, logits, mask, topk_count(mask, ratio))
  target = labels / (jnp.sum(labels, -1, keepdims=True) + LABEL_EPS)
  return -jnp.sum(target * jax.nn.log_softmax(video, -1), -1)


def suppressed_cas(cas: jax.Array, attention: jax.Array) -> jax.Array:
  """a (cas - m) + m with m = min over the C + 1 classes at each snippet (B, T, 1)."""
  low = jnp.min(cas, -1, keepdims=True)
  return attention[..., None] * (cas - low) + low


def coactivity_features(feat: jax.Array, cas_supp: jax.Array, mask: jax.Array):
  """(Hf, Lf) (B, D, C + 1) of each video: A = softmax over the valid snippets of cas_supp,
  Hf = X^T A, Lf = X^T (1 - A) / max(T_b - 1, 1) (1 - A counted on valid snippets only)."""
  valid = (mask > 0)[..., None]
  # A finite floor, not -inf: a row without valid snippets stays NaN-free (in value and gradient).
  att = jnp.where(valid, jax.nn.softmax(jnp.where(valid, cas_supp, -1e30), axis=1), 0.0)
  x = feat * mask[..., None]
  high = jnp.einsum('btd,btc->bdc', x, att)
  low_weight = (1.0 - att) * mask[..., None]
  count = jnp.maximum(jnp.sum(mask, -1) - 1.0, 1.0)
  low = jnp.einsum('btd,btc->bdc', x, low_weight) / count[:, None, None]
  return high, low


def _cosine_distance(u: jax.Array, v: jax.Array) -> jax.Array:
  """1 - cos(u, v) over axis -2 (the feature axis of (P, D, C + 1)); no epsilon (the code)."""
  return 1.0 - jnp.sum(u * v, -2) / (jnp.linalg.norm(u, axis=-2) * jnp.linalg.norm(v, axis=-2))


def coactivity(high: jax.Array, low: jax.Array, labels: jax.Array, num_pairs: int,
               no_pairs: str = 'zero'):
  """(L_co, shared) over the pairs of rows (2i, 2i + 1), i < num_pairs, of the batch.

  Per pair and class c: d1 = 1 - cos(Hf_1, Hf_2), d2 = 1 - cos(Hf_1, Lf_2), d3 = 1 - cos(Hf_2,
  Lf_1); term = 0.5 max(d1 - d2 + 0.5, 0) + 0.5 max(d1 - d3 + 0.5, 0), weighted by s_c = y_1c y_2c
  (background 0). L_co = sum of the terms / shared, shared = sum of s over all pairs; with no
  shared class 'zero' gives 0, 'nan' gives 0 / 0 (the code). high, low (B, D, C + 1), labels
  (B, C), B >= 2 num_pairs.
  """
  first, second = slice(0, 2 * num_pairs, 2), slice(1, 2 * num_pairs, 2)
  d1 = _cosine_distance(high[first], high[second])
  d2 = _cosine_distance(high[first], low[second])
  d3 = _cosine_distance(high[second], low[first])
  weight = with_background(labels[first] * labels[second], 0.0)
  total = jnp.sum((0.5 * jax.nn.relu(d1 - d2 + MARGIN) + 0.5 * jax.nn.relu(d1 - d3 + MARGIN))
                  * weight)
  shared = jnp.sum(weight)
  if no_pairs == 'nan':
    return total / shared, shared
  return jnp.where(shared > 0, total / jnp.maximum(shared, 1.0), 0.0), shared


def _gather_rows(x, axis_name):
  return x if axis_name is None else lax.all_gather(x, axis_name, tiled=True)


# The terms of `co2net_loss_terms` whose gradient reaches the fused features X (through cas, and
# X itself in L_co); the mutual and norm terms read only the attentions, which CO2-Net computes
# before the fusion. The guide term reaches X through p_bg unless guide_detach_background, when
# it is named GUIDE_DETACHED instead (a term of the attentions only).
FEATURE_TERMS = ('loss_mil_orig', 'loss_mil_supp', 'loss_contrastive', 'loss_guide')
GUIDE_DETACHED = 'loss_guide_detached'


def co2net_loss_terms(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array], cfg, *,
                      axis_name: Optional[str] = None):
  """L of the module docstring as named terms {name: (weight, value)}, and aux (each term, the
  shared class count); cfg: the `co2net` section. 'loss_guide' is GUIDE_DETACHED under
  cfg.guide_detach_background (then no term but the MILs and L_co reads the classifier)."""
  cas = outputs['cas']
  mask = batch['mask'].astype(cas.dtype)
  if not cfg.mask_padding:
    mask = jnp.ones_like(mask)
  labels = batch['labels'].astype(cas.dtype)
  total = lambda x: layers.global_sum(x, axis_name)
  num_videos = total(jnp.asarray(mask.shape[0], cas.dtype))
  num_snippets = jnp.maximum(total(jnp.sum(mask)), 1.0)
  snippet_mean = lambda x: total(jnp.sum(x * mask)) / num_snippets
  attn, v_atn, f_atn = outputs['attn'], outputs['v_atn'], outputs['f_atn']

  supp = suppressed_cas(cas, attn)
  loss_mil_orig = total(jnp.sum(mil_per_video(cas, with_background(labels, 1.0), mask,
                                              cfg.topk_ratio))) / num_videos
  loss_mil_supp = total(jnp.sum(mil_per_video(supp, with_background(labels, 0.0), mask,
                                              cfg.topk_ratio))) / num_videos
  high, low = coactivity_features(outputs['feat'], supp, mask)
  loss_co, shared = coactivity(_gather_rows(high, axis_name), _gather_rows(low, axis_name),
                               _gather_rows(labels, axis_name), cfg.contrastive_pairs,
                               cfg.contrastive_no_pairs)
  loss_mutual = (0.5 * snippet_mean((v_atn - lax.stop_gradient(f_atn)) ** 2)
                 + 0.5 * snippet_mean((f_atn - lax.stop_gradient(v_atn)) ** 2))
  p_bg = jax.nn.softmax(cas, -1)[..., -1]
  if cfg.guide_detach_background:
    p_bg = lax.stop_gradient(p_bg)
  loss_norm = sum(snippet_mean(a) for a in (attn, v_atn, f_atn)) / 3
  loss_guide = sum(snippet_mean(jnp.abs(1.0 - a - p_bg)) for a in (attn, v_atn, f_atn)) / 3
  guide = GUIDE_DETACHED if cfg.guide_detach_background else 'loss_guide'
  terms = {'loss_mil_orig': (1.0, loss_mil_orig), 'loss_mil_supp': (1.0, loss_mil_supp),
           'loss_contrastive': (cfg.alpha3, loss_co), 'loss_mutual': (cfg.alpha4, loss_mutual),
           'loss_norm': (cfg.alpha1, loss_norm), guide: (cfg.alpha2, loss_guide)}
  aux = {'loss_mil_orig': loss_mil_orig, 'loss_mil_supp': loss_mil_supp,
         'loss_contrastive': loss_co, 'loss_mutual': loss_mutual, 'loss_norm': loss_norm,
         'loss_guide': loss_guide, 'shared_classes': shared}
  return terms, aux


def co2net_loss(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array], cfg, *,
                axis_name: Optional[str] = None):
  """(L, aux) of the module docstring: the weighted sum of `co2net_loss_terms`, in the order of
  the formula."""
  terms, aux = co2net_loss_terms(outputs, batch, cfg, axis_name=axis_name)
  return base.weighted_sum(terms), aux
