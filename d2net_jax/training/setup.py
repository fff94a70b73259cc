"""What a run is built from: its data and validation split, the method's model, optimiser and
fresh state, the training batcher, and a trained run restored for inference. `train.py` uses
these (and re-exports them under their old names, `train.build` etc.).
"""

import pathlib
from typing import Optional

import ml_collections
import numpy as np

from d2net_jax import methods
from d2net_jax.data import batching
from d2net_jax.training import checkpointing
from d2net_jax.training import run_data
from d2net_jax.training import train_state as train_state_lib
from d2net_jax.training.run_data import load_data  # noqa: F401  (re-exported as train.load_data)


# ---------------------------------------------------------------------------------------------
# Input (the dataset itself: run_data.load_data).


def split_validation(videos, fraction: float, seed: int):
  """(train, validation): a seeded `fraction` of `videos` held out (>= 1 video if fraction > 0)."""
  if fraction <= 0:
    return list(videos), []
  count = min(len(videos) - 1, max(1, int(round(fraction * len(videos)))))
  held_out = set(np.random.default_rng(seed).permutation(len(videos))[:count].tolist())
  return ([v for i, v in enumerate(videos) if i not in held_out],
          [v for i, v in enumerate(videos) if i in held_out])


def selection_videos(config: ml_collections.ConfigDict, dataset):
  """(training videos, videos that select the best checkpoint, their name) by train.selection.

  Without a ground-truth segment in the videos that would select (own data with video-level
  labels only: weak supervision needs no more), nothing can select: (all training videos, [],
  'final'), and the final state is the result.
  """
  if config.train.selection == 'validation':
    pool = dataset.train_videos()
    if not has_ground_truth(pool):
      return pool, [], 'final'
    train_videos, val_videos = split_validation(pool, config.data.val_fraction,
                                                config.data.val_seed)
    return train_videos, val_videos, 'validation'
  if not has_ground_truth(dataset.test_videos()):
    return dataset.train_videos(), [], 'final'
  return dataset.train_videos(), dataset.test_videos(), 'test'


def selection_pool(config: ml_collections.ConfigDict) -> str:
  """The subset whose videos select the checkpoint: 'training' (its validation split) or 'test'."""
  return 'training' if config.train.selection == 'validation' else 'test'


def has_ground_truth(videos) -> bool:
  """Whether any of `videos` has a ground-truth segment (what evaluation scores against)."""
  return any(len(v.segments) for v in videos)


# ---------------------------------------------------------------------------------------------
# Model and state.


def build(config: ml_collections.ConfigDict, num_classes: int, feature_dim: int):
  """(model, optimizer, fresh TrainState) of `config.method`, for C classes and D-dim features."""
  method = methods.get(config.method)
  model = method.build_model(config, num_classes, feature_dim)
  optimizer = train_state_lib.make_optimizer(config.train)
  state = train_state_lib.create_train_state(
      model, optimizer, feature_dim, config.train.seed,
      method.init_state(config, num_classes, feature_dim))
  return model, optimizer, state


def make_batcher(config: ml_collections.ConfigDict, videos, num_classes: int
                 ) -> batching.TrainBatcher:
  """The training batcher of `config.data` (sampling and sampler 'auto' = the method's own)."""
  return batching.TrainBatcher(
      videos, config.train.batch_size, config.data.max_seqlen, config.train.seed, num_classes,
      cache=config.train.cache_features, sampling=methods.resolve_sampling(config),
      num_segments=config.data.num_segments or config.data.max_seqlen,
      shuffle=config.data.shuffle, resample_train=config.data.resample_train,
      sampler=methods.resolve_batch_sampler(config), num_similar=config.data.num_similar,
      similar_size=config.data.similar_size)


def restore_trained(config: ml_collections.ConfigDict, workdir, checkpoint: str = 'best',
                    data_path: Optional[str] = None):
  """(dataset, model, state, which) of a finished or running training run in `workdir`.

  checkpoint: 'best' (the selected one, else the latest) or 'latest'. `which` says which one
  was restored. data_path: new data to apply the model to (run_data.load_for_run), else the
  run's own; either way the dataset comes in the model's class order.
  """
  workdir = pathlib.Path(workdir)
  dataset, num_classes, feature_dim = run_data.load_for_run(config, workdir, data_path)
  model, _, template = build(config, num_classes, feature_dim)
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    if checkpoint == 'best':
      state, which = checkpointer.restore_for_inference(template)
    elif checkpoint == 'latest':
      state, which = checkpointer.restore_latest(template), 'latest'
      if state is None:
        raise FileNotFoundError(f'no checkpoint under {workdir / "checkpoints"}')
    else:
      raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
  finally:
    checkpointer.close()
  return dataset, model, state, which
