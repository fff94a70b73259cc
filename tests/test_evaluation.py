"""The mAP evaluator: hand-computed cases, and equality with a plain loop implementation.

`_loop_map` below is written for these tests from the documented semantics of ActivityNet's
eval_detection.py (one detection at a time, Python lists only); the vectorised evaluator must give
the same numbers on random inputs, including ground-truth instances tied in tIoU.
"""

import json

import numpy as np
import pytest

from d2net_jax.data.records import DataError, Dataset, VideoRecord
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation import mean_ap as evaluation


def _gt(videos, subset='test'):
  """{video: [(label, start, end), ...]} -> ActivityNet GT dict."""
  return {'database': {
      v: {'subset': subset, 'duration': 100.0,
          'annotations': [{'label': l, 'segment': [s, e]} for l, s, e in anns]}
      for v, anns in videos.items()}}


def _det(rows):
  """[(video, label, start, end, score), ...] -> results dict."""
  out = {}
  for v, l, s, e, sc in rows:
    out.setdefault(v, []).append({'label': l, 'score': sc, 'segment': [s, e]})
  return out


# ---------------------------------------------------------------------------------------------
# An independent loop implementation.


def _tiou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = (a[1] - a[0]) + (b[1] - b[0]) - inter
  return inter / union if union > 0 else 0.0


def _voc_ap(precision, recall):
  """Area under the monotone precision envelope, summed at each change of recall."""
  prec = [0.0] + list(precision) + [0.0]
  rec = [0.0] + list(recall) + [1.0]
  for i in range(len(prec) - 2, -1, -1):
    prec[i] = max(prec[i], prec[i + 1])
  return sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1])


def _loop_map(gt_rows, det_rows, thresholds):
  """gt_rows [(video, label, s, e)], det_rows [(video, label, s, e, score)] -> (C, K) AP."""
  classes = sorted({r[1] for r in gt_rows})
  ap = np.zeros((len(classes), len(thresholds)))
  for c, name in enumerate(classes):
    gts = [r for r in gt_rows if r[1] == name]
    dets = [r for r in det_rows if r[1] == name]
    dets = sorted(dets, key=lambda r: -r[4])  # Python's sort is stable.
    if not dets:
      continue
    for k, thr in enumerate(thresholds):
      used = [False] * len(gts)
      flags = []
      for v, _, s, e, _ in dets:
        same_video = [j for j, g in enumerate(gts) if g[0] == v]
        # The reference's `tiou.argsort()[::-1]` with an argsort that keeps ties in input order:
        # highest tIoU first, equal tIoU the later instance first.
        tious = [_tiou((s, e), gts[j][2:]) for j in same_video]
        same_video = [same_video[i] for i in np.argsort(tious, kind='stable')[::-1]]
        flag = False
        for j in same_video:
          if _tiou((s, e), gts[j][2:]) < thr:
            break
          if used[j]:
            continue
          used[j] = True
          flag = True
          break
        flags.append(flag)
      tp = np.cumsum(flags)
      fp = np.cumsum([not f for f in flags])
      ap[c, k] = _voc_ap(tp / (tp + fp), tp / len(gts))
  return classes, ap


def _random_case(rng, num_videos=6, num_classes=3, tie_scores=False, grid=False):
  """With `grid`, integer times from a small range: many ground-truth instances tie in tIoU."""
  gt_rows, det_rows = [], []
  for v in range(num_videos):
    video = f'v{v}'
    for _ in range(rng.integers(0, 6)):
      label = f'c{rng.integers(num_classes)}' if not grid else 'c0'
      if grid:
        s = float(rng.integers(0, 12))
        gt_rows.append((video, label, s, s + float(rng.integers(1, 4))))
        continue
      s = float(rng.uniform(0, 90))
      gt_rows.append((video, label, s, s + float(rng.uniform(0.5, 12))))
  for video, label, s, e in gt_rows:
    for _ in range(rng.integers(0, 4)):  # Jittered copies (some duplicates, some off).
      if grid:
        js, je = rng.integers(-2, 3, 2)
      else:
        js, je = rng.normal(0, 0.2 * (e - s), 2)
      det_rows.append((video, label, s + js, max(s + js, e + je), 0.0))
  for _ in range(rng.integers(0, 15)):  # Background detections, some in an extra video.
    video = f'v{rng.integers(num_videos + 1)}'
    s = float(rng.uniform(0, 90))
    det_rows.append((video, f'c{rng.integers(num_classes)}', s, s + float(rng.uniform(0, 10)),
                     0.0))
  scores = rng.uniform(size=len(det_rows))
  if tie_scores:
    scores = np.round(scores, 1)
  det_rows = [r[:4] + (float(sc),) for r, sc in zip(det_rows, scores)]
  # Some classes may lack GT: the reference scores only GT classes, so drop those detections.
  gt_labels = {r[1] for r in gt_rows}
  det_rows = [r for r in det_rows if r[1] in gt_labels]
  return gt_rows, det_rows


