"""DFE's class memory (GMM) and distillation terms (spec sections 3.3-3.4; OUR design).

Memory state: 'memory' (C, S, E) float32, 'filled' (C,) bool. Each step, from the local branch's
stop-gradient features F_L and class scores cas_L of the labelled classes:

  r_bc   = mean of F_L[b, t] over the top k_m valid t of cas_L[b, :, c],
           k_m = max(1, floor(T_valid / topk_ratio))        ('attention': weights att_L[b, t])
  rbar_c = sum_b y_bc r_bc / sum_b y_bc   (psum of both sums under pmap), L2-normalised
  M_c   <- normalize(mu M_c + (1 - mu) rbar_c) if filled_c else rbar_c   (present classes only)
  filled <- filled or present

With S > 1 slots the slot of highest cosine to rbar_c is the one updated (all S on first fill).
Distillation (teacher = global branch, stop-gradient; masked means over valid snippets of the
global batch):
  L_kd_cas  = tau^2 mean_{b,t} KL(softmax(cas_G / tau) || softmax(cas_L / tau))   ('softmax')
              tau^2 mean_{b,t} sum_c KL(Bern(sig(cas_G / tau)) || Bern(sig(cas_L / tau)))
  L_kd_att  = mean_{b,t} (att_L - att_G)^2
  L_kd_feat = mean_{b,t} ||F_L - F_G||^2 / E
"""

from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods import layers


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def init_memory(num_classes: int, slots: int, width: int):
  return {'memory': jnp.zeros((num_classes, slots, width), jnp.float32),
          'filled': jnp.zeros((num_classes,), bool)}


def class_representations(features: jax.Array, cas: jax.Array, mask: jax.Array,
                          topk_ratio: float, att: Optional[jax.Array] = None) -> jax.Array:
  """r (B, C, E): per video and class, the mean of features (B, T, E) over the top-k_m valid
  snippets of cas (B, T, C), k_m = max(1, floor(T_valid / topk_ratio)); with att (B, T) the
  att-weighted mean over the same snippets. No gradient."""
  features, cas = lax.stop_gradient(features), lax.stop_gradient(cas)
  length = jnp.sum(mask > 0, axis=-1)
  k = jnp.maximum(1, jnp.floor(length / topk_ratio).astype(jnp.int32))
  weights = layers.topk_indicator(jnp.swapaxes(cas, 1, 2), mask[:, None, :], k[:, None])
  if att is not None:
    weights = weights * lax.stop_gradient(att)[:, None, :]
  total = jnp.einsum('bct,bte->bce', weights, features)
  return total / jnp.maximum(jnp.sum(weights, axis=-1), 1e-12)[..., None]


def batch_class_means(r: jax.Array, labels: jax.Array, mask: jax.Array, normalize: bool,
                      axis_name: Optional[str] = None):
  """(rbar (C, E), present (C,) bool): label-weighted means of r (B, C, E) over the global batch
  (videos without valid snippets left out); rbar is 0 for absent classes."""
  y = labels.astype(r.dtype) * (jnp.sum(mask, axis=-1) > 0).astype(r.dtype)[:, None]
  num, den = layers.global_sum((jnp.einsum('bc,bce->ce', y, r), jnp.sum(y, axis=0)), axis_name)
  present = den > 0
  rbar = num / jnp.maximum(den, 1e-12)[:, None]
  if normalize:
    rbar = l2_normalize(rbar)
  return jnp.where(present[:, None], rbar, 0.0), present


def update_memory(memory: jax.Array, filled: jax.Array, rbar: jax.Array, present: jax.Array,
                  momentum: float, normalize: bool):
  """(memory', filled'): the EMA update of the present classes' slots (module docstring)."""
  memory, rbar = lax.stop_gradient(memory), lax.stop_gradient(rbar)
  slots = memory.shape[1]
  cos = jnp.einsum('cse,ce->cs', l2_normalize(memory), l2_normalize(rbar))
  chosen = jax.nn.one_hot(jnp.argmax(cos, axis=-1), slots, dtype=bool)  # (C, S)
  ema = momentum * memory + (1.0 - momentum) * rbar[:, None, :]
  if normalize:
    ema = l2_normalize(ema)
  updated = jnp.where(chosen[..., None], ema, memory)
  first = jnp.broadcast_to(rbar[:, None, :], memory.shape)
  new = jnp.where(filled[:, None, None], updated, first)
  new = jnp.where(present[:, None, None], new, memory)
  return new, filled | present


def _masked_mean(per_snippet: jax.Array, mask: jax.Array, axis_name: Optional[str]):
  m = mask.astype(per_snippet.dtype)
  total, count = layers.global_sum((jnp.sum(per_snippet * m), jnp.sum(m)), axis_name)
  return total / jnp.maximum(count, 1.0)


def kd_cas(cas_l: jax.Array, cas_g: jax.Array, mask: jax.Array, temperature: float = 1.0,
           kind: str = 'softmax', axis_name: Optional[str] = None) -> jax.Array:
  """L_kd_cas (module docstring); cas_g is the stop-gradient teacher."""
  tau = temperature
  cas_g = lax.stop_gradient(cas_g)
  if kind == 'softmax':
    log_p = jax.nn.log_softmax(cas_g / tau, axis=-1)
    log_q = jax.nn.log_softmax(cas_l / tau, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
  elif kind == 'sigmoid':
    lp1, lp0 = jax.nn.log_sigmoid(cas_g / tau), jax.nn.log_sigmoid(-cas_g / tau)
    lq1, lq0 = jax.nn.log_sigmoid(cas_l / tau), jax.nn.log_sigmoid(-cas_l / tau)
    kl = jnp.sum(jnp.exp(lp1) * (lp1 - lq1) + jnp.exp(lp0) * (lp0 - lq0), axis=-1)
  else:
    raise ValueError(f"config.dfe.loss.kd_cas={kind!r}: must be 'softmax' or 'sigmoid'")
  return tau ** 2 * _masked_mean(kl, mask, axis_name)


def kd_att(att_l: jax.Array, att_g: jax.Array, mask: jax.Array,
           axis_name: Optional[str] = None) -> jax.Array:
  """L_kd_att = masked mean of (att_L - sg att_G)^2."""
  return _masked_mean(jnp.square(att_l - lax.stop_gradient(att_g)), mask, axis_name)


def kd_feat(f_l: jax.Array, f_g: jax.Array, mask: jax.Array,
            axis_name: Optional[str] = None) -> jax.Array:
  """L_kd_feat = masked mean of ||F_L - sg F_G||^2 / E."""
  diff = jnp.mean(jnp.square(f_l - lax.stop_gradient(f_g)), axis=-1)
  return _masked_mean(diff, mask, axis_name)
