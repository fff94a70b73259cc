"""Bad input: one test per case; each error names the file and, where there is one, the video."""

import json

import h5py
import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.data import hdf5_store, loading, own_data, stpn, validation, wtalc
from d2net_jax.data.records import DataError

from test_data_readers import (CLASSES, D, VIDEOS, _object_array, data_config, features_of,
                               tiny_dataset, write_stpn, write_wtalc)


def _read_wtalc(root, **kwargs):
  return wtalc.read_dataset(root, 'Tiny', trust_pickle=True, **kwargs)


def _features(**changed):
  """Per-video features of VIDEOS with some replaced: {index: array}."""
  out = [features_of(i, v[2]) for i, v in enumerate(VIDEOS)]
  for i, array in changed.items():
    out[int(i)] = array
  return out


# Missing or unreadable files.


def test_missing_annotation_file(tmp_path):
  write_wtalc(tmp_path)
  (tmp_path / 'Tiny-Annotations/labels_all.npy').unlink()
  with pytest.raises(DataError, match=r'Tiny-Annotations/labels_all\.npy: missing file'):
    _read_wtalc(tmp_path)


def test_missing_features_file_names_the_layout(tmp_path):
  write_wtalc(tmp_path)
  (tmp_path / 'Tiny-I3D-JOINTFeatures.npy').unlink()
  with pytest.raises(DataError, match=r'Tiny-I3D-JOINTFeatures\.npy: missing \(the W-TALC layout'):
    _read_wtalc(tmp_path)


def test_unreadable_npy_file(tmp_path):
  write_wtalc(tmp_path)
  (tmp_path / 'Tiny-Annotations/duration.npy').write_bytes(b'not numpy at all')
  with pytest.raises(DataError, match=r'duration\.npy: not a readable \.npy file'):
    _read_wtalc(tmp_path)


def test_truncated_pickled_npy_file(tmp_path):
  write_wtalc(tmp_path)
  path = tmp_path / 'Tiny-I3D-JOINTFeatures.npy'
  path.write_bytes(path.read_bytes()[:-200])
  with pytest.raises(DataError, match=r'JOINTFeatures\.npy: unreadable \.npy file'):
    _read_wtalc(tmp_path)


def test_missing_stpn_feature_file_of_a_listed_video(tmp_path):
  write_stpn(tmp_path)
  (tmp_path / 'features/test/flow/video_test_02.npy').unlink()
  with pytest.raises(DataError, match=r"flow/video_test_02\.npy, video 'video_test_02': missing "
                     r'feature file \(listed in .*split_test\.txt\)'):
    stpn.read_dataset(tmp_path)


def test_stpn_video_without_ground_truth_entry(tmp_path):
  write_stpn(tmp_path)
  gt = json.loads((tmp_path / 'gt.json').read_text())
  del gt['database']['video_test_01']
  (tmp_path / 'gt.json').write_text(json.dumps(gt))
  with pytest.raises(DataError, match=r"split_test\.txt, video 'video_test_01': not in .*gt\.json"):
    stpn.read_dataset(tmp_path)


def test_unreadable_ground_truth_json(tmp_path):
  write_stpn(tmp_path)
  (tmp_path / 'gt.json').write_text('{"database": ')
  with pytest.raises(DataError, match=r'gt\.json: not a readable JSON file'):
    stpn.read_dataset(tmp_path)


# Lists of different lengths.


def test_features_and_annotations_of_different_lengths(tmp_path):
  write_wtalc(tmp_path, features=_features()[:3])
  with pytest.raises(DataError, match=r'JOINTFeatures\.npy: 3 videos, but .*videoname\.npy lists '
                     '4'):
    _read_wtalc(tmp_path)


def test_annotation_files_of_different_lengths(tmp_path):
  write_wtalc(tmp_path, overrides={'subset': np.array([b'validation'] * 3)})
  with pytest.raises(DataError, match=r'subset\.npy: 3 entries, but videoname\.npy lists 4'):
    _read_wtalc(tmp_path)


def test_instance_labels_and_segments_of_different_lengths(tmp_path):
  labels = _object_array([[c for *_, c in v[3]] for v in VIDEOS])
  labels[1] = ['HighJump', 'Diving']
  write_wtalc(tmp_path, overrides={'labels': labels})
  with pytest.raises(DataError, match=r"labels\.npy and .*segments\.npy, video "
                     r"'video_validation_02': 2 instance labels for 1 segments"):
    _read_wtalc(tmp_path)