@pytest.mark.parametrize('tie_scores,grid', [(False, False), (True, False), (False, True)])
def test_matches_loop_implementation_on_random_cases(tie_scores, grid):
  rng = np.random.default_rng(2 if grid else 0 if not tie_scores else 1)
  thresholds = evaluation.THUMOS14_TIOU + (0.0, 0.95)
  checked = 0
  for _ in range(40):
    gt_rows, det_rows = _random_case(rng, tie_scores=tie_scores, grid=grid)
    if not gt_rows:
      continue
    videos = {f'v{v}': [] for v in range(6)}
    for v, l, s, e in gt_rows:
      videos[v].append((l, s, e))
    results = _det(det_rows)
    # The input order (which decides tied scores) is the order of the results dict.
    det_rows = [(v, d['label'], *d['segment'], d['score']) for v, ds in results.items()
                for d in ds]
    result = evaluation.evaluate_detections(_gt(videos), results, thresholds)
    classes, ap = _loop_map(gt_rows, det_rows, thresholds)
    assert list(result.class_names) == classes
    np.testing.assert_allclose(result.ap, ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.mAP, ap.mean(0), rtol=0, atol=1e-12)
    checked += 1
  assert checked > 30


# ---------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_perfect_detections_give_one():
  videos = {'a': [('Jump', 1.0, 4.0), ('Jump', 10.0, 12.5), ('Run', 3.0, 8.0)],
            'b': [('Run', 0.0, 30.0)]}
  rows = [(v, l, s, e, 1.0 - 0.1 * i)
          for i, (v, (l, s, e)) in enumerate((v, a) for v, anns in videos.items() for a in anns)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.1, 0.5, 0.9, 1.0))
  np.testing.assert_array_equal(result.ap, 1.0)
  np.testing.assert_array_equal(result.false_positives, 0)
  assert result.num_instances == 4 and result.num_videos == 2


def test_duplicate_is_false_positive():
  # 2 GT of one class; ranked detections: TP (copy of GT 1), FP (duplicate of it), TP (GT 2).
  # precision 1/1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1, 2/3, 2/3.
  # AP = (1/2 - 0) * 1 + (1 - 1/2) * 2/3 = 5/6.
  videos = {'a': [('Jump', 0.0, 10.0), ('Jump', 20.0, 25.0)]}
  rows = [('a', 'Jump', 0.0, 10.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8),
          ('a', 'Jump', 20.0, 25.0, 0.7)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,))
  np.testing.assert_allclose(result.ap, [[5 / 6]], atol=1e-15)
  assert result.true_positives.tolist() == [[2]]
  assert result.false_positives.tolist() == [[1]]


def test_class_without_detections_scores_zero():
  # Jump is detected perfectly (AP 1), Run has GT but no detection (AP 0): mAP = 1/2.
  videos = {'a': [('Jump', 0.0, 10.0), ('Run', 20.0, 25.0)]}
  result = evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 0.0, 10.0, 0.5)]),
                                          (0.5,))
  assert result.class_names == ('Jump', 'Run')
  np.testing.assert_array_equal(result.ap, [[1.0], [0.0]])
  np.testing.assert_array_equal(result.mAP, [0.5])


def test_tied_scores_keep_input_order():
  # One GT; two detections of equal score, one wrong (FP) and one right (TP).
  # Input order FP, TP: precision 0, 1/2; recall 0, 1 -> AP = 1 * 1/2 = 0.5.
  # Input order TP, FP: precision 1, 1/2; recall 1, 1 -> AP = 1.
  videos = {'a': [('Jump', 0.0, 10.0)]}
  wrong, right = ('a', 'Jump', 50.0, 60.0, 0.5), ('a', 'Jump', 0.0, 10.0, 0.5)
  first = evaluation.evaluate_detections(_gt(videos), _det([wrong, right]), (0.5,))
  second = evaluation.evaluate_detections(_gt(videos), _det([right, wrong]), (0.5,))
  np.testing.assert_allclose(first.ap, [[0.5]])
  np.testing.assert_allclose(second.ap, [[1.0]])


