"""The committed real-footage benchmark (experiments/real_footage, made by
experiments/real_footage.py with `d2net-jax extract`): a store the trainer reads as it is, whose
annotations agree with its ground-truth files and whose I3D features tell its classes apart."""

import csv
import json
import pathlib

import h5py
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax.data import hdf5_store, loading

FOLDER = pathlib.Path(__file__).resolve().parents[1] / 'experiments' / 'real_footage'
STORE = FOLDER / 'real_footage.h5'
CLASSES = ['box', 'cup', 'talking']


@pytest.fixture(scope='module')
def dataset():
  return hdf5_store.read_store(STORE)


def test_store_is_the_described_benchmark(dataset):
  assert dataset.class_names == CLASSES
  assert dataset.streams == 'rgb' and dataset.feature_dim == 1024
  assert len(dataset.train_videos()) == 24 and len(dataset.test_videos()) == 16
  assert sum(v.num_snippets for v in dataset.videos) == 825
  with h5py.File(STORE) as f:
    assert f['videos/train_000/features'].dtype == np.float16
    settings = json.loads(f.attrs['extractor'])
  assert settings['rgb_weights_sha256'].startswith('af5c50f0') and settings['stride'] == 16
  for video in dataset.videos:  # 'pad': the features cover the video, by less than a snippet.
    assert 0 <= video.num_snippets * 0.64 - video.duration < 0.64 + 1e-9


def test_annotations_match_the_ground_truth_files(dataset):
  gt = json.loads((FOLDER / 'gt.json').read_text())['database']
  with open(FOLDER / 'segments.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  with open(FOLDER / 'labels.csv', newline='') as f:
    labels = {r['video']: (set(r['labels'].split(';')), r['subset']) for r in csv.DictReader(f)}
  for video in dataset.videos:
    names = [CLASSES[c] for c in video.segment_classes]
    assert [(a['label'], a['segment']) for a in gt[video.video_id]['annotations']] == [
        (n, list(s)) for n, s in zip(names, video.segments.tolist())]
    assert [(r['label'], [float(r['start']), float(r['end'])]) for r in rows
            if r['video'] == video.video_id] == [(n, list(s)) for n, s in
                                                 zip(names, video.segments.tolist())]
    assert labels[video.video_id] == ({CLASSES[i] for i in np.flatnonzero(video.labels)},
                                      video.subset)


def _snippets(videos):
  """(features, class per snippet: the instance's, or 3 for background)."""
  features, classes = [], []
  for video in videos:
    x = video.features()
    centers = (np.arange(len(x)) + 0.5) * video.seconds_per_snippet
    y = np.full(len(x), 3)
    for (start, end), c in zip(video.segments, video.segment_classes):
      y[(centers >= start) & (centers < end)] = c
    features.append(x)
    classes.append(y)
  return np.concatenate(features), np.concatenate(classes)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_features_tell_the_classes_apart(dataset):
  """Non-negative means of ReLU activations; the nearest training class mean (cosine) labels the
  test snippets (never seen in training: other parts of the footage) mostly right (93% when
  committed)."""
  x_train, y_train = _snippets(dataset.train_videos())
  x_test, y_test = _snippets(dataset.test_videos())
  assert (x_train >= 0).all() and np.isfinite(x_train).all()
  means = np.stack([x_train[y_train == c].mean(0) for c in range(4)])
  predicted = (_unit(x_test) @ _unit(means).T).argmax(1)
  assert (predicted == y_test).mean() > 0.85
  assert all((predicted[y_test == c] == c).mean() > 0.7 for c in range(4))


def test_the_trainer_reads_it_as_an_hdf5_store():
  data = config_lib.data_config()
  data.kind, data.path = 'hdf5', str(STORE)
  data.feature_dim, data.num_classes, data.streams = 1024, 3, 'rgb'
  data.train_subset, data.test_subset = 'train', 'test'
  dataset = loading.load_dataset(data)
  assert dataset.num_classes == 3 and len(dataset.train_videos()) == 24
