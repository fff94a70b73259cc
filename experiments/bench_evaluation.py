"""Speed of `evaluation.evaluate_detections` on THUMOS14- and ActivityNet-sized inputs.

  .venv/bin/python experiments/bench_evaluation.py [--repeats 3]

Synthetic, reproducible inputs: GT instances spread over videos and classes like the real
benchmarks, detections = jittered copies of the GT (several per instance, so many compete for the
same instance) plus background detections anywhere. Prints one row per setting: sizes and the best
wall time of `evaluate_detections` (in-memory results dict in, `EvaluationResult` out).
"""

import argparse
import time

import numpy as np

from d2net_jax.evaluation import mean_ap as evaluation


def make_inputs(num_videos, num_classes, num_instances, num_detections, seed=0):
  rng = np.random.default_rng(seed)
  duration = rng.uniform(60, 400, num_videos)
  # ~1.1 classes per video, as in THUMOS14.
  video_class = rng.integers(num_classes, size=num_videos)
  inst_video = rng.integers(num_videos, size=num_instances)
  inst_class = np.where(rng.uniform(size=num_instances) < 0.9, video_class[inst_video],
                        rng.integers(num_classes, size=num_instances))
  length = rng.lognormal(np.log(3.0), 0.7, num_instances)
  start = rng.uniform(0, 1, num_instances) * np.maximum(duration[inst_video] - length, 1)
  names = [f'class_{c:03d}' for c in range(num_classes)]
  database = {f'video_{v:05d}': {'subset': 'test', 'duration': float(duration[v]),
                                 'annotations': []} for v in range(num_videos)}
  for v, c, s, l in zip(inst_video, inst_class, start, length):
    database[f'video_{v:05d}']['annotations'].append(
        {'segment': [float(s), float(s + l)], 'label': names[c]})
  # Half jittered copies of GT, half background.
  num_copies = num_detections // 2
  src = rng.integers(num_instances, size=num_copies)
  jitter = rng.normal(0, 0.3, (num_copies, 2)) * length[src, None]
  copy_s = start[src] + jitter[:, 0]
  copy_e = np.maximum(copy_s + 0.1, start[src] + length[src] + jitter[:, 1])
  num_bg = num_detections - num_copies
  bg_video = rng.integers(num_videos, size=num_bg)
  bg_s = rng.uniform(0, 1, num_bg) * duration[bg_video]
  bg_e = bg_s + rng.lognormal(np.log(4.0), 0.8, num_bg)
  det_video = np.concatenate([inst_video[src], bg_video])
  det_class = np.concatenate([inst_class[src], video_class[bg_video]])
  det_s, det_e = np.concatenate([copy_s, bg_s]), np.concatenate([copy_e, bg_e])
  scores = rng.uniform(size=num_detections)
  results = {}
  for v, c, s, e, p in zip(det_video, det_class, det_s, det_e, scores):
    results.setdefault(f'video_{v:05d}', []).append(
        {'label': names[c], 'score': float(p), 'segment': [float(s), float(e)]})
  return {'database': database}, results


SETTINGS = [
    # name, videos, classes, instances, detections, thresholds
    ('THUMOS14-like', 212, 20, 3358, 20000, evaluation.THUMOS14_TIOU),
    ('THUMOS14-like, 100k det', 212, 20, 3358, 100000, evaluation.THUMOS14_TIOU),
    ('ActivityNet1.2-like', 2383, 100, 3600, 50000, evaluation.ACTIVITYNET_TIOU),
]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  print(f'{"setting":<26s}{"videos":>8s}{"GT":>8s}{"det":>9s}{"K":>4s}{"best s":>9s}'
        f'{"mAP@first":>11s}')
  for name, v, c, m, n, tiou in SETTINGS:
    gt, results = make_inputs(v, c, m, n)
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      result = evaluation.evaluate_detections(gt, results, tiou)
      times.append(time.perf_counter() - t0)
    print(f'{name:<26s}{result.num_videos:8d}{result.num_instances:8d}'
          f'{result.num_detections:9d}{len(tiou):4d}{min(times):9.3f}{result.mAP[0]:11.4f}')


if __name__ == '__main__':
  main()
