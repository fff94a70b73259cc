"""The dataset model every reader produces and every consumer (batching, training, evaluation) reads.

A `VideoRecord` holds one video's annotations and a way to load its features `(T, D)` float32.
Which streams the features hold is the dataset's `streams`: 'rgb+flow' (the field's two-stream I3D
features: D/2 RGB channels, then D/2 optical-flow channels; every store from before this attribute),
'rgb' or 'flow' (one stream, e.g. `d2net-jax extract` without flow weights). Features are loaded on
demand, so a store larger than memory works. A `Dataset` is the class list plus the videos, with the
names of the training and test subsets.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np


# What a store's features hold (the HDF5 attribute `streams`, the config's `data.streams`):
# 'rgb+flow' (D/2 RGB channels then D/2 optical-flow channels; every store without the attribute,
# W-TALC and STPN data) or one stream of D channels.
STREAMS = ('rgb+flow', 'rgb', 'flow')
TWO_STREAMS = 'rgb+flow'


def stream_names(streams: str) -> tuple:
  """('rgb', 'flow') for 'rgb+flow', ('rgb',) for 'rgb', ('flow',) for 'flow'."""
  if streams not in STREAMS:
    raise ValueError(f'streams={streams!r}: must be one of {STREAMS}')
  return tuple(streams.split('+'))


class DataError(ValueError):
  """Bad input data; the message names the file and, where known, the video."""


class DataErrors(DataError):
  """Every problem of one pass over the data (all bad files or videos, not the first only).

  `problems` holds one line each; the message is `summary` followed by all of them.
  """

  def __init__(self, summary: str, problems: Sequence[str]):
    self.summary, self.problems = summary, list(problems)
    super().__init__(f'{summary}: ' + '; '.join(self.problems))


def raise_problems(problems: Sequence[str], summary: str,
                   collect: list[str] | None = None) -> None:
  """Raises nothing for no problem, a DataError for one, DataErrors for several; with `collect`
  the problems are appended to it instead (a later pass reports them with its own)."""
  if collect is not None:
    collect.extend(problems)
    return
  if len(problems) == 1:
    raise DataError(problems[0])
  if problems:
    raise DataErrors(summary, problems)


@dataclasses.dataclass(frozen=True)
class VideoRecord:
  """One video.

  Attributes:
    video_id: the video's name.
    subset: e.g. 'validation', 'test', 'training'.
    labels: (C,) float32 multi-hot video-level label (the weak label).
    segments: (N, 2) float64 ground-truth instances [start_s, end_s], seconds.
    segment_classes: (N,) int32 class index of each instance.
    duration: video length in seconds (annotation).
    seconds_per_snippet: feature timing; snippet t covers [t, t + 1) * seconds_per_snippet.
    num_snippets: T, the number of feature rows.
    load: returns the (T, D) float32 features.
  """
  video_id: str
  subset: str
  labels: np.ndarray
  segments: np.ndarray
  segment_classes: np.ndarray
  duration: float
  seconds_per_snippet: float
  num_snippets: int
  load: Callable[[], np.ndarray] = dataclasses.field(repr=False, compare=False)

  def features(self) -> np.ndarray:
    """(T, D) float32 features."""
    return self.load()


@dataclasses.dataclass
class Dataset:
  """Class list and videos.

  Attributes:
    name: dataset name.
    class_names: C class names in index order.
    videos: all videos, in a fixed order.
    train_subset, test_subset: subset names used for training and testing.
    feature_dim: D.
    ambiguous: optional {video_id: (M, 2) seconds} regions to ignore in evaluation (THUMOS14).
    streams: what the D channels hold (`STREAMS`; module docstring).
  """
  name: str
  class_names: Sequence[str]
  videos: list[VideoRecord]
  train_subset: str
  test_subset: str
  feature_dim: int
  ambiguous: Mapping[str, np.ndarray] | None = None
  streams: str = TWO_STREAMS

  def __post_init__(self):
    if self.streams not in STREAMS:
      raise DataError(f'{self.name}: streams {self.streams!r} is not one of {STREAMS}')

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def subset(self, name: str) -> list[VideoRecord]:
    """Videos of one subset, in dataset order."""
    return [v for v in self.videos if v.subset == name]

  def train_videos(self) -> list[VideoRecord]:
    return self.subset(self.train_subset)

  def test_videos(self) -> list[VideoRecord]:
    return self.subset(self.test_subset)
