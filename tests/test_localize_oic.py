"""Tests of d2net_jax/localize/oic.py (SAL's localizer, SAL-DFE-spec Sec. 2.7).

The vectorised localizer must equal `reference`, a plain per-proposal Python transcription of the
spec's steps (scipy's interp1d for the upsampling, as the authors' code), on many random videos;
hand examples pin the soft-NMS, the asymmetric outer window and the time mapping.
"""

import importlib.util
import math
import pathlib
import types

import numpy as np
import pytest
from scipy.interpolate import interp1d

from d2net_jax import config as config_lib
from d2net_jax import localize
from d2net_jax.localize import oic


def oic_config(**overrides):
  c = config_lib.base_config().localize.oic
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


ACTIVITYNET = dict(class_threshold=0.1, comb_weights=(0.6, 0.2, 0.2), topk_ratio=4, beta_sc=0.5,
                   nms_threshold=0.7, soft_alpha=0.35)


# ------------------------------------------------------------------------------------------------
# The plain reference, one proposal at a time.


def reference(cas, a_f, a_r, sc, seconds_per_snippet, c):
  """[(class, start_s, end_s, score)] of one video by the spec's text, proposal by proposal."""
  cas, a_f, a_r, sc = (np.asarray(x, np.float32) for x in (cas, a_f, a_r, sc))
  s, num_classes = cas.shape
  e = np.exp(cas - cas.max(axis=1, keepdims=True))
  probs = e / e.sum(axis=1, keepdims=True)
  w = [float(x) for x in c.comb_weights]
  if all(abs(x - 1 / 3) < 1e-12 for x in w):  # The THUMOS14 code: (softmax + (a_f + a_r)) / 3.
    comb = (probs + (a_f + a_r)[:, None]) / np.float32(3)
  else:  # The ActivityNet code, term by term.
    comb = ((np.float32(w[0]) * probs + np.float32(w[1]) * a_r[:, None])
            + np.float32(w[2]) * a_f[:, None])
  k = s // c.topk_ratio
  if c.topk_min_one:
    k = max(1, k)
  elif k == 0:  # The ActivityNet code: NaN class scores, no detection.
    return []
  v = []
  for cls in range(num_classes):
    top = sorted(range(s), key=lambda t: (-comb[t, cls], t))[:k]
    cas_top = np.float32(np.mean([cas[t, cls] for t in top], dtype=np.float32))
    v.append(np.float32(1 - c.beta_sc) * cas_top + np.float32(c.beta_sc) * sc[cls])
  v = np.array(v, np.float32)
  p = np.exp(v - v.max())
  p = p / p.sum()  # float32, compared with the threshold in float32 (as the code's numpy)
  classes = [cls for cls in range(num_classes) if p[cls] >= np.float32(c.class_threshold)]
  p = p.astype(np.float64)
  if not classes:
    classes = [int(np.argmax(p))]

  detections = []
  tf = seconds_per_snippet / c.scale
  for cls in classes:
    if s == 1:
      seq = np.repeat(comb[:, cls].astype(np.float64), c.scale)
    else:
      seq = interp1d(np.arange(s), comb[:, cls], kind='linear',
                     fill_value='extrapolate')(np.arange(0, s, 1 / c.scale))
    n = len(seq)
    proposals = []  # [score, start_s, end_s] of every threshold, duplicates kept.
    start, stop, step = c.thresholds
    for theta in np.arange(start, stop + step / 2, step):
      kept = seq.copy()
      kept[kept < theta] = 0
      positions = np.where(kept > 0)[0]
      if c.skip_index0_quirk and not positions.any():
        continue
      if positions.size == 0:
        continue
      runs = np.split(positions, np.where(np.diff(positions) != 1)[0] + 1)
      for run in runs:
        s0, e0 = int(run[0]), int(run[-1])
        length = len(run)
        inner = np.mean(seq[s0:e0 + 1])
        if c.outer_rounding == 'basnet':
          outer_s = max(0, int(s0 - c.outer_lambda * length))
          outer_e = min(n - 1, int(e0 + c.outer_lambda * length))
        else:
          side = math.floor(c.outer_lambda * length)
          outer_s, outer_e = max(0, s0 - side), min(n - 1, e0 + side)
        outer_idx = list(range(outer_s, s0)) + list(range(e0 + 1, outer_e + 1))
        outer = np.mean(seq[outer_idx]) if outer_idx else 0.0
        proposals.append([inner - outer + c.gamma * p[cls], s0 * tf, (e0 + 1) * tf])
    detections += [(cls, st, en, sc_) for sc_, st, en in reference_nms(proposals, c)]
  return detections


