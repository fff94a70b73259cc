"""evaluation.protocol = 'd2net_official' (d2net_jax/evaluation/official.py).

Hand-made cases where it differs from the ActivityNet protocol (first vs best match, a class
without detections), and equality with a plain transcription of the official getLocMAP procedure
(written here from the procedure: sets of snippet indices, a Python loop over the GT list) on
random detections over the real THUMOS14 ground truth files (skipped without ../shared/data).
"""

import json
import types
import warnings

import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax.evaluation import official

G = 16 / 25  # Seconds per snippet of the official grid.


def _video(video_id, segments_snippets, classes):
  return types.SimpleNamespace(
      video_id=video_id, segments=np.asarray(segments_snippets, np.float64).reshape(-1, 2) * G,
      segment_classes=np.asarray(classes, np.int32))


def _activitynet_gt(videos, class_names):
  return {'database': {v.video_id: {'subset': 'test', 'duration': 100.0, 'annotations': [
      {'segment': [float(s), float(e)], 'label': class_names[c]}
      for (s, e), c in zip(v.segments, v.segment_classes)]} for v in videos}}


def test_first_match_differs_from_best_match():
  # Class 'a', one video, GT list [A = [0, 10), B = [2, 12)) in snippets.
  # det1 [2, 12) (0.9): tIoU 2/3 with A, 1 with B. The official scorer takes the FIRST instance
  # over the threshold (A); the ActivityNet scorer the best (B).
  # det2 [0, 6) (0.8): tIoU 0.6 with A, 1/3 with B: TP only if A is still free.
  videos = [_video('v', [[0, 10], [2, 12]], [0, 0])]
  dets = {'v': [('a', 2 * G, 12 * G, 0.9), ('a', 0.0, 6 * G, 0.8)]}
  gt = official.annotations_ground_truth(videos, ['a'])
  off = official.evaluate_official(gt, dets, [0.5])
  std = evaluation.evaluate_detections(_activitynet_gt(videos, ['a']), dets, [0.5])
  np.testing.assert_allclose(std.mAP, [1.0])
  # Official: TP, FP -> precision (1, 1/2), recall (1/2, 1/2): AP 1/2.
  np.testing.assert_allclose(off.mAP, [0.5])
  assert off.true_positives.tolist() == [[1]] and off.false_positives.tolist() == [[1]]
  assert off.protocol_name == 'd2net_official' and std.protocol_name == 'activitynet'


def _three_classes():
  names = ['a', 'b', 'c']
  videos = [_video('v0', [[0, 10]], [0]), _video('v1', [[5, 20]], [1]),
            _video('v2', [[3, 9]], [2])]
  dets = {'v0': [('a', 0.0, 10 * G, 0.9)], 'v2': [('c', 3 * G, 9 * G, 0.8)]}  # None for 'b'.
  return names, videos, dets


def test_class_without_detections_zeroes_later_classes_with_a_warning():
  names, videos, dets = _three_classes()
  gt = official.annotations_ground_truth(videos, names)
  with pytest.warns(UserWarning, match="class 'b' has no detection"):
    bugged = official.evaluate_official(gt, dets, [0.5])
  np.testing.assert_allclose(bugged.ap[:, 0], [1, 0, 0])
  table = evaluation.format_table(bugged)
  assert 'WARNING: class \'b\' has no detection' in table
  assert 'Protocol: d2net_official' in table and 'Ground truth: ' in table
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    fixed = official.evaluate_official(gt, dets, [0.5], zero_ap_after_empty_class=False)
  np.testing.assert_allclose(fixed.ap[:, 0], [1, 0, 1])
  std = evaluation.evaluate_detections(_activitynet_gt(videos, names), dets, [0.5])
  np.testing.assert_allclose(std.mAP, fixed.mAP)
  assert bugged.to_dict()['notes'] and not fixed.to_dict()['notes']


def test_ambiguous_filter_and_videos_without_instances():
  videos = [_video('v', [[0, 10]], [0]), _video('w', np.zeros((0, 2)), [])]
  dets = {'v': [('a', 0.0, 10 * G, 0.5), ('a', 30 * G, 40 * G, 0.9)],
          'w': [('a', 0.0, 4 * G, 0.95)]}  # 'w' has no instance: dropped, not a FP.
  gt = official.annotations_ground_truth(videos, ['a'])
  assert gt.video_ids == ('v',)
  kept = official.evaluate_official(gt, dets, [0.5])
  np.testing.assert_allclose(kept.mAP, [0.5])  # FP (0.9) ranked before the TP.
  # The region [35, 36) s shares snippets with [30, 40) only: that FP is dropped.
  filtered = official.evaluate_official(gt, dets, [0.5], ambiguous={'v': [[35 * G, 36 * G]]})
  np.testing.assert_allclose(filtered.mAP, [1.0])
  assert filtered.num_ambiguous_removed == 1 and filtered.num_unknown_video_detections == 1


