"""The 'i3d_like' feature model: its statistics stay in the ranges documented in
d2net_jax/data/synthetic_features.py (I3DLike), hardly depend on D, differ from the 'gaussian'
model's, and the feature model is part of the store's cache key."""

import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax.data import synthetic, synthetic_features

# (low, high) per statistic and stream: the targets of I3DLike's docstring.
RANGES = {
    'rgb': {'near_zero': (0.18, 0.35), 'channel_cv': (0.6, 1.4), 'top10_share': (0.2, 0.4),
            'std_over_mean': (0.6, 1.5), 'cosine_within': (0.75, 0.90),
            'cosine_between': (0.50, 0.70)},
    'flow': {'near_zero': (0.28, 0.45), 'channel_cv': (0.6, 1.4), 'top10_share': (0.2, 0.4),
             'std_over_mean': (0.6, 1.5), 'cosine_within': (0.60, 0.80),
             'cosine_between': (0.50, 0.70)},
}


def _statistics(preset='thumos14_like', dim=256, features='i3d_like', num_videos=16, seed=0):
  dataset = synthetic.generate(preset, feature_dim=dim, seed=seed, num_train=num_videos,
                               num_test=0, features=features)
  return synthetic_features.stream_statistics([v.features() for v in dataset.videos], dim)


@pytest.fixture(scope='module')
def thumos_stats():
  return _statistics()


def test_i3d_like_statistics_are_in_the_documented_ranges(thumos_stats):
  for stream, ranges in RANGES.items():
    s = thumos_stats[stream]
    assert s['min'] >= 0.0, stream
    for key, (low, high) in ranges.items():
      assert low <= s[key] <= high, (stream, key, s[key], (low, high))
  rgb, flow = thumos_stats['rgb'], thumos_stats['flow']
  assert rgb['cosine_within'] - rgb['cosine_between'] >= 0.1, rgb
  assert flow['cosine_within'] - flow['cosine_between'] >= 0.05, flow
  # Flow: sparser, burstier, less tied to the video, less smooth in time than RGB.
  assert flow['near_zero'] > rgb['near_zero']
  assert flow['std_over_mean'] > rgb['std_over_mean']
  assert flow['cosine_within'] < rgb['cosine_within']
  assert flow['lag1'] < rgb['lag1']


def test_activitynet_preset_has_the_same_feature_statistics():
  stats = _statistics('activitynet12_like', num_videos=10, seed=1)
  for stream, ranges in RANGES.items():
    for key in ('near_zero', 'cosine_within', 'cosine_between'):
      low, high = ranges[key]
      assert low <= stats[stream][key] <= high, (stream, key, stats[stream][key])


def test_statistics_hardly_depend_on_the_feature_dimension():
  small = _statistics(dim=64, num_videos=6)  # The same 6 videos at both D.
  large = _statistics(dim=512, num_videos=6)
  for stream in ('rgb', 'flow'):
    for key in ('cosine_within', 'cosine_between', 'near_zero', 'lag1'):
      assert abs(small[stream][key] - large[stream][key]) < 0.1, (stream, key, small, large)


def test_gaussian_model_is_zero_mean_and_nearly_orthogonal(thumos_stats):
  gaussian = _statistics(features='gaussian', num_videos=8)
  for stream in ('rgb', 'flow'):
    g = gaussian[stream]
    assert g['min'] < 0 and abs(g['mean']) < 0.05
    assert abs(g['cosine_between']) < 0.05 and g['cosine_within'] < 0.3
    assert thumos_stats[stream]['cosine_between'] > g['cosine_between'] + 0.4


def test_both_models_show_the_same_videos():
  kwargs = dict(feature_dim=32, seed=4, num_train=3, num_test=1)
  i3d = synthetic.generate('thumos14_like', features='i3d_like', **kwargs)
  gaussian = synthetic.generate('thumos14_like', features='gaussian', **kwargs)
  default = synthetic.generate('thumos14_like', **kwargs)
  for a, b, c in zip(i3d.videos, gaussian.videos, default.videos):
    np.testing.assert_array_equal(a.segments, b.segments)
    np.testing.assert_array_equal(a.features(), c.features())  # The presets' default: i3d_like.
    x, h = a.features(), b.features()
    assert x.shape == h.shape and x.dtype == np.float32 and x.min() >= 0
    # Rectification is monotone per channel: where the Gaussian value rises, x does not fall.
    rises = np.diff(h, axis=0) > 0
    assert np.all(np.diff(x, axis=0)[rises] >= -1e-6)
  with pytest.raises(ValueError, match='feature model'):
    synthetic.generate('thumos14_like', features='uniform', **kwargs)


def test_feature_model_is_part_of_the_cache_key(tmp_path):
  def data_config(features):
    c = config_lib.data_config()
    c.kind = 'synthetic'
    c.feature_dim = 8
    c.synthetic.num_train, c.synthetic.num_test = 2, 1
    if features is not None:
      c.synthetic.features = features
    return c

  assert config_lib.data_config().synthetic.features == 'i3d_like'
  default = synthetic.ensure_store(data_config(None), tmp_path)
  i3d = synthetic.ensure_store(data_config('i3d_like'), tmp_path)
  gaussian = synthetic.ensure_store(data_config('gaussian'), tmp_path)
  assert default == i3d != gaussian
  assert synthetic.store_parameters(data_config('gaussian'))['features'] == 'gaussian'
  assert synthetic.store_parameters(data_config(''))['features'] == 'i3d_like'  # The preset's.
