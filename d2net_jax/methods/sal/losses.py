"""SAL's training quantities and losses (spec sections 2.4-2.5), each a pure function.

Notation: B videos, T snippets (mask m (B, T)), C classes, y (B, C) multi-hot labels, eps = 1e-7.
`sal_loss` puts them together. Inside pmap (axis_name) every batch mean is psum(sum) / psum(count)
and every pairing is over the all-gathered global batch, so the loss, its gradient and the new
running statistics are those of one device holding the whole batch.
"""

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods import layers
from d2net_jax.methods.sal import model as model_lib

GCE_EPS = 1e-7
LABEL_EPS = 1e-10


def _sum(x, axis_name):
  return layers.global_sum(x, axis_name)


def normalized_labels(labels: jax.Array) -> jax.Array:
  """y_hat = y / sum_c y + 1e-10 (B, C). A video without labels divides by 1 (the code: NaN)."""
  return labels / jnp.maximum(jnp.sum(labels, -1, keepdims=True), 1.0) + LABEL_EPS


def ce_per_video(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CE_b = -sum_c y_hat_bc log_softmax(z_b)_c (B,); the batch loss is its mean over b."""
  return -jnp.sum(normalized_labels(labels) * jax.nn.log_softmax(logits, -1), -1)


def kl_uniform_per_video(logits: jax.Array) -> jax.Array:
  """KL(u || softmax(z_b)) = sum_c u_c (log u_c - log_softmax(z_b)_c), u_c = 1/C (B,)."""
  num_classes = logits.shape[-1]
  log_u = -jnp.log(jnp.asarray(num_classes, logits.dtype))
  return jnp.sum((log_u - jax.nn.log_softmax(logits, -1)) / num_classes, -1)


def gce_masked_per_video(p: jax.Array, g: jax.Array, w: jax.Array, q: float = 0.5) -> jax.Array:
  """Generalised CE with the adaptive mask (GeneralizedCE_Mask), per video (B,).

  GCEm_b = sum_t w g (1 - (p + eps)^q) / q / (sum_t w g + eps)
         + sum_t w (1 - g) (1 - (1 - p + eps)^q) / q / (sum_t w (1 - g) + eps)
  p, g, w (B, T); padded snippets must carry w = 0. The batch loss is the mean over b.
  """
  pos, neg = w * g, w * (1.0 - g)
  pos_term = jnp.sum(pos * (1.0 - (p + GCE_EPS) ** q) / q, -1) / (jnp.sum(pos, -1) + GCE_EPS)
  neg_term = jnp.sum(neg * (1.0 - (1.0 - p + GCE_EPS) ** q) / q, -1) / (
      jnp.sum(neg, -1) + GCE_EPS)
  return pos_term + neg_term


def consistency_sum(a_r: jax.Array, a_f: jax.Array, mask: jax.Array) -> jax.Array:
  """L_mc numerator: sum_{b,t} m (a_r - a_f)^2; L_mc = this / sum m (gradient into both)."""
  return jnp.sum(mask * (a_r - a_f) ** 2)


def topk_count(mask: jax.Array, ratio: float) -> jax.Array:
  """k_b = max(1, floor(T_valid_b / ratio)) (B,) (the code: T // r; k = 0 fixed to 1)."""
  return jnp.maximum(jnp.floor(jnp.sum(mask, -1) / ratio), 1.0)


def mil_scores(outputs: Dict[str, jax.Array], mask: jax.Array, *, topk_ratio: float = 8,
               topk_source: str = 'comb', bg_topk_ratio: float = 8) -> Tuple[jax.Array, jax.Array]:
  """(cas_top, cas_top_bg) (B, C), spec 2.4.

  comb = (softmax(cas) + a_f + a_r) / 3; cas_top_c = mean of cas at the top-k snippets of
  comb_c ('comb', THUMOS14) or of cas_c ('cas', ANet), k = T // topk_ratio; cas_top_bg_c = mean
  of cas_bg at the top-(T // bg_topk_ratio) snippets of softmax(cas_bg)_c. Selection has no
  gradient; ties go to the lower snippet index.
  """
  cas, cas_bg = outputs['cas'], outputs['cas_bg']
  if topk_source == 'comb':
    select = (jax.nn.softmax(cas, -1) + outputs['a_f'][..., None] + outputs['a_r'][..., None]) / 3
  else:
    select = cas
  cas_top = layers.topk_gather_mean(select, cas, mask, topk_count(mask, topk_ratio))
  cas_top_bg = layers.topk_gather_mean(jax.nn.softmax(cas_bg, -1), cas_bg, mask,
                                       topk_count(mask, bg_topk_ratio))
  return cas_top, cas_top_bg


def pseudo_labels(a_f: jax.Array, a_r: jax.Array, cas: jax.Array, labels: jax.Array,
                  mask: jax.Array, *, rgb_weight: float = 0.1, topk: int = -1,
                  topk_ratio: float = 8, topk_extra: int = 17, conf_gate: bool = True,
                  gate_ratio: float = 2) -> jax.Array:
  """AAL pseudo-labels g (B, T) in {0, 1}, no gradient (spec 2.4).

  g1 = 1 on the top-K snippets of a_pl = (1 - rgb_weight) a_f + rgb_weight a_r, K = topk if > 0
  (ANet: 40) else T // topk_ratio + topk_extra (THUMOS14: 93 + 17 = 110); g2 = 1 on the top
  T // gate_ratio snippets of sum_c relu(cas) (THUMOS14 only: conf_gate); g = g1 g2, and 0 for a
  video without a label (the code writes g1 once per positive class).
  """
  a_pl = lax.stop_gradient((1.0 - rgb_weight) * a_f + rgb_weight * a_r)
  if topk > 0:
    k = jnp.full(mask.shape[:-1], float(topk))
  else:
    k = jnp.floor(jnp.sum(mask, -1) / topk_ratio) + topk_extra
  g = layers.topk_indicator(a_pl, mask, k)
  if conf_gate:
    conf = jnp.sum(jax.nn.relu(lax.stop_gradient(cas)), -1)
    g = g * layers.topk_indicator(conf, mask, jnp.floor(jnp.sum(mask, -1) / gate_ratio))
  return g * (jnp.sum(labels, -1, keepdims=True) > 0).astype(g.dtype)


def update_mask_statistics(pm: jax.Array, mask: jax.Array, mu: jax.Array, var: jax.Array, *,
                           ema: float = 0.7,
                           axis_name: Optional[str] = None) -> Tuple[jax.Array, jax.Array]:
  """EMA of the mean and unbiased variance of the max class probability pm over valid snippets.

  mu' = ema mu + (1 - ema) mean(pm), var' = ema var + (1 - ema) sum (pm - mean)^2 / (n - 1), over
  the n valid snippets of the global batch (two passes of global sums).
  """
  n = _sum(jnp.sum(mask), axis_name)
  mean = _sum(jnp.sum(pm * mask), axis_name) / jnp.maximum(n, 1.0)
  sq = _sum(jnp.sum(mask * (pm - mean) ** 2), axis_name)
  var_batch = sq / jnp.maximum(n - 1.0, 1.0)
  return ema * mu + (1.0 - ema) * mean, ema * var + (1.0 - ema) * var_batch


def adaptive_mask(pm: jax.Array, mu: jax.Array, var: jax.Array,
                  denominator: float = 0.5) -> jax.Array:
  """w = exp(-min(pm - mu, 0)^2 / (denominator * var)) (SoftMatch truncated Gaussian).

  THUMOS14: denominator 0.5 (2 var / 4); ANet: 6. Use the UPDATED mu, var. 1 where pm >= mu.
  """
  return jnp.exp(-jnp.minimum(pm - mu, 0.0) ** 2 / (denominator * var))


def mixup_targets(g: jax.Array, w: jax.Array, axis_name: Optional[str] = None):
  """(g_mix, w_mix): g_mix = (g + roll(g)) >= 1 (OR), w_mix = (w + roll(w)) / 2, rolled over the
  global batch like the model's mixed inputs."""
  g_mix = ((g + model_lib.global_roll(g, 1, axis_name)) >= 1).astype(g.dtype)
  return g_mix, 0.5 * (w + model_lib.global_roll(w, 1, axis_name))


def _stream_names(num_streams: int):
  """(actionness outputs, second-order stream outputs) summed over the streams."""
  if num_streams == 2:
    return ('a_f', 'a_r'), ('sc_flow', 'sc_rgb')
  return ('a_r',), ('sc_rgb',)  # One branch: the model sets a_f = a_r, sc_flow = sc_rgb.


def _sal_parts(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array], state, cfg,
               axis_name: Optional[str], num_streams: int = 2):
  """The unweighted terms of `sal_loss` (the second-order CEs per video, (B,) each, under 'ce'),
  the batch mean over the global batch, and the updated running statistics."""
  stream_a, stream_sc = _stream_names(num_streams)
  mask = batch['mask'].astype(outputs['cas'].dtype)
  labels = batch['labels'].astype(mask.dtype)
  num_videos = _sum(jnp.asarray(mask.shape[0], mask.dtype), axis_name)
  batch_mean = lambda per_video: _sum(jnp.sum(per_video), axis_name) / num_videos

  cas_top, cas_top_bg = mil_scores(outputs, mask, topk_ratio=cfg.topk_ratio,
                                   topk_source=cfg.topk_source, bg_topk_ratio=cfg.bg_topk_ratio)
  parts = {'batch_mean': batch_mean,
           'loss_mil': batch_mean(ce_per_video(cas_top, labels)),
           'loss_bg': batch_mean(kl_uniform_per_video(cas_top_bg)),
           'ce': {name: ce_per_video(outputs[name], labels) for name in ('sc',) + stream_sc}}
  parts['loss_mc'] = (_sum(consistency_sum(outputs['a_r'], outputs['a_f'], mask), axis_name)
                      / jnp.maximum(_sum(jnp.sum(mask), axis_name), 1.0))

  g = pseudo_labels(outputs['a_f'], outputs['a_r'], outputs['cas'], labels, mask,
                    rgb_weight=cfg.pl_rgb_weight, topk=cfg.pl_topk, topk_ratio=cfg.topk_ratio,
                    topk_extra=cfg.pl_topk_extra, conf_gate=cfg.pl_conf_gate,
                    gate_ratio=cfg.pl_gate_ratio)
  pm = jnp.max(jax.nn.softmax(lax.stop_gradient(outputs['cas']), -1), -1)
  mu, var = update_mask_statistics(pm, mask, state['prob_max_mu'], state['prob_max_var'],
                                   ema=cfg.mask_ema, axis_name=axis_name)
  w = adaptive_mask(pm, mu, var, cfg.mask_denominator) * mask
  parts['loss_act'] = batch_mean(sum(gce_masked_per_video(outputs[a], g, w, cfg.gce_q)
                                     for a in stream_a))
  if 'a_f_mix' in outputs:
    g_mix, w_mix = mixup_targets(g, w, axis_name)
    parts['loss_mix'] = batch_mean(sum(
        gce_masked_per_video(outputs[f'{a}_mix'], g_mix, w_mix, cfg.gce_q) for a in stream_a))
  else:
    parts['loss_mix'] = jnp.zeros((), mask.dtype)
  parts['mu'], parts['var'], parts['stream_sc'] = mu, var, stream_sc
  return parts


def _aux(parts, loss_se):
  aux = {name: parts[name] for name in ('loss_mil', 'loss_bg', 'loss_act', 'loss_mix', 'loss_mc')}
  aux.update(loss_se=loss_se, mask_mu=parts['mu'], mask_var=parts['var'],
             state={'prob_max_mu': lax.stop_gradient(parts['mu']),
                    'prob_max_var': lax.stop_gradient(parts['var'])})
  return aux


def sal_loss(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array], state, cfg, *,
             axis_name: Optional[str] = None, num_streams: int = 2):
  """L = w_mil L_mil + w_bg L_bg + w_act L_act + w_mix L_mix + w_mc L_mc + w_se L_se (spec 2.5).

  L_mil = CE(cas_top, y); L_bg = KL(u || softmax(cas_top_bg)); L_act = GCEm(a_f, g, w) +
  GCEm(a_r, g, w); L_mix = GCEm(a_f_mix, g_mix, w_mix) + GCEm(a_r_mix, g_mix, w_mix);
  L_mc = mean_{b,t} (a_r - a_f)^2; L_se = CE(sc, y) + CE(sc_flow, y) + CE(sc_rgb, y).
  Per-video terms are averaged over the global batch. cfg: the `sal` section. state: {'prob_max_mu',
  'prob_max_var', ...}. Returns (loss, aux) with aux['state'] the updated statistics.

  num_streams 1 (one actionness branch; the model sets a_f = a_r, sc_flow = sc_rgb): each sum over
  the streams has its one term: L_act = GCEm(a_r, g, w), L_mix = GCEm(a_r_mix, g_mix, w_mix),
  L_se = CE(sc, y) + CE(sc_rgb, y); L_mc = 0 (no second stream to agree with); the pseudo-label
  actionness a_pl = a_r.
  """
  p = _sal_parts(outputs, batch, state, cfg, axis_name, num_streams)
  loss_se = p['batch_mean'](sum(p['ce'][name] for name in ('sc',) + p['stream_sc']))
  loss = (cfg.w_mil * p['loss_mil'] + cfg.w_bg * p['loss_bg'] + cfg.w_act * p['loss_act']
          + cfg.w_mix * p['loss_mix'] + cfg.w_mc * p['loss_mc'] + cfg.w_se * loss_se)
  return loss, _aux(p, loss_se)


