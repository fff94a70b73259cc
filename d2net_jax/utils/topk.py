"""How many snippets a top-k mean takes: one function per rule, for localizers and losses alike.

Each takes the snippet count `length` (a Python int, a NumPy array or, with `xp=jax.numpy`, a
traced JAX array) and a ratio r > 0, and returns k in `xp`'s float type (int() it for a scalar):

  topk_count_floor_min1  max(1, floor(length / r))  D2-Net's official scorer, SAL's MIL losses,
                                                     SAL's localizer with localize.oic.topk_min_one
  topk_count_ceil_min1   max(1, ceil(length / r))   the D2-Net paper's scorer
  topk_count_floor       floor(length / r)           SAL's ActivityNet code: 0 below r snippets

k may exceed `length` for r < 1; the top-k means clip it (`localize.common.topk_mean`,
`methods.layers.topk_gather_mean`).
"""

import numpy as np


def topk_count_floor(length, ratio, xp=np):
  """k = floor(length / ratio): 0 for a video shorter than `ratio` snippets."""
  return xp.floor(length / ratio)


def topk_count_floor_min1(length, ratio, xp=np):
  """k = max(1, floor(length / ratio))."""
  return xp.maximum(xp.floor(length / ratio), 1)


def topk_count_ceil_min1(length, ratio, xp=np):
  """k = max(1, ceil(length / ratio))."""
  return xp.maximum(xp.ceil(length / ratio), 1)
