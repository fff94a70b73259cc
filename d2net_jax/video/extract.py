"""Videos -> snippet features -> the HDF5 store (`d2net-jax extract`).

Per video: decode at 25 fps, short side 256 (`decode`), cut `window`-frame snippets every `stride`
frames (`snippets`), crop the central 224 x 224, run the RGB I3D (and, with flow weights, TV-L1
flow into the flow I3D) in batches under jit, and keep the mean of Mixed_5c: (T, 1024) per stream,
RGB first then flow ((T, 2048) for 'rgb+flow', the field's layout).

Batches: the largest size (`batch_size`, rounded up to a multiple of the devices) while a video
fills it, then its remainder in halving sizes (13 snippets: 8 + 4 + 1), so a short video computes
no padding. With several local devices a batch is split over them (jit over a 1-D mesh). At most
two batches are in flight while the next ones are decoded.

Resumable per video: every finished video is saved in the features folder as `<video>.npy` (T, D)
float32 (what `d2net-jax import --features` reads) and `<video>.json` (its duration, frame
counts, source frame rate and file), written only once complete; `extractor.json` there records
the settings, and a folder made with other settings is refused. An interrupted run, started
again, skips the videos that are done.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import json
import os
import pathlib
from typing import Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from d2net_jax.data.records import DataError
from d2net_jax.utils import atomic_write
from d2net_jax.video import decode, flow, i3d, snippets

EXTRACTOR_FILE = 'extractor.json'
_AXIS = 'batch'


@dataclasses.dataclass(frozen=True)
class Settings:
  """What determines the features (recorded in the store and the features folder).

  fps: frame rate the video is resampled to. window / stride: snippet frames and step (frames).
  last_snippet: 'pad' or 'drop' (`snippets`). short_side / crop: resize, then central crop.
  streams: 'rgb' or 'rgb+flow'. flow_bound / flow_quantize: `flow.scale`. rgb_weights_sha256 /
  flow_weights_sha256: the weight files' hashes.
  """
  fps: int = decode.FPS
  window: int = 16
  stride: int = 16
  last_snippet: str = 'pad'
  short_side: int = decode.SHORT_SIDE
  crop: int = 224
  streams: str = 'rgb'
  flow_bound: float = flow.BOUND
  flow_quantize: bool = True
  rgb_weights_sha256: str = ''
  flow_weights_sha256: str = ''

  def __post_init__(self):
    snippets.check_policy(self.last_snippet)
    if min(self.fps, self.window, self.stride, self.crop) <= 0:
      raise ValueError(f'fps, window, stride and crop must be positive: {self}')
    if self.crop > self.short_side:
      raise ValueError(f'crop {self.crop} is larger than the short side {self.short_side}')
    if self.streams not in ('rgb', 'rgb+flow'):
      raise ValueError(f"streams must be 'rgb' or 'rgb+flow', got {self.streams!r}")

  @property
  def seconds_per_snippet(self) -> float:
    return self.stride / self.fps

  @property
  def feature_dim(self) -> int:
    return i3d.FEATURE_DIM * len(self.streams.split('+'))

  def record(self) -> dict:
    """The settings and what they stand for, as stored (JSON-able)."""
    return dict(dataclasses.asdict(self), feature='I3D Mixed_5c, mean over time and space',
                model='DeepMind kinetics-i3d InceptionI3d (d2net_jax.video.i3d)',
                flow='OpenCV DualTVL1OpticalFlow, default parameters',
                seconds_per_snippet=self.seconds_per_snippet, feature_dim=self.feature_dim)


def features_only(variables: dict) -> dict:
  """`variables` without the logits layer (not used for features)."""
  return {k: {n: v for n, v in tree.items() if n != i3d.LOGITS} for k, tree in variables.items()}


def descending_sizes(batch_size: int, num_devices: int) -> list[int]:
  """Batch sizes: batch_size rounded up to a multiple of num_devices, then halvings down to
  num_devices (each a multiple of it)."""
  per_device = max(1, -(-batch_size // num_devices))
  sizes = [per_device * num_devices]
  while per_device > 1:
    per_device = -(-per_device // 2)
    sizes.append(per_device * num_devices)
  return list(dict.fromkeys(sizes))


@functools.lru_cache(maxsize=None)
def _compiled_forward(devices: tuple):
  """(the jitted feature forward pass over a mesh of `devices`, the batch sharding, the
  replicated sharding); one per device set, so extractors of the same devices share its
  compilations. Features only: the logits layer is not used."""
  mesh = Mesh(np.array(devices), (_AXIS,))
  batch_sharding, replicated = NamedSharding(mesh, P(_AXIS)), NamedSharding(mesh, P())
  model = i3d.InceptionI3d()

  def forward(variables, x):
    return model.apply(variables, flow.to_network_input(x))['features']

  return (jax.jit(forward, in_shardings=(replicated, batch_sharding),
                  out_shardings=batch_sharding), batch_sharding, replicated)


class Extractor:
  """Compiled I3D forward passes and the per-video loop.

  Args:
    settings: `Settings`.
    rgb_variables: `InceptionI3d` variables of the RGB network (`weights.load_kinetics_rgb`).
    flow_variables: those of the flow network (streams 'rgb+flow'), else None.
    batch_size: snippets per call (per device count; see the module docstring).
    devices: the devices to split batches over (default: all local devices).
  """

  def __init__(self, settings: Settings, rgb_variables, flow_variables=None, *,
               batch_size: int = 8, devices: Optional[Sequence] = None):
    if (settings.streams == 'rgb+flow') != (flow_variables is not None):
      raise ValueError(f'streams {settings.streams!r} with flow variables '
                       f'{"given" if flow_variables is not None else "missing"}')
    self.settings = settings
    self.devices = tuple(devices or jax.local_devices())
    self.sizes = descending_sizes(batch_size, len(self.devices))
    self._forward, self._batch_sharding, replicated = _compiled_forward(self.devices)
    self._variables = {name: jax.device_put(features_only(v), replicated) for name, v in
                       (('rgb', rgb_variables), ('flow', flow_variables)) if v is not None}

  def _dispatch(self, stream: str, batch: np.ndarray):
    """Starts the forward pass of `batch` (b, window, crop, crop, C); returns (array, b)."""
    size = len(batch)
    padded = -(-size // len(self.devices)) * len(self.devices)
    if padded != size:
      batch = np.concatenate([batch, np.repeat(batch[-1:], padded - size, axis=0)])
    x = jax.device_put(batch, self._batch_sharding)
    return self._forward(self._variables[stream], x), size

  def forward(self, stream: str, batch: np.ndarray) -> np.ndarray:
    """(b, 1024) features of snippets `batch` (b, window, crop, crop, C) (uint8, or flow in
    [-1, 1]) through the `stream` ('rgb' or 'flow') network."""
    array, size = self._dispatch(stream, batch)
    return np.asarray(array)[:size]

  def frames(self, video: decode.VideoFrames):
    """Per frame at fps: (RGB crop uint8[, flow crop]) of the decoded stream."""
    s = self.settings
    if s.streams == 'rgb':
      return ((snippets.center_crop(f, s.crop),) for f in video)
    rgb, for_flow = itertools.tee(video)
    flows = flow.flow_frames(for_flow, s.flow_bound, s.flow_quantize)
    return ((snippets.center_crop(f, s.crop), snippets.center_crop(g, s.crop))
            for f, g in zip(rgb, flows))

  def video_features(self, path, on_snippets: Optional[Callable[[int], None]] = None
                     ) -> tuple[np.ndarray, dict]:
    """((T, feature_dim) float32 features, info) of one video file.

    info: 'duration' (s), 'num_frames' (at fps), 'num_snippets', 'source_frames', 'source_fps',
    'width', 'height', 'codec', 'file'. Raises decode.VideoError for a file that cannot be read.
    on_snippets: called with the number of snippets of each finished batch (a progress bar).
    """
    s = self.settings
    video = decode.VideoFrames(path, s.fps, s.short_side)
    streams = s.streams.split('+')
    outputs = {name: [] for name in streams}
    pending = collections.deque()

    def collect():
      results, size = pending.popleft()
      for name, (array, _) in zip(streams, results):
        outputs[name].append(np.asarray(array)[:size])
      if on_snippets:
        on_snippets(size)

    cut = snippets.snippets(self.frames(video), s.window, s.stride, s.last_snippet)
    for group in snippets.batches(cut, self.sizes):
      stacked = [np.stack([np.stack([frame[i] for frame in snippet]) for snippet in group])
                 for i in range(len(streams))]
      pending.append(([self._dispatch(n, x) for n, x in zip(streams, stacked)], len(group)))
      if len(pending) > 2:  # Bounded: the decoder runs ahead of the device by two batches.
        collect()
    while pending:
      collect()
    expected = snippets.num_snippets(video.stats.get('num_frames', 0), s.window, s.stride,
                                     s.last_snippet)
    if not outputs[streams[0]]:
      raise decode.VideoError(f'{path}: {video.stats.get("num_frames", 0)} frames at {s.fps} '
                              f'fps, shorter than one {s.window}-frame snippet '
                              f'(last snippet policy {s.last_snippet!r})')
    features = np.concatenate([np.concatenate(outputs[n]) for n in streams], axis=1)
    if len(features) != expected:
      raise AssertionError(f'{path}: {len(features)} snippets, expected {expected}')
    info = {k: video.stats[k] for k in ('duration', 'num_frames', 'source_frames', 'source_fps',
                                         'width', 'height', 'codec')}
    info.update(num_snippets=len(features), file=str(path))
    return features.astype(np.float32), info


class FeaturesFolder:
  """The resumable per-video results (module docstring): `<id>.npy` + `<id>.json`."""

  def __init__(self, folder, settings: Settings):
    self.folder = pathlib.Path(folder)
    self.folder.mkdir(parents=True, exist_ok=True)
    record = json.loads(json.dumps(settings.record()))
    path = self.folder / EXTRACTOR_FILE
    if path.is_file():
      try:
        earlier = json.loads(path.read_text())
      except (OSError, ValueError) as e:
        raise DataError(f'{path}: unreadable ({e}); delete the features folder') from e
      changed = sorted(k for k in set(record) | set(earlier) if record.get(k) != earlier.get(k))
      if changed:
        raise DataError(f'{self.folder}: features made with other settings ('
                        + ', '.join(f'{k}: {earlier.get(k)!r} there, {record.get(k)!r} now'
                                    for k in changed)
                        + '); give another --features-dir or delete it')
    else:
      atomic_write.write_text(path, json.dumps(record, indent=1, sort_keys=True) + '\n')

  def info(self, video_id: str) -> Optional[dict]:
    """The saved info of a finished video, or None."""
    path = self.folder / f'{video_id}.json'
    if not (path.is_file() and (self.folder / f'{video_id}.npy').is_file()):
      return None
    try:
      return json.loads(path.read_text())
    except (OSError, ValueError):
      return None  # Extracted again.

  def save(self, video_id: str, features: np.ndarray, info: dict) -> None:
    target = self.folder / f'{video_id}.npy'
    tmp = atomic_write.temporary_path(target)
    try:
      with open(tmp, 'wb') as f:
        np.save(f, features)
      os.replace(tmp, target)
    except BaseException as e:  # Ctrl-C too: no temporary file is left behind.
      tmp.unlink(missing_ok=True)
      if isinstance(e, OSError):
        raise atomic_write.write_failed(target, e, 'features') from e
      raise
    atomic_write.write_text(self.folder / f'{video_id}.json',
                            json.dumps(info, indent=1, sort_keys=True) + '\n')


def video_ids(paths: Sequence[pathlib.Path]) -> tuple[dict, list[str]]:
  """({video id: path}, problems): the id is the file name without its suffix; a second file
  with an id already taken is a problem naming both."""
  ids, problems = {}, []
  for path in paths:
    video_id = path.stem
    if video_id in ids:
      problems.append(f'{path}: video id {video_id!r} is taken by {ids[video_id]} (ids are file '
                      'names without the suffix); rename one')
    else:
      ids[video_id] = path
  return ids, problems


def extract_all(paths: dict, folder: FeaturesFolder, extractor: Extractor, *,
                progress=None, log: Callable[[str], None] = print) -> tuple[dict, list[str]]:
  """Features of every video not done yet, saved to `folder`; ({video id: info} of the videos
  done, problems). A video that cannot be read is one problem line (logged) and the rest go on.

  progress: a tqdm-like bar counting snippets (`update`, `set_description`), or None.
  """
  done, problems = {}, []
  for index, (video_id, path) in enumerate(paths.items()):
    info = folder.info(video_id)
    if info is None:
      if progress is not None:
        progress.set_description(f'{index + 1}/{len(paths)} {video_id}')
      try:
        features, info = extractor.video_features(
            path, on_snippets=progress.update if progress is not None else None)
      except DataError as e:
        problems.append(str(e))
        log(str(e))
        continue
      folder.save(video_id, features, info)
    done[video_id] = info
  return done, problems
