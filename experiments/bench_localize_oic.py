"""Speed of SAL's 'oic' localizer (d2net_jax/localize/oic.py) on a THUMOS14-test-sized run.

SAL resamples every test video to T = 750 snippets, so the localizer always sees (750, C) arrays.
Generates `--videos` such videos (20 classes, 1-2 action classes per video with ~15 instances of
~4 s, actionness high on the instances with noise elsewhere, logits favouring the video's classes)
and times `localize.localize_outputs('oic', ...)` with the THUMOS14 settings (classes with
p >= 0.25, usually 1-3) and with every class selected (class_threshold 0, the worst case: 20
classes x 18000 upsampled points). Prints a table.

  .venv/bin/python experiments/bench_localize_oic.py [--videos 212] [--repeats 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from d2net_jax import config as config_lib
from d2net_jax import localize

T, C = 750, 20


def make_video(rng):
  """(snippet, video, seconds_per_snippet) of one synthetic SAL output."""
  v_len = int(np.clip(np.exp(rng.normal(5.02, 0.84)) / 0.64, 24, 2650))
  sps = 0.64 * v_len / T
  truth = np.zeros(T, bool)
  classes = rng.choice(C, size=int(rng.integers(1, 3)), replace=False)
  for _ in range(int(rng.integers(5, 25))):
    width = max(1, int(round(rng.exponential(4.0) / sps)))
    start = int(rng.integers(0, max(1, T - width)))
    truth[start:start + width] = True
  noise = np.convolve(rng.normal(size=T + 8), np.ones(9) / 9, mode='valid')
  a_f = np.clip(np.where(truth, 0.85, 0.15) + 0.3 * noise, 0, 1).astype(np.float32)
  a_r = np.clip(a_f + 0.1 * rng.normal(size=T), 0, 1).astype(np.float32)
  cas = rng.normal(size=(T, C)).astype(np.float32)
  cas[:, classes] += np.where(truth, 4.0, 0.0)[:, None].astype(np.float32)
  sc = rng.normal(size=C).astype(np.float32)
  sc[classes] += 3.0
  return {'cas': cas, 'a_f': a_f, 'a_r': a_r}, {'sc': sc}, sps


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--videos', type=int, default=212)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  rng = np.random.default_rng(args.seed)
  videos = [make_video(rng) for _ in range(args.videos)]
  print(f'| setting | videos | classes localized | detections | seconds (best of {args.repeats}) '
        f'| ms / video |')
  print('|---|---|---|---|---|---|')
  for name, threshold in (('THUMOS14 (class_threshold 0.25)', None), ('every class', 0.0)):
    config = config_lib.base_config()
    if threshold is not None:
      config.localize.oic.class_threshold = threshold
    best, found = float('inf'), []
    for _ in range(args.repeats):
      start = time.perf_counter()
      found = [localize.localize_outputs('oic', s, v, sps, config) for s, v, sps in videos]
      best = min(best, time.perf_counter() - start)
    classes = sum(len(localize.relevant_classes_of('oic', s, v, config)) for s, v, _ in videos)
    detections = sum(len(d) for d in found)
    print(f'| {name} | {len(videos)} | {classes} | {detections} | {best:.2f} | '
          f'{1e3 * best / len(videos):.1f} |')
  print(f'\nhost: {os.cpu_count()} CPU cores, numpy {np.__version__}, python '
        f'{sys.version.split()[0]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
