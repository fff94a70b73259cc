"""D2-Net losses (Sec. 3.1, 3.2): L = L_Dis + w_DS L_DS + w_DV L_DV, as pure, masked functions.

Per-video functions take one video ((T, C) TCAM, (T, D/2) embeddings, (T,) mask) and are vmapped
over the batch; batch-level functions take (B, ...) arrays. Shapes are static: masks, never boolean
indexing. `d2net_loss` combines the terms the way training does.

As in the official code, every loss skips videos with fewer than `min_snippets` (5) valid snippets
or without a positive label (`video_validity`); here they are masked out of every sum and count.
"""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
import ml_collections

from d2net_jax.layers import masked_mean
from d2net_jax.layers import topk_pool
from d2net_jax.methods.d2net import pairing
from d2net_jax.methods.d2net.dmi import dmi_from_joint
from d2net_jax.methods.d2net.dmi import dmi_loss
from d2net_jax.methods.d2net.dmi import guarded
from d2net_jax.methods.d2net.dmi import joint_distribution
from d2net_jax.methods.d2net.dmi import normalize_columns
from d2net_jax.methods.d2net.dmi import normalized_joint
from d2net_jax.methods.d2net.dmi import pdmi_from_joint
from d2net_jax.methods.d2net.dmi import pdmi_loss
from d2net_jax.methods.d2net.dmi import pdmi_official_from_joint

__all__ = [
    'bce_loss', 'bottom_up_attention', 'cosine_similarity', 'd2net_loss', 'denoising_loss',
    'discriminative_loss', 'discriminative_loss_per_video', 'dmi_from_joint', 'dmi_loss',
    'focal_loss', 'foreground_background_embeddings', 'joint_distribution', 'normalize_columns',
    'normalized_joint', 'pair_weights', 'pdmi_from_joint', 'pdmi_loss', 'pdmi_official_from_joint',
    'random_partners', 'snippet_denoising_term', 'snippet_joint_distribution',
    'snippet_predictions', 'top_down_attention', 'topk_pool',
    'update_x_ref', 'video_denoising_loss', 'video_joint_distribution', 'video_validity',
]

_COS_EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# Building blocks.


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = _COS_EPS) -> jax.Array:
  """cos(a, b) over the last axis; 0 (with finite gradient) when either vector is zero."""
  dot = jnp.sum(a * b, axis=-1)
  norms_sq = jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1)
  return dot / jnp.sqrt(jnp.maximum(norms_sq, eps * eps))


def video_validity(mask: jax.Array, labels: jax.Array, min_snippets: int = 5) -> jax.Array:
  """(B,) bool: at least `min_snippets` valid snippets and a positive label (official skip rule).

  mask (B, T), labels (B, C).
  """
  return jnp.logical_and(jnp.sum(mask, axis=-1) >= min_snippets, jnp.sum(labels, axis=-1) > 0)


def top_down_attention(tcam: jax.Array) -> jax.Array:
  """lambda(t) = max_c T[t, c] (Sec. 3.1): (..., T, C) -> (..., T)."""
  return jnp.max(tcam, axis=-1)


