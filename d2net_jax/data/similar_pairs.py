"""Similar-pair batches (the CO2-Net lineage's training sampler): which videos a batch holds.

A batch of B rows starts with `num_similar` groups of `similar_size` videos that share a class:
for each group a class is drawn uniformly, WITH replacement (two groups may share a class, and
so may repeat a pair), among the classes that have at least `similar_size` training videos; then
`similar_size` distinct videos carrying that class are drawn from its list (a multi-label video
is in the list of each of its classes). Group g fills rows g * similar_size ...
(g + 1) * similar_size - 1; with the defaults (3, 2) rows (0, 1), (2, 3), (4, 5) are the pairs a
co-activity loss compares. The other B - num_similar * similar_size rows are drawn uniformly
with replacement from all training videos (duplicates possible).

The authors' code draws the classes among all classes, so a class with fewer than
`similar_size` videos crashes its sampler; here such classes are never drawn (the same draw when
every class qualifies, as on THUMOS14 and ActivityNet1.2). The draws use the batcher's per-step
generator, so a batch stays a pure function of (seed, step).
"""

from typing import List, Sequence

import numpy as np

from d2net_jax.data.records import DataError

# 'uniform': every row drawn alike (data.shuffle: with replacement or epoch-wise);
# 'similar_pairs': the groups of videos sharing a class described above, then uniform rows.
SAMPLERS = ('uniform', 'similar_pairs')


def class_lists(labels: Sequence[np.ndarray]) -> List[np.ndarray]:
  """Per class c, the (ascending) indices of the videos whose multi-hot labels (C,) have c."""
  matrix = np.asarray([np.asarray(y) > 0 for y in labels], bool)
  return [np.flatnonzero(matrix[:, c]) for c in range(matrix.shape[1])]


class SimilarPairs:
  """The similar-pair draw over a fixed set of training videos (module docstring)."""

  def __init__(self, labels: Sequence[np.ndarray], batch_size: int, num_similar: int = 3,
               similar_size: int = 2):
    """
    Args:
      labels: each training video's multi-hot labels (C,); `draw` returns indices into them.
      batch_size: B, the global batch.
      num_similar, similar_size: the groups (3 pairs in the authors' code).

    Raises ValueError / DataError (one line) when no batch can be drawn: the groups do not fit
    in B, or no class has `similar_size` videos.
    """
    if num_similar < 1 or similar_size < 1:
      raise ValueError(f'num_similar={num_similar} and similar_size={similar_size} must be >= 1')
    if batch_size < num_similar * similar_size:
      raise ValueError(f'batch_size={batch_size} is smaller than num_similar * similar_size = '
                       f'{num_similar} * {similar_size}: the similar groups do not fit')
    self.lists = class_lists(labels)
    self.num_videos = len(labels)
    self.batch_size, self.num_similar, self.similar_size = batch_size, num_similar, similar_size
    self.eligible = np.flatnonzero([len(v) >= similar_size for v in self.lists])
    if not self.eligible.size:
      raise DataError(f'similar-pair sampler: no class has {similar_size} or more training '
                      'videos to draw a group from')

  def draw(self, rng: np.random.Generator) -> np.ndarray:
    """(batch_size,) int64 video indices of one batch. Draw order (the authors'): the group
    classes, each group's videos, then the uniform rows."""
    classes = self.eligible[rng.integers(self.eligible.size, size=self.num_similar)]
    groups = [self.lists[c][rng.choice(len(self.lists[c]), size=self.similar_size, replace=False)]
              for c in classes]
    rest = rng.integers(self.num_videos, size=self.batch_size - self.num_similar * self.similar_size)
    return np.concatenate(groups + [rest]).astype(np.int64)
