"""The top-k count rules of d2net_jax/utils/topk.py against a table of (T, ratio) -> k, for Python
numbers, NumPy arrays and jitted JAX arrays, and which rule each localizer and loss uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from d2net_jax.utils import topk

# (T, ratio): (floor, floor_min1, ceil_min1). Edges: no snippet, fewer than ratio, exactly ratio,
# one more, a fractional ratio and one below 1 (k > T: the top-k means clip it).
TABLE = {
    (0, 8): (0, 1, 1),
    (1, 8): (0, 1, 1),
    (3, 4): (0, 1, 1),
    (4, 4): (1, 1, 1),
    (7, 8): (0, 1, 1),
    (8, 8): (1, 1, 1),
    (9, 8): (1, 1, 2),
    (16, 8): (2, 2, 2),
    (17, 8): (2, 2, 3),
    (50, 4): (12, 12, 13),
    (750, 8): (93, 93, 94),
    (5, 2.5): (2, 2, 2),
    (9, 2.5): (3, 3, 4),
    (3, 0.5): (6, 6, 6),
}
RULES = (topk.topk_count_floor, topk.topk_count_floor_min1, topk.topk_count_ceil_min1)


@pytest.mark.parametrize('length,ratio', list(TABLE))
def test_python_numbers(length, ratio):
  assert tuple(int(rule(length, ratio)) for rule in RULES) == TABLE[length, ratio]


@pytest.mark.parametrize('rule_index', range(3))
def test_numpy_and_jitted_jax_arrays(rule_index):
  rule = RULES[rule_index]
  for ratio in sorted({r for _, r in TABLE}):
    lengths = [t for t, r in TABLE if r == ratio]
    expected = [TABLE[t, ratio][rule_index] for t in lengths]
    np.testing.assert_array_equal(rule(np.array(lengths), ratio), expected)
    # As SAL's losses call it: the valid-snippet count of float32 masks, inside jit.
    masks = jnp.asarray(np.arange(max(lengths))[None, :] < np.array(lengths)[:, None], jnp.float32)
    got = jax.jit(lambda m, rule=rule, ratio=ratio: rule(jnp.sum(m, -1), ratio, jnp))(masks)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), expected)
