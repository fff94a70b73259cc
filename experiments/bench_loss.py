"""Times forward + backward of D2-Net and d2net_loss (gradient w.r.t. the parameters).

For each shape: compile time (first call minus a steady call), traces (the denoising schedule
switching on must not retrace), and the steady-state time of one jitted step, with every input on
the device and host transfers disallowed during the timed calls (no host round-trips). Also the
loss alone (gradient w.r.t. the model outputs) to separate its cost from the model's.

  .venv/bin/python experiments/bench_loss.py            # small and THUMOS14 (10 x 750 x 2048, C 20)
  .venv/bin/python experiments/bench_loss.py --quick    # fewer repetitions
"""

import argparse
import statistics
import time

import jax
import numpy as np

from d2net_jax import config as config_lib
from d2net_jax import losses
from d2net_jax import model as model_lib

SHAPES = {
    'small': dict(batch=4, snippets=64, dim=64, classes=5),
    'thumos14': dict(batch=10, snippets=750, dim=2048, classes=20),
}


def _inputs(batch, snippets, dim, classes, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(snippets // 3, snippets + 1, batch)
  lengths[0] = snippets
  mask = (np.arange(snippets)[None] < lengths[:, None]).astype(np.float32)
  features = rng.normal(size=(batch, snippets, dim)).astype(np.float32) * mask[..., None]
  labels = np.zeros((batch, classes), np.float32)
  labels[np.arange(batch), rng.integers(0, classes, batch)] = 1
  return {'features': features, 'mask': mask, 'labels': labels}


def _timed(fn, args, reps):
  """Median seconds of `reps` calls, each waited on; host transfers disallowed."""
  times = []
  with jax.transfer_guard('disallow'):
    for _ in range(reps):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench(name, shape, reps):
  config = config_lib.base_config()
  model = model_lib.build_model(config.model, shape['classes'])
  batch = jax.device_put(_inputs(**shape))
  params = model.init(jax.random.key(0), batch['features'][:1], batch['mask'][:1])['params']
  state = losses.initial_state(shape['dim'] // 2)
  state['x_ref'] = jax.device_put(np.random.default_rng(1).normal(size=shape['dim'] // 2)
                                  .astype(np.float32))
  traces = []

  def loss_fn(params, batch, state, key):
    traces.append(1)
    dropout_key, pair_key = jax.random.split(key)
    outputs = model.apply({'params': params}, batch['features'], batch['mask'], train=True,
                          rngs={'dropout': dropout_key})
    return losses.d2net_loss(outputs, batch, state, config.loss, pair_key)

  step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  key = jax.device_put(jax.random.key(0))
  states = [dict(state, step=jax.device_put(np.int32(s))) for s in (0, 1002, 1003)]
  start = time.perf_counter()
  jax.block_until_ready(step(params, batch, states[0], key))  # Trace + compile + run.
  first_s = time.perf_counter() - start
  on = _timed(step, (params, batch, states[1], key), reps)
  off = _timed(step, (params, batch, states[2], key), reps)
  (loss, aux), _ = step(params, batch, states[1], key)

  # The loss alone, w.r.t. fixed model outputs.
  outputs = jax.jit(lambda p: model.apply({'params': p}, batch['features'], batch['mask']))(params)
  loss_only = jax.jit(jax.value_and_grad(
      lambda o, s: losses.d2net_loss(o, batch, s, config.loss, key), has_aux=True))
  jax.block_until_ready(loss_only(outputs, states[1]))
  loss_s = _timed(loss_only, (outputs, states[1]), reps)
  return dict(name=name, shape='{batch}x{snippets}x{dim}, C={classes}'.format(**shape),
              compile_s=first_s - off, traces=len(traces), step_on_s=on, step_off_s=off,
              loss_only_s=loss_s, loss=float(loss), denoise_on=float(aux['denoise_on']))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='2 timed repetitions instead of 5')
  parser.add_argument('--shapes', default='small,thumos14', help='comma-separated: small,thumos14')
  args = parser.parse_args()
  reps = 2 if args.quick else 5
  rows = [bench(n, SHAPES[n], reps) for n in args.shapes.split(',')]
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, '
        f'{jax.device_count()} device(s): {jax.devices()[0].device_kind}; median of {reps} calls')
  header = ('shape', 'compile s', 'traces', 'step (L_D on) s', 'step (L_D off) s', 'loss only s',
            'loss')
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for r in rows:
    print(f"| {r['name']} ({r['shape']}) | {r['compile_s']:.2f} | {r['traces']} | "
          f"{r['step_on_s']:.4f} | {r['step_off_s']:.4f} | {r['loss_only_s']:.4f} | "
          f"{r['loss']:.4f} |")


if __name__ == '__main__':
  main()