def test_match_takes_highest_tiou_unmatched_instance():
  # GT1 [0, 10], GT2 [8, 20]. det1 [5, 15] (0.9): tIoU 5/15 with GT1, 7/15 with GT2.
  # det2 [0, 9] (0.8): tIoU 9/10 with GT1, 1/20 with GT2.
  # thr 0.3: det1 -> GT2, det2 -> GT1: AP 1.  thr 0.5: det1 FP, det2 TP: precision 0, 1/2,
  # recall 0, 1/2 -> AP = 1/2 * 1/2 = 0.25.  thr 0.95: both FP -> 0.
  videos = {'a': [('Jump', 0.0, 10.0), ('Jump', 8.0, 20.0)]}
  rows = [('a', 'Jump', 5.0, 15.0, 0.9), ('a', 'Jump', 0.0, 9.0, 0.8)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.3, 0.5, 0.95))
  np.testing.assert_allclose(result.ap, [[1.0, 0.25, 0.0]])


def test_locked_instance_passes_to_next_best():
  # GT1 [0, 10], GT2 [0, 12]; two detections [0, 10]. det1 takes GT1 (tIoU 1); det2 finds GT1
  # locked and takes GT2 (tIoU 10/12) when the threshold allows.
  # thr 0.5: TP, TP -> 1.  thr 0.9: TP, FP: precision 1, 1/2; recall 1/2, 1/2 -> 0.5.
  videos = {'a': [('Jump', 0.0, 10.0), ('Jump', 0.0, 12.0)]}
  rows = [('a', 'Jump', 0.0, 10.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5, 0.9))
  np.testing.assert_allclose(result.ap, [[1.0, 0.5]])
  assert result.true_positives.tolist() == [[2, 1]]


def test_tied_tiou_takes_the_later_instance():
  # GT1 [0, 10], GT2 [20, 30]; det1 [5, 25] (0.9) has tIoU 5/25 with both. The reference takes
  # the later instance (`argsort()[::-1]`): det1 -> GT2, det2 [0, 10] (0.8) -> GT1: AP 1 at 0.1.
  # Taking the earlier one would lock GT1: det2 FP, precision 1, 1/2, recall 1/2, 1/2 -> 0.5.
  # At 0.5 det1 is a FP and det2 takes GT1 either way: precision 0, 1/2, recall 0, 1/2 -> 0.25.
  videos = {'a': [('Jump', 0.0, 10.0), ('Jump', 20.0, 30.0)]}
  rows = [('a', 'Jump', 5.0, 25.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8)]
  thresholds = (0.1, 0.5)
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), thresholds)
  _, reference = _loop_map([('a', l, s, e) for l, s, e in videos['a']], rows, thresholds)
  np.testing.assert_allclose(reference, [[1.0, 0.25]])
  np.testing.assert_allclose(result.ap, reference, rtol=0, atol=1e-15)
  assert result.true_positives.tolist() == [[2, 1]]


def test_threshold_is_inclusive():
  # tIoU of [0, 3] with [0, 10] is exactly 0.3.
  videos = {'a': [('Jump', 0.0, 10.0)]}
  result = evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 0.0, 3.0, 1.0)]),
                                          (0.3, 0.4))
  np.testing.assert_allclose(result.ap, [[1.0, 0.0]])


def test_detection_in_other_video_is_false_positive():
  # GT only in video a; the best-scored detection copies it into video b -> FP, then TP:
  # precision 0, 1/2; recall 0, 1 -> AP 0.5.
  videos = {'a': [('Jump', 0.0, 10.0)], 'b': []}
  rows = [('b', 'Jump', 0.0, 10.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,))
  np.testing.assert_allclose(result.ap, [[0.5]])
  assert result.num_videos == 2 and result.num_videos_with_instances == 1


def test_unknown_video_policies():
  videos = {'a': [('Jump', 0.0, 10.0)]}
  rows = [('zzz', 'Jump', 0.0, 10.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8)]
  counted = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,))
  np.testing.assert_allclose(counted.ap, [[0.5]])  # The reference's behaviour.
  assert counted.num_unknown_video_detections == 1 and counted.num_unknown_videos == 1
  assert 'WARNING: 1 detections in 1 videos' in evaluation.format_table(counted)
  dropped = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,),
                                           unknown_videos='drop')
  np.testing.assert_allclose(dropped.ap, [[1.0]])
  with pytest.raises(DataError, match='zzz'):
    evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,), unknown_videos='error')


