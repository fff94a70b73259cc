r"""Every speed measurement of the project in one table.

  python experiments/benchmark.py                 # quick: ~3-4 min on 2 CPU cores
  python experiments/benchmark.py --mode full     # more repetitions, THUMOS14-size loss, all
                                                  # evaluation settings
  python experiments/benchmark.py --mode smoke    # tiny shapes only (the tests)
  python experiments/benchmark.py --only train_step,localize

Calls the benchmark scripts of experiments/ through their functions, each in a quick setting:
  train_step  bench_train_step.bench_one: every method's whole update (forward, loss (D2-Net: L_D on),
              backward, Adam) at the THUMOS14 shape (10 x 750 x 2048, C = 20) and the demo shape
              (configs/synthetic.py); steps/s, and FLOP/s as a fraction of a plain matmul of the
              step's dominant size timed in the same run.
  loss        bench_loss.bench: compile time and forward + backward of model + d2net_loss with
              L_D on and off.
  loader      bench_loader: batches/s of `batching.TrainBatcher` at the THUMOS14 shape on the
              synthetic HDF5 store (read each time, from memory, with prefetch) and videos/s
              of `batching.eval_batches`.
  localize    bench_localize: `localize.localize_videos` on 212 THUMOS14-test-like videos.
  evaluation  bench_evaluation: `evaluation.evaluate_detections` on THUMOS14-like inputs.
JAX runs on the default device (a GPU when there is one; the header says which). The localizer
and the evaluator are NumPy: always the host CPU.

Writes --out (default runs/experiments/benchmark): results.md, results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
import sys
import time
from typing import List

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'benchmark'
HERE = pathlib.Path(__file__).resolve().parent
SECTIONS = ('train_step', 'loss', 'loader', 'localize', 'evaluation')


def _script(name: str):
  return _common.load_module(HERE / f'{name}.py', f'd2net_experiments_{name}')


def bench_train_step(mode: str) -> List[List[str]]:
  """Every registered method's training step at its THUMOS14 and demo shapes (tiny in smoke)."""
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  module = _script('bench_train_step')
  repeats = {'smoke': 1, 'quick': 2, 'full': 10}[mode]
  shapes = ('tiny',) if mode == 'smoke' else ('thumos14', 'demo')
  variants = ('d2net',) if mode == 'smoke' else methods.names()  # Smoke: that the code runs.
  rows = []
  for shape in shapes:
    for variant in variants:
      r = module.bench_one(variant, shape, 'float32', repeats, 'pmap')
      rows.append(['training step', f'{variant}, {r["shape"]}',
                   f'{r["steps_per_s"]:.2f} steps/s ({r["videos_per_s"]:.1f} videos/s)',
                   f'{r["gflop_per_step"]:.2f} GFLOP/step, {r["gflop_per_s"]:.1f} GFLOP/s = '
                   f'{r["fraction"]:.2f} of a matmul; compiled in {r["compile_s"]:.1f} s'])
  return rows


def bench_loss(mode: str) -> List[List[str]]:
  module = _script('bench_loss')
  reps = {'smoke': 1, 'quick': 2, 'full': 5}[mode]
  shapes = {name: module.SHAPES[name] for name in (
      ('small', 'thumos14') if mode == 'full' else ('small',))}
  if mode == 'smoke':
    shapes = {'tiny': dict(batch=2, snippets=16, dim=16, classes=3)}
  rows = []
  for name, shape in shapes.items():
    r = module.bench(name, shape, reps)
    rows.append(['model + d2net_loss, fwd + bwd', f'{r["name"]} ({r["shape"]})',
                 f'{1e3 * r["step_on_s"]:.1f} ms (L_D on), {1e3 * r["step_off_s"]:.1f} ms (off)',
                 f'compile {r["compile_s"]:.1f} s, {r["traces"]} trace(s); loss alone '
                 f'{1e3 * r["loss_only_s"]:.1f} ms'])
  return rows


def bench_loader(mode: str, data_dir: pathlib.Path) -> List[List[str]]:
  """bench_loader's timings: `TrainBatcher` batches/s (HDF5, in memory, prefetch) and
  `eval_batches`, on the thumos14_like store (THUMOS14 batch shape 10 x 750 x 2048; quick mode:
  a store of 40 training / 20 test videos at that D)."""
  from d2net_jax.data import batching  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  module = _script('bench_loader')
  d, b, t, num_train, num_test, steps = {
      'smoke': (16, 4, 32, 8, 8, 3), 'quick': (2048, 10, 750, 40, 20, 30),
      'full': (2048, 10, 750, -1, -1, 40)}[mode]
  start = time.perf_counter()
  with contextlib.redirect_stdout(io.StringIO()):
    path = module.build_store(argparse.Namespace(cache_dir=str(data_dir), feature_dim=d,
                                                 num_train=num_train, num_test=num_test))
  setup_s = time.perf_counter() - start
  dataset = hdf5_store.read_store(path)
  train, test = dataset.train_videos(), dataset.test_videos()
  shape = f'{b}x{t}x{d}, {len(train)} videos'
  plain = batching.TrainBatcher(train, b, t, seed=0)
  cached = batching.TrainBatcher(train, b, t, seed=0, cache=True)
  for v in range(len(train)):  # Fill the cache outside the timing.
    cached._features(v)  # pylint: disable=protected-access
  rate_prefetch, _ = module.time_prefetch(plain, steps, 0.0, 2, workers=2)
  rows = [
      ['loader: TrainBatcher', f'{shape}, read from the HDF5 store',
       f'{module.time_sync(plain, steps):.1f} batches/s', f'{steps} batches, no prefetch'],
      ['loader: TrainBatcher', f'{shape}, features in memory',
       f'{module.time_sync(cached, steps):.1f} batches/s', 'train.cache_features=True'],
      ['loader: TrainBatcher.iterate', f'{shape}, HDF5, prefetch 2, 2 workers',
       f'{rate_prefetch:.1f} batches/s', 'drained as fast as possible'],
  ]
  start = time.perf_counter()
  count = sum(int((batch['video_index'] >= 0).sum())
              for batch in batching.eval_batches(test, 64, 1))
  seconds = time.perf_counter() - start
  rows.append(['loader: eval_batches', f'{len(test)} test videos, D={d}, bucket 64',
               f'{count / seconds:.0f} videos/s',
               f'store built or found in {setup_s:.1f} s'])
  return rows


