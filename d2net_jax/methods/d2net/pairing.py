"""Eq. 3 pairing as the official code draws it (`loss.pairing = 'official'`).

The default, 'cycle' (`losses.random_partners` + `losses.pair_weights`), compares every video with
one other video of the batch, a random single cycle, and gives a weight only when both embeddings
it needs exist. The official DISLOSS instead works on lists:
  * the foreground list (videos, in batch order, whose kept foreground attention is non-zero) is
    compared with a uniformly random permutation of itself (a video may meet itself: weight 0):
    w_fg = gamma (1 - cos(x_fg, x~_fg)), written at each video's own row;
  * likewise the background list: w_bg = gamma (1 - cos(x_bg, x~_bg));
  * m = min(n_fg, n_bg) fg-bg pairs: the first m entries of a random permutation of the foreground
    list against the first m of one of the background list, w_fb = max(0, cos(x_fg, x~_bg)),
    written at the row whose position AMONG THE VALID VIDEOS equals the foreground-LIST position
    (`wt[fg_idx, 2] = ...`). When every valid video has foreground the two coincide; otherwise
    a weight lands on another video, possibly one without foreground.

Static shapes: lists are batch indices sorted members-first (`member_list`), permutations of the
lists are permutations of range(B) restricted to the entries < n (`restrict_permutation`), which
for a uniform permutation of range(B) is a uniform permutation of range(n).
"""

from typing import Dict

import jax
import jax.numpy as jnp


def member_list(member: jax.Array) -> jax.Array:
  """(B,) bool -> (B,) int32: the batch index of the r-th member (ascending) at r < n, then the
  non-members."""
  return jnp.argsort(jnp.logical_not(member), stable=True).astype(jnp.int32)


def restrict_permutation(perm: jax.Array, n: jax.Array) -> jax.Array:
  """perm (B,) a permutation of range(B) -> (B,): its entries < n in perm's order, then zeros."""
  size = perm.shape[0]
  keep = perm < n
  rank = jnp.cumsum(keep) - 1
  return jnp.zeros_like(perm).at[jnp.where(keep, rank, size)].set(perm, mode='drop')


def official_permutations(key: jax.Array, batch_size: int) -> jax.Array:
  """(4, B) int32 independent uniform permutations of range(B): fg list, bg list, and the fg /
  bg lists of the fg-bg pairs."""
  keys = jax.random.split(key, 4)
  return jax.vmap(lambda k: jax.random.permutation(k, batch_size))(keys).astype(jnp.int32)


def official_pair_weights(x_fg: jax.Array, x_bg: jax.Array, has_fg: jax.Array,
                          has_bg: jax.Array, valid: jax.Array, perms: jax.Array,
                          gamma: float = 0.01, cosine=None) -> Dict[str, jax.Array]:
  """Eq. 3 weights (B,) with the official lists and write positions (module docstring).

  x_fg, x_bg (B, D); has_fg, has_bg, valid (B,) bool (has_* already False for skipped videos);
  perms (4, B) permutations of range(B) (`official_permutations`); cosine: (..., D) x2 ->
  (...) cosine similarity (losses.cosine_similarity).
  """
  size = x_fg.shape[0]
  rows = jnp.arange(size)
  fg_list, bg_list, valid_list = member_list(has_fg), member_list(has_bg), member_list(valid)
  n_fg, n_bg = jnp.sum(has_fg), jnp.sum(has_bg)

  def grouping(x, lst, n, perm):
    other = lst[restrict_permutation(perm, n)]
    value = gamma * (1.0 - cosine(x[lst], x[other]))
    return jnp.zeros(size, x.dtype).at[jnp.where(rows < n, lst, size)].set(value, mode='drop')

  w_fg = grouping(x_fg, fg_list, n_fg, perms[0])
  w_bg = grouping(x_bg, bg_list, n_bg, perms[1])
  m = jnp.minimum(n_fg, n_bg)
  fg_pos = restrict_permutation(perms[2], n_fg)  # Foreground-list positions.
  bg_pos = restrict_permutation(perms[3], n_bg)
  value = jnp.maximum(cosine(x_fg[fg_list[fg_pos]], x_bg[bg_list[bg_pos]]), 0.0)
  dest = jnp.where(rows < m, valid_list[fg_pos], size)  # fg-list position used as a row.
  w_fb = jnp.zeros(size, x_fg.dtype).at[dest].set(value, mode='drop')
  return {'w_fb': w_fb, 'w_fg': w_fg, 'w_bg': w_bg}