def test_stpn_rgb_and_flow_of_different_lengths(tmp_path):
  write_stpn(tmp_path)
  np.save(tmp_path / 'features/train/flow/video_validation_02.npy', np.zeros((11, D // 2)))
  with pytest.raises(DataError, match=r"video 'video_validation_02': 12 RGB snippets but 11 flow"):
    stpn.read_dataset(tmp_path)


def test_duplicate_video_ids(tmp_path):
  videos = [VIDEOS[0], VIDEOS[0], VIDEOS[2]]
  write_wtalc(tmp_path, videos)
  with pytest.raises(DataError, match=r"videoname\.npy: video ids listed more than once: "
                     r"\['video_validation_01'\]"):
    _read_wtalc(tmp_path)


# Feature values and shapes.


def test_feature_dim_not_matching_the_config(tmp_path):
  write_wtalc(tmp_path)
  with pytest.raises(DataError, match=r"JOINTFeatures\.npy, video 'video_validation_01': feature "
                     r'dim 8 does not match the configured feature_dim 2048'):
    loading.load_dataset(data_config(kind='wtalc', path=str(tmp_path), name='Tiny',
                                     trust_pickle=True, feature_dim=2048))


def test_stpn_feature_dim_not_matching_the_config(tmp_path):
  write_stpn(tmp_path)
  with pytest.raises(DataError, match=r"video 'video_validation_01': feature dim 8 \(RGB 4 \+ "
                     r'flow 4\) does not match the configured feature_dim 2048'):
    stpn.read_dataset(tmp_path, feature_dim=2048)


def test_nan_in_features(tmp_path):
  bad = features_of(2, 16)
  bad[5, 3] = np.nan
  write_wtalc(tmp_path, features=_features(**{'2': bad}))
  with pytest.raises(DataError, match=r"JOINTFeatures\.npy, video 'video_test_01': features "
                     r'contain NaN or Inf in 1 of 16 snippets \(first at snippet 5\)'):
    _read_wtalc(tmp_path)


def test_inf_in_lazily_read_features(tmp_path):
  write_stpn(tmp_path)
  bad = np.zeros((9, D // 2), np.float32)
  bad[8, 0] = np.inf
  np.save(tmp_path / 'features/test/rgb/video_test_02.npy', bad)
  dataset = stpn.read_dataset(tmp_path)  # Headers only: fine.
  with pytest.raises(DataError, match=r"rgb/video_test_02\.npy, video 'video_test_02': features "
                     'contain NaN or Inf'):
    dataset.videos[3].features()


def test_zero_length_video(tmp_path):
  write_wtalc(tmp_path, features=_features(**{'1': np.zeros((0, D), np.float32)}))
  with pytest.raises(DataError, match=r"video 'video_validation_02': zero-length video"):
    _read_wtalc(tmp_path)


def test_one_dimensional_features(tmp_path):
  write_wtalc(tmp_path, features=_features(**{'0': np.zeros((D,), np.float32)}))
  with pytest.raises(DataError, match=r"video 'video_validation_01': features have shape \(8,\), "
                     r'expected \(T, D\)'):
    _read_wtalc(tmp_path)


# Labels.


def test_label_not_in_the_class_list(tmp_path):
  labels_all = _object_array([['Diving', 'Shotput'], ['Swimming'], ['Diving'], ['Shotput']])
  write_wtalc(tmp_path, overrides={'labels_all': labels_all})
  with pytest.raises(DataError, match=r"labels_all\.npy, video 'video_validation_02': label "
                     r"'Swimming' is not in the class list \(3 classes\)"):
    _read_wtalc(tmp_path)


def test_stpn_label_not_in_the_given_class_list(tmp_path):
  write_stpn(tmp_path)
  with pytest.raises(DataError, match=r"gt\.json, video 'video_validation_01': label 'Shotput' is "
                     'not in the class list'):
    stpn.read_dataset(tmp_path, class_names=['Diving', 'HighJump'])


# Segments.


def test_segment_ending_before_it_starts(tmp_path):
  videos = list(VIDEOS)
  videos[2] = ('video_test_01', 'test', 16, [(4.0, 2.0, 'Diving')], None)
  write_wtalc(tmp_path, videos)
  with pytest.raises(DataError, match=r"segments\.npy, video 'video_test_01': segment 0 ends "
                     r'before it starts \(\[4\.0, 2\.0\] s\)'):
    _read_wtalc(tmp_path)


def test_segment_outside_the_duration_is_clipped_with_a_warning(tmp_path):
  videos = list(VIDEOS)
  # video_test_02 lasts 9 * 0.64 = 5.76 s.
  videos[3] = ('video_test_02', 'test', 9, [(-0.5, 1.5, 'Shotput'), (5.0, 7.0, 'Shotput'),
                                           (6.0, 8.0, 'Shotput')], None)
  write_wtalc(tmp_path, videos)
  with pytest.warns(validation.DataWarning, match=r"clipped_segment.*video 'video_test_02': 3 "
                    r'of 3 segments reach outside \[0, 5\.76\] s'):
    dataset = _read_wtalc(tmp_path)
  np.testing.assert_allclose(dataset.videos[3].segments,
                             [[0.0, 1.5], [5.0, 5.76], [5.76, 5.76]])  # None dropped.


def test_segment_outside_the_duration_is_refused_on_request(tmp_path):
  videos = list(VIDEOS)
  videos[3] = ('video_test_02', 'test', 9, [(5.0, 7.0, 'Shotput')], None)
  write_wtalc(tmp_path, videos)
  with pytest.raises(DataError, match=r"segments\.npy, video 'video_test_02': 1 of 1 segments "
                     r'reach outside .*segment_policy=refuse'):
    _read_wtalc(tmp_path, segment_policy='refuse')


def test_non_positive_duration(tmp_path):
  write_wtalc(tmp_path, overrides={'duration': np.array([[12.8], [0.0], [10.24], [5.76]])})
  with pytest.raises(DataError, match=r"duration\.npy, video 'video_validation_02': duration 0\.0 "
                     'is not a positive number'):
    _read_wtalc(tmp_path)


def test_bad_ambiguous_line(tmp_path):
  write_wtalc(tmp_path, ambiguous='video_test_01 0.5 1.0\nvideo_test_01 oops\n')
  with pytest.raises(DataError, match=r'Ambiguous_test\.txt, line 2: expected "video \[label\] '
                     'start_s end_s"'):
    _read_wtalc(tmp_path)


# Feature timing.


def test_feature_timing_mismatch_refused_on_request(tmp_path):
  write_wtalc(tmp_path, overrides={'duration': np.array([[12.8], [7.68], [30.0], [5.76]])})
  with pytest.raises(DataError, match=r"video 'video_test_01': 16 snippets x 0\.64 s = 10\.24 s "
                     r'of features for an annotated duration of 30\.00 s \(shorter by 19\.76 s'):
    _read_wtalc(tmp_path, timing_check='error')


# HDF5 store.


def test_corrupt_hdf5_file(tmp_path):
  path = tmp_path / 'store.h5'
  path.write_bytes(b'\x89HDF\r\n\x1a\n' + bytes(range(256)) * 4)
  with pytest.raises(DataError, match=r'store\.h5: not a readable HDF5 file'):
    hdf5_store.read_store(path)


def test_truncated_hdf5_file(tmp_path):
  path = hdf5_store.write_store(tmp_path / 'store.h5', tiny_dataset(t=400))
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(DataError, match=r'store\.h5.*(not a readable HDF5 file|damaged store|'
                     'cannot read features)'):
    dataset = hdf5_store.read_store(path)
    for video in dataset.videos:
      video.features()


def test_damaged_feature_chunk_in_hdf5_file(tmp_path):
  path = hdf5_store.write_store(tmp_path / 'store.h5', tiny_dataset(t=40))
  with h5py.File(path, 'r') as f:
    offset = f['videos/b/features'].id.get_chunk_info(0).byte_offset
  data = bytearray(path.read_bytes())
  data[offset + 100:offset + 108] = b'\xff' * 8
  path.write_bytes(bytes(data))
  dataset = hdf5_store.read_store(path)
  np.testing.assert_array_equal(dataset.videos[0].features(), features_of(0, 40))
  with pytest.raises(DataError, match=r"store\.h5, video 'b': cannot read features"):
    dataset.videos[1].features()


def test_hdf5_file_that_is_not_a_store(tmp_path):
  with h5py.File(tmp_path / 'other.h5', 'w') as f:
    f['x'] = np.zeros(3)
  with pytest.raises(DataError, match=r'other\.h5: not a d2net_jax feature store'):
    hdf5_store.read_store(tmp_path / 'other.h5')


def test_incomplete_store(tmp_path):
  path = hdf5_store.write_store(tmp_path / 'store.h5', tiny_dataset())
  with h5py.File(path, 'a') as f:
    f.attrs['complete'] = False
  with pytest.raises(DataError, match=r'store\.h5: incomplete store'):
    hdf5_store.read_store(path)


def test_missing_store(tmp_path):
  with pytest.raises(DataError, match=r'nope\.h5: missing file \(HDF5 feature store\)'):
    loading.load_dataset(data_config(kind='hdf5', path=str(tmp_path / 'nope.h5')))


# Own data.


def _own(tmp_path, labels_csv, files=('clip0', 'clip1')):
  feats = tmp_path / 'feats'
  feats.mkdir()
  for i, name in enumerate(files):
    np.save(feats / f'{name}.npy', features_of(i, 6))
  (tmp_path / 'labels.csv').write_text(labels_csv)
  (tmp_path / 'classes.txt').write_text('\n'.join(CLASSES))
  return feats, tmp_path / 'labels.csv'


def test_own_data_unknown_label(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving;Swimming\n')
  with pytest.raises(DataError, match=r"labels\.csv, video 'clip1': label 'Swimming' is not in "
                     'the class list'):
    own_data.build_dataset(feats, labels, class_names=CLASSES)


def test_own_data_missing_feature_file(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving\nclip2,Shotput\n')
  with pytest.raises(DataError, match=r"clip2\.npy, video 'clip2': missing feature file "
                     r'\(listed in .*labels\.csv\)'):
    own_data.build_dataset(feats, labels)


def test_own_data_feature_file_without_label(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\n')
  with pytest.raises(DataError, match=r"clip1\.npy, video 'clip1': feature file without a label "
                     'entry'):
    own_data.build_dataset(feats, labels)


def test_own_data_pickled_feature_file_is_refused(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving\n')
  np.save(feats / 'clip1.npy', _object_array([1, 2]), allow_pickle=True)
  with pytest.raises(DataError, match=r"clip1\.npy, video 'clip1': dtype object"):
    own_data.build_dataset(feats, labels)


def test_own_data_segments_of_an_unlisted_video(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving\n')
  (tmp_path / 'segs.csv').write_text('video,label,start,end\nclip9,Diving,0,1\n')
  with pytest.raises(DataError, match=r"segs\.csv, video 'clip9': has segments but no label"):
    own_data.build_dataset(feats, labels, segments_path=tmp_path / 'segs.csv')


# Command line: one line on stderr, exit status 1, no file written.


def test_convert_error_is_one_line_without_traceback(tmp_path, capsys):
  write_wtalc(tmp_path)
  status = cli.main(['convert', '--layout', 'wtalc', '--root', str(tmp_path), '--name', 'Tiny',
                     '--out', str(tmp_path / 's.h5')])
  err = capsys.readouterr().err
  assert status == 1
  assert err.startswith('d2net-jax convert: error: ') and err.count('\n') == 1
  assert '--trust-pickle' in err and 'Traceback' not in err
  assert not (tmp_path / 's.h5').exists()


def test_import_error_is_one_line_and_leaves_no_store(tmp_path, capsys):
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving\n')
  bad = features_of(1, 6)
  bad[0, 0] = np.nan
  np.save(feats / 'clip1.npy', bad)  # Found only while writing (features load lazily).
  status = cli.main(['import', '--features', str(feats), '--labels', str(labels), '--out',
                     str(tmp_path / 'own.h5')])
  err = capsys.readouterr().err
  assert status == 1 and err.count('\n') == 1
  assert "clip1.npy, video 'clip1': features contain NaN" in err
  assert sorted(p.name for p in tmp_path.iterdir()) == ['classes.txt', 'feats', 'labels.csv']
