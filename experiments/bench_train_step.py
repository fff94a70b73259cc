r"""Times the training step (forward, D2-Net loss, backward, Adam) and prints a table.

  python experiments/bench_train_step.py            # THUMOS14 shape + the demo's shape
  python experiments/bench_train_step.py --quick    # fewer timed steps
  python experiments/bench_train_step.py --parallelism=jit

For each shape: steps/s, videos/s, the step's FLOPs (XLA cost analysis of the compiled step) and
the achieved FLOP/s, as a fraction of the FLOP/s of a plain matmul timed in the same run. The
matmul has the shape of the step's dominant operation, the first temporal convolution as a matmul
(B*T, kernel*D/2) x (kernel*D/2, D/2), so the fraction says how close the whole step comes to the
device's matmul throughput at that size. The pDMI terms are on (the expensive branch).
"""

import argparse
import importlib.util
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from d2net_jax import config as config_lib
from d2net_jax import parallel
from d2net_jax import train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def demo_config():
  spec = importlib.util.spec_from_file_location('synthetic_config', ROOT / 'configs/synthetic.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def thumos_config():
  config = config_lib.base_config()
  config.train.batch_size = 10  # The paper's batch.
  return config


def random_batch(config, rng):
  """A full-length batch: (B, T, D) features, all snippets valid, one or two labels per video."""
  b, t = config.train.batch_size, config.data.max_seqlen
  d, c = config.data.feature_dim, config.data.num_classes
  labels = np.zeros((b, c), np.float32)
  labels[np.arange(b), rng.integers(0, c, b)] = 1.0
  labels[np.arange(0, b, 2), rng.integers(0, c, (b + 1) // 2)] = 1.0
  return {
      'features': rng.normal(size=(b, t, d)).astype(np.float32),
      'mask': np.ones((b, t), np.float32),
      'labels': labels,
      'video_index': np.arange(b, dtype=np.int32),
  }


def time_calls(fn, repeats):
  """Seconds per call of fn() (which must block), after one warm-up call."""
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def bench_shape(name, config, parallelism, repeats, rng):
  config.loss.pdmi_start_step = -1  # Denoising terms on at every step.
  config.loss.pdmi_every = 1
  config.train.parallelism = parallelism
  model, optimizer, state = train.build(config, config.data.num_classes,
                                       config.data.feature_dim)
  runner = parallel.StepRunner(train.make_step_fn(config, model, optimizer), parallelism,
                               donate=True)
  batch = runner.put_batch(random_batch(config, rng))
  state = runner.put_state(state)
  compiled = runner.lower(state, batch).compile()
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

  b, t = config.train.batch_size, config.data.max_seqlen
  half = config.data.feature_dim // 2
  k = config.model.kernel_size * half
  lhs = jnp.asarray(rng.normal(size=(b * t, k)), jnp.float32)
  rhs = jnp.asarray(rng.normal(size=(k, half)), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul_seconds = time_calls(lambda: matmul(lhs, rhs).block_until_ready(), max(repeats, 5))
  matmul_flops_per_s = 2.0 * b * t * k * half / matmul_seconds
  return {
      'shape': f'{name} ({b}x{t}x{config.data.feature_dim}, C={config.data.num_classes})',
      'steps_per_s': 1.0 / seconds,
      'videos_per_s': b / seconds,
      'gflop_per_step': flops / 1e9,
      'gflop_per_s': flops / seconds / 1e9,
      'matmul_gflop_per_s': matmul_flops_per_s / 1e9,
      'fraction': flops / seconds / matmul_flops_per_s,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='fewer timed steps')
  parser.add_argument('--parallelism', default='pmap', choices=('pmap', 'jit'))
  parser.add_argument('--shapes', default='thumos14,demo', help='comma-separated: thumos14,demo')
  args = parser.parse_args()
  repeats = 2 if args.quick else 10
  rng = np.random.default_rng(0)
  devices = jax.devices()
  print(f'JAX {jax.__version__} on {len(devices)} x {devices[0].device_kind} '
        f'({jax.default_backend()}), parallelism={args.parallelism}, {repeats} timed steps')
  configs = {'thumos14': thumos_config, 'demo': demo_config}
  rows = [bench_shape(name, configs[name](), args.parallelism, repeats, rng)
          for name in args.shapes.split(',')]
  header = (f'{"shape":<38s}{"steps/s":>9s}{"videos/s":>10s}{"GFLOP/step":>12s}'
            f'{"GFLOP/s":>10s}{"matmul GFLOP/s":>16s}{"fraction":>10s}')
  print(header)
  print('-' * len(header))
  for r in rows:
    print(f'{r["shape"]:<38s}{r["steps_per_s"]:9.2f}{r["videos_per_s"]:10.1f}'
          f'{r["gflop_per_step"]:12.2f}{r["gflop_per_s"]:10.1f}{r["matmul_gflop_per_s"]:16.1f}'
          f'{r["fraction"]:10.2f}')


if __name__ == '__main__':
  main()
