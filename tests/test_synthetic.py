"""The synthetic benchmark: statistics of the presets, determinism, what makes the features hard,
the cached store, the command line and the overlay on real THUMOS14 annotations."""

import dataclasses
import gc
import json

import h5py
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax.commands import synthetic as synthetic_command
from d2net_jax.data import hdf5_store, loading, synthetic

DIM = 16


# Tolerances are loose enough for one seed's sampling noise (a few % at these video counts) and
# tight enough to catch a preset that drifts from the real benchmark.
TOLERANCES = {  # key: (relative, absolute)
    'duration_mean': (0.06, 0), 'duration_median': (0.08, 0), 'instances_mean': (0.10, 0),
    'instances_median': (0.0, 1.5), 'instance_length_mean': (0.05, 0),
    'instance_length_median': (0.0, 5.0), 'classes_per_video': (0.0, 0.03),
    'foreground_fraction': (0.0, 0.02)}


@pytest.mark.parametrize('name', ['thumos14_like', 'activitynet12_like'])
def test_preset_statistics_match_the_real_benchmark(name):
  preset = synthetic.get_preset(name)
  dataset = synthetic.generate(name, feature_dim=DIM, seed=0)  # Annotations only are read.
  assert len(dataset.train_videos()) == preset.num_train
  assert len(dataset.test_videos()) == preset.num_test
  stats = synthetic.annotation_statistics(dataset.videos)
  for key, (relative, absolute) in TOLERANCES.items():
    target = preset.targets[key]
    if key == 'instance_length_median' and name == 'thumos14_like':
      absolute = 0.3
    assert abs(stats[key] - target) <= relative * target + absolute, (key, stats[key], target)


