"""D2-Net's `model` module lives in `d2net_jax/methods/d2net/model.py`; this name keeps working.

`from d2net_jax import model` (as the README showed before methods were plug-ins) gives the same
functions and classes.
"""
# pylint: disable=wildcard-import,unused-wildcard-import
from d2net_jax.methods.d2net import model as _impl
from d2net_jax.methods.d2net.model import *  # noqa: F401,F403


def __getattr__(name):
  return getattr(_impl, name)
