"""D2-Net's training loss `d2net_loss` (Eq. 1, 4, 11): the terms of losses.py combined the way
training does, with global-batch semantics under pmap and the official denoising schedule.
"""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
import ml_collections

from d2net_jax.methods.layers import masked_mean
from d2net_jax.methods.layers import topk_pool
from d2net_jax.methods.d2net import pairing
from d2net_jax.methods.d2net.losses import (bce_loss, cosine_similarity, denoising_loss,
                                            discriminative_loss, focal_loss,
                                            foreground_background_embeddings, pair_weights,
                                            random_partners, snippet_denoising_term,
                                            update_x_ref, video_denoising_loss, video_validity)


# ---------------------------------------------------------------------------------------------
# The training loss.


def _gather(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """The global batch (B_global, ...) of a per-device batch (B, ...)."""
  if axis_name is None:
    return x
  return lax.all_gather(x, axis_name, tiled=True)


def _psum(x, axis_name: Optional[str]):
  return x if axis_name is None else lax.psum(x, axis_name)


def denoising_schedule(step: jax.Array, start_step: int, every: int) -> jax.Array:
  """Official schedule: the denoising terms are on when step > start_step and step % every == 0."""
  return jnp.logical_and(step > start_step, step % max(int(every), 1) == 0)


def d2net_loss(outputs: Dict[str, jax.Array], batch: Dict[str, jax.Array],
               state: Dict[str, jax.Array], config: ml_collections.ConfigDict, key: jax.Array,
               *, axis_name: Optional[str] = None) -> Tuple[jax.Array, Dict[str, Any]]:
  """The training loss L = L_Dis + on(step) (w_DS L_DS + w_DV L_DV) (Eq. 1, 4, 11).

  outputs: the model's dict ('tcam' (B, T, C), 'embeddings' (B, T, D/2)); batch: 'mask' (B, T),
  'labels' (B, C); state: 'x_ref' (D/2,), 'step' int32 scalar (0-based index of this update, the
  official `itr`); config: the `loss` ConfigDict; key: PRNG key of the Eq. 3 pairing (drawn over
  the global batch, so it must be the same on every device).

  With `axis_name` (inside pmap over a batch split across devices), per-video embeddings, p and
  labels are all-gathered and every mean is psum(sum) / psum(count): every device returns the
  loss and aux of the whole global batch, and lax.pmean of the per-device gradients is the
  gradient of that loss (the transposes of psum / all_gather sum the cotangents over devices).

  Videos with fewer than `min_snippets` valid snippets or no positive label are left out of every
  term and count (official code). Order of the official code: x_ref is updated first (every step,
  denoising on or not) and L_DS uses the new x_ref; L_DS is 0 while x_ref is all zeros. The denoising terms are always computed (static graph) and switched on by
  `denoising_schedule`; aux reports their values whether on or not.

  Returns (loss, aux) with aux: 'loss', 'loss_dis', 'loss_ds', 'loss_dv', 'denoise_on',
  'num_valid', 'num_ds' (videos with a defined L_DS), 'dv_defined', 'w_fb', 'w_fg', 'w_bg' (means
  over valid videos), all float32 scalars, and 'x_ref' (D/2,), the new reference (no gradient).
  """
  c = config
  tcam, emb = outputs['tcam'], outputs['embeddings']
  mask, labels = batch['mask'], batch['labels'].astype(tcam.dtype)
  x_ref, step = state['x_ref'], state['step']

  valid = video_validity(mask, labels, c.min_snippets)
  p = topk_pool(tcam, mask, c.topk_ratio)
  fgbg = jax.vmap(lambda e, t, m: foreground_background_embeddings(
      e, t, m, c.fg_threshold, c.bg_threshold, c.normalize_attention))(emb, tcam, mask)
  has_fg = fgbg['has_fg'] & valid
  has_bg = fgbg['has_bg'] & valid

  # Batch-level quantities on the global batch.
  g_valid, g_p, g_labels = (_gather(x, axis_name) for x in (valid, p, labels))
  g_has_fg, g_has_bg = _gather(has_fg, axis_name), _gather(has_bg, axis_name)
  num_valid = jnp.sum(g_valid.astype(tcam.dtype))

  # L_Dis (Eq. 2-4).
  dis_kwargs = dict(prob_clip=c.prob_clip, positive_class_weight=c.positive_class_weight,
                    class_reduction=c.class_reduction)
  zeros = jnp.zeros(g_valid.shape, tcam.dtype)
  weights = {'w_fb': zeros, 'w_fg': zeros, 'w_bg': zeros}
  if c.discriminative == 'd2net':
    g_fg, g_bg = _gather(fgbg['x_fg'], axis_name), _gather(fgbg['x_bg'], axis_name)
    if c.pairing == 'official':
      perms = pairing.official_permutations(key, g_valid.shape[0])
      weights = pairing.official_pair_weights(g_fg, g_bg, g_has_fg, g_has_bg, g_valid, perms,
                                              c.gamma, cosine_similarity)
    else:
      partners = random_partners(key, g_valid.shape[0])
      weights = pair_weights(g_fg, g_bg, g_has_fg, g_has_bg, partners, c.gamma)
    loss_dis = discriminative_loss(g_p, g_labels, g_valid, weights, beta=c.beta, **dis_kwargs)
  elif c.discriminative == 'focal':
    loss_dis = focal_loss(g_p, g_labels, g_valid, beta=c.beta, **dis_kwargs)
  elif c.discriminative == 'bce':
    loss_dis = bce_loss(g_p, g_labels, g_valid, **dis_kwargs)
  else:
    raise ValueError(f"loss.discriminative must be d2net, focal or bce, got {c.discriminative!r}")

  # Background reference (Eq. 8), updated before L_DS uses it (official order).
  if c.x_ref_source == 'most_background':
    candidates = fgbg['x_most_bg']
  elif c.x_ref_source == 'mean_bg':
    candidates = fgbg['x_bg']
  else:
    raise ValueError(f"loss.x_ref_source must be most_background or mean_bg, "
                     f"got {c.x_ref_source!r}")
  new_x_ref = update_x_ref(x_ref, lax.stop_gradient(candidates), has_bg, c.x_ref_momentum,
                           axis_name)

  # L_D (Eq. 9-11).
  zero = jnp.zeros((), tcam.dtype)
  loss_ds, loss_dv, num_ds, dv_defined = zero, zero, zero, zero
  if c.denoising != 'none':
    if c.denoising not in ('pdmi', 'dmi', 'l1', 'bce'):
      raise ValueError(f"loss.denoising must be pdmi, dmi, l1, bce or none, got {c.denoising!r}")
    ds_terms, ds_defined = jax.vmap(lambda t, e, m, y: snippet_denoising_term(
        t, e, m, y, new_x_ref, kind=c.denoising, fg_threshold=c.snippet_fg_threshold,
        bg_threshold=c.snippet_bg_threshold, eps=c.pdmi_eps, prob_clip=c.prob_clip,
        pdmi_variant=c.snippet_pdmi, fg_attention=c.snippet_fg_attention,
        normalization=c.joint_normalization))(tcam, emb, mask, labels)
    ds_weight = (ds_defined & valid & jnp.any(new_x_ref != 0)).astype(tcam.dtype)
    ds_sum, num_ds = _psum((jnp.sum(jnp.where(ds_weight > 0, ds_terms, 0.0)),
                            jnp.sum(ds_weight)), axis_name)
    loss_ds = ds_sum / jnp.maximum(num_ds, 1.0)
    # The L1 / BCE ablations replace pDMI at the snippet level only.
    dv_kind = 'dmi' if c.denoising == 'dmi' else 'pdmi'
    loss_dv, dv_ok = video_denoising_loss(
        g_p, g_labels, g_valid, kind=dv_kind, score_floor=c.video_score_floor,
        renormalize=c.video_renormalize, eps=c.pdmi_eps, prob_clip=c.prob_clip,
        normalization=c.joint_normalization)
    dv_defined = dv_ok.astype(tcam.dtype)

  denoise_on = denoising_schedule(step, c.pdmi_start_step, c.pdmi_every)
  loss_d = denoising_loss(loss_ds, loss_dv, c.w_ds, c.w_dv)
  loss = loss_dis + jnp.where(denoise_on, loss_d, 0.0)
  aux = {
      'loss': loss,
      'loss_dis': loss_dis,
      'loss_ds': loss_ds,
      'loss_dv': loss_dv,
      'denoise_on': denoise_on.astype(tcam.dtype),
      'num_valid': num_valid,
      'num_ds': num_ds,
      'dv_defined': dv_defined,
      'w_fb': masked_mean(weights['w_fb'], g_valid),
      'w_fg': masked_mean(weights['w_fg'], g_valid),
      'w_bg': masked_mean(weights['w_bg'], g_valid),
      'x_ref': new_x_ref,
  }
  aux = jax.tree_util.tree_map(lax.stop_gradient, aux)
  return loss, aux


def initial_state(embedding_dim: int, dtype=jnp.float32) -> Dict[str, jax.Array]:
  """Loss state at step 0: x_ref all zeros (as the official `running_bg`), step 0."""
  return {'x_ref': jnp.zeros((embedding_dim,), dtype), 'step': jnp.zeros((), jnp.int32)}