def reference_nms(proposals, c):
  """BaS-Net NMS of [score, start, end] proposals: [(score, start, end)] kept + decayed."""
  remaining = sorted(proposals, key=lambda q: (-q[0], q[1], q[2]))
  kept, decayed = [], []
  while remaining:
    top = remaining.pop(0)
    kept.append(tuple(top))
    stay = []
    for q in remaining:
      inter = max(0.0, min(top[2], q[2]) - max(top[1], q[1]) + 1)
      iou = inter / ((top[2] - top[1] + 1) + (q[2] - q[1] + 1) - inter)
      if iou >= c.nms_threshold:
        if c.nms == 'basnet_soft':
          decayed.append((q[0] * np.exp(-iou ** 2 / c.soft_alpha), q[1], q[2]))
      else:
        stay.append(q)
    remaining = stay
  return kept + decayed


def assert_same(detections, expected):
  got = sorted(detections.to_list(), key=lambda d: (d[0], d[1], d[2], d[3]))
  expected = sorted(expected, key=lambda d: (d[0], d[1], d[2], d[3]))
  assert len(got) == len(expected)
  for g, x in zip(got, expected):
    assert g[0] == x[0]
    np.testing.assert_allclose(g[1:3], x[1:3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g[3], x[3], rtol=0, atol=1e-6)


def random_video(rng, s, num_classes, repeat=1):
  """Smooth random actionness and logits; `repeat` > 1 repeats snippets (ties, as resampling)."""
  base = -(-s // repeat)
  walk = np.cumsum(rng.normal(size=(base, 2)), axis=0) * rng.uniform(0.1, 0.4)
  act = 1 / (1 + np.exp(-(walk - walk.mean(axis=0))))
  act = np.where(rng.random(act.shape) < 0.1, rng.random(act.shape), act)  # spikes
  cas = rng.normal(size=(base, num_classes)) * rng.uniform(0.5, 3)
  sc = rng.normal(size=num_classes) * 2
  pick = np.repeat(np.arange(base), repeat)[:s]
  f32 = np.float32
  return cas[pick].astype(f32), act[pick, 0].astype(f32), act[pick, 1].astype(f32), sc.astype(f32)


# ------------------------------------------------------------------------------------------------
# Agreement with the reference.


@pytest.mark.parametrize('overrides', [
    {}, ACTIVITYNET, dict(ACTIVITYNET, topk_min_one=False), dict(outer_rounding='symmetric'),
    dict(nms='hard'), dict(skip_index0_quirk=False, class_threshold=0.05),
    dict(thresholds=(0.05, 0.95, 0.15)),
], ids=['thumos', 'activitynet', 'activitynet_code_k', 'symmetric', 'hard', 'no_quirk',
        'thresholds'])
def test_equals_reference_on_random_videos(overrides):
  rng = np.random.default_rng(len(str(overrides)))
  c = oic_config(**overrides)
  localized = []
  for _ in range(12):
    s = int(rng.choice([1, 2, 3, 7, 30, 64, 97]))
    repeat = int(rng.choice([1, 1, 3]))
    cas, a_f, a_r, sc = random_video(rng, s, int(rng.integers(1, 6)), repeat)
    v_len = int(rng.integers(1, 200))
    sps = 0.64 * v_len / s  # v_len != T, as inference.video_outputs maps resampled videos.
    got = oic.localize_video(cas, a_f, a_r, sc, sps, c)
    assert_same(got, reference(cas, a_f, a_r, sc, sps, c))
    localized.append(len(got) > 0)
  assert sum(localized) >= 6


@pytest.mark.parametrize('quirk', [True, False])
def test_index0_only_run_with_quirk_on_and_off(quirk):
  # comb = a_r: 0.5 at snippet 0 and low after, so at theta = 0.5 the only position above is the
  # upsampled index 0; at lower thresholds the run is longer.
  c = oic_config(comb_weights=(0.0, 1.0, 0.0), skip_index0_quirk=quirk, class_threshold=0.0)
  s = 20
  a_r = np.full(s, 0.05, np.float32)
  a_r[0] = 0.5
  cas = np.zeros((s, 2), np.float32)
  sc = np.zeros(2, np.float32)
  got = oic.localize_video(cas, a_r, a_r, sc, 0.64, c)
  assert_same(got, reference(cas, a_r, a_r, sc, 0.64, c))
  one_point = [d for d in got.to_list() if math.isclose(d[2] - d[1], 0.64 / 24)]
  assert len(one_point) == (0 if quirk else 2)  # Both classes, found at theta = 0.5.
  for a in (a_r, np.where(np.arange(s) < 2, 0.5, 0.05).astype(np.float32)):  # Many with quirk.
    for seed in range(3):
      rng = np.random.default_rng(seed)
      cas = rng.normal(size=(s, 3)).astype(np.float32)
      sc = rng.normal(size=3).astype(np.float32)
      assert_same(oic.localize_video(cas, a, a, sc, 0.5, c), reference(cas, a, a, sc, 0.5, c))


def test_registered_localizer_reads_snippet_video_and_config():
  rng = np.random.default_rng(3)
  cas, a_f, a_r, sc = random_video(rng, 40, 4)
  config = config_lib.base_config()
  got = localize.localize_outputs('oic', {'cas': cas, 'a_f': a_f, 'a_r': a_r, 'tcam': cas},
                                  {'sc': sc}, 0.64, config)
  assert_same(got, reference(cas, a_f, a_r, sc, 0.64, config.localize.oic))
  assert got.class_index.dtype == np.int32 and np.all(np.diff(got.score) <= 0)
  assert np.all(got.start_snippet >= 0) and np.all(got.end_snippet <= 40)
  assert np.all(got.end_snippet > got.start_snippet)


# ------------------------------------------------------------------------------------------------
# Pieces.


def test_upsampling_is_interp1d_bit_for_bit():
  rng = np.random.default_rng(0)
  for s in (2, 3, 50, 750):
    rows = rng.random((3, s)).astype(np.float32)
    expected = interp1d(np.arange(s), rows.T[:, :, None], kind='linear', axis=0,
                        fill_value='extrapolate')(np.arange(0, s, 1 / 24))[:, :, 0].T
    got = oic.upsample(rows, 24)
    assert got.shape == (3, 24 * s) and got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
  # The last 23 points continue the last interval past s - 1.
  got = oic.upsample(np.array([[0.0, 0.5, 1.0]], np.float32), 24)[0]
  np.testing.assert_allclose(got[-23:], 1 + np.arange(1, 24) / 48)


def test_thresholds_are_the_np_arange_values():
  got = oic.thresholds(oic_config())
  np.testing.assert_array_equal(got, np.arange(0.1, 1.0, 0.1))
  assert got.shape == (9,) and got[2] == 0.30000000000000004


def test_runs_keep_values_equal_to_theta_and_duplicates():
  rows = np.array([[0.0, 0.5, 0.5, 0.2, 0.6, 0.0, 0.3]])
  row, level, start, end = oic.find_runs(rows, np.array([0.2, 0.5]), skip_index0=True)
  got = list(zip(level.tolist(), start.tolist(), end.tolist()))
  assert got == [(0, 1, 4), (0, 6, 6), (1, 1, 2), (1, 4, 4)]
  assert row.tolist() == [0, 0, 0, 0]
  # Non-positive thresholds keep only positive values (the code zeroes, then keeps > 0).
  _, _, start, end = oic.find_runs(rows, np.array([-1.0]), skip_index0=True)
  assert list(zip(start.tolist(), end.tolist())) == [(1, 4), (6, 6)]


def test_outer_window_is_asymmetric_with_basnet_rounding():
  # L = 7: lambda L = 1.4, int(s - 1.4) gives 2 points on the left, int(e + 1.4) 1 on the right.
  n = 30
  rows = np.zeros((1, n))
  start, end = 10, 16
  rows[0, start:end + 1] = 1.0
  rows[0, 7:10] = [100.0, 10.0, 20.0]
  rows[0, 17:20] = [30.0, 1000.0, 2000.0]
  p = np.array([0.5])
  args = (rows, np.array([0]), np.array([start]), np.array([end]), p)
  got = oic.oic_scores(*args, oic_config())
  np.testing.assert_allclose(got, 1.0 - (10 + 20 + 30) / 3 + 0.2 * 0.5)
  got = oic.oic_scores(*args, oic_config(outer_rounding='symmetric'))
  np.testing.assert_allclose(got, 1.0 - (20 + 30) / 2 + 0.2 * 0.5)
  # At the borders the window is cut; a run spanning everything has outer 0.
  full = oic.oic_scores(np.ones((1, 5)), np.array([0]), np.array([0]), np.array([4]),
                        np.array([1.0]), oic_config())
  np.testing.assert_allclose(full, 1.0 + 0.2)


def test_time_mapping_with_v_len_different_from_t():
  # T = 750 fed snippets resampled from v_len = 1000: the code's t_factor is
  # 16 v_len / (24 T 25) seconds per upsampled point; inference passes 0.64 v_len / T per snippet.
  t, v_len = 750, 1000
  a = np.full(t, 0.05, np.float32)
  a[100:200] = 0.95
  cas = np.zeros((t, 1), np.float32)
  got = oic.localize_video(cas, a, a, np.zeros(1, np.float32), 0.64 * v_len / t, oic_config())
  t_factor = 16 * v_len / (24 * t * 25)
  # Every detection starts and ends on the upsampled grid of t_factor seconds.
  for edge in (got.start, got.end):
    np.testing.assert_allclose(edge / t_factor, np.round(edge / t_factor), atol=1e-9)
  # comb is 1.1 / 3 outside and 2.9 / 3 on the plateau; at theta = 0.9 the upsampled run is
  # [99 * 24 + 22, 199 * 24 + 2] (0.3667 + 0.6 * 22 / 24 >= 0.9 > 0.3667 + 0.6 * 21 / 24).
  index = np.flatnonzero(np.isclose(got.start, (99 * 24 + 22) * t_factor, rtol=1e-12, atol=0))
  assert index.size == 1
  np.testing.assert_allclose(got.end[index], (199 * 24 + 3) * t_factor, rtol=1e-12)
  assert got.start_snippet[index] == 99 and got.end_snippet[index] == 200
  # In seconds of the original video: snippet 99 + 22 / 24 of 750 is at 0.64 * 1000 / 750 each.
  np.testing.assert_allclose(got.start[index], (99 + 22 / 24) * 0.64 * v_len / t, rtol=1e-12)


def test_soft_nms_hand_example_decayed_proposals_are_never_suppressed_again():
  # One class, times in seconds. A suppresses B (IoU 8/14 with +1 lengths); C overlaps B
  # (IoU 8/14) but not A enough (5/17), so C is kept with its own score although B, once decayed,
  # ranks below it; D duplicates C and is decayed by C (IoU 1).
  start = np.array([0.0, 3.0, 6.0, 6.0])
  end = np.array([10.0, 13.0, 16.0, 16.0])
  score = np.array([0.9, 0.8, 0.7, 0.7])
  row = np.zeros(4, np.int64)
  keep, got = oic.basnet_nms(row, start, end, score, oic_config())
  assert keep.all()
  expected = [0.9, 0.8 * math.exp(-(8 / 14) ** 2 / 0.3), 0.7, 0.7 * math.exp(-1 / 0.3)]
  np.testing.assert_allclose(got, expected, rtol=1e-15)
  keep, got = oic.basnet_nms(row, start, end, score, oic_config(nms='hard'))
  assert keep.tolist() == [True, False, True, False]
  np.testing.assert_array_equal(got, score)
  # The plain loop agrees; a second class is independent.
  ref = reference_nms([[v, a, b] for v, a, b in zip(score, start, end)], oic_config())
  assert sorted(ref) == sorted(zip(expected, start, end))
  keep, got2 = oic.basnet_nms(np.array([0, 0, 0, 0, 1]), np.append(start, 3.0),
                              np.append(end, 13.0), np.append(score, 0.1), oic_config())
  np.testing.assert_allclose(got2, expected + [0.1], rtol=1e-15)


def test_soft_nms_equals_the_plain_loop_on_random_proposals():
  rng = np.random.default_rng(5)
  for _ in range(20):
    num = int(rng.integers(1, 60))
    row = rng.integers(0, 3, num)
    start = np.round(rng.uniform(0, 30, num), 2)
    end = start + np.round(rng.uniform(0, 8, num), 2)
    score = rng.random(num)
    score[rng.random(num) < 0.2] = 0.5  # ties
    for kind in ('basnet_soft', 'hard'):
      c = oic_config(nms=kind, nms_threshold=float(rng.choice([0.2, 0.4, 0.7])))
      keep, new = oic.basnet_nms(row, start, end, score, c)
      got = sorted((int(r), float(a), float(b), float(v))
                   for r, a, b, v in zip(row[keep], start[keep], end[keep], new[keep]))
      expected = []
      for r in range(3):
        members = [[score[i], start[i], end[i]] for i in range(num) if row[i] == r]
        expected += [(r, a, b, v) for v, a, b in reference_nms(members, c)]
      assert [g[:3] for g in got] == [x[:3] for x in sorted(expected)]
      np.testing.assert_allclose([g[3] for g in got], [x[3] for x in sorted(expected)],
                                 rtol=1e-14)


def test_class_selection_falls_back_to_argmax():
  p = np.array([0.2, 0.24, 0.2, 0.36])
  assert oic.selected_classes(p, oic_config()).tolist() == [3]
  assert oic.selected_classes(p, oic_config(class_threshold=0.2)).tolist() == [0, 1, 2, 3]
  assert oic.selected_classes(np.array([0.1, 0.2, 0.7]), oic_config(class_threshold=0.9)
                              ).tolist() == [2]
  # float32 p is compared with float32(0.7) = 0.69999998..., as the code: float32(0.7) passes
  # (a float64 comparison with 0.7 would not), the float32 just below it does not.
  p = np.array([np.float32(0.7), np.nextafter(np.float32(0.7), np.float32(0)), 0.1], np.float32)
  assert oic.selected_classes(p, oic_config(class_threshold=0.7)).tolist() == [0]
  assert not np.float64(np.float32(0.7)) >= 0.7


@pytest.mark.parametrize('min_one', [True, False])
def test_topk_min_one_on_a_3_snippet_video(min_one):
  # k = max(1, 3 // 4) = 1: the video is localized; the ActivityNet code's 3 // 4 = 0 (NaN class
  # scores) gives no detection and no class.
  rng = np.random.default_rng(4)
  cas, a_f, a_r, sc = random_video(rng, 3, 2)
  a_f[1] = a_r[1] = 0.95  # An action at snippet 1.
  c = oic_config(**ACTIVITYNET, topk_min_one=min_one)
  got = oic.localize_video(cas, a_f, a_r, sc, 0.64, c)
  assert_same(got, reference(cas, a_f, a_r, sc, 0.64, c))
  assert (len(got) > 0) == min_one
  assert (len(oic.video_classes(cas, a_f, a_r, sc, c)) > 0) == min_one
  # From topk_ratio snippets on both settings give the same detections.
  cas, a_f, a_r, sc = random_video(rng, 4, 2)
  got = oic.localize_video(cas, a_f, a_r, sc, 0.64, c)
  assert len(got) > 0
  same = oic.localize_video(cas, a_f, a_r, sc, 0.64, oic_config(**ACTIVITYNET))
  assert_same(got, same.to_list())


@pytest.mark.parametrize('preset,min_one', [
    ('configs/thumos14.py', True), ('configs/activitynet12.py', False),
    ('configs/activitynet13.py', False)])
def test_topk_min_one_defaults_to_each_presets_code(preset, min_one):
  """THUMOS14: the code's k = 93 of 750 resampled snippets never reaches 0 (True keeps short
  videos of other data localizable); ActivityNet: the code's T // 4."""
  path = pathlib.Path(__file__).resolve().parents[1] / preset
  spec = importlib.util.spec_from_file_location('preset_under_test', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for method in ('sal', 'dfe,base=sal'):
    assert module.get_config(method).localize.oic.topk_min_one is min_one


@pytest.mark.parametrize('field,value', [
    ('class_threshold', 1.5), ('class_threshold', 1.0), ('comb_weights', (0.5, 0.5)), ('comb_weights', (1, -1, 1)),
    ('topk_ratio', 0), ('topk_ratio', 2.5), ('topk_min_one', 1), ('beta_sc', -0.1), ('scale', 0),
    ('thresholds', (0.5, 0.1, 0.1)), ('thresholds', (0.1, 0.9, 0.0)), ('outer_lambda', -1.0),
    ('gamma', float('nan')), ('outer_rounding', 'floor'), ('skip_index0_quirk', 'yes'),
    ('nms', 'soft'), ('nms_threshold', 0.0), ('soft_alpha', 0.0),
])
def test_config_validation_names_the_field(field, value):
  c = types.SimpleNamespace(**oic_config().to_dict())
  setattr(c, field, value)
  with pytest.raises(ValueError, match=rf'^localize\.oic\.{field} must be'):
    oic.check_config(c)


def test_input_validation():
  c = oic_config()
  cas = np.zeros((5, 2), np.float32)
  a = np.zeros(5, np.float32)
  with pytest.raises(ValueError, match='a_f must have shape'):
    oic.localize_video(cas, a[:4], a, np.zeros(2), 0.64, c)
  with pytest.raises(ValueError, match='sc must have shape'):
    oic.localize_video(cas, a, a, np.zeros(3), 0.64, c)
  with pytest.raises(ValueError, match='finite'):
    oic.localize_video(cas, a * np.nan, a, np.zeros(2), 0.64, c)
  with pytest.raises(ValueError, match='seconds_per_snippet'):
    oic.localize_video(cas, a, a, np.zeros(2), 0.0, c)


def test_localizer_settings_are_checked_before_training():
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config()
  localize.check_config('oic', config)
  config.localize.oic.nms = 'greedy'
  with pytest.raises(ValueError, match=r"^localize\.oic\.nms must be"):
    localize.check_config('oic', config)
  config = config_lib.base_config()  # D2-Net: its 'tcam' localizer's fields, in train's check.
  config.localize.nms_threshold = 0.0
  with pytest.raises(ValueError, match='localize.nms_threshold'):
    train.validate_config(config)
  with pytest.raises(ValueError, match="no localizer 'nope'"):
    localize.check_config('nope', config)


@pytest.mark.parametrize('v_len,action,resample_short', [
    (1000, (300, 400), 'repeat'), (300, (100, 150), 'repeat'), (300, (100, 150), 'keep')])
def test_times_map_back_through_the_original_length(v_len, action, resample_short):
  # A video of v_len snippets resampled to T = 750 (or fed whole with 'keep') by inference's own
  # batching; a stand-in network marks the original snippets `action` as class 0. Detections come
  # back in the original video's seconds (0.64 s per original snippet).
  from d2net_jax import inference  # pylint: disable=import-outside-toplevel
  from d2net_jax.data.records import VideoRecord  # pylint: disable=import-outside-toplevel
  features = np.zeros((v_len, 4), np.float32)
  features[action[0]:action[1], 0] = 1
  record = VideoRecord('v', 'test', np.array([1, 0], np.float32), np.zeros((0, 2)),
                       np.zeros(0, np.int32), v_len * 0.64, 0.64, v_len, lambda: features)
  config = config_lib.base_config()
  config.data.sampling, config.data.num_segments = 'resample', 750
  config.data.resample_short = resample_short

  def forward(params, state, x, mask):
    del params, state
    on = np.asarray(x)[..., 0]
    cas = np.stack([5 * on, np.zeros_like(on)], axis=-1)
    act = 0.05 + 0.9 * on
    return ({'cas': cas, 'a_f': act, 'a_r': act},
            {'sc': np.tile(np.array([3.0, -3.0], np.float32), (x.shape[0], 1))})

  out, = inference.video_outputs(forward, None, None, [record], config, 2)
  fed = 750 if resample_short == 'repeat' or v_len > 750 else v_len
  assert out.snippet['cas'].shape == (fed, 2)
  np.testing.assert_allclose(out.seconds_per_snippet, 0.64 * v_len / fed, rtol=1e-12)
  found = localize.localize_outputs('oic', out.snippet, out.video, out.seconds_per_snippet, config)
  best = found.to_list()[0]
  assert best[0] == 0
  # Within one fed snippet of the action (the x24 ramps start between fed snippets).
  np.testing.assert_allclose(best[1:3], np.array(action) * 0.64, atol=out.seconds_per_snippet)
