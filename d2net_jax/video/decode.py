"""Decoding a video file into RGB frames at the features' frame rate (the field's 25 fps), the
short side resized (256, as I3D was trained), one frame in memory at a time.

Resampling (`resample`) keeps the source frames' presentation times: output frame k (time k / fps)
shows the last source frame whose start, rounded to the nearest output frame, is at or before k
(ffmpeg's `fps` filter with its default rounding). The video lasts from its first frame's start to
its last frame's end (start + the frame's duration, or 1 / the stream's average rate), and has
round(duration * fps) output frames (at least one). A variable-frame-rate video keeps its timing;
a source frame rate above `fps` drops frames, one below repeats them.
"""

from __future__ import annotations

import fractions
import math
import pathlib
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from d2net_jax.data.records import DataError

FPS = 25  # The field's feature frame rate (THUMOS14 / ActivityNet I3D features).
SHORT_SIDE = 256  # I3D's training frames: short side 256, then a 224 x 224 crop.
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.mpg', '.mpeg', '.flv',
                  '.wmv', '.3gp', '.ts', '.ogv')


class VideoError(DataError):
  """A video that cannot be read; the message names the file."""


def _slot(seconds, fps) -> int:
  """The output frame nearest to `seconds` (halves round up)."""
  return math.floor(seconds * fps + fractions.Fraction(1, 2))


def resample(timed_frames: Iterable[tuple[Any, Optional[Any], Any]], fps: int,
             stats: Optional[dict] = None) -> Iterator[Any]:
  """Frames at `fps` from (start time s, duration s or None, frame) in presentation order.

  Times are Fractions (exact) or floats. `stats`, when given, receives 'duration' (float s),
  'num_frames' (output frames) and 'source_frames' once the input is exhausted.
  """
  first = previous = end = previous_start = None
  count = emitted = 0
  for start, duration, frame in timed_frames:
    if first is None:
      first = start
    slot = _slot(start - first, fps)
    if previous is not None:
      for _ in range(emitted, slot):
        yield previous
      emitted = max(emitted, slot)
      if not duration and start > previous_start:
        duration = start - previous_start  # The last gap stands in for a missing duration.
    previous, previous_start, count = frame, start, count + 1
    end = start + duration if duration else None
  if previous is None:
    raise ValueError('no frames')
  if end is None:  # A single frame of unknown duration: one output frame.
    end = previous_start + fractions.Fraction(1, fps)
  total = max(_slot(end - first, fps), 1)
  for _ in range(emitted, total):
    yield previous
  if stats is not None:
    stats.update(duration=float(end - first), num_frames=max(total, emitted),
                 source_frames=count)


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(height, width) with the short side `short_side` and the aspect ratio kept (rounded)."""
  if height <= width:
    return short_side, max(1, round(width * short_side / height))
  return max(1, round(height * short_side / width)), short_side


class VideoFrames:
  """The RGB frames (H, W, 3) uint8 of `path` at `fps`, short side `short_side` (None: as is).

  Iterating decodes the file once, a frame at a time (PyAV, the optional `video` extra). After a
  complete pass, `stats` holds 'duration' (s), 'num_frames' (at fps), 'source_frames',
  'source_fps' (the stream's average rate), 'width', 'height' (source) and 'codec'. Errors are
  VideoError naming the file.
  """

  def __init__(self, path, fps: int = FPS, short_side: Optional[int] = SHORT_SIDE):
    self.path = pathlib.Path(path)
    self.fps = fps
    self.short_side = short_side
    self.stats: dict = {}

  def __iter__(self) -> Iterator[np.ndarray]:
    import av  # pylint: disable=import-outside-toplevel  # Optional: the `video` extra.
    try:
      container = av.open(str(self.path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
      raise VideoError(f'{self.path}: cannot open as a video ({_reason(e)})') from e
    with container:
      if not container.streams.video:
        raise VideoError(f'{self.path}: no video stream')
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      rate = stream.average_rate or stream.guessed_rate
      self.stats = {'source_fps': float(rate) if rate else float('nan'),
                    'width': stream.codec_context.width, 'height': stream.codec_context.height,
                    'codec': stream.codec_context.name}
      try:
        yield from resample(self._timed(container, stream, rate), self.fps, self.stats)
      except ValueError as e:
        raise VideoError(f'{self.path}: no decodable frame') from e
      except av.FFmpegError as e:
        raise VideoError(f'{self.path}: cannot decode ({_reason(e)}) after '
                         f'{self.stats.get("decoded", 0)} frames') from e

  def _timed(self, container, stream, rate):
    """(start, duration, frame) of every decoded frame, times as exact Fractions of seconds."""
    period = fractions.Fraction(1) / fractions.Fraction(rate) if rate else None
    size = None
    for index, frame in enumerate(container.decode(stream)):
      self.stats['decoded'] = index + 1
      base = frame.time_base or stream.time_base
      if frame.pts is not None and base is not None:
        start = frame.pts * fractions.Fraction(base)
        duration = frame.duration * fractions.Fraction(base) if frame.duration else period
      elif period is not None:
        start, duration = index * period, period
      else:
        raise VideoError(f'{self.path}: frames without timestamps and no frame rate')
      if size is None:
        size = (resized_shape(frame.height, frame.width, self.short_side) if self.short_side
                else (frame.height, frame.width))
      image = frame.reformat(width=size[1], height=size[0], format='rgb24',
                             interpolation='BILINEAR').to_ndarray()
      yield start, duration, image


def _reason(error: BaseException) -> str:
  """The cause in a few words (FFmpeg's message without its error number)."""
  text = str(getattr(error, 'strerror', None) or error).strip().splitlines()
  return text[0][:200] if text else type(error).__name__


def find_videos(inputs: Iterable) -> list[pathlib.Path]:
  """Video files of `inputs`: a file is taken as given; a folder contributes every file under it
  (recursively, sorted) with a video suffix (`VIDEO_SUFFIXES`). A missing path is a DataError."""
  found = []
  for item in inputs:
    path = pathlib.Path(item)
    if path.is_dir():
      found += sorted(p for p in path.rglob('*')
                      if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    elif path.is_file():
      found.append(path)
    else:
      raise DataError(f'{path}: no such file or folder')
  return found
