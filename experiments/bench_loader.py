"""Loader speed: training batches of 10 x 750 x 2048 from the HDF5 store, with and without prefetch.

  .venv/bin/python experiments/bench_loader.py [--cache-dir /tmp/d2net_jax_bench_loader]
      [--feature-dim 2048] [--batch-size 10] [--max-seqlen 750] [--steps 40]
      [--step-ms 0,100,300] [--workers 1,2]

Builds (once) the thumos14_like synthetic store at the given feature dim (all 412 videos, about
1.1 GB at D = 2048; the OS page cache usually holds it afterwards, so these are warm-cache
numbers), then prints a table:

  sync           `TrainBatcher.batch(step)` in the loop: HDF5 read of each sampled video, random
                 crop, padding (what a training loop without prefetch waits for, every step).
  sync, cached   the same with `cache=True` (features kept in memory after the first read).
  prefetch       `TrainBatcher.iterate` (background thread, 2 ahead; with N workers, N threads
                 assemble consecutive batches) drained as fast as possible.
  prefetch + step  a consumer that "trains" for step-ms per batch (sleep, which like a jitted
                 step releases the GIL): the time it still waits for data per step, the stall.
  eval           `eval_batches` over the 212 test videos (bucket 64, batch 1): videos per second,
                 and the number of distinct padded lengths (= compiled programs) for 'multiple'
                 and 'pow2' buckets.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np

from d2net_jax import config as config_lib
from d2net_jax.data import batching, hdf5_store, synthetic


def build_store(args) -> pathlib.Path:
  c = config_lib.data_config()
  c.kind = 'synthetic'
  c.feature_dim = args.feature_dim
  c.synthetic.preset = 'thumos14_like'
  c.synthetic.num_train = args.num_train
  c.synthetic.num_test = args.num_test
  t0 = time.perf_counter()
  path = synthetic.ensure_store(c, args.cache_dir)
  print(f'store: {path} ({path.stat().st_size / 2**30:.2f} GiB, ready in '
        f'{time.perf_counter() - t0:.1f} s)')
  return path


def time_sync(batcher, steps, start=0):
  batcher.batch(start)  # Warm-up (opens the file).
  t0 = time.perf_counter()
  for step in range(start + 1, start + 1 + steps):
    batcher.batch(step)
  return steps / (time.perf_counter() - t0)


def time_prefetch(batcher, steps, step_seconds, size, workers=1):
  """(batches per second overall, mean seconds the consumer waited per batch)."""
  waited = 0.0
  with batcher.iterate(0, num_steps=steps + 1, prefetch_size=size, num_workers=workers) as it:
    next(it)  # The first batch includes thread start-up.
    t0 = time.perf_counter()
    for _ in range(steps):
      t = time.perf_counter()
      next(it)
      waited += time.perf_counter() - t
      if step_seconds:
        time.sleep(step_seconds)
    total = time.perf_counter() - t0
  return steps / total, waited / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cache-dir', default='/tmp/d2net_jax_bench_loader')
  parser.add_argument('--feature-dim', type=int, default=2048)
  parser.add_argument('--num-train', type=int, default=-1)
  parser.add_argument('--num-test', type=int, default=-1)
  parser.add_argument('--batch-size', type=int, default=10)
  parser.add_argument('--max-seqlen', type=int, default=750)
  parser.add_argument('--steps', type=int, default=40)
  parser.add_argument('--prefetch', type=int, default=2)
  parser.add_argument('--step-ms', default='0,100,300')
  parser.add_argument('--workers', default='1,2', help='num_workers values to try')
  args = parser.parse_args()

  path = build_store(args)
  dataset = hdf5_store.read_store(path)
  train = dataset.train_videos()
  test = dataset.test_videos()
  lengths = np.array([v.num_snippets for v in train])
  mib = args.batch_size * args.max_seqlen * args.feature_dim * 4 / 2**20
  print(f'{len(train)} training videos (mean {lengths.mean():.0f} snippets, '
        f'{np.mean(lengths > args.max_seqlen):.0%} longer than {args.max_seqlen}); batch '
        f'{args.batch_size} x {args.max_seqlen} x {args.feature_dim} float32 = {mib:.0f} MiB; '
        f'{os.cpu_count()} CPUs')

  rows = []
  plain = batching.TrainBatcher(train, args.batch_size, args.max_seqlen, seed=0)
  rows.append(('sync (HDF5)', time_sync(plain, args.steps), ''))
  cached = batching.TrainBatcher(train, args.batch_size, args.max_seqlen, seed=0, cache=True)
  for v in range(len(train)):  # Fill the cache outside the timing.
    cached._features(v)  # pylint: disable=protected-access
  rows.append(('sync, cached in RAM', time_sync(cached, args.steps), ''))
  for workers in [int(x) for x in args.workers.split(',') if x]:
    for ms in [float(x) for x in args.step_ms.split(',') if x]:
      rate, wait = time_prefetch(plain, args.steps, ms / 1000, args.prefetch, workers)
      name = f'prefetch, {workers} worker{"s" if workers > 1 else ""}'
      name += ' (HDF5)' if not ms else f' + {ms:.0f} ms step'
      rows.append((name, rate, f'{1000 * wait:.1f} ms wait/step'))

  t0 = time.perf_counter()
  count = sum(int((b['video_index'] >= 0).sum()) for b in batching.eval_batches(test, 64, 1))
  eval_rate = count / (time.perf_counter() - t0)
  programs = {mode: len(batching.eval_lengths(test, 64, mode)) for mode in ('multiple', 'pow2')}
  padding = {mode: sum(batching.bucket_length(v.num_snippets, 64, mode) for v in test) /
             sum(v.num_snippets for v in test) - 1 for mode in ('multiple', 'pow2')}

  print('\n| loader | batches/s | note |')
  print('|---|---|---|')
  for name, rate, note in rows:
    print(f'| {name} | {rate:.1f} | {note} |')
  print(f'| eval_batches (bucket 64, batch 1) | {eval_rate:.1f} videos/s | '
        f'programs: {programs["multiple"]} (multiple of 64, {100 * padding["multiple"]:.0f}% '
        f'padding) vs {programs["pow2"]} (pow2, {100 * padding["pow2"]:.0f}% padding) |')


if __name__ == '__main__':
  main()
