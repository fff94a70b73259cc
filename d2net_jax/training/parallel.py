"""Compiling the training step over devices: `jax.pmap` (default) or `jax.jit` over a device mesh.

Both compute the same update from the same global batch of B videos:
- 'pmap': the step runs per device on B / n videos, written against the named axis `BATCH_AXIS`
  (the loss gathers batch-level quantities over it and returns the global loss; gradients are
  `lax.pmean`-ed). The state goes in and comes out unmapped (`in_axes=None`, `out_axes=None`):
  no manual replicate/unreplicate.
- 'jit': the plain global-batch step (axis_name=None) with the batch sharded over a 1-D mesh on its
  leading axis and the state replicated; XLA partitions the computation.

Multi-host (TPU pods, several GPU hosts): every process builds and feeds only its own rows of the
global batch (`batching.process_rows`; the training loop asks the batcher for them) and calls the
same compiled step; collectives span all processes' devices.
"""

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from d2net_jax.data import batching
from d2net_jax.methods.layers import BATCH_AXIS


def process_batch(batch: Mapping[str, np.ndarray]) -> dict:
  """This process's contiguous slice of a global host batch (the whole batch on one host)."""
  count, index = jax.process_count(), jax.process_index()
  if count == 1:
    return dict(batch)
  size = len(next(iter(batch.values())))
  if size % count:
    raise ValueError(f'global batch {size} not divisible by {count} processes')
  per = size // count
  return {k: v[index * per:(index + 1) * per] for k, v in batch.items()}


def usable_devices(batch_size: int, parallelism: str) -> list:
  """The most devices (local for pmap, all for jit) that split `batch_size` evenly.

  Multi-host runs use every device (the batch must divide evenly; StepRunner checks).
  """
  devices = jax.local_devices() if parallelism == 'pmap' else jax.devices()
  if jax.process_count() > 1:
    return devices
  count = max(n for n in range(1, len(devices) + 1) if batch_size % n == 0)
  return devices[:count]


class StepRunner:
  """A compiled `step_fn(state, batch, axis_name) -> (state, metrics)` and how to feed it.

  Attributes:
    parallelism: 'pmap' or 'jit'.
    num_devices: devices the global batch is split over (all processes).
  """

  def __init__(self, step_fn: Callable[..., Any], parallelism: str, devices=None,
               donate: bool = True):
    self.parallelism = parallelism
    donate_argnums = (0,) if donate else ()
    if parallelism == 'pmap':
      self.local_devices = list(devices or jax.local_devices())
      self.num_devices = len(self.local_devices) * jax.process_count()
      self.mesh = Mesh(np.array(self.local_devices), (BATCH_AXIS,))
      self._step = jax.pmap(
          functools.partial(step_fn, axis_name=BATCH_AXIS), axis_name=BATCH_AXIS,
          in_axes=(None, 0), out_axes=None, donate_argnums=donate_argnums,
          devices=self.local_devices if jax.process_count() == 1 else None)
    elif parallelism == 'jit':
      all_devices = list(devices or jax.devices())
      self.num_devices = len(all_devices)
      self.mesh = Mesh(np.array(all_devices), (BATCH_AXIS,))
      replicated = NamedSharding(self.mesh, P())
      self._batch_sharding = NamedSharding(self.mesh, P(BATCH_AXIS))
      self._step = jax.jit(
          functools.partial(step_fn, axis_name=None),
          in_shardings=(replicated, self._batch_sharding),
          out_shardings=(replicated, replicated), donate_argnums=donate_argnums)
    else:
      raise ValueError(f"train.parallelism must be 'pmap' or 'jit', got {parallelism!r}")

  def put_state(self, state):
    """A copy of the state replicated over the mesh (as the step returns it: no per-step transfer).

    A copy, so donating it to the step never deletes the caller's arrays (device_put to several
    devices may alias the source buffer on its own device, even with may_alias=False).
    """
    return jax.device_put(jax.tree.map(jnp.copy, state), NamedSharding(self.mesh, P()))

  def put_batch(self, batch: Mapping[str, np.ndarray], local: bool = False):
    """A host batch as the compiled step's input: the global batch (B, ...), of which this
    process's slice is kept, or with `local` this process's rows only (what
    `TrainBatcher.batch(step, rows=process_rows(...))` builds)."""
    local = dict(batch) if local else process_batch(batch)
    if self.parallelism == 'pmap':
      return batching.shard_batch(local, len(self.local_devices))
    return {k: jax.make_array_from_process_local_data(self._batch_sharding, np.asarray(v))
            for k, v in local.items()}

  def __call__(self, state, batch):
    return self._step(state, batch)

  def lower(self, state, batch):
    """The lowered step (for cost analysis)."""
    return self._step.lower(state, batch)
