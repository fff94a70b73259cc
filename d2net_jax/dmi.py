"""D2-Net's `dmi` module lives in `d2net_jax/methods/d2net/dmi.py`; this name keeps working.

`from d2net_jax import dmi` (as the README showed before methods were plug-ins) gives the same
functions and classes.
"""
# pylint: disable=wildcard-import,unused-wildcard-import
from d2net_jax.methods.d2net import dmi as _impl
from d2net_jax.methods.d2net.dmi import *  # noqa: F401,F403


def __getattr__(name):
  return getattr(_impl, name)