def foreground_background_embeddings(embeddings: jax.Array, tcam: jax.Array, mask: jax.Array,
                                     fg_threshold: float = 0.5, bg_threshold: float = 0.5,
                                     normalize: bool = True) -> Dict[str, jax.Array]:
  """Eq. 2 for one video: attention-weighted foreground / background embeddings.

  embeddings (T, D), tcam (T, C), mask (T,). Foreground attention lambda = max_c T, kept where
  lambda >= fg_threshold; background attention 1 - lambda, kept where >= bg_threshold (official
  code: values below the threshold are zeroed; paper: > tau = 0.5; ActivityNet1.2 official: 0.8
  for the background). `normalize` divides by the kept attention's sum (official code; paper: the
  plain sum).

  Returns 'x_fg', 'x_bg' (D,), 'has_fg', 'has_bg' (bool: some attention kept) and 'x_most_bg'
  (D,), the embedding of the valid snippet with the largest background attention (used by the
  official code for the x_ref running mean).
  """
  valid = mask > 0
  lam = top_down_attention(tcam)
  att_fg = jnp.where(valid & (lam >= fg_threshold), lam, 0.0)
  att_bg = jnp.where(valid & (1.0 - lam >= bg_threshold), 1.0 - lam, 0.0)
  sum_fg, sum_bg = jnp.sum(att_fg), jnp.sum(att_bg)
  x_fg = att_fg @ embeddings
  x_bg = att_bg @ embeddings
  if normalize:
    x_fg = x_fg / jnp.where(sum_fg > 0, sum_fg, 1.0)
    x_bg = x_bg / jnp.where(sum_bg > 0, sum_bg, 1.0)
  most_bg = jnp.argmax(jnp.where(valid, 1.0 - lam, -jnp.inf))
  return {
      'x_fg': x_fg, 'x_bg': x_bg, 'has_fg': sum_fg > 0, 'has_bg': sum_bg > 0,
      'x_most_bg': embeddings[most_bg],
  }


def random_partners(key: jax.Array, batch_size: int) -> jax.Array:
  """(B,) int32 pairing for Eq. 3: video i is compared with video partners[i] != i.

  A uniformly random single cycle through the batch, so every video is also some other video's
  partner exactly once. With batch_size 1 the only choice is the video itself.
  """
  order = jax.random.permutation(key, batch_size)
  return jnp.zeros(batch_size, jnp.int32).at[order].set(jnp.roll(order, -1).astype(jnp.int32))


def pair_weights(x_fg: jax.Array, x_bg: jax.Array, has_fg: jax.Array, has_bg: jax.Array,
                 partners: jax.Array, gamma: float = 0.01) -> Dict[str, jax.Array]:
  """Eq. 3: w_fb, w_fg, w_bg (B,) of each video against video partners[i] (the x~ of the paper).

  x_fg, x_bg (B, D); has_fg, has_bg (B,) bool (False for skipped videos); partners (B,) int.
    w_fb = max(0, cos(x_fg, x~_bg)), w_fg = gamma (1 - cos(x_fg, x~_fg)),
    w_bg = gamma (1 - cos(x_bg, x~_bg)).
  A weight is 0 when either embedding it needs is missing (official code). Gradients flow into
  both videos' embeddings, as in the official code.
  """
  fg_p, bg_p = x_fg[partners], x_bg[partners]
  has_fg_p, has_bg_p = has_fg[partners], has_bg[partners]
  w_fb = jnp.where(has_fg & has_bg_p, jnp.maximum(cosine_similarity(x_fg, bg_p), 0.0), 0.0)
  w_fg = jnp.where(has_fg & has_fg_p, gamma * (1.0 - cosine_similarity(x_fg, fg_p)), 0.0)
  w_bg = jnp.where(has_bg & has_bg_p, gamma * (1.0 - cosine_similarity(x_bg, bg_p)), 0.0)
  return {'w_fb': w_fb, 'w_fg': w_fg, 'w_bg': w_bg}


def bottom_up_attention(embeddings: jax.Array, x_ref: jax.Array) -> jax.Array:
  """Eq. 8: lambda'(t) = 0.5 (1 - cos(x(t), x_ref)); (..., T, D), (D,) -> (..., T).

  No gradient flows into x_ref. 0.5 everywhere while x_ref is all zeros (cosine undefined).
  """
  return 0.5 * (1.0 - cosine_similarity(embeddings, lax.stop_gradient(x_ref)))


