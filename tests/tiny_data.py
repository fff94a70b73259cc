"""Tiny own-data inputs for the command tests (not a test module): per-video .npy features, a
labels CSV, optional segments, and the `train` flags for the store `import` writes."""

import pathlib

import numpy as np

from d2net_jax.commands import cli

DIM = 16
CLASSES = ('A', 'B')
SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:smoke')


def write_features(folder: pathlib.Path, names, *, length: int = 40, seed: int = 0) -> list:
  """<folder>/<name>.npy for each name: (length, DIM) noise with class-dependent bumps; returns
  the class of each video (alternating A, B)."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  classes = []
  for i, name in enumerate(names):
    c = i % len(CLASSES)
    x = rng.normal(size=(length, DIM)).astype(np.float32)
    x[10 + 10 * c:20 + 10 * c, 4 * c:4 * c + 4] += 2.0
    np.save(folder / f'{name}.npy', x)
    classes.append(CLASSES[c])
  return classes


def write_own_data(root: pathlib.Path, *, num_train: int = 12, num_test: int = 4,
                   segments: bool = False, seed: int = 0):
  """(features folder, labels.csv, segments.csv or None) of num_train + num_test videos
  v0, v1, ... (subsets 'train' then 'test'); segments: one instance per video."""
  names = [f'v{i}' for i in range(num_train + num_test)]
  classes = write_features(root / 'feats', names, seed=seed)
  subsets = ['train'] * num_train + ['test'] * num_test
  (root / 'labels.csv').write_text('video,labels,subset\n' + ''.join(
      f'{n},{c},{s}\n' for n, c, s in zip(names, classes, subsets)))
  segments_path = None
  if segments:
    segments_path = root / 'segments.csv'
    segments_path.write_text('video,label,start,end\n' + ''.join(
        f'{n},{c},{(10 + 10 * (c == "B")) * 0.64:.2f},{(20 + 10 * (c == "B")) * 0.64:.2f}\n'
        for n, c in zip(names, classes)))
  return root / 'feats', root / 'labels.csv', segments_path


def import_store(root: pathlib.Path, **kwargs) -> pathlib.Path:
  """`d2net-jax import` of `write_own_data(root, **kwargs)` into root/own.h5."""
  feats, labels, segments = write_own_data(root, **kwargs)
  argv = ['import', '--features', str(feats), '--labels', str(labels), '--out',
          str(root / 'own.h5'), '--no-progress']
  if segments is not None:
    argv += ['--segments', str(segments)]
  assert cli.main(argv) == 0
  return root / 'own.h5'


def train_flags(store, num_steps: int = 8, **extra) -> list:
  """`train --config SMOKE` flags for a store of `write_own_data`."""
  flags = ['--config', SMOKE, '--config.data.kind=hdf5', f'--config.data.path={store}',
           f'--config.data.feature_dim={DIM}', f'--config.data.num_classes={len(CLASSES)}',
           '--config.data.train_subset=train', '--config.data.test_subset=test',
           f'--config.train.num_steps={num_steps}', '--config.train.log_every=4',
           '--config.train.eval_every=4', '--config.train.checkpoint_every=4', '--noprogress']
  return flags + [f'--config.{k}={v}' for k, v in extra.items()]
