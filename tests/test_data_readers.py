"""Readers (W-TALC, STPN, own data), the HDF5 store, converters and ground-truth export, on small
files written here. The writers below are shared with test_data_errors.py."""

import json
import pathlib
import warnings

import h5py
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax.commands import cli, convert
from d2net_jax.data import (ground_truth, hdf5_store, loading, own_data, stpn, validation,
                            wtalc)
from d2net_jax.data.records import DataError, Dataset, VideoRecord

D = 8
SPS = 0.64
CLASSES = ['Diving', 'HighJump', 'Shotput']

# video id, subset, T, [(start, end, class)], labels_all (None: the instances' classes).
VIDEOS = [
    ('video_validation_01', 'validation', 20, [(1.0, 3.2, 'Diving'), (5.0, 6.0, 'Shotput')], None),
    ('video_validation_02', 'validation', 12, [(0.5, 2.0, 'HighJump')], None),
    ('video_test_01', 'test', 16, [(2.0, 4.0, 'Diving'), (2.0, 4.0, 'HighJump')], None),
    ('video_test_02', 'test', 9, [(0.0, 1.5, 'Shotput')], ['Shotput']),
]


def features_of(index, num_snippets, dim=D):
  """Deterministic distinct features of video `index`."""
  rng = np.random.default_rng(index)
  return rng.normal(size=(num_snippets, dim)).astype(np.float32)


def _object_array(items):
  out = np.empty(len(items), dtype=object)
  for i, item in enumerate(items):
    out[i] = item
  return out


def write_wtalc(root, videos=VIDEOS, *, name='Tiny', classes=CLASSES, dim=D, features=None,
                ambiguous=None, overrides=None):
  """The W-TALC layout as the real files store it: byte strings, (N, 1) durations, object
  arrays. `features`: per-video arrays (default features_of); `overrides`: {file: array}."""
  root = pathlib.Path(root)
  ann = root / f'{name}-Annotations'
  ann.mkdir(parents=True, exist_ok=True)
  if features is None:
    features = [features_of(i, t, dim) for i, (_, _, t, _, _) in enumerate(videos)]
  arrays = {
      'videoname': np.array([v[0].encode() for v in videos]),
      'subset': np.array([v[1].encode() for v in videos]),
      'duration': np.array([[v[2] * SPS] for v in videos]),  # (N, 1) as THUMOS14.
      'classlist': np.array([c.encode() for c in classes]),
      'segments': _object_array([[[s, e] for s, e, _ in v[3]] for v in videos]),
      'labels': _object_array([[c for _, _, c in v[3]] for v in videos]),
      'labels_all': _object_array([
          list(dict.fromkeys(c for _, _, c in v[3])) if v[4] is None else v[4] for v in videos]),
  }
  arrays.update(overrides or {})
  for key, array in arrays.items():
    np.save(ann / f'{key}.npy', array, allow_pickle=True)
  np.save(root / f'{name}-I3D-JOINTFeatures.npy', _object_array(features), allow_pickle=True)
  if ambiguous is not None:
    (ann / 'Ambiguous_test.txt').write_text(ambiguous)
  return root


