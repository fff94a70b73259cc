"""Tiny configs and batches shared by the training tests (not a test module)."""

import numpy as np

from d2net_jax import config as config_lib

FEATURE_DIM = 16
NUM_CLASSES = 3
LENGTH = 16


def tiny_config(**train_overrides):
  """A config small enough to compile in seconds: D=16, C=3, T=16, no dropout, pDMI from step 1."""
  config = config_lib.base_config()
  config.data.feature_dim = FEATURE_DIM
  config.data.num_classes = NUM_CLASSES
  config.data.max_seqlen = LENGTH
  config.model.dropout_rate = 0.0
  config.model.init_std = 0.1
  config.loss.pdmi_start_step = 1
  config.loss.pdmi_every = 2
  config.train.batch_size = 8
  config.train.learning_rate = 1e-2
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


def random_batch(seed: int, batch_size: int = 8, length: int = LENGTH, dim: int = FEATURE_DIM,
                 num_classes: int = NUM_CLASSES) -> dict:
  """A global batch with class-dependent foreground segments and varying valid lengths."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(length // 2, length + 1, batch_size)
  lengths[0] = length
  labels = np.zeros((batch_size, num_classes), np.float32)
  labels[np.arange(batch_size), rng.integers(0, num_classes, batch_size)] = 1.0
  prototypes = np.random.default_rng(1234).normal(size=(num_classes + 1, dim))
  features = rng.normal(scale=0.3, size=(batch_size, length, dim)) + prototypes[-1]
  for b in range(batch_size):
    start = rng.integers(0, lengths[b] // 2)
    c = int(np.argmax(labels[b]))
    features[b, start:start + lengths[b] // 3] += prototypes[c] - prototypes[-1]
  mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)
  return {
      'features': (features * mask[..., None]).astype(np.float32),
      'mask': mask,
      'labels': labels,
      'video_index': np.arange(batch_size, dtype=np.int32),
  }
