"""Determinant-based mutual information losses: DMI (Eq. 5) and pseudo-DMI (Eq. 7).

Both act on a joint distribution U (K, K) between predictions and (noisy) labels. As in the official
`pDMI` and `svddmi`, U = normalize_columns(labels).T @ predictions: row k of U is the mean
prediction over the samples labelled k. A class absent from the labels gives a zero row.

Gradients: pDMI differentiates singular values only (`compute_uv=False`), whose derivative
u_i^T dU v_i is well defined for distinct singular values. Where singular values repeat (U = I, for
one) the singular values are not differentiable and JAX returns one element of the subgradient
(depending on the SVD's choice of basis). Gradient tests use matrices with distinct singular values.
"""

import jax
import jax.numpy as jnp


def normalize_columns(labels: jax.Array) -> jax.Array:
  """labels (n, K) with each column divided by its sum (count), clamped below at 1."""
  counts = jnp.sum(labels, axis=0, keepdims=True)
  return labels / jnp.maximum(counts, 1.0)


def joint_distribution(predictions: jax.Array, labels: jax.Array) -> jax.Array:
  """U (K, K) = normalize_columns(labels).T @ predictions; predictions, labels (n, K).

  Eq. 5 (U = P Y / n, here normalised per class as in the official code). Samples whose label row
  is all zero do not contribute.
  """
  return normalize_columns(labels).T @ predictions


def normalized_joint(predictions: jax.Array, labels: jax.Array,
                     normalization: str = 'per_class') -> jax.Array:
  """U (K, K) of Eq. 9 / 10 for predictions, labels (n, K): Y normalised per class ('per_class',
  official code: `dmi.joint_distribution`) or by the number of labelled rows ('count', the paper's
  1/z of Eq. 9 and 1/n of Eq. 10)."""
  if normalization == 'per_class':
    return joint_distribution(predictions, labels)
  if normalization != 'count':
    raise ValueError(f"joint normalization must be per_class or count, got {normalization!r}")
  count = jnp.sum(jnp.any(labels > 0, axis=-1))
  return (labels / jnp.maximum(count, 1)).T @ predictions


def pdmi_official_from_joint(u: jax.Array) -> jax.Array:
  """The official snippet-level `pDMI`: log(sigma_max / sigma_min) of U clamped below at 1e-10,
  every singular value kept (no filter); large when U is (nearly) singular."""
  s = jnp.linalg.svd(jnp.maximum(u, 1e-10), compute_uv=False)
  return jnp.log(jnp.max(s, axis=-1)) - jnp.log(jnp.min(s, axis=-1))


def dmi_from_joint(u: jax.Array) -> jax.Array:
  """Eq. 5: L_dmi = -log|det U| for U (..., K, K); +inf when U is singular."""
  _, logabsdet = jnp.linalg.slogdet(u)
  return -logabsdet


def pdmi_from_joint(u: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Eq. 7: L_pdmi = log(sigma_1 / sigma_r) of U (..., K, K).

  sigma_1 is the largest singular value and sigma_r the smallest one above `eps` (singular values
  <= eps are ignored, as in the official `svddmi`). 0 when no singular value exceeds eps.
  """
  s = jnp.linalg.svd(u, compute_uv=False)  # (..., K), descending.
  kept = s > eps
  any_kept = jnp.any(kept, axis=-1)
  largest = jnp.where(any_kept, jnp.max(jnp.where(kept, s, 0.0), axis=-1), 1.0)
  smallest = jnp.where(any_kept, jnp.min(jnp.where(kept, s, jnp.inf), axis=-1), 1.0)
  return jnp.log(largest) - jnp.log(smallest)


def dmi_loss(predictions: jax.Array, labels: jax.Array) -> jax.Array:
  """Eq. 5: -log|det U| for predictions (n, K) probabilities and labels (n, K) (multi-)hot.

  +inf (or NaN) when a class is missing from `labels` (U singular): the limitation pDMI removes.
  """
  return dmi_from_joint(joint_distribution(predictions, labels))


def pdmi_loss(predictions: jax.Array, labels: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Eq. 7: log condition number of U for predictions (n, K) and labels (n, K) (multi-)hot.

  Finite, with finite gradient, when classes are missing from the batch (their zero rows give
  zero singular values, which are ignored). Invariant to scaling U.
  """
  return pdmi_from_joint(joint_distribution(predictions, labels), eps)


def guarded(fn, u: jax.Array, defined: jax.Array):
  """(fn(u) where `defined` and finite else 0, ok) for u (..., K, K), with NaN-free gradients.

  The official code zeroes non-finite DMI / pDMI values; here each undefined or non-finite entry
  is replaced by fn(I) before differentiating, so no NaN reaches the gradient of the others.
  """
  probe = fn(jax.lax.stop_gradient(u))
  ok = jnp.logical_and(defined, jnp.isfinite(probe))
  eye = jnp.eye(u.shape[-1], dtype=u.dtype)
  safe_u = jnp.where(ok[..., None, None], u, eye)
  return jnp.where(ok, fn(safe_u), 0.0), ok