def test_unknown_label_is_an_error():
  videos = {'a': [('Jump', 0.0, 10.0)]}
  with pytest.raises(DataError, match='Swim'):
    evaluation.evaluate_detections(_gt(videos), _det([('a', 'Swim', 0.0, 10.0, 0.9)]), (0.5,))


def test_declared_class_without_ground_truth_is_reported_not_scored():
  videos = {'a': [('Jump', 0.0, 10.0)]}
  rows = [('a', 'Swim', 0.0, 10.0, 0.9), ('a', 'Jump', 0.0, 10.0, 0.8)]
  result = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,),
                                          class_names=['Swim', 'Jump'])
  assert result.class_names == ('Jump',)
  assert result.classes_without_instances == ('Swim',)
  assert result.num_ignored_detections == 1
  np.testing.assert_allclose(result.ap, [[1.0]])


def test_ambiguous_regions_drop_overlapping_detections(tmp_path):
  # Region [20, 30] in video a. Detections: [25, 40] overlaps (dropped); [30, 35] only touches
  # (kept, FP); [0, 10] (TP). Kept, by score: 0.8 FP, 0.7 TP -> precision 0, 1/2; recall 0, 1
  # -> AP 0.5. Without filtering: FP, FP, TP -> precision 0, 0, 1/3; recall 0, 0, 1 -> AP 1/3.
  ambiguous = tmp_path / 'Ambiguous_test.txt'
  ambiguous.write_text('a  20.0 30.0\nb  0.0 100.0\n')
  videos = {'a': [('Jump', 0.0, 10.0)]}
  rows = [('a', 'Jump', 25.0, 40.0, 0.9), ('a', 'Jump', 30.0, 35.0, 0.8),
          ('a', 'Jump', 0.0, 10.0, 0.7)]
  filtered = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,), ambiguous=ambiguous)
  plain = evaluation.evaluate_detections(_gt(videos), _det(rows), (0.5,))
  np.testing.assert_allclose(filtered.ap, [[0.5]])
  np.testing.assert_allclose(plain.ap, [[1 / 3]])
  assert filtered.num_ambiguous_removed == 1
  assert 'Ambiguous_test.txt' in filtered.protocol and 'no ambiguous' in plain.protocol


def test_parse_ambiguous_reads_thumos_layout(tmp_path):
  path = tmp_path / 'amb.txt'
  path.write_text('video_test_0000278  0.0 1.4\nvideo_test_0000278 Diving 95.7 97.2\n\n')
  regions = evaluation.parse_ambiguous(path)
  np.testing.assert_array_equal(regions['video_test_0000278'], [[0.0, 1.4], [95.7, 97.2]])
  path.write_text('video_test_0000278 oops\n')
  with pytest.raises(DataError, match='amb.txt:1'):
    evaluation.parse_ambiguous(path)


def test_subset_filtering_and_counts():
  gt = _gt({'a': [('Jump', 0.0, 10.0)]}, subset='test')
  gt['database'].update(_gt({'b': [('Jump', 0.0, 10.0), ('Run', 1.0, 2.0)]},
                            subset='validation')['database'])
  with pytest.raises(ValueError, match='subset'):
    evaluation.evaluate_detections(gt, {}, (0.5,))
  with pytest.raises(DataError, match='no ground-truth instance'):
    evaluation.evaluate_detections(_gt({'c': []}), {}, (0.5,))
  result = evaluation.evaluate_detections(gt, _det([('a', 'Jump', 0.0, 10.0, 1.0)]), (0.5,),
                                          subset='test')
  assert (result.num_videos, result.num_instances, result.class_names) == (1, 1, ('Jump',))
  np.testing.assert_allclose(result.mAP, [1.0])