def bench_localize(mode: str) -> List[List[str]]:
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from d2net_jax import localize  # pylint: disable=import-outside-toplevel
  module = _script('bench_localize')
  num_videos = 12 if mode == 'smoke' else 212
  repeats = {'smoke': 1, 'quick': 2, 'full': 5}[mode]
  videos, _ = module.synthetic_run(num_videos, seed=0)
  config = config_lib.base_config().localize
  seconds, detections = module._best_time(  # pylint: disable=protected-access
      lambda: localize.localize_videos(videos, config), repeats)
  snippets = sum(v[0].shape[0] for v in videos)
  return [['localize (Sec. 3.3, NumPy)', f'{num_videos} THUMOS14-test-like videos, '
           f'{snippets} snippets, C=20', f'{seconds:.3f} s ({num_videos / seconds:.0f} videos/s)',
           f'{sum(len(d) for d in detections)} detections; best of {repeats}']]


def bench_evaluation(mode: str) -> List[List[str]]:
  from d2net_jax.evaluation import mean_ap as evaluation  # pylint: disable=import-outside-toplevel
  module = _script('bench_evaluation')
  settings = module.SETTINGS if mode == 'full' else module.SETTINGS[:1]
  if mode == 'smoke':
    settings = [('tiny', 12, 5, 40, 200, evaluation.THUMOS14_TIOU)]
  repeats = {'smoke': 1, 'quick': 2, 'full': 3}[mode]
  rows = []
  for name, v, c, m, n, tiou in settings:
    gt, results = module.make_inputs(v, c, m, n)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      result = evaluation.evaluate_detections(gt, results, tiou)
      times.append(time.perf_counter() - start)
    rows.append(['evaluation (mAP, NumPy)', f'{name}: {result.num_videos} videos, '
                 f'{result.num_instances} GT, {result.num_detections} detections, '
                 f'{len(tiou)} tIoUs', f'{min(times):.3f} s', f'best of {repeats}'])
  return rows


def run(mode: str = 'quick', only=SECTIONS, data_dir: pathlib.Path = None, log=print
        ) -> List[List[str]]:
  """Rows [benchmark, setting, result, detail] of the chosen sections."""
  data_dir = data_dir or _common.ROOT / 'runs' / 'experiments' / NAME / 'data'
  calls = {
      'train_step': lambda: bench_train_step(mode),
      'loss': lambda: bench_loss(mode),
      'loader': lambda: bench_loader(mode, data_dir),
      'localize': lambda: bench_localize(mode),
      'evaluation': lambda: bench_evaluation(mode),
  }
  rows = []
  for name in only:
    start = time.perf_counter()
    rows += calls[name]()
    log(f'{name} done ({time.perf_counter() - start:.0f} s)')
  return rows


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=('smoke', 'quick', 'full'), default='quick')
  parser.add_argument('--only', default=','.join(SECTIONS),
                      help=f'comma-separated subset of {",".join(SECTIONS)}')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--data-dir', type=pathlib.Path, help='synthetic store (default OUT/data)')
  args = parser.parse_args(argv)
  only = _common.split_choices(parser, args.only, SECTIONS, 'sections')
  out = args.out or _common.ROOT / 'runs' / 'experiments' / NAME
  start = time.perf_counter()
  meta = _common.run_metadata(argv)
  print(f'{NAME}: {args.mode} mode on {meta["device"]}', flush=True)
  rows = run(args.mode, only, args.data_dir or out / 'data',
             log=lambda s: print(s, flush=True))
  meta['wall_s'] = time.perf_counter() - start
  table = _common.markdown_table(['benchmark', 'setting', 'result', 'detail'], rows, 'llll')
  markdown = _common.markdown_header(
      'Benchmarks', meta, [f'{args.mode} mode; JAX parts on the device above, NumPy parts '
                           '(localize, evaluation, loader) on the host CPU']) + '\n' + table
  _common.write_outputs(out, markdown, {'meta': meta, 'mode': args.mode, 'rows': rows})
  print(markdown)
  return 0


if __name__ == '__main__':
  sys.exit(main())
