"""Tests of d2net_jax/localize.py: hand-computed cases and agreement with the plain reference."""

import importlib.util
import pathlib

import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import localize
from d2net_jax.localize import common
from d2net_jax.localize import tcam as tcam_lib

_BENCH = pathlib.Path(__file__).resolve().parents[1] / 'experiments' / 'bench_localize.py'
_spec = importlib.util.spec_from_file_location('bench_localize', _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SPS = 0.64


def official(**overrides):
  c = config_lib.base_config().localize
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


PAPER = dict(class_score_source='tcam', topk_rounding='ceil',
             proposal_thresholds=(0.025, 0.5, 0.025), outer_mean='pooled', outer_rejection=False, nms_threshold=0.5,
             score_threshold_scope='video')
ACTIVITYNET = dict(topk_ratio=4, activitynet_class_rule=True, rescale_attention=True)
CONFIGS = {
    'official': {},
    'paper': PAPER,
    'activitynet': ACTIVITYNET,
    'pooled_no_rejection': dict(outer_mean='pooled', outer_rejection=False),
    'video_scope_nms05': dict(score_threshold_scope='video', nms_threshold=0.5),
    'wide_outer_min3': dict(inflation=0.5, min_outer_snippets=2, min_proposal_snippets=3),
}


def one_class(values, num_classes=1, cls=0):
  """TCAM with `values` in column `cls` (zeros elsewhere) and attention 1."""
  values = np.asarray(values, np.float32)
  tcam = np.zeros((values.shape[0], num_classes), np.float32)
  tcam[:, cls] = values
  return tcam, np.ones(values.shape[0], np.float32)


def as_tuples(d):
  return list(zip(d.class_index.tolist(), d.start_snippet.tolist(), d.end_snippet.tolist()))


# ------------------------------------------------------------------------------------------------
# Pieces.


def test_thresholds_are_the_official_fortieths():
  t = localize.proposal_thresholds(official())
  np.testing.assert_array_equal(t, np.arange(1, 20) / 40)
  assert localize.proposal_thresholds(official(**PAPER)).shape == (20,)
  assert localize.proposal_thresholds(official(**PAPER))[-1] == 0.5
  t = localize.proposal_thresholds(official(proposal_thresholds=(0.1, 0.3, 0.07)))
  np.testing.assert_allclose(t, [0.1, 0.17, 0.24])


@pytest.mark.parametrize('s,ratio,rounding,k', [
    (16, 8, 'floor', 2), (17, 8, 'floor', 2), (7, 8, 'floor', 1), (17, 8, 'ceil', 3),
    (1, 8, 'ceil', 1), (9, 4, 'floor', 2), (9, 4, 'ceil', 3)])
def test_topk_count(s, ratio, rounding, k):
  """topk_rounding picks the rule (tests/test_topk_counts.py has the rules' own table)."""
  assert int(tcam_lib.TOPK_COUNTS[rounding](s, ratio)) == k
  # The class score of a column 1, 2, ..., s is the mean of its k largest values.
  values = np.arange(1, s + 1, dtype=np.float32)
  tcam, attention = one_class(values)
  config = official(topk_ratio=ratio, topk_rounding=rounding, class_score_source='tcam')
  np.testing.assert_allclose(localize.video_class_scores(tcam, attention, config),
                             [values[-k:].mean()], rtol=1e-6)


@pytest.mark.parametrize('scores,expected', [
    ([0.8, 0.4, 0.41, 0.0], [True, False, True, False]),   # p > 0.5 max, strictly.
    ([0.0, 0.0, 0.0], [False, False, False]),              # p > 0 too.
    ([0.2, 0.15, 0.05], [True, True, False]),
])
def test_relevant_classes_thumos_rule(scores, expected):
  np.testing.assert_array_equal(localize.relevant_classes(scores, official()), expected)


@pytest.mark.parametrize('scores,expected', [
    ([0.9, 0.8, 0.7, 0.1], [True, True, False, False]),   # top two above the third.
    ([0.9, 0.4, 0.3, 0.1], [True, False, False, False]),  # floor 0.5.
    ([1.5, 0.9, 0.2, 0.1], [True, False, False, False]),  # some p > 1: floor 1.
    ([0.9, 0.8, 0.8, 0.1], [True, False, False, False]),  # tie with the third: strict.
    ([0.4, 0.3, 0.2], [False, False, False]),
    ([0.9, 0.6], [True, True]),                            # two classes: no third score.
])
def test_relevant_classes_activitynet_rule(scores, expected):
  config = official(**ACTIVITYNET)
  np.testing.assert_array_equal(localize.relevant_classes(scores, config), expected)


def test_activitynet_rule_without_floor_keeps_the_top_two():
  """floor 0 (mil's ActivityNet preset): scores far below 0.5 still give the two best classes."""
  config = official(**ACTIVITYNET, activitynet_class_floor=0.0)
  np.testing.assert_array_equal(localize.relevant_classes([0.01, 0.04, 0.02, 0.005], config),
                                [False, True, True, False])


def test_class_scores_use_refined_sequence_and_floor_topk():
  tcam = np.array([[0.8], [0.6], [0.4], [0.2]] * 4, np.float32)  # s = 16.
  attention = np.linspace(1, 0.25, 16).astype(np.float32)
  refined = (tcam[:, 0] * attention).astype(np.float64)
  p = localize.video_class_scores(tcam, attention, official())
  np.testing.assert_allclose(p, [np.sort(refined)[-2:].mean()])  # k = floor(16 / 8) = 2.
  p = localize.video_class_scores(tcam, attention, official(class_score_source='tcam',
                                                             topk_rounding='ceil', topk_ratio=5))
  np.testing.assert_allclose(p, [np.mean([0.8] * 4)])  # k = ceil(16 / 5) = 4, on T.


def test_attention_rescaled_by_two_over_max():
  tcam, _ = one_class([0.5, 0.5, 0.5, 0.5])
  attention = np.array([0.1, 0.2, 0.4, 0.25], np.float32)
  r = localize.refined_sequence(tcam, attention, official(rescale_attention=True))
  np.testing.assert_allclose(r[:, 0], 0.5 * attention * 2 / 0.4, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_single_bump_gives_one_detection_at_the_right_seconds():
  tcam, attention = one_class([0] * 5 + [0.75] * 5 + [0] * 10, num_classes=3, cls=1)
  d = localize.localize_video(tcam, attention, SPS, official())
  assert as_tuples(d) == [(1, 5, 10)]
  np.testing.assert_allclose(d.start, [5 * SPS])
  np.testing.assert_allclose(d.end, [10 * SPS])
  np.testing.assert_allclose(d.score, [0.75])  # S_i = 0.75, S_o = (0 + 0) / 2.
  assert d.to_list() == [(1, d.start[0], d.end[0], 0.75)]


@pytest.mark.parametrize('nms,expected', [
    (0.3, [(0, 2, 10)]), (0.5, [(0, 2, 10)]), (0.51, [(0, 2, 10), (0, 4, 8)])])
def test_nms_removes_the_lower_scoring_overlap(nms, expected):
  # Runs [2, 10) (thresholds < 0.3) and [4, 8) (0.3 <= threshold < 0.8), IoU 4 / 8 = 0.5.
  # S[2, 10) = 4.4 / 8 - 0 = 0.55 (outer 2 snippets of zeros); S[4, 8) = 0.8 - 0.3 = 0.5.
  tcam, attention = one_class([0, 0, 0.3, 0.3, 0.8, 0.8, 0.8, 0.8, 0.3, 0.3, 0, 0, 0, 0])
  d = localize.localize_video(tcam, attention, SPS, official(nms_threshold=nms))
  assert as_tuples(d) == expected
  np.testing.assert_allclose(d.score, [0.55, 0.5][:len(expected)], rtol=1e-6)


@pytest.mark.parametrize('fraction,scope,expected', [
    (0.1, 'class', [(0, 2, 6), (1, 12, 16)]),   # each class keeps its best.
    (0.1, 'video', [(0, 2, 6)]),                 # 0.0625 < 0.1 * 0.75.
    (0.05, 'video', [(0, 2, 6), (1, 12, 16)]),   # 0.0625 >= 0.05 * 0.75.
])
def test_score_threshold(fraction, scope, expected):
  tcam = np.zeros((20, 2), np.float32)
  tcam[2:6, 0] = 0.75
  tcam[12:16, 1] = 0.0625
  config = official(score_threshold=fraction, score_threshold_scope=scope, class_threshold=0.05)
  d = localize.localize_video(tcam, np.ones(20, np.float32), SPS, config)
  assert as_tuples(d) == expected


def test_score_threshold_within_a_class():
  # Strong bump S = 0.75 and a weak one S = 0.0625 in the same class: dropped at 10%, kept at 5%.
  values = np.zeros(30, np.float32)
  values[2:6] = 0.75
  values[20:24] = 0.0625
  tcam, attention = one_class(values)
  assert as_tuples(localize.localize_video(tcam, attention, SPS, official())) == [(0, 2, 6)]
  d = localize.localize_video(tcam, attention, SPS, official(score_threshold=0.05))
  assert as_tuples(d) == [(0, 2, 6), (0, 20, 24)]


@pytest.mark.parametrize('min_len,expected', [
    (2, [(0, 6, 8)]), (1, [(0, 2, 3), (0, 6, 8)]), (3, [])])
def test_min_proposal_length(min_len, expected):
  tcam, attention = one_class([0, 0, 0.5, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0])
  d = localize.localize_video(tcam, attention, SPS, official(min_proposal_snippets=min_len))
  assert sorted(as_tuples(d)) == expected


def _contrast(values, start, end, **overrides):
  rows = np.asarray([values], np.float64)
  score, keep = localize.contrast_scores(rows, np.zeros(1, np.int64), np.array([start]),
                                         np.array([end]), official(**overrides))
  return float(score[0]), bool(keep[0])


@pytest.mark.parametrize('values,start,end,overrides,score,keep', [
    # Whole video: no outer region, S = S_i, never rejected.
    ([0.5, 0.25, 0.25, 0.5], 0, 4, {}, 0.375, True),
    # At the left border: only the right side (1 snippet, floor(4 / 4)).
    ([0.5, 0.5, 0.5, 0.5, 0.25, 0.0], 0, 4, {}, 0.25, True),
    # At the right border: only the left side.
    ([0.0, 0.125, 0.5, 0.5, 0.5, 0.5], 2, 6, {}, 0.375, True),
    # Left side clipped to 1 snippet (0.5), right side 2 snippets (0, 0.25):
    # 'sides' S_o = (0.5 + 0.125) / 2; 'pooled' S_o = 0.75 / 3.
    ([0.5] + [0.75] * 8 + [0.0, 0.25, 1.0], 1, 9, {}, 0.75 - 0.3125, True),
    ([0.5] + [0.75] * 8 + [0.0, 0.25, 1.0], 1, 9, {'outer_mean': 'pooled'}, 0.5, True),
    # Width 3: floor(0.75) = 0 -> at least 1 snippet each side.
    ([0.25, 1.0, 1.0, 1.0, 0.75], 1, 4, {}, 0.5, True),
    # Rejection: (S_o - S_i + 1) / 2 = (0.625 + 1) / 2 > 0.7; kept without the rule.
    ([0.75, 0.125, 0.125, 0.75], 1, 3, {}, -0.625, False),
    ([0.75, 0.125, 0.125, 0.75], 1, 3, {'outer_rejection': False}, -0.625, True),
    # (0.375 + 1) / 2 = 0.6875 <= 0.7: kept.
    ([0.625, 0.25, 0.25, 0.625], 1, 3, {}, -0.375, True),
])
def test_outer_inner_contrast_border_cases(values, start, end, overrides, score, keep):
  got_score, got_keep = _contrast(values, start, end, **overrides)
  assert got_score == pytest.approx(score)
  assert got_keep == keep


def test_rejected_proposal_and_negative_best_score():
  # The only proposal, [2, 10) at 0.0625, has 1.0 two snippets away on both sides (outer width
  # floor(8 / 4) = 2): S_o = 0.5, S = -0.4375, (0.4375 + 1) / 2 > 0.7 -> rejected.
  tcam, attention = one_class([1.0, 0] + [0.0625] * 8 + [0, 1.0])
  assert len(localize.localize_video(tcam, attention, SPS, official())) == 0
  # Without the rule it survives NMS, but as in the official code a negative best score fails
  # its own threshold (S < 0.1 * S) ...
  assert len(localize.localize_video(tcam, attention, SPS, official(outer_rejection=False))) == 0
  # ... unless the fraction is 1.
  d = localize.localize_video(tcam, attention, SPS,
                              official(outer_rejection=False, score_threshold=1.0))
  assert as_tuples(d) == [(0, 2, 10)]
  np.testing.assert_allclose(d.score, [-0.4375])


def test_short_video_and_no_relevant_class():
  tcam, attention = one_class([0.9])
  assert len(localize.localize_video(tcam, attention, SPS, official())) == 0
  tcam, attention = one_class(np.zeros(10))
  assert len(localize.localize_video(tcam, attention, SPS, official())) == 0


# ------------------------------------------------------------------------------------------------
# Agreement with the plain reference (experiments/bench_localize.py).


def _random_video(rng, s, num_classes, dyadic):
  """TCAM with bumps and noise; dyadic values make every sum exact (identical scores)."""
  tcam = rng.random((s, num_classes)) ** rng.uniform(0.5, 4, num_classes)
  for c in rng.choice(num_classes, size=min(2, num_classes), replace=False):
    a = int(rng.integers(0, s))
    tcam[a:a + int(rng.integers(1, 15)), c] = rng.uniform(0.5, 1)
  attention = np.clip(rng.random(s) * 0.6 + (rng.random(s) > 0.6) * 0.4, 0, 1)
  if dyadic:  # Coarse grids also produce ties in scores.
    tcam, attention = np.round(tcam * 16) / 16, np.round(attention * 16) / 16
  return tcam.astype(np.float32), attention.astype(np.float32)


@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('dyadic', [True, False])
def test_matches_reference_on_random_videos(name, dyadic):
  config = official(**CONFIGS[name])
  rng = np.random.default_rng(sum(map(ord, name)) + dyadic)
  total = 0
  for _ in range(12):
    s = int(rng.integers(1, 90))
    tcam, attention = _random_video(rng, s, int(rng.integers(1, 5)), dyadic)
    fast = localize.localize_video(tcam, attention, SPS, config)
    ref = bench.localize_video_reference(tcam, attention, SPS, config)
    total += len(ref)
    assert as_tuples(fast) == [(d[0], d[4], d[5]) for d in ref]
    if dyadic:  # Exact arithmetic: identical scores and seconds.
      assert fast.score.tolist() == [d[3] for d in ref]
      assert fast.start.tolist() == [d[1] for d in ref]
      assert fast.end.tolist() == [d[2] for d in ref]
    else:
      np.testing.assert_allclose(fast.score, [d[3] for d in ref], rtol=1e-9, atol=1e-12)
  assert total > 10  # The cases did exercise the procedure.


def test_matches_reference_on_a_benchmark_like_run():
  videos, _ = bench.synthetic_run(num_videos=6, seed=7)
  config = official()
  fast = localize.localize_videos(videos, config)
  assert sum(len(d) for d in fast) > 20
  for d, v in zip(fast, videos):
    assert bench.same_detections(d, bench.localize_video_reference(*v, config))


@pytest.mark.parametrize('kind', ['int', 'float'])
def test_overlapping_pairs_are_every_pair_by_brute_force(kind):
  """`common.overlapping_pairs`, the one candidate finder of both NMS kinds (snippet ranges and
  BaS-Net's seconds), on unsorted proposals with ties, for both sides of the limit."""
  rng = np.random.default_rng(11)
  for _ in range(20):
    num = int(rng.integers(0, 40))
    row = rng.integers(0, 3, num)
    if kind == 'int':
      start = rng.integers(0, 20, num)
      limit = start + rng.integers(0, 6, num)
    else:
      start = np.round(rng.uniform(0, 20, num), 1)
      limit = start + np.round(rng.uniform(0, 5, num), 1)
    for side in ('left', 'right'):
      src, dst = common.overlapping_pairs(row, start, limit, side)
      order = np.lexsort((start, row)).tolist()
      expected = {(i, j) for i in range(num) for j in range(num)
                  if row[i] == row[j] and order.index(i) < order.index(j)
                  and (start[j] < limit[i] if side == 'left' else start[j] <= limit[i])}
      got = list(zip(src.tolist(), dst.tolist()))
      assert len(got) == len(set(got)) and set(got) == expected


def test_nms_rounds_match_plain_greedy_on_chains():
  rng = np.random.default_rng(0)
  for trial in range(30):
    s = 60
    # Shifted intervals of similar width: long chains of pairwise conflicts.
    start = rng.integers(0, s - 8, 40)
    end = np.minimum(start + rng.integers(2, 9, 40), s)
    row = rng.integers(0, 2, 40)
    key = np.unique((row * (s + 1) + start) * (s + 1) + end)
    rest, end = np.divmod(key, s + 1)
    row, start = np.divmod(rest, s + 1)
    score = np.round(rng.random(row.shape[0]) * 8) / 8  # Many ties.
    threshold = [0.3, 0.5, 1.0][trial % 3]
    kept = localize.nms_keep(row, start, end, score, threshold)
    expected = np.zeros(row.shape[0], bool)
    for i in sorted(range(row.shape[0]), key=lambda i: (-score[i], start[i], end[i])):
      clash = False
      for j in np.flatnonzero(expected & (row == row[i])):
        inter = max(0, min(end[i], end[j]) - max(start[i], start[j]))
        union = (end[i] - start[i]) + (end[j] - start[j]) - inter
        clash |= inter / union >= threshold
      expected[i] = not clash
    np.testing.assert_array_equal(kept, expected)


def test_class_order_does_not_matter():
  rng = np.random.default_rng(3)
  tcam, attention = _random_video(rng, 80, 5, dyadic=True)
  config = official()
  base = localize.localize_video(tcam, attention, SPS, config)
  perm = np.array([3, 0, 4, 1, 2])
  moved = localize.localize_video(tcam[:, perm], attention, SPS, config)
  assert len(base) > 0
  mapped = sorted(zip((-moved.score).tolist(), perm[moved.class_index].tolist(),
                      moved.start_snippet.tolist(), moved.end_snippet.tolist()))
  assert mapped == list(zip((-base.score).tolist(), base.class_index.tolist(),
                            base.start_snippet.tolist(), base.end_snippet.tolist()))


def test_output_is_sorted_and_consistent():
  rng = np.random.default_rng(4)
  tcam, attention = _random_video(rng, 80, 4, dyadic=True)
  d = localize.localize_video(tcam, attention, 0.5, official())
  keys = list(zip((-d.score).tolist(), d.class_index.tolist(), d.start.tolist(), d.end.tolist()))
  assert keys == sorted(keys) and len(keys) > 1
  np.testing.assert_array_equal(d.start, d.start_snippet * 0.5)
  np.testing.assert_array_equal(d.end, d.end_snippet * 0.5)
  assert d.class_index.dtype == np.int32 and np.all(d.end_snippet - d.start_snippet >= 2)


# ------------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize('tcam,attention,sps,match', [
    (np.zeros((5,)), np.zeros(5), SPS, r'tcam must be \(s, C\)'),
    (np.zeros((5, 2)), np.zeros(4), SPS, 'attention must be'),
    (np.zeros((0, 2)), np.zeros(0), SPS, 'no snippets'),
    (np.full((5, 2), np.nan), np.zeros(5), SPS, 'finite'),
    (np.zeros((5, 2)), np.zeros(5), 0.0, 'seconds_per_snippet'),
])
def test_bad_video_input(tcam, attention, sps, match):
  with pytest.raises(ValueError, match=match):
    localize.localize_video(tcam, attention, sps, official())