# The terms of `sal_loss_terms` whose gradient reaches the encoder features e (through cas,
# cas_bg and sc); the others read only the actionness branches and sc_rgb / sc_flow.
FEATURE_TERMS = ('loss_mil', 'loss_bg', 'loss_se_video')


def sal_loss_terms(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array], state, cfg, *,
                   axis_name: Optional[str] = None, num_streams: int = 2):
  """`sal_loss` as named terms {name: (weight, value)} and its aux: 'loss_mil', 'loss_bg',
  'loss_act', 'loss_mix', 'loss_mc' as in `sal_loss`, and L_se split into 'loss_se_video' =
  mean_b CE(sc_b, y_b) and 'loss_se_streams' = mean_b (CE(sc_flow_b, y_b) + CE(sc_rgb_b, y_b)),
  both weighted w_se. The weighted sum is `sal_loss`'s loss up to rounding."""
  p = _sal_parts(outputs, batch, state, cfg, axis_name, num_streams)
  se_video = p['batch_mean'](p['ce']['sc'])
  se_streams = p['batch_mean'](sum(p['ce'][name] for name in p['stream_sc']))
  terms = {'loss_mil': (cfg.w_mil, p['loss_mil']), 'loss_bg': (cfg.w_bg, p['loss_bg']),
           'loss_act': (cfg.w_act, p['loss_act']), 'loss_mix': (cfg.w_mix, p['loss_mix']),
           'loss_mc': (cfg.w_mc, p['loss_mc']), 'loss_se_video': (cfg.w_se, se_video),
           'loss_se_streams': (cfg.w_se, se_streams)}
  return terms, _aux(p, se_video + se_streams)