def test_evaluate_command_protocol(tmp_path, capsys):
  names, videos, dets = _three_classes()
  gt_path = tmp_path / 'gt.json'
  gt_path.write_text(json.dumps(_activitynet_gt(videos, names)))
  det_path = tmp_path / 'det.json'
  det_path.write_text(json.dumps({'results': {v: [
      {'label': l, 'segment': [s, e], 'score': sc} for l, s, e, sc in rows]
      for v, rows in dets.items()}}))
  out = tmp_path / 'm.json'
  assert cli.main(['evaluate', '--ground-truth', str(gt_path), '--detections', str(det_path),
                   '--protocol', 'd2net_official', '--output', str(out)]) == 0
  captured = capsys.readouterr()
  printed = captured.out
  # The scorer's warning (a video with several classes keeps its first) is one stderr line.
  assert 'd2net-jax evaluate: warning:' in captured.err, captured.err
  assert 'Protocol: d2net_official' in printed and f'Ground truth: {gt_path}' in printed
  metrics = json.loads(out.read_text())
  assert metrics['protocol_name'] == 'd2net_official'
  assert metrics['tiou'] == [0.1, 0.2, 0.3, 0.4, 0.5]
  np.testing.assert_allclose(metrics['mAP'], [1 / 3] * 5)
  assert cli.main(['evaluate', '--ground-truth', str(gt_path), '--detections', str(det_path),
                   '--protocol', 'd2net_official', '--keep-later-classes', '--output',
                   str(out)]) == 0
  np.testing.assert_allclose(json.loads(out.read_text())['mAP'], [2 / 3] * 5)
  assert cli.main(['evaluate', '--ground-truth', str(gt_path), '--detections', str(det_path),
                   '--output', str(out)]) == 0
  assert json.loads(out.read_text())['protocol_name'] == 'activitynet'


# ----------------------------------------------------------------------------------------------
# A plain transcription of the official procedure (from its description), for the comparison.


def _transcribed_filter(rows, video_names, ambiguous_lines):
  """Drops rows [video index, s, e, score] sharing a snippet with an ambiguous region."""
  kept = []
  for row in rows:
    name = video_names[int(row[0])]
    overlaps = False
    for fields in ambiguous_lines:
      if fields[0] != name:
        continue
      region = set(range(int(round(float(fields[2]) * 25 / 16)),
                         int(round(float(fields[3]) * 25 / 16))))
      if region & set(range(int(row[1]), int(row[2]))):
        overlaps = True
    if not overlaps:
      kept.append(row)
  return np.asarray(kept).reshape(-1, 4)


def _transcribed_ap(precision, recall):
  p = [0.0] + list(precision) + [0.0]
  r = [0.0] + list(recall) + [1.0]
  for i in range(len(p) - 2, -1, -1):
    p[i] = max(p[i], p[i + 1])
  return sum((r[i] - r[i - 1]) * p[i] for i in range(1, len(r)) if r[i] != r[i - 1])


def _transcribed_map(per_class_dets, per_class_gt, durations, threshold):
  """Per class in order; an empty detection list gives AP 0 and does not advance the index."""
  aps, pointer = [], 0
  for _ in per_class_dets:
    dets = per_class_dets[pointer]
    if len(dets) == 0:
      aps.append(0.0)
      continue
    dets = dets[np.argsort(-dets[:, 3])]
    remaining = list(per_class_gt[pointer])
    num_gt = len(remaining)
    pointer += 1
    flags = []
    for det in dets:
      hit = 0.0
      for j, (vid, f0, f1) in enumerate(remaining):
        if det[0] != vid:
          continue
        gt = set(range(int(round(f0 * durations[vid] * 25 / 16)),
                       int(round(f1 * durations[vid] * 25 / 16))))
        pred = set(range(int(det[1]), int(det[2])))
        if len(gt & pred) / len(gt | pred) >= threshold:
          hit = 1.0
          del remaining[j]
          break
      flags.append(hit)
    tp = np.cumsum(flags)
    fp = np.cumsum([1 - f for f in flags])
    aps.append(0.0 if tp[-1] == 0 else _transcribed_ap(tp / (tp + fp), tp / num_gt))
  return float(np.mean(aps))


def _decode(x):
  return x.decode('utf-8') if isinstance(x, bytes) else str(x)


