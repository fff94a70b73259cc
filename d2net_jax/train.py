"""Training and evaluation of D2-Net: `train_and_evaluate(config, workdir)`.

Read top to bottom, the banner sections are the architecture: update step, input, model and state,
checkpoints and resume, evaluation, the loop. Everything a step needs is in `TrainState`, and the
data order is a pure function of (seed, step), so a run resumed from a checkpoint reaches the same
parameters as an uninterrupted one.
"""

import dataclasses
import functools
import json
import logging
import pathlib
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax

from d2net_jax import losses
from d2net_jax.train_state import TrainState

# ---------------------------------------------------------------------------------------------
# Update step.


def train_step(state: TrainState, batch: Dict[str, jax.Array], *, model, optimizer,
               loss_config: ml_collections.ConfigDict, skip_nonpositive_loss: bool = True,
               loss_fn: Callable[..., Any] = losses.d2net_loss,
               axis_name: Optional[str] = None):
  """One update from a batch ('features' (B, T, D), 'mask' (B, T), 'labels' (B, C)).

  With `axis_name` the batch is this device's part of the global batch, inside `jax.pmap`:
  `loss_fn` returns the global loss (batch-level terms gathered over the axis), the gradients are
  `lax.pmean`-ed and every device computes the same new state. Without it, the batch is global
  (single device, or `jax.jit` over a mesh).

  Keys: step_key = fold_in(state.key, step); the Eq. 3 pairing key comes from step_key alone
  (the same on every device: pairs are drawn over the global batch); the dropout key also folds
  in the device index, so dropout masks differ between device counts by construction.

  A non-finite loss or gradient (or, with `skip_nonpositive_loss`, a loss <= 0 as in the official
  code) leaves params, optimizer state and x_ref unchanged; the step still advances and
  `metrics['skipped']` is 1. Decided on device, no host round-trip.

  Returns (new_state, metrics): metrics are float32 scalars, the same on every device.
  """
  step_key = jax.random.fold_in(state.key, state.step)
  pairing_key, dropout_key = jax.random.split(step_key)
  if axis_name is not None:
    dropout_key = jax.random.fold_in(dropout_key, lax.axis_index(axis_name))

  def loss_and_aux(params):
    outputs = model.apply({'params': params}, batch['features'], batch['mask'], train=True,
                          rngs={'dropout': dropout_key})
    return loss_fn(outputs, batch, {'x_ref': state.x_ref, 'step': state.step}, loss_config,
                   pairing_key, axis_name=axis_name)

  (loss, aux), grads = jax.value_and_grad(loss_and_aux, has_aux=True)(state.params)
  if axis_name is not None:
    grads = lax.pmean(grads, axis_name)

  grad_norm = optax.tree.norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if skip_nonpositive_loss:
    ok &= loss > 0
  updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  keep_new = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  skipped = jnp.logical_not(ok).astype(jnp.int32)
  new_state = state.replace(
      step=state.step + 1,
      params=keep_new(new_params, state.params),
      opt_state=keep_new(new_opt_state, state.opt_state),
      x_ref=keep_new(aux['x_ref'], state.x_ref),
      num_skipped=state.num_skipped + skipped,
  )
  metrics = {k: v for k, v in aux.items() if k != 'x_ref' and jnp.ndim(v) == 0}
  metrics.update(loss=loss, grad_norm=grad_norm, skipped=skipped, num_skipped=new_state.num_skipped)
  return new_state, jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), metrics)


def make_step_fn(config: ml_collections.ConfigDict, model, optimizer,
                 loss_fn: Callable[..., Any] = losses.d2net_loss):
  """`train_step` with its dependencies bound: (state, batch, axis_name=None) -> (state, metrics)."""
  return functools.partial(train_step, model=model, optimizer=optimizer, loss_config=config.loss,
                           skip_nonpositive_loss=config.train.skip_nonpositive_loss,
                           loss_fn=loss_fn)
