"""Snippets of a frame stream: their count and timing, the last partial snippet, the crop.

Snippet t holds frames [t * stride, t * stride + window) of the video at `fps`; its feature row
covers [t, t + 1) * stride / fps seconds (the store's `seconds_per_snippet`). THUMOS14's I3D
features: window = stride = 16 at 25 fps, 0.64 s per snippet.

The last partial snippet (`LAST_SNIPPET_POLICIES`):
  'pad'   every frame belongs to a snippet's time slot: T = ceil(N / stride) snippets for N
          frames; frames past the end repeat the last frame (the feature timing then covers the
          whole video, T * stride / fps - duration in [0, stride / fps)).
  'drop'  only snippets whose window lies inside the video: T = (N - window) // stride + 1
          (0 for a video shorter than one window, which is then an error).
"""

from __future__ import annotations

import collections
from typing import Iterable, Iterator, Sequence

import numpy as np

LAST_SNIPPET_POLICIES = ('pad', 'drop')


def check_policy(policy: str) -> None:
  if policy not in LAST_SNIPPET_POLICIES:
    raise ValueError(f'last snippet policy must be one of {LAST_SNIPPET_POLICIES}, got '
                     f'{policy!r}')


def num_snippets(num_frames: int, window: int = 16, stride: int = 16,
                 policy: str = 'pad') -> int:
  """T, the snippets of a video of `num_frames` frames (module docstring)."""
  check_policy(policy)
  if num_frames <= 0:
    return 0
  if policy == 'pad':
    return -(-num_frames // stride)
  return (num_frames - window) // stride + 1 if num_frames >= window else 0


def snippet_frames(t: int, num_frames: int, window: int = 16, stride: int = 16) -> np.ndarray:
  """(window,) frame indices of snippet t, past the end clamped to the last frame ('pad')."""
  return np.minimum(np.arange(t * stride, t * stride + window), num_frames - 1)


def snippets(frames: Iterable, window: int = 16, stride: int = 16,
             policy: str = 'pad') -> Iterator[list]:
  """The snippets of a frame stream, each a list of `window` frames (module docstring).

  Streams: holds at most max(window, stride) frames. The count is `num_snippets` of the number of
  frames, known only at the end of the stream.
  """
  check_policy(policy)
  buffer, first, t, n = collections.deque(), 0, 0, 0  # buffer[0] is frame `first`.

  def take(t):
    nonlocal first
    out = [buffer[i - first] for i in snippet_frames(t, n, window, stride)]
    while buffer and first < (t + 1) * stride:  # Frames no later snippet uses.
      if len(buffer) == 1 and first == n - 1:
        break  # The last frame may still pad the next snippet.
      buffer.popleft()
      first += 1
    return out

  for frame in frames:
    buffer.append(frame)
    n += 1
    while t * stride + window <= n:
      yield take(t)
      t += 1
  while t < num_snippets(n, window, stride, policy):
    yield take(t)
    t += 1


def center_crop(frame: np.ndarray, size: int) -> np.ndarray:
  """The central (size, size) window of frame (H, W, ...); H, W >= size."""
  height, width = frame.shape[:2]
  if height < size or width < size:
    raise ValueError(f'frame {height}x{width} is smaller than the {size}x{size} crop')
  top, left = (height - size) // 2, (width - size) // 2
  return frame[top:top + size, left:left + size]


def batches(items: Iterable, sizes: Sequence[int]) -> Iterator[list]:
  """Consecutive groups of `items`: of the largest size while it fills, then the remainder split
  into the listed smaller sizes (largest first; the smallest padded by the caller if needed).

  sizes: descending, e.g. (8, 4, 2, 1): a video of 13 snippets goes as 8, 4, 1 (no padding).
  """
  pending = []
  for item in items:
    pending.append(item)
    if len(pending) == sizes[0]:
      yield pending
      pending = []
  for size in sizes[1:]:
    while len(pending) >= size:
      yield pending[:size]
      pending = pending[size:]
  if pending:
    yield pending
