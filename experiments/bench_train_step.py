r"""Times the training step of every registered method, float32 and bfloat16, side by side.

  python experiments/bench_train_step.py                      # every method, THUMOS14 + demo shapes
  python experiments/bench_train_step.py --quick              # fewer timed steps
  python experiments/bench_train_step.py --variants d2net,sal --dtypes float32 --shapes thumos14

A variant is a preset argument of configs/thumos14.py / configs/synthetic.py (a method name, with
its flags or key=value options, e.g. `dfe;base=sal`: write ';' for the preset's ','), so each
method runs at its own dataset shape: its preset's batch size and length (`data.max_seqlen` for
'crop' methods, `data.num_segments` for 'resample' ones), D = 2048 and C = 20 for THUMOS14 (D2-Net
at the paper's batch of 10), the demo's sizes for 'demo' and the smoke preset's for 'tiny'. Each (variant, shape, dtype) runs in its
own process so its peak memory is its own: the device's peak bytes in use where the backend
reports it (GPU, TPU), else the process's peak resident memory (CPU, which includes the Python
process itself, about 0.3-0.5 GB).

Per row: steps/s, videos/s, compile seconds, peak memory, the step's FLOPs (XLA cost analysis of the
compiled step), the achieved FLOP/s and its fraction of the FLOP/s of a plain matmul of shape
(B*T, D) x (D, D/2) timed in the same process and dtype. D2-Net's denoising terms are on at every
step (the expensive branch).
"""

import argparse
import importlib.util
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Shape-defining overrides per method (the paper's batch for D2-Net) and the always-on denoising.
METHOD_OVERRIDES = {'d2net': {'train.batch_size': 10, 'loss.pdmi_start_step': -1,
                              'loss.pdmi_every': 1}}


def _preset(name):
  spec = importlib.util.spec_from_file_location(f'preset_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def variant_config(variant: str, shape: str):
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  arg = variant.replace(';', ',') + (',smoke' if shape == 'tiny' else '')
  config = _preset('thumos14' if shape == 'thumos14' else 'synthetic').get_config(arg)
  if shape == 'thumos14':
    config.data.feature_dim, config.data.num_classes = 2048, 20
  config_lib.apply_overrides(config, METHOD_OVERRIDES.get(config.method, {}))
  return config


def random_batch(config, length, rng):
  """A full-length batch: (B, T, D) features, all snippets valid, one or two labels per video."""
  b, d, c = config.train.batch_size, config.data.feature_dim, config.data.num_classes
  labels = np.zeros((b, c), np.float32)
  labels[np.arange(b), rng.integers(0, c, b)] = 1.0
  labels[np.arange(0, b, 2), rng.integers(0, c, (b + 1) // 2)] = 1.0
  return {'features': np.abs(rng.normal(size=(b, length, d))).astype(np.float32),
          'mask': np.ones((b, length), np.float32), 'labels': labels,
          'video_index': np.arange(b, dtype=np.int32)}


def time_calls(fn, repeats):
  """Seconds per call of fn() (which must block), after one warm-up call."""
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def bench_one(variant, shape, dtype, repeats, parallelism):
  """One row, measured in this process."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import parallel  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import batching  # pylint: disable=import-outside-toplevel
  config = variant_config(variant, shape)
  config.train.compute_dtype = dtype
  config.train.parallelism = parallelism
  resample = methods.resolve_sampling(config) == 'resample'
  length = (config.data.num_segments or config.data.max_seqlen) if resample else \
      config.data.max_seqlen
  rng = np.random.default_rng(0)
  model, optimizer, state = train.build(config, config.data.num_classes, config.data.feature_dim)
  devices = parallel.usable_devices(config.train.batch_size, parallelism)
  runner = parallel.StepRunner(train.make_step_fn(config, model, optimizer), parallelism, devices)
  batch = runner.put_batch(random_batch(config, length, rng))
  state = runner.put_state(state)
  t0 = time.perf_counter()
  compiled = runner.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  if parallelism == 'pmap':  # Cost of one device's program; the step runs on all of them.
    flops *= runner.num_devices
  holder = {'state': state}

  def step():
    holder['state'], metrics = runner(holder['state'], batch)
    jax.block_until_ready(metrics)

  seconds = time_calls(step, repeats)
  b, d = config.train.batch_size, config.data.feature_dim
  lhs = jnp.asarray(rng.normal(size=(b * length, d)), dtype)
  rhs = jnp.asarray(rng.normal(size=(d, d // 2)), dtype)
  matmul = jax.jit(jnp.matmul)
  matmul_s = time_calls(lambda: matmul(lhs, rhs).block_until_ready(), max(repeats, 5))
  matmul_flops = 2.0 * b * length * d * (d // 2) / matmul_s
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    peak, where = stats['peak_bytes_in_use'], 'device'
  else:
    peak, where = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process RSS'
  return {'variant': variant, 'shape': f'{shape} {b}x{length}x{d}', 'dtype': dtype,
          'steps_per_s': 1 / seconds, 'videos_per_s': b / seconds, 'compile_s': compile_s,
          'peak_gb': peak / 2**30, 'peak_of': where, 'gflop_per_step': flops / 1e9,
          'gflop_per_s': flops / seconds / 1e9, 'fraction': flops / seconds / matmul_flops,
          'device': f'{len(devices)} x {jax.devices()[0].device_kind} ({jax.default_backend()})'}


def main():
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='2 timed steps instead of 10')
  parser.add_argument('--variants', default=','.join(methods.names()),
                      help="comma-separated preset arguments ('dfe;base=sal' for a DFE base)")
  parser.add_argument('--shapes', default='thumos14,demo', help='thumos14,demo,tiny')
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--parallelism', default='pmap', choices=('pmap', 'jit'))
  parser.add_argument('--one', default=None, help=argparse.SUPPRESS)  # Child: variant|shape|dtype.
  args = parser.parse_args()
  repeats = 2 if args.quick else 10
  if args.one:
    variant, shape, dtype = args.one.split('|')
    print(json.dumps(bench_one(variant, shape, dtype, repeats, args.parallelism)))
    return
  rows = []
  for shape in args.shapes.split(','):
    for variant in args.variants.split(','):
      for dtype in args.dtypes.split(','):
        child = [sys.executable, __file__, '--one', f'{variant}|{shape}|{dtype}',
                 '--parallelism', args.parallelism] + (['--quick'] if args.quick else [])
        done = subprocess.run(child, capture_output=True, text=True, check=False)
        if done.returncode:
          error = (done.stderr.strip().splitlines() or ['?'])[-1][:120]
          rows.append({'variant': variant, 'shape': shape, 'dtype': dtype, 'error': error})
        else:
          rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
  device = next((r['device'] for r in rows if 'device' in r), '?')
  print(f'{device}, parallelism={args.parallelism}, {repeats} timed steps\n')
  print('| method | shape | dtype | steps/s | videos/s | compile s | peak GB | GFLOP/step | '
        'GFLOP/s | of matmul |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    if 'error' in r:
      print(f'| {r["variant"]} | {r["shape"]} | {r["dtype"]} | failed: {r["error"]} |||||||')
      continue
    print(f'| {r["variant"].replace(";", ",")} | {r["shape"]} | {r["dtype"]} | '
          f'{r["steps_per_s"]:.2f} | {r["videos_per_s"]:.1f} | {r["compile_s"]:.1f} | '
          f'{r["peak_gb"]:.2f} ({r["peak_of"]}) | {r["gflop_per_step"]:.1f} | '
          f'{r["gflop_per_s"]:.1f} | {r["fraction"]:.2f} |')


if __name__ == '__main__':
  main()
