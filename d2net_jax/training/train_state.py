"""The training state pytree and the optimiser that updates it.

`TrainState` is a plain pytree (checkpointed whole by orbax): the parameters, the optax state, the
method's own non-parameter state (D2-Net: the running background reference `x_ref` of Eq. 8), the
step, the base PRNG key every per-step key is folded from, and a count of skipped (non-finite)
updates.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes.

  Attributes:
    step: int32 scalar, the number of steps taken (the next step's index).
    params: the model parameters.
    opt_state: the optax optimiser state.
    method_state: the method's non-parameter state, a pytree of arrays updated by its loss (no
      gradient): D2-Net {'x_ref': (D/2,)}, the running mean of background embeddings (Eq. 8).
    key: (2,) uint32 base PRNG key; step keys are `fold_in(key, step)`.
    num_skipped: int32 scalar, updates skipped so far because the loss or a gradient was not finite.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  method_state: Any
  key: jax.Array
  num_skipped: jax.Array

  @property
  def x_ref(self) -> jax.Array:
    """D2-Net's background reference, method_state['x_ref'] (the field's name before methods)."""
    return self.method_state['x_ref']


def learning_rate_schedule(train_config: ml_collections.ConfigDict):
  """'constant' (official code) or 'cosine' (decay to 0 at num_steps) learning rate."""
  c = train_config
  if c.lr_schedule == 'constant':
    return c.learning_rate
  if c.lr_schedule == 'cosine':
    return optax.cosine_decay_schedule(c.learning_rate, c.num_steps)
  raise ValueError(f"train.lr_schedule must be 'constant' or 'cosine', got {c.lr_schedule!r}")


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with L2 weight decay.

  'coupled' (official code, torch.optim.Adam(weight_decay=wd)): wd * param is added to the
  gradient before the Adam moments. 'decoupled': AdamW (the decay bypasses the moments).
  """
  c = train_config
  adam = dict(b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps)
  learning_rate = learning_rate_schedule(c)
  if c.weight_decay_mode == 'coupled':
    return optax.chain(
        optax.add_decayed_weights(c.weight_decay),
        optax.scale_by_adam(**adam),
        optax.scale_by_learning_rate(learning_rate),
    )
  if c.weight_decay_mode == 'decoupled':
    return optax.adamw(learning_rate, weight_decay=c.weight_decay, **adam)
  raise ValueError(
      f"train.weight_decay_mode must be 'coupled' or 'decoupled', got {c.weight_decay_mode!r}")


def init_params(model, feature_dim: int, key: jax.Array, length: int = 8):
  """Model parameters, initialised from a (1, length, feature_dim) dummy input."""
  features = jnp.zeros((1, length, feature_dim), jnp.float32)
  mask = jnp.ones((1, length), jnp.float32)
  return model.init({'params': key}, features, mask, train=False)['params']


def create_train_state(model, optimizer: optax.GradientTransformation, feature_dim: int,
                       seed: int, method_state: Any) -> TrainState:
  """A fresh state: parameters from `seed`, the method's initial state, step 0."""
  root = jax.random.PRNGKey(seed)
  init_key, train_key = jax.random.split(root)
  params = init_params(model, feature_dim, init_key)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      method_state=method_state,
      key=train_key,
      num_skipped=jnp.zeros((), jnp.int32),
  )
