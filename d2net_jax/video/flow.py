"""TV-L1 optical flow of a frame stream, as the field's flow features were made.

Kinetics I3D's flow stream (and the THUMOS14 / ActivityNet features of the WTAL literature): TV-L1
(Zach, Pock & Bischof 2007) between consecutive grayscale frames at 25 fps, both components
truncated to [-20, 20] pixels and scaled to [-1, 1]. The field stored the flow as 8-bit images,
(f + 20) / 40 * 255, and read them back as x / 127.5 - 1; `quantize=True` (the default) does the
same, so the network sees the same numbers (and a uint8 batch goes to the device).

Flow frame i is the flow from frame i to frame i + 1; the last frame repeats the flow before it
(a one-frame video has zero flow), so the flow stream has as many frames as the video. A frame
identical to the one before (a frame the 25 fps resampling repeated) has exactly zero flow,
without running TV-L1.

OpenCV's `cv2.optflow.DualTVL1OpticalFlow` with its default parameters (opencv-contrib-python-
headless, the optional `video` extra). It is slow on a CPU (seconds per frame pair at 256 x 340):
the field ran it on GPUs.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

BOUND = 20.0  # Pixels: flow components are truncated to [-BOUND, BOUND].


def scale(flow: np.ndarray, bound: float = BOUND, quantize: bool = True) -> np.ndarray:
  """(H, W, 2) flow in pixels -> uint8 [0, 255] ((f + bound) / (2 bound) * 255, rounded) with
  `quantize`, else float32 in [-1, 1] (f / bound), after truncation to [-bound, bound]."""
  clipped = np.clip(flow, -bound, bound)
  if quantize:
    return np.round((clipped + bound) * (255.0 / (2 * bound))).astype(np.uint8)
  return (clipped / bound).astype(np.float32)


def to_network_input(x):
  """uint8 [0, 255] (an image, or quantized flow) -> [-1, 1], as the field read them; a float
  (flow already in [-1, 1]) is returned as it is."""
  if x.dtype == np.uint8 or str(x.dtype) == 'uint8':
    return x.astype(np.float32) / 127.5 - 1.0
  return x


def tvl1():
  """An OpenCV TV-L1 solver with its default parameters."""
  import cv2  # pylint: disable=import-outside-toplevel  # Optional: the `video` extra.
  return cv2.optflow.DualTVL1OpticalFlow_create()


def to_gray(frame: np.ndarray) -> np.ndarray:
  """(H, W, 3) RGB uint8 -> (H, W) uint8 luma (ITU-R BT.601, as OpenCV's RGB2GRAY)."""
  import cv2  # pylint: disable=import-outside-toplevel  # Optional: the `video` extra.
  return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def flow_frames(frames: Iterable[np.ndarray], bound: float = BOUND, quantize: bool = True,
                solver=None) -> Iterator[np.ndarray]:
  """The flow stream (module docstring) of RGB frames (H, W, 3) uint8: (H, W, 2) per frame.

  solver: anything with `calc(previous_gray, gray, None) -> (H, W, 2) float32` (default: `tvl1()`).
  """
  solver = solver or tvl1()
  previous = last = None
  for frame in frames:
    gray = to_gray(frame)
    if previous is not None:
      if np.array_equal(gray, previous):
        last = scale(np.zeros(gray.shape + (2,), np.float32), bound, quantize)
      else:
        last = scale(solver.calc(previous, gray, None), bound, quantize)
      yield last
    previous = gray
  if previous is None:
    return
  if last is None:
    last = scale(np.zeros(previous.shape + (2,), np.float32), bound, quantize)
  yield last