def test_annotations_are_consistent():
  dataset = synthetic.generate('thumos14_like', feature_dim=DIM, seed=3, num_train=30,
                               num_test=10)
  index = {c: i for i, c in enumerate(dataset.class_names)}
  for v in dataset.videos:
    assert v.segments.shape == (len(v.segment_classes), 2) and len(v.segments) >= 1
    assert np.all(v.segments[:, 0] >= 0) and np.all(v.segments[:, 1] <= v.duration + 1e-9)
    assert np.all(v.segments[:, 1] > v.segments[:, 0])
    np.testing.assert_array_equal(np.flatnonzero(v.labels), np.unique(v.segment_classes))
    assert v.num_snippets == int(v.duration // 0.64)
    # THUMOS14: every CliffDiving instance is listed under Diving as well.
    cliff = v.segments[v.segment_classes == index['CliffDiving']]
    diving = {tuple(s) for s in v.segments[v.segment_classes == index['Diving']].tolist()}
    assert all(tuple(s) in diving for s in cliff.tolist())


def test_deterministic_per_seed_and_per_video():
  a = synthetic.generate('thumos14_like', feature_dim=DIM, seed=5, num_train=4, num_test=2)
  b = synthetic.generate('thumos14_like', feature_dim=DIM, seed=5, num_train=6, num_test=1)
  c = synthetic.generate('thumos14_like', feature_dim=DIM, seed=6, num_train=4, num_test=2)
  # Video i of a subset does not depend on how many other videos there are.
  for va, vb in zip(a.train_videos(), b.train_videos()):
    assert va.video_id == vb.video_id
    np.testing.assert_array_equal(va.segments, vb.segments)
    np.testing.assert_array_equal(va.features(), vb.features())
  np.testing.assert_array_equal(a.test_videos()[0].segments, b.test_videos()[0].segments)
  va, vc = a.train_videos()[0], c.train_videos()[0]
  assert va.num_snippets != vc.num_snippets or not np.array_equal(va.features(), vc.features())
  x = va.features()
  assert x.shape == (va.num_snippets, DIM) and x.dtype == np.float32 and np.isfinite(x).all()
  np.testing.assert_array_equal(x, va.features())  # Loading twice gives the same array.


def _class_scores(world, video, stream):
  """Per-snippet projection of one stream's features onto each class prototype (T, C)."""
  s = world.streams[stream]
  half = world.feature_dim // 2
  x = video.features()[:, stream * half:(stream + 1) * half]
  directions = s.prototypes @ s.projection  # (C, d)
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  return x @ directions.T


def _regions(video):
  """Boolean (T,) masks: inside an instance, context (within 2 s), far background (> 15 s)."""
  centre = (np.arange(video.num_snippets) + 0.5) * video.seconds_per_snippet
  distance = np.full(video.num_snippets, np.inf)
  inside = np.zeros(video.num_snippets, bool)
  for s, e in video.segments:
    inside |= (centre >= s + 0.5) & (centre <= e - 0.5)
    distance = np.minimum(distance, np.maximum(s - centre, centre - e))
  context = (distance > 0.7) & (distance < 2.0)
  far = distance > 15
  return inside, context, far


def test_features_carry_action_context_and_stream_differences():
  dim = 128  # Enough channels for clean projections; 40 short videos.
  dataset = synthetic.generate('thumos14_like', feature_dim=dim, seed=1, num_train=40,
                               num_test=0)
  preset = synthetic.get_preset('thumos14_like')
  world = synthetic.FeatureWorld(preset.class_names, preset.groups, dim, 1, preset.feature_model)
  means = {stream: {'inside': [], 'context': [], 'far': []} for stream in (0, 1)}
  for video in dataset.videos:
    inside, context, far = _regions(video)
    main = int(np.bincount(video.segment_classes).argmax())
    for stream in (0, 1):
      score = _class_scores(world, video, stream)[:, main]
      for name, mask in (('inside', inside), ('context', context), ('far', far)):
        if mask.any():
          means[stream][name].append(score[mask].mean())
  m = {s: {k: float(np.mean(v)) for k, v in means[s].items()} for s in means}
  for stream in (0, 1):  # Actions stand out from the background in both streams...
    assert m[stream]['inside'] > m[stream]['context'] > m[stream]['far'], m
  # ...but context looks like the class far more in RGB than in flow.
  rgb_context = (m[0]['context'] - m[0]['far']) / (m[0]['inside'] - m[0]['far'])
  flow_context = (m[1]['context'] - m[1]['far']) / (m[1]['inside'] - m[1]['far'])
  assert rgb_context > 0.3 and flow_context < 0.5 * rgb_context, (rgb_context, flow_context)


def test_features_drift_smoothly_and_boundaries_blend():
  dataset = synthetic.generate('thumos14_like', feature_dim=DIM, seed=2, num_train=5, num_test=0)
  x = np.concatenate([v.features() - v.features().mean(0) for v in dataset.videos])
  lag1 = np.mean(np.sum(x[1:] * x[:-1], 1)) / np.mean(np.sum(x * x, 1))
  assert lag1 > 0.3  # Neighbouring snippets are strongly correlated (i.i.d. would give ~0).
  # Without noise or context, the snippet just outside an instance carries part of its signal.
  preset = synthetic.get_preset('thumos14_like')
  quiet = dataclasses.replace(
      preset.feature_model, noise_scale=0.0, amplitude_range=(1.0, 1.0),
      rgb=dataclasses.replace(preset.feature_model.rgb, context=0.0, scene=0.0),
      flow=dataclasses.replace(preset.feature_model.flow, context=0.0, scene=0.0))
  world = synthetic.FeatureWorld(preset.class_names, preset.groups, DIM, 0, quiet)
  segments = np.array([[6.4, 12.8]])  # Snippets 10..19.
  x = world.video_features(segments, np.array([3]), 40, video_key=0)
  energy = np.linalg.norm(x, axis=1)
  # Snippets 9 (outside) and 10 (inside) straddle the start: partly action, partly not.
  assert energy[14] > energy[10] > energy[9] > energy[8] > 0.05 * energy[14]
  assert 0.2 * energy[14] < energy[9] < 0.5 * energy[14]
  assert energy[0] < 1e-3 * energy[14]
  np.testing.assert_allclose(energy[9], energy[20], rtol=1e-3)  # The end blends alike.


def test_class_groups_share_similar_prototypes():
  preset = synthetic.get_preset('thumos14_like')
  world = synthetic.FeatureWorld(preset.class_names, preset.groups, 2 * 64, 0,
                                 preset.feature_model)
  index = {c: i for i, c in enumerate(preset.class_names)}
  for stream in world.streams:
    p = stream.prototypes
    grouped = p[index['CliffDiving']] @ p[index['Diving']]
    unrelated = np.abs(p[index['Billiards']] @ p[index['Diving']])
    assert grouped > 0.45 and unrelated < grouped
  assert world.home_scene[index['CliffDiving']] == world.home_scene[index['Diving']]


def _data_config(**synthetic_fields):
  c = config_lib.data_config()
  c.kind = 'synthetic'
  c.feature_dim = DIM
  c.synthetic.num_train = 3
  c.synthetic.num_test = 2
  for key, value in synthetic_fields.items():
    c.synthetic[key] = value
  return c


def test_ensure_store_builds_once_and_rebuilds_on_change(tmp_path):
  config = _data_config()
  path = synthetic.ensure_store(config, tmp_path)
  assert path.parent == tmp_path and path.name.startswith('synthetic-thumos14_like-16-0-')
  stamp = path.stat().st_mtime_ns
  assert synthetic.ensure_store(config, tmp_path) == path and path.stat().st_mtime_ns == stamp
  stored = hdf5_store.read_store(path)
  fresh = synthetic.generate('thumos14_like', feature_dim=DIM, seed=0, num_train=3, num_test=2)
  assert [v.video_id for v in stored.videos] == [v.video_id for v in fresh.videos]
  for a, b in zip(stored.videos, fresh.videos):
    np.testing.assert_array_equal(a.features(), b.features())
    np.testing.assert_allclose(a.segments, b.segments)
  del stored, a, b  # Closes the store's read handle before it is modified below.
  gc.collect()
  gt = json.loads(synthetic.ground_truth_path(path).read_text())
  assert set(gt['database']) == {v.video_id for v in fresh.videos}
  first = fresh.videos[0]
  assert len(gt['database'][first.video_id]['annotations']) == len(first.segments)

  other = synthetic.ensure_store(_data_config(seed=1), tmp_path)
  assert other != path and other.is_file()
  noisier = synthetic.ensure_store(_data_config(noise_scale=2.0), tmp_path)
  assert noisier not in (path, other)
  # A store whose recorded parameters disagree with its name is rebuilt.
  with h5py.File(path, 'a') as f:
    f.attrs['synthetic_parameters'] = json.dumps({'stale': True})
  assert synthetic.ensure_store(config, tmp_path) == path
  assert path.stat().st_mtime_ns != stamp
  assert not list(tmp_path.glob('.*'))  # No temporary files left behind.


def test_load_dataset_reads_the_synthetic_store(tmp_path):
  config = _data_config()
  dataset = loading.load_dataset(config, cache_dir=tmp_path)
  assert len(dataset.train_videos()) == 3 and len(dataset.test_videos()) == 2
  assert dataset.feature_dim == DIM and dataset.num_classes == 20


def test_command_line(tmp_path, capsys):
  out = tmp_path / 'out'
  argv = ['--preset', 'activitynet12_like', '--out', str(out), '--feature-dim', '8',
          '--num-train', '4', '--num-test', '2', '--seed', '3']
  assert synthetic_command.main(argv) == 0
  printed = capsys.readouterr().out
  stores = list(out.glob('*.h5'))
  assert len(stores) == 1 and str(stores[0]) in printed
  assert synthetic.ground_truth_path(stores[0]).is_file()
  dataset = hdf5_store.read_store(stores[0])
  assert dataset.num_classes == 100 and dataset.feature_dim == 8
  assert [v.subset for v in dataset.videos] == ['training'] * 4 + ['validation'] * 2
  with pytest.raises(SystemExit):
    synthetic_command.main(['--out', str(out), '--feature-dim', '7'])


# The real files have known quirks (28 labels_all mismatches, 5 videos with segments past the end).
@pytest.mark.filterwarnings('ignore::d2net_jax.data.validation.DataWarning')
def test_overlay_on_real_thumos14_annotations(shared_data, tmp_path):
  folder = shared_data / 'thumos14'
  config = _data_config(annotations=str(folder))
  config.trust_pickle = True  # Our own copy of the published annotation files.
  path = synthetic.ensure_store(config, tmp_path)
  assert '-over-thumos14-' in path.name
  dataset = hdf5_store.read_store(path)
  assert len(dataset.subset('validation')) == 200 and len(dataset.subset('test')) == 212
  # Instance counts, straight from the annotation files.
  names = [n.decode() if isinstance(n, bytes) else str(n)
           for n in np.load(folder / 'videoname.npy', allow_pickle=True)]
  segments = np.load(folder / 'segments.npy', allow_pickle=True)
  expected = {name: len(s) for name, s in zip(names, segments)}
  got = {v.video_id: len(v.segments) for v in dataset.videos}
  assert got == expected
  assert sum(got.values()) == sum(expected.values()) > 6000
  video = max(dataset.videos, key=lambda v: len(v.segments))
  x = video.features()
  assert x.shape == (video.num_snippets, DIM) and abs(video.num_snippets * 0.64 -
                                                      video.duration) < 0.64


def test_command_line_without_training_videos(tmp_path, capsys):
  """--num-train 0 writes a test-only store and prints the test videos' feature statistics (it
  used to crash on the empty training list after writing the store); no video at all is refused
  in one line before anything is written."""
  out = tmp_path / 'out'
  argv = ['--out', str(out), '--feature-dim', '8', '--num-train', '0', '--num-test', '2']
  assert synthetic_command.main(argv) == 0
  assert 'first 2 test videos' in capsys.readouterr().out
  dataset = hdf5_store.read_store(next(out.glob('*.h5')))
  assert not dataset.train_videos() and len(dataset.test_videos()) == 2
  empty = tmp_path / 'empty'
  with pytest.raises(SystemExit) as e:
    synthetic_command.main(['--out', str(empty), '--feature-dim', '8', '--num-train', '0',
                            '--num-test', '0'])
  assert e.value.code == 2 and 'no video to write' in capsys.readouterr().err
  assert not empty.exists()
