"""D2-Net losses (Sec. 3.1, 3.2): L = L_Dis + w_DS L_DS + w_DV L_DV, as pure, masked functions.

Per-video functions take one video ((T, C) TCAM, (T, D/2) embeddings, (T,) mask) and are vmapped
over the batch; batch-level functions take (B, ...) arrays. Shapes are static: masks, never boolean
indexing. `d2net_loss` combines the terms the way training does.

As in the official code, every loss skips videos with fewer than `min_snippets` (5) valid snippets
or without a positive label (`video_validity`); here they are masked out of every sum and count.
"""

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods.d2net.dmi import dmi_from_joint
from d2net_jax.methods.d2net.dmi import dmi_loss
from d2net_jax.methods.d2net.dmi import guarded
from d2net_jax.methods.d2net.dmi import joint_distribution
from d2net_jax.methods.d2net.dmi import normalize_columns
from d2net_jax.methods.d2net.dmi import normalized_joint
from d2net_jax.methods.d2net.dmi import pdmi_from_joint
from d2net_jax.methods.d2net.dmi import pdmi_loss
from d2net_jax.methods.d2net.dmi import pdmi_official_from_joint
from d2net_jax.methods.layers import masked_mean
from d2net_jax.methods.layers import topk_pool

__all__ = [
    'bce_loss', 'bottom_up_attention', 'cosine_similarity', 'denoising_loss',
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