def write_stpn(root, videos=VIDEOS, *, dim=D, features=None, classes=None):
  """The STPN / BaS-Net layout: rgb and flow halves, gt.json, split files."""
  root = pathlib.Path(root)
  database = {}
  splits = {'train': [], 'test': []}
  for i, (video_id, subset, t, instances, _) in enumerate(videos):
    split = 'train' if subset == 'validation' else 'test'
    splits[split].append(video_id)
    array = features_of(i, t, dim) if features is None else features[i]
    for stream, part in (('rgb', array[:, :dim // 2]), ('flow', array[:, dim // 2:])):
      folder = root / 'features' / split / stream
      folder.mkdir(parents=True, exist_ok=True)
      np.save(folder / f'{video_id}.npy', part)
    database[video_id] = {'subset': subset, 'duration': t * SPS, 'annotations': [
        {'segment': [s, e], 'label': c} for s, e, c in instances]}
  for split in splits:
    (root / f'split_{split}.txt').write_text('\n'.join(splits[split]) + '\n')
  gt = {'database': database}
  if classes is not None:
    gt['classes'] = classes
  (root / 'gt.json').write_text(json.dumps(gt))
  return root


def tiny_dataset(video_ids=('a', 'b'), subsets=('train', 'test'), t=5):
  videos = []
  for i, (video_id, subset) in enumerate(zip(video_ids, subsets)):
    array = features_of(i, t)
    videos.append(VideoRecord(
        video_id=video_id, subset=subset, labels=np.array([1, 0, 0], np.float32),
        segments=np.array([[0.5, 1.5]]), segment_classes=np.array([0], np.int32),
        duration=t * SPS, seconds_per_snippet=SPS, num_snippets=t,
        load=lambda a=array: a))
  return Dataset(name='tiny', class_names=CLASSES, videos=videos, train_subset='train',
                 test_subset='test', feature_dim=D)


def data_config(**overrides):
  c = config_lib.data_config()
  c.feature_dim = D
  c.num_classes = len(CLASSES)
  for k, v in overrides.items():
    c[k] = v
  return c


def _expected_instances(video):
  return [(s, e, CLASSES.index(c)) for s, e, c in video[3]]


def _assert_matches_videos(dataset, videos=VIDEOS):
  assert [v.video_id for v in dataset.videos] == [v[0] for v in videos]
  for i, (record, spec) in enumerate(zip(dataset.videos, videos)):
    video_id, subset, t, instances, labels_all = spec
    assert record.subset == subset
    assert record.num_snippets == t
    assert record.duration == pytest.approx(t * SPS)
    assert record.seconds_per_snippet == pytest.approx(SPS)
    np.testing.assert_array_equal(record.features(), features_of(i, t))
    assert record.features().dtype == np.float32
    np.testing.assert_allclose(record.segments, [[s, e] for s, e, _ in instances])
    np.testing.assert_array_equal(record.segment_classes, [CLASSES.index(c) for *_, c in instances])
    weak = labels_all if labels_all is not None else [c for *_, c in instances]
    np.testing.assert_array_equal(record.labels, [float(c in weak) for c in CLASSES])


# ---------------------------------------------------------------------------------------------
# W-TALC.


def test_wtalc_reads_byte_strings_column_durations_and_object_arrays(tmp_path):
  write_wtalc(tmp_path, ambiguous='video_test_01  0.5 1.0\nvideo_test_01 x 2.0 3.0\n')
  dataset = wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True, feature_dim=D)
  assert dataset.class_names == CLASSES
  assert dataset.feature_dim == D
  assert (dataset.train_subset, dataset.test_subset) == ('validation', 'test')
  _assert_matches_videos(dataset)
  assert [v.video_id for v in dataset.train_videos()] == ['video_validation_01',
                                                          'video_validation_02']
  np.testing.assert_allclose(dataset.ambiguous['video_test_01'], [[0.5, 1.0], [2.0, 3.0]])


def test_wtalc_activitynet_subsets_train_on_training_test_on_validation(tmp_path):
  videos = [(f'v{i}', s, 10, [(1.0, 2.0, 'Diving')], None)
            for i, s in enumerate(['training', 'training', 'validation'])]
  write_wtalc(tmp_path, videos)
  dataset = wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True)
  assert (dataset.train_subset, dataset.test_subset) == ('training', 'validation')
  assert len(dataset.train_videos()) == 2 and len(dataset.test_videos()) == 1


def test_wtalc_refuses_pickled_files_unless_trusted(tmp_path):
  write_wtalc(tmp_path)
  with pytest.raises(DataError, match=r'segments\.npy.*pickled.*trust.*HDF5') as error:
    wtalc.read_dataset(tmp_path, 'Tiny')
  assert 'runs code' in str(error.value)


def test_read_annotations_has_no_features_and_takes_the_feature_timing(tmp_path):
  write_wtalc(tmp_path)
  annotations = wtalc.read_annotations(tmp_path / 'Tiny-Annotations', trust_pickle=True,
                                       seconds_per_snippet=0.5)
  assert annotations.name == 'Tiny' and annotations.feature_dim == 0
  assert [v.num_snippets for v in annotations.videos] == [0] * len(VIDEOS)
  assert {v.seconds_per_snippet for v in annotations.videos} == {0.5}
  with pytest.raises(DataError, match='annotations only'):
    annotations.videos[0].features()


def test_video_label_sources(tmp_path):
  videos = [('v0', 'validation', 10, [(1.0, 2.0, 'Diving')], ['HighJump']),
            ('v1', 'test', 10, [(1.0, 2.0, 'Diving')], None)]
  folder = write_wtalc(tmp_path, videos) / 'Tiny-Annotations'
  report = validation.Report()
  expected = {'labels_all': [0, 1, 0], 'instances': [1, 0, 0], 'union': [1, 1, 0]}
  for source, labels in expected.items():
    a = wtalc.read_annotations(folder, trust_pickle=True, video_labels=source, report=report)
    np.testing.assert_array_equal(a.videos[0].labels, labels)
  assert [i.video_id for i in report.of_kind('label_mismatch')] == ['v0'] * 3


def test_a_lone_label_name_is_a_list_of_one(tmp_path):
  labels_all = _object_array(['Diving', b'HighJump', ['Diving', 'HighJump'], 'Shotput'])
  write_wtalc(tmp_path, overrides={'labels_all': labels_all})
  dataset = wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True, report=validation.Report())
  np.testing.assert_array_equal([v.labels for v in dataset.videos],
                                [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_feature_timing_mismatch_is_reported_with_the_video(tmp_path):
  # Annotated durations say T * 0.64 s; read with 1 s snippets, video 0 (20 snippets, 12.8 s)
  # has 7.2 s of features too many.
  write_wtalc(tmp_path)
  report = validation.Report()
  wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True, seconds_per_snippet=1.0,
                     timing_tolerance_snippets=4.0, report=report)
  issues = report.of_kind('timing')
  assert [i.video_id for i in issues] == ['video_validation_01', 'video_validation_02',
                                          'video_test_01']  # video_test_02: 3.24 s < 4 s.
  assert 'longer by 7.20 s' in issues[0].message
  with pytest.warns(validation.DataWarning, match='4 x timing'):
    wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True, seconds_per_snippet=1.0)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True)  # Matching timing: silent.