def update_x_ref(x_ref: jax.Array, candidates: jax.Array, weights: jax.Array,
                 momentum: float = 0.9, axis_name: Optional[str] = None) -> jax.Array:
  """Eq. 8 running mean: x_ref <- momentum x_ref + (1 - momentum) mean_batch(candidates).

  x_ref (D,); candidates (B, D), one background embedding per video (official code: each video's
  most-background snippet; paper: x_bg); weights (B,) (0 for videos without background or
  skipped). x_ref is unchanged when no weight is positive. With `axis_name` the batch mean is over
  all devices. No gradient.
  """
  weights = weights.astype(candidates.dtype)
  total, count = weights @ candidates, jnp.sum(weights)
  if axis_name is not None:
    total, count = lax.psum((total, count), axis_name)
  new = momentum * x_ref + (1.0 - momentum) * total / jnp.maximum(count, 1e-12)
  return lax.stop_gradient(jnp.where(count > 0, new, x_ref))


# ---------------------------------------------------------------------------------------------
# Discriminative term (Sec. 3.1) and its baselines.


def _reduce_classes(per_class: jax.Array, class_reduction: str) -> jax.Array:
  if class_reduction == 'mean':
    return jnp.mean(per_class, axis=-1)
  if class_reduction == 'sum':
    return jnp.sum(per_class, axis=-1)
  raise ValueError(f"class_reduction must be 'mean' or 'sum', got {class_reduction!r}")


def discriminative_loss_per_video(p: jax.Array, labels: jax.Array, w_fb: jax.Array,
                                  w_fg: jax.Array, w_bg: jax.Array, *, beta: float = 2.0,
                                  prob_clip: float = 1e-3, positive_class_weight: bool = True,
                                  class_reduction: str = 'mean') -> jax.Array:
  """Eq. 4 per video: (B, C) predictions and labels, (B,) weights -> (B,).

    -sum_{y=1} (1 - p + w_fg + w_fb)^beta log p - sum_{y=0} (p + w_bg + w_fb)^beta log(1 - p),
  with p clamped to [prob_clip, 1 - prob_clip]. `positive_class_weight` multiplies the positive
  terms by C (official code); `class_reduction` 'mean' averages over classes (official code),
  'sum' sums them (paper).
  """
  p = jnp.clip(p, prob_clip, 1.0 - prob_clip)
  pos = (1.0 - p + w_fg[:, None] + w_fb[:, None]) ** beta * jnp.log(p)
  neg = (p + w_bg[:, None] + w_fb[:, None]) ** beta * jnp.log(1.0 - p)
  if positive_class_weight:
    pos = pos * p.shape[-1]
  per_class = -(labels * pos + (1.0 - labels) * neg)
  return _reduce_classes(per_class, class_reduction)


def discriminative_loss(p: jax.Array, labels: jax.Array, valid: jax.Array,
                        weights: Dict[str, jax.Array], **kwargs) -> jax.Array:
  """Eq. 4 (L_Dis) averaged over the valid videos; p, labels (B, C), valid (B,), weights of Eq. 3.

  Skipped videos (see `video_validity`) are excluded from the mean. kwargs: beta, prob_clip,
  positive_class_weight, class_reduction.
  """
  per_video = discriminative_loss_per_video(p, labels, weights['w_fb'], weights['w_fg'],
                                            weights['w_bg'], **kwargs)
  return masked_mean(per_video, valid)


def focal_loss(p: jax.Array, labels: jax.Array, valid: jax.Array, **kwargs) -> jax.Array:
  """L_F of the ablation (Tab. 3): Eq. 4 with all w = 0, averaged over the valid videos."""
  zeros = jnp.zeros(p.shape[:-1], p.dtype)
  return discriminative_loss(p, labels, valid, {'w_fb': zeros, 'w_fg': zeros, 'w_bg': zeros},
                             **kwargs)


def bce_loss(p: jax.Array, labels: jax.Array, valid: jax.Array, *, prob_clip: float = 1e-3,
             positive_class_weight: bool = True, class_reduction: str = 'mean',
             **unused) -> jax.Array:
  """L_CE of the ablation (Tab. 3): binary cross-entropy of p (B, C), mean over valid videos.

  Eq. 4 with all w = 0 and beta = 0; same clamp, positive-class weight and class reduction.
  """
  del unused
  zeros = jnp.zeros(p.shape[:-1], p.dtype)
  per_video = discriminative_loss_per_video(
      p, labels, zeros, zeros, zeros, beta=0.0, prob_clip=prob_clip,
      positive_class_weight=positive_class_weight, class_reduction=class_reduction)
  return masked_mean(per_video, valid)


