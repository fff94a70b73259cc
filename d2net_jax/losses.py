"""D2-Net's losses live in `d2net_jax/methods/d2net/losses.py` (the terms) and `objective.py` (the
training loss that combines them); this documented name keeps both reachable.

`from d2net_jax import losses` (as the README showed before methods were plug-ins) gives the same
functions and classes: `losses.d2net_loss`, `losses.initial_state`, `losses.pdmi_loss`, ...
"""
# pylint: disable=wildcard-import,unused-wildcard-import
from d2net_jax.methods.d2net import losses as _terms
from d2net_jax.methods.d2net.losses import *  # noqa: F401,F403
from d2net_jax.methods.d2net.objective import d2net_loss, denoising_schedule, initial_state  # noqa: F401


def __getattr__(name):  # Every other name of the terms' module too (e.g. `guarded`).
  return getattr(_terms, name)
