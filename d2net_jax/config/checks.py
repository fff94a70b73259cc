"""Every config value checked before anything is loaded or compiled: `validate_config(config)`.

The shared sections (method, data, train, localize, evaluation) are checked here; each method's
own sections by its `Method.validate_config`, which can use `check_choices` / `check_range`. Every
error is a `ConfigError` whose one-line message names the field (`config.section.field=value`) and
what is allowed.
"""

import pathlib

import ml_collections

from d2net_jax import localize
from d2net_jax import methods
from d2net_jax.data import batching, records, similar_pairs, validation, wtalc
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax.localize import tcam
from d2net_jax.utils.checks import ConfigError, check_choices, check_range  # noqa: F401


def _choices():
  return {
      'train.parallelism': ('pmap', 'jit'),
      'train.selection': ('validation', 'test'),
      'train.weight_decay_mode': ('coupled', 'decoupled'),
      'train.lr_schedule': ('constant', 'cosine'),
      'data.kind': ('synthetic', 'hdf5', 'wtalc', 'stpn'),
      'data.streams': records.STREAMS,
      'data.sampling': ('auto', 'crop', 'resample'),
      'data.shuffle': ('replacement', 'epoch'),
      'data.sampler': ('auto',) + similar_pairs.SAMPLERS,
      'data.test_sampling': ('auto', 'whole', 'resample'),
      'data.resample_short': ('repeat', 'keep'),
      'data.resample_train': ('perturb', 'sorted_random'),
      'data.eval_bucket_mode': batching.BUCKET_MODES,
      'train.compute_dtype': ('float32', 'bfloat16'),
      'evaluation.protocol': ('activitynet', 'd2net_official'),
      'evaluation.official_gt': ('thumos14_npy', 'annotations'),
      'data.segment_policy': validation.SEGMENT_POLICIES,
      'data.timing_check': validation.TIMING_CHECKS,
      'data.video_labels': wtalc.VIDEO_LABEL_SOURCES,
      'evaluation.unknown_videos': evaluation.UNKNOWN_VIDEO_POLICIES,
  }


_POSITIVE = ('train.batch_size', 'train.num_steps', 'train.log_every', 'train.eval_every',
             'train.checkpoint_every', 'train.keep_checkpoints', 'data.max_seqlen',
             'data.eval_bucket', 'data.eval_batch_size', 'train.learning_rate', 'train.adam_eps',
             'data.seconds_per_snippet', 'data.eval_max_programs', 'data.num_similar',
             'data.similar_size')
_NON_NEGATIVE = ('train.weight_decay', 'data.timing_tolerance_snippets',
                 'data.timing_tolerance_fraction', 'data.prefetch', 'data.num_segments',
                 'localize.score_threshold', 'localize.inflation')
_UNIT = ('localize.class_threshold', 'localize.outer_rejection_threshold',
         'localize.activitynet_class_floor')


def _check_shared_ranges(config) -> None:
  for name in _POSITIVE:
    check_range(config, name, 0, low_open=True)
  for name in _NON_NEGATIVE:
    check_range(config, name, 0)
  for name in _UNIT:
    check_range(config, name, 0, 1)
  for name in ('train.adam_b1', 'train.adam_b2'):
    check_range(config, name, 0, 1, high_open=True)
  check_range(config, 'localize.nms_threshold', 0, 1, low_open=True)
  check_range(config, 'localize.topk_ratio', 0, low_open=True)
  check_range(config, 'localize.attention_scale', 0, low_open=True)
  check_range(config, 'data.val_fraction', 0, 1, high_open=True)
  try:
    tcam._check_config(config.localize)  # pylint: disable=protected-access
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  tious = tuple(config.evaluation.tiou_thresholds)
  if not tious or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in tious):
    raise ConfigError(f'config.evaluation.tiou_thresholds={tious}: must be numbers in (0, 1]')


def validate_config(config: ml_collections.ConfigDict, check_data_path: bool = True) -> None:
  """ConfigError (one line, naming the field) for settings training cannot run with.

  check_data_path: also require config.data.path to exist (False: the data comes from elsewhere,
  e.g. `localize --data`).
  """
  try:
    method = methods.get(config.method)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  check_choices(config, _choices())
  _check_shared_ranges(config)
  try:
    method.validate_config(config)
    localize.check_config(methods.resolve_localizer(config), config)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None
  two_streams = config.data.streams == records.TWO_STREAMS
  if two_streams and config.data.feature_dim % 2:  # <= 0: taken from the data.
    raise ConfigError(f'config.data.feature_dim={config.data.feature_dim}: must be even '
                      '(RGB and flow halves)')
  groups = config.data.num_similar * config.data.similar_size
  if methods.resolve_batch_sampler(config) == 'similar_pairs' and config.train.batch_size < groups:
    raise ConfigError(f'config.train.batch_size={config.train.batch_size} with config.data.'
                      f'num_similar={config.data.num_similar} and config.data.similar_size='
                      f'{config.data.similar_size}: the similar-pair sampler needs {groups} rows')
  if config.train.selection == 'validation' and not 0 < config.data.val_fraction < 1:
    raise ConfigError(f'config.data.val_fraction={config.data.val_fraction}: selection on a '
                      'validation split needs 0 < val_fraction < 1 (or train.selection=test)')
  iou = config.train.selection_iou
  if iou >= 0 and not any(abs(iou - t) < 1e-9 for t in config.evaluation.tiou_thresholds):
    raise ConfigError(f'config.train.selection_iou={iou}: not among evaluation.tiou_thresholds '
                      f'{tuple(config.evaluation.tiou_thresholds)} (or -1 for their mean)')
  if config.data.kind != 'synthetic' and check_data_path:
    if not config.data.path:
      raise ConfigError(f'config.data.path is empty: where are the {config.data.kind!r} '
                        'features? (--config.data.path=...)')
    if not pathlib.Path(config.data.path).expanduser().exists():
      raise ConfigError(f'config.data.path={config.data.path!r}: no such file or folder')