# ---------------------------------------------------------------------------------------------
# Denoising term (Sec. 3.2).


def snippet_predictions(tcam: jax.Array, embeddings: jax.Array, mask: jax.Array,
                        labels: jax.Array, x_ref: jax.Array, fg_threshold: float = 0.5,
                        bg_threshold: float = 0.5, fg_attention: str = 'gt_classes'
                        ) -> Tuple[jax.Array, jax.Array]:
  """Eq. 9 inputs for one video: per-snippet predictions (T, 2) and pseudo-labels (T, 2).

  tcam (T, C), embeddings (T, D), mask (T,), labels (C,), x_ref (D,). Pseudo-foreground:
  lambda' > fg_threshold, pseudo-background: lambda' < bg_threshold (Eq. 8; ActivityNet1.2
  official: 0.3). Foreground rows use the top-down attention restricted to the video's
  ground-truth classes (fg_attention 'gt_classes', official code) or lambda(t), the max over all
  classes ('all_classes', paper); background rows the max over all classes. Row t of the
  predictions is [a(t), 1 - a(t)]; of the pseudo-labels [1, 0] (fg), [0, 1] (bg), [0, 0] (neither,
  or padding).
  """
  valid = mask > 0
  lam_bu = bottom_up_attention(embeddings, x_ref)
  is_fg = valid & (lam_bu > fg_threshold)
  is_bg = valid & (lam_bu < bg_threshold)
  att_gt = jnp.max(jnp.where(labels[None, :] > 0, tcam, 0.0), axis=-1)  # T >= 0.
  att_all = top_down_attention(tcam)
  if fg_attention not in ('gt_classes', 'all_classes'):
    raise ValueError(f"fg_attention must be gt_classes or all_classes, got {fg_attention!r}")
  att = jnp.where(is_fg, att_gt, att_all) if fg_attention == 'gt_classes' else att_all
  predictions = jnp.stack([att, 1.0 - att], axis=-1)
  pseudo_labels = jnp.stack([is_fg, is_bg], axis=-1).astype(tcam.dtype)
  return predictions, pseudo_labels


def snippet_joint_distribution(tcam, embeddings, mask, labels, x_ref, fg_threshold=0.5,
                               bg_threshold=0.5, fg_attention='gt_classes',
                               normalization='per_class') -> Tuple[jax.Array, jax.Array]:
  """Eq. 9: U_1 = P_1 Y_1 (2, 2) for one video, and whether it is defined (n_f > 0, n_b > 0)."""
  predictions, pseudo_labels = snippet_predictions(tcam, embeddings, mask, labels, x_ref,
                                                   fg_threshold, bg_threshold, fg_attention)
  counts = jnp.sum(pseudo_labels, axis=0)
  return normalized_joint(predictions, pseudo_labels, normalization), jnp.all(counts > 0)