@pytest.mark.parametrize('empty_class', [None, 7])
def test_equals_transcription_on_real_thumos14(shared_data, empty_class):
  folder = shared_data / 'thumos14'
  load = lambda name: np.load(folder / f'{name}.npy', allow_pickle=True)
  class_names = [_decode(c) for c in load('classlist')]
  names, subsets, segments = load('videoname'), load('subset'), load('segments')
  durations_all = load('duration').reshape(-1)
  scored = [i for i in range(len(names))
            if _decode(subsets[i]) == 'test' and len(segments[i]) > 0]
  video_names = [_decode(names[i]) for i in scored]
  durations = [float(durations_all[i]) for i in scored]
  assert len(scored) == 212
  ambiguous_lines = [line.strip('\n').split(' ') for line in open(folder / 'Ambiguous_test.txt')]

  raw = load('test_gt_segments')
  index = {n[11:]: i for i, n in enumerate(video_names)}
  per_class_gt = [[(index[str(v)], float(a), float(b)) for v, a, b in lst] for lst in raw]
  assert sum(len(l) for l in per_class_gt) == 3234

  # Detections: jittered copies of about half the GT instances (many true positives, several
  # instances over the threshold: first vs best matters) and random ones, distinct scores.
  rng = np.random.default_rng(0 if empty_class is None else 1)
  per_class_rows, det_dict = [], {}
  for c, name in enumerate(class_names):
    rows = []
    if c != empty_class:
      for vi, f0, f1 in per_class_gt[c]:
        if rng.random() < 0.5:
          s = int(round(f0 * durations[vi] * 25 / 16)) + int(rng.integers(-3, 4))
          e = int(round(f1 * durations[vi] * 25 / 16)) + int(rng.integers(-3, 4))
          rows.append([vi, max(s, 0), max(e, max(s, 0) + 2), float(rng.random())])
      for vi in rng.choice(len(scored), size=40, replace=False):
        length = int(durations[vi] * 25 / 16)
        for _ in range(rng.integers(1, 6)):
          s = int(rng.integers(0, max(length - 3, 1)))
          e = int(min(length, s + rng.integers(2, 60)))
          rows.append([vi, s, max(e, s + 2), float(rng.random())])
    rows = np.asarray(rows, np.float64).reshape(-1, 4)
    for vi, s, e, score in rows:
      det_dict.setdefault(video_names[int(vi)], []).append((name, s * G, e * G, score))
    per_class_rows.append(_transcribed_filter(rows, video_names, ambiguous_lines))

  gt = official.thumos14_npy_ground_truth(folder / 'test_gt_segments.npy',
                                          list(zip(video_names, durations)), class_names)
  ambiguous = evaluation.parse_ambiguous(folder / 'Ambiguous_test.txt')
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    result = official.evaluate_official(gt, det_dict, official.OFFICIAL_THUMOS14_TIOU,
                                        ambiguous=ambiguous)
  expected = [_transcribed_map(per_class_rows, per_class_gt, durations, t)
              for t in official.OFFICIAL_THUMOS14_TIOU]
  np.testing.assert_allclose(result.mAP, expected, rtol=0, atol=1e-12)
  assert result.num_instances == 3234 and result.num_videos_with_instances == 210
  assert result.num_ambiguous_removed > 0
  assert (empty_class is None) == (not result.notes)
  if empty_class is None:
    assert result.mAP[0] > 0.1 and result.mAP[-1] > 0.05


@pytest.mark.parametrize('seed', [0, 1])
def test_activitynet_branch_equals_transcription(seed):
  """The ActivityNet1.2 branch: GT in seconds on the grid, classes with instances sorted by name
  (class 'e' has none and is not scored; seed 1 leaves class 'b' without detections)."""
  rng = np.random.default_rng(seed)
  names = ['d', 'b', 'a', 'c', 'e']
  videos, per_class_gt = [], {n: [] for n in names}
  for vi in range(30):
    segs, classes = [], []
    for _ in range(rng.integers(1, 4)):
      c = int(rng.integers(0, 4))
      s = float(np.round(rng.uniform(0, 80), 2))
      segs.append((s, s + float(np.round(rng.uniform(1, 20), 2))))
      classes.append(c)
      per_class_gt[names[c]].append((vi, segs[-1][0], segs[-1][1]))
    videos.append(types.SimpleNamespace(video_id=f'v{vi}', segments=np.asarray(segs),
                                        segment_classes=np.asarray(classes)))
  scored_names = sorted(n for n in names if per_class_gt[n])
  det_dict, per_class_rows = {}, []
  for name in scored_names:
    rows = []
    if not (seed == 1 and name == 'b'):
      for vi, s, e in per_class_gt[name]:  # Jittered copies of the instances.
        a, b = int(round(s * 25 / 16)), int(round(e * 25 / 16))
        a, b = a + int(rng.integers(-4, 5)), b + int(rng.integers(-4, 5))
        rows.append([vi, max(a, 0), max(b, max(a, 0) + 2), float(rng.random())])
      for vi in rng.choice(30, size=15, replace=False):
        for _ in range(rng.integers(1, 4)):
          s = int(rng.integers(0, 130))
          rows.append([vi, s, s + int(rng.integers(2, 40)), float(rng.random())])
    rows = np.asarray(rows, np.float64).reshape(-1, 4)
    for vi, s, e, score in rows:
      det_dict.setdefault(f'v{int(vi)}', []).append((name, s * G, e * G, score))
    per_class_rows.append(rows)
  gt = official.annotations_ground_truth(videos, names)
  assert gt.class_names == tuple(scored_names)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    result = official.evaluate_official(gt, det_dict, official.OFFICIAL_ACTIVITYNET_TIOU)
  ones = [1.0] * 30  # Seconds are the GT unit: start * 1 * 25 / 16.
  expected = [_transcribed_map(per_class_rows, [per_class_gt[n] for n in scored_names], ones, t)
              for t in official.OFFICIAL_ACTIVITYNET_TIOU]
  np.testing.assert_allclose(result.mAP, expected, rtol=0, atol=1e-12)
  assert (seed == 1) == bool(result.notes)
  assert result.mAP[0] > (0.1 if seed == 1 else 0.3)