@pytest.mark.parametrize('overrides,match', [
    (dict(nms_threshold=0.0), 'nms_threshold'),
    (dict(proposal_thresholds=(0.5, 0.1, 0.025)), 'proposal_thresholds'),
    (dict(topk_rounding='round'), 'topk_rounding'),
    (dict(outer_mean='max'), 'outer_mean'),
    (dict(score_threshold_scope='all'), 'score_threshold_scope'),
    (dict(class_score_source='logits'), 'class_score_source'),
])
def test_bad_config(overrides, match):
  tcam, attention = one_class([0, 0.5, 0.5, 0])
  with pytest.raises(ValueError, match=match):
    localize.localize_video(tcam, attention, SPS, official(**overrides))


def test_localize_videos_names_the_bad_video():
  good = one_class([0, 0.5, 0.5, 0]) + (SPS,)
  bad = (np.zeros((3, 1)), np.zeros(2), SPS)
  results = localize.localize_videos([good, good], official())
  assert [as_tuples(r) for r in results] == [[(0, 1, 3)]] * 2
  with pytest.raises(ValueError, match='video clip_b: attention'):
    localize.localize_videos([good, bad], official(), names=['clip_a', 'clip_b'])
  with pytest.raises(ValueError, match='video #1'):
    localize.localize_videos(iter([good, bad]), official())