def snippet_denoising_term(tcam, embeddings, mask, labels, x_ref, *, kind: str = 'pdmi',
                           fg_threshold: float = 0.5, bg_threshold: float = 0.5,
                           eps: float = 1e-5, prob_clip: float = 1e-3,
                           pdmi_variant: str = 'filtered', fg_attention: str = 'gt_classes',
                           normalization: str = 'per_class') -> Tuple[jax.Array, jax.Array]:
  """L_DS of one video (Eq. 7 on U_1 of Eq. 9) and whether it is defined; see `snippet_predictions`.

  kind: 'pdmi' (Eq. 7), 'dmi' (Eq. 5), or the ablation's 'l1' / 'bce' (mean absolute error /
  binary cross-entropy of a(t) against target 1 on pseudo-foreground, 0 on pseudo-background).
  pdmi_variant: 'filtered' (Eq. 7, singular values <= eps ignored) or 'official' (the official
  snippet-level pDMI, `pdmi_official_from_joint`). Undefined (0, False) without
  pseudo-foreground or pseudo-background snippets, or when the value
  is not finite. Validity of the video itself is the caller's concern.
  """
  predictions, pseudo_labels = snippet_predictions(tcam, embeddings, mask, labels, x_ref,
                                                   fg_threshold, bg_threshold, fg_attention)
  counts = jnp.sum(pseudo_labels, axis=0)
  defined = jnp.all(counts > 0)
  if kind in ('pdmi', 'dmi'):
    if pdmi_variant not in ('filtered', 'official'):
      raise ValueError(f"pdmi_variant must be filtered or official, got {pdmi_variant!r}")
    fn = dmi_from_joint
    if kind == 'pdmi':
      fn = ((lambda u: pdmi_from_joint(u, eps)) if pdmi_variant == 'filtered'
            else pdmi_official_from_joint)
    return guarded(fn, normalized_joint(predictions, pseudo_labels, normalization), defined)
  selected = jnp.sum(pseudo_labels, axis=-1)
  target = pseudo_labels[:, 0]
  att = predictions[:, 0]
  if kind == 'l1':
    per_snippet = jnp.abs(att - target)
  elif kind == 'bce':
    a = jnp.clip(att, prob_clip, 1.0 - prob_clip)
    per_snippet = -(target * jnp.log(a) + (1.0 - target) * jnp.log(1.0 - a))
  else:
    raise ValueError(f"snippet denoising kind must be pdmi, dmi, l1 or bce, got {kind!r}")
  return jnp.where(defined, masked_mean(per_snippet, selected), 0.0), defined


def video_joint_distribution(p: jax.Array, labels: jax.Array, valid: jax.Array,
                             score_floor: float = 0.2, renormalize: bool = True,
                             prob_clip: float = 1e-3, normalization: str = 'per_class'
                             ) -> jax.Array:
  """Eq. 10: U_2 (C, C) across the videos of a batch; p, labels (B, C), valid (B,).

  p is clamped to [prob_clip, 1 - prob_clip] (as for Eq. 4). With `renormalize` (official code),
  each video's scores not above score_floor * max(p) are zeroed and the rest rescaled to sum 1.
  Skipped videos are left out (their label rows are zeroed). normalization: see
  `normalized_joint` ('count': 1/n, n the valid videos).
  """
  p = jnp.clip(p, prob_clip, 1.0 - prob_clip)
  if renormalize:
    kept = p > score_floor * jnp.max(p, axis=-1, keepdims=True)
    p = jnp.where(kept, p, 0.0)
    p = p / jnp.sum(p, axis=-1, keepdims=True)
  return normalized_joint(p, labels * valid[:, None].astype(labels.dtype), normalization)


def video_denoising_loss(p, labels, valid, *, kind: str = 'pdmi', score_floor: float = 0.2,
                         renormalize: bool = True, eps: float = 1e-5, prob_clip: float = 1e-3,
                         normalization: str = 'per_class') -> Tuple[jax.Array, jax.Array]:
  """L_DV: Eq. 7 (kind 'pdmi') or Eq. 5 ('dmi') on U_2 of Eq. 10; (value, defined).

  Undefined (0, False) without valid videos or when the value is not finite (DMI whenever a class
  is missing from the batch); the official code likewise zeroes a NaN / inf value.
  """
  u = video_joint_distribution(p, labels, valid, score_floor, renormalize, prob_clip,
                               normalization)
  fn = (lambda m: pdmi_from_joint(m, eps)) if kind == 'pdmi' else dmi_from_joint
  return guarded(fn, u, jnp.any(valid))


def denoising_loss(loss_ds: jax.Array, loss_dv: jax.Array, w_ds: float = 0.1,
                   w_dv: float = 0.1) -> jax.Array:
  """Eq. 11: w_DS L_DS + w_DV L_DV (official weights 0.1, 0.1; paper: alpha (L_DS + L_DV))."""
  return w_ds * loss_ds + w_dv * loss_dv


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