# ---------------------------------------------------------------------------------------------
# STPN.


def test_stpn_concatenates_rgb_then_flow_and_reads_lazily(tmp_path):
  write_stpn(tmp_path)
  dataset = stpn.read_dataset(tmp_path, feature_dim=D)
  assert dataset.class_names == CLASSES  # Sorted labels of gt.json.
  assert (dataset.train_subset, dataset.test_subset) == ('validation', 'test')
  _assert_matches_videos(dataset, sorted(VIDEOS, key=lambda v: v[1] != 'validation'))
  # Lazy: a changed file is read on the next load.
  path = tmp_path / 'features/train/rgb/video_validation_01.npy'
  np.save(path, np.zeros((20, D // 2), np.float32))
  np.testing.assert_array_equal(dataset.videos[0].features()[:, :D // 2], 0.0)


def test_stpn_subset_names_follow_the_splits(tmp_path):
  write_stpn(tmp_path, classes=list(reversed(CLASSES)))
  dataset = stpn.read_dataset(tmp_path, train_subset='train', test_subset='test')
  assert dataset.class_names == list(reversed(CLASSES))  # gt.json "classes" key.
  assert [v.subset for v in dataset.videos] == ['train', 'train', 'test', 'test']


# ---------------------------------------------------------------------------------------------
# HDF5 store.


def test_store_round_trip_keeps_everything(tmp_path):
  write_wtalc(tmp_path / 'w', ambiguous='video_test_01 0.5 1.0\n')
  dataset = wtalc.read_dataset(tmp_path / 'w', 'Tiny', trust_pickle=True)
  path = hdf5_store.write_store(tmp_path / 'store.h5', dataset, compression='gzip')
  back = hdf5_store.read_store(path)
  assert (back.name, back.class_names, back.feature_dim) == ('Tiny', CLASSES, D)
  assert (back.train_subset, back.test_subset) == ('validation', 'test')
  _assert_matches_videos(back)
  np.testing.assert_allclose(back.ambiguous['video_test_01'], [[0.5, 1.0]])
  assert ground_truth.ground_truth_dict(back) == ground_truth.ground_truth_dict(dataset)


@pytest.mark.parametrize('video_id', ['a/b', '.hidden', '..', '100%/x', 'ü v'])
def test_store_escapes_video_ids(tmp_path, video_id):
  dataset = tiny_dataset(video_ids=(video_id, 'plain'))
  back = hdf5_store.read_store(hdf5_store.write_store(tmp_path / 's.h5', dataset))
  assert [v.video_id for v in back.videos] == [video_id, 'plain']
  np.testing.assert_array_equal(back.videos[0].features(), features_of(0, 5))


def test_read_store_does_not_read_features_until_load(tmp_path, monkeypatch):
  path = hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset())
  read = []
  original = h5py.Dataset.__getitem__

  def spy(self, key):
    read.append(self.name)
    return original(self, key)

  monkeypatch.setattr(h5py.Dataset, '__getitem__', spy)
  dataset = hdf5_store.read_store(path)
  assert read and not [n for n in read if n.endswith('/features')]
  dataset.videos[1].features()
  assert [n for n in read if n.endswith('/features')] == ['/videos/b/features']


def test_write_store_is_atomic(tmp_path):
  path = hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset())
  before = path.read_bytes()
  dataset = tiny_dataset(video_ids=('x', 'y'))

  def crash():
    raise RuntimeError('disk on fire')

  dataset.videos[1] = VideoRecord(**{**dataset.videos[1].__dict__, 'load': crash})
  with pytest.raises(RuntimeError, match='disk on fire'):
    hdf5_store.write_store(path, dataset)
  assert path.read_bytes() == before  # The old store is untouched ...
  assert sorted(p.name for p in tmp_path.iterdir()) == ['s.h5']  # ... and no temp file is left.
  with pytest.raises(RuntimeError):
    hdf5_store.write_store(tmp_path / 'new.h5', dataset)
  assert not (tmp_path / 'new.h5').exists()


def test_a_record_survives_pickling(tmp_path):
  import pickle
  dataset = hdf5_store.read_store(hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset()))
  dataset.videos[0].features()  # Opens the file in this process.
  record = pickle.loads(pickle.dumps(dataset.videos[0]))
  np.testing.assert_array_equal(record.features(), features_of(0, 5))


# ---------------------------------------------------------------------------------------------
# Ground truth.


def test_ground_truth_export_is_activitynet_json_and_reads_back(tmp_path):
  write_wtalc(tmp_path)
  dataset = wtalc.read_dataset(tmp_path, 'Tiny', trust_pickle=True)
  path = ground_truth.export_ground_truth(dataset, tmp_path / 'gt.json', subsets='test')
  data = json.loads(path.read_text())
  assert sorted(data['database']) == ['video_test_01', 'video_test_02']
  assert data['database']['video_test_01'] == {
      'subset': 'test', 'duration': pytest.approx(16 * SPS),
      'annotations': [{'segment': [2.0, 4.0], 'label': 'Diving'},
                      {'segment': [2.0, 4.0], 'label': 'HighJump'}]}
  back = ground_truth.read_ground_truth(path)
  assert back.class_names == CLASSES
  assert [len(v.segments) for v in back.videos] == [2, 1]
  np.testing.assert_array_equal(back.videos[0].segment_classes, [0, 1])


# ---------------------------------------------------------------------------------------------
# Converter and loading.


def test_convert_wtalc_command(tmp_path, capsys):
  write_wtalc(tmp_path / 'w')
  status = cli.main(['convert', '--layout', 'wtalc', '--root', str(tmp_path / 'w'), '--name',
                     'Tiny', '--out', str(tmp_path / 's.h5'), '--trust-pickle', '--gt-out',
                     str(tmp_path / 'gt.json'), '--seconds-per-snippet', '1.0'])
  out = capsys.readouterr().out
  assert status == 0
  assert "subset 'validation' (train): 2 videos, 3 instances" in out
  assert "subset 'test' (test): 2 videos, 3 instances" in out
  assert out.count('timing: ') == 4 and 'longer by 7.20 s' in out
  assert '--config.data.train_subset=validation' in out
  store = hdf5_store.read_store(tmp_path / 's.h5')
  assert store.videos[0].seconds_per_snippet == 1.0
  assert json.loads((tmp_path / 'gt.json').read_text()) == json.loads(json.dumps(
      ground_truth.ground_truth_dict(store)))


def test_convert_stpn_module_entry(tmp_path, capsys):
  write_stpn(tmp_path / 's')
  assert convert.main(['--layout', 'stpn', '--root', str(tmp_path / 's'), '--out',
                       str(tmp_path / 's.h5'), '--compression', 'lzf']) == 0
  _assert_matches_videos(hdf5_store.read_store(tmp_path / 's.h5'),
                         sorted(VIDEOS, key=lambda v: v[1] != 'validation'))


def test_load_dataset_dispatches_on_kind(tmp_path, monkeypatch):
  write_wtalc(tmp_path / 'w')
  write_stpn(tmp_path / 's')
  wt = loading.load_dataset(data_config(kind='wtalc', path=str(tmp_path / 'w'), name='Tiny',
                                        trust_pickle=True))
  st = loading.load_dataset(data_config(kind='stpn', path=str(tmp_path / 's')))
  store = hdf5_store.write_store(tmp_path / 'store.h5', wt)
  h5 = loading.load_dataset(data_config(kind='hdf5', path=str(store)))
  monkeypatch.setattr(loading.synthetic, 'ensure_store', lambda c, cache_dir: store)
  syn = loading.load_dataset(data_config(kind='synthetic'), cache_dir=tmp_path)
  for dataset in (wt, st, h5, syn):
    assert len(dataset.train_videos()) == 2 and len(dataset.test_videos()) == 2
    assert ground_truth.ground_truth_dict(dataset, 'test')['database'] == (
        ground_truth.ground_truth_dict(wt, 'test')['database'])


def test_load_dataset_checks_the_config(tmp_path):
  store = hdf5_store.write_store(tmp_path / 's.h5', tiny_dataset())
  c = data_config(kind='hdf5', path=str(store), train_subset='train', test_subset='test')
  assert len(loading.load_dataset(c).videos) == 2
  with pytest.raises(DataError, match=r'dim 8, the config says data.feature_dim=2048'):
    loading.load_dataset(data_config(kind='hdf5', path=str(store), feature_dim=2048,
                                     train_subset='train', test_subset='test'))
  with pytest.raises(DataError, match=r'3 classes, the config says data.num_classes=20'):
    loading.load_dataset(data_config(kind='hdf5', path=str(store), num_classes=20,
                                     train_subset='train', test_subset='test'))
  with pytest.raises(DataError, match=r"train='validation'.*store has \['test', 'train'\]"):
    loading.load_dataset(data_config(kind='hdf5', path=str(store)))


# ---------------------------------------------------------------------------------------------
# Own data.


def _own_data(tmp_path, labels_text, *, suffix='.csv', count=3, t=6):
  feats = tmp_path / 'feats'
  feats.mkdir()
  for i in range(count):
    np.save(feats / f'clip{i}.npy', features_of(i, t))
  labels = tmp_path / f'labels{suffix}'
  labels.write_text(labels_text)
  return feats, labels


def test_import_csv_with_segments_and_class_list(tmp_path, capsys):
  feats, labels = _own_data(tmp_path, 'video,labels,subset\nclip0,Diving;Shotput,train\n'
                            'clip1,,train\nclip2,HighJump,test\n')
  (tmp_path / 'segs.csv').write_text('video,label,start,end\nclip2,HighJump,0.5,1.5\n'
                                     'clip0,Diving,0,1\n')
  (tmp_path / 'classes.txt').write_text('\n'.join(CLASSES) + '\n')
  status = cli.main(['import', '--features', str(feats), '--labels', str(labels), '--segments',
                     str(tmp_path / 'segs.csv'), '--classes', str(tmp_path / 'classes.txt'),
                     '--out', str(tmp_path / 'own.h5')])
  assert status == 0, capsys.readouterr().err
  out = capsys.readouterr().out
  assert '--config.data.train_subset=train --config.data.test_subset=test' in out
  c = data_config(kind='hdf5', path=str(tmp_path / 'own.h5'), train_subset='train',
                  test_subset='test')
  dataset = loading.load_dataset(c)
  assert dataset.class_names == CLASSES
  assert [v.video_id for v in dataset.videos] == ['clip0', 'clip1', 'clip2']
  np.testing.assert_array_equal([v.labels for v in dataset.videos],
                                [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
  np.testing.assert_allclose(dataset.videos[2].segments, [[0.5, 1.5]])
  assert [v.duration for v in dataset.videos] == pytest.approx([6 * SPS] * 3)
  np.testing.assert_array_equal(dataset.videos[1].features(), features_of(1, 6))


def test_import_json_labels_plain_and_activitynet(tmp_path):
  plain = {'clip0': ['Diving'], 'clip1': {'labels': ['Shotput'], 'subset': 'test',
                                          'duration': 3.84}}
  feats, labels = _own_data(tmp_path, json.dumps(plain), suffix='.json', count=2)
  dataset = own_data.build_dataset(feats, labels)
  assert dataset.class_names == ['Diving', 'Shotput']
  assert [v.subset for v in dataset.videos] == ['train', 'test']
  gt = {'database': {'clip0': {'subset': 'train', 'duration': 3.84, 'annotations': [
      {'segment': [1.0, 2.0], 'label': 'Diving'}]}, 'clip1': {
          'subset': 'test', 'duration': 3.84, 'annotations': []}}}
  (tmp_path / 'gt.json').write_text(json.dumps(gt))
  dataset = own_data.build_dataset(feats, tmp_path / 'gt.json')
  assert dataset.class_names == ['Diving']
  np.testing.assert_allclose(dataset.videos[0].segments, [[1.0, 2.0]])
  np.testing.assert_array_equal(dataset.videos[1].labels, [0.0])