def test_thumos_range_averages_and_json():
  videos = {'a': [('Jump', 0.0, 10.0)]}
  # A [1, 10] detection: tIoU 0.9, TP at every THUMOS threshold.
  result = evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 1.0, 10.0, 1.0)]))
  assert set(result.range_mAP) == {'0.1:0.5', '0.3:0.7', '0.1:0.7'}
  data = json.loads(json.dumps(result.to_dict()))
  assert data['tiou'] == list(evaluation.THUMOS14_TIOU)
  assert data['mAP'] == [1.0] * 7 and data['per_class_AP'] == {'Jump': [1.0] * 7}
  # A [4, 10] detection: tIoU 0.6 -> mAP 1 up to 0.6, 0 at 0.7.
  result = evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 4.0, 10.0, 1.0)]))
  np.testing.assert_allclose(result.mAP, [1, 1, 1, 1, 1, 1, 0])
  np.testing.assert_allclose(result.range_mAP['0.3:0.7'], 0.8)
  np.testing.assert_allclose(result.average_mAP, 6 / 7)
  anet = evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 4.0, 10.0, 1.0)]),
                                        evaluation.ACTIVITYNET_TIOU)
  assert anet.range_mAP == {}


def test_parse_tiou():
  assert evaluation.parse_tiou('0.1:0.7:0.1') == evaluation.THUMOS14_TIOU
  assert evaluation.parse_tiou('0.5:0.95:0.05') == evaluation.ACTIVITYNET_TIOU
  assert evaluation.parse_tiou('0.3, 0.5') == (0.3, 0.5)
  for bad in ('0.7:0.1:0.1', '0.1:0.5', 'x', '1.5'):
    with pytest.raises(ValueError):
      evaluation.parse_tiou(bad)


def test_in_memory_dataset_and_index_detections():
  record = VideoRecord(video_id='a', subset='test', labels=np.array([1, 0], np.float32),
                       segments=np.array([[0.0, 10.0], [20.0, 30.0]]),
                       segment_classes=np.array([0, 0], np.int32), duration=40.0,
                       seconds_per_snippet=0.64, num_snippets=62, load=lambda: None)
  dataset = Dataset(name='toy', class_names=['Jump', 'Run'], videos=[record],
                    train_subset='validation', test_subset='test', feature_dim=4)
  # Per-video (N, 4) arrays [class index, start, end, score], as the localizer gives them.
  dets = {'a': np.array([[0, 0.0, 10.0, 0.9], [1, 0.0, 10.0, 0.8], [0, 21.0, 30.0, 0.7]])}
  result = evaluation.evaluate_detections(dataset, dets, (0.5, 0.95))
  assert result.class_names == ('Jump',) and result.num_ignored_detections == 1
  np.testing.assert_allclose(result.ap, [[1.0, 0.5]])


def test_bad_detections_are_errors():
  videos = {'a': [('Jump', 0.0, 10.0)]}
  with pytest.raises(DataError, match="'a'.*ends before"):
    evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 5.0, 1.0, 0.9)]), (0.5,))
  with pytest.raises(ValueError, match='class_names'):
    evaluation.evaluate_detections(_gt(videos), {'a': np.array([[0, 0.0, 1.0, 0.5]])}, (0.5,))
  with pytest.raises(DataError, match='non-finite score'):
    evaluation.evaluate_detections(_gt(videos), _det([('a', 'Jump', 0.0, 1.0, float('nan'))]),
                                   (0.5,))


def test_results_json_round_trip(tmp_path):
  path = tmp_path / 'det.json'
  dets = {'a': [(0, 1.0, 2.5, 0.25), ('Run', 3.0, 4.0, 0.75)], 'b': []}
  detections_lib.write_detections(path, dets, class_names=['Jump', 'Run'])
  document = json.loads(path.read_text())
  assert set(document) == {'version', 'results', 'external_data'}
  assert document['results'] == {
      'a': [{'label': 'Jump', 'score': 0.25, 'segment': [1.0, 2.5]},
            {'label': 'Run', 'score': 0.75, 'segment': [3.0, 4.0]}], 'b': []}
  assert detections_lib.read_detections(path) == document['results']
  path.write_text('{"version": 1}')
  with pytest.raises(DataError, match='no "results"'):
    detections_lib.read_detections(path)


class _LocalizerOutput:
  """Stands in for `localize.Detections` (anything with `to_list()` of (class, s, e, score))."""

  def __init__(self, rows):
    self.rows = rows

  def to_list(self):
    return list(self.rows)


def test_localizer_style_detections():
  videos = {'a': [('Jump', 0.0, 10.0)], 'b': [('Run', 5.0, 9.0)]}
  dets = {'a': _LocalizerOutput([(0, 0.0, 10.0, 0.9)]), 'b': _LocalizerOutput([(1, 5.0, 9.0, 0.8)])}
  result = evaluation.evaluate_detections(_gt(videos), dets, (0.5,), class_names=['Jump', 'Run'])
  np.testing.assert_array_equal(result.ap, [[1.0], [1.0]])
