"""The WTAL methods of the framework, one folder each, registered by name.

  d2net/   D2-Net (ICCV 2021): discriminative embeddings, denoised activations (pDMI)
  mil/     the plain top-k MIL baseline (the smallest example of the interface)
  sal/     SAL (Neural Networks 2024): multilevel semantics, adaptive actionness learning
  co2net/  CO2-Net (ACM MM 2021): cross-modal consensus modules, co-activity similarity
  dfe/     DFE (ICASSP 2023): local / global feature enhancement over a base method

`get(config.method)` returns a `Method` (see base.py for the interface); `names()` lists them.
The per-method defaults that may come from a wrapped method (DFE's base) are read per config:
`resolve_localizer`, `resolve_sampling`, `resolve_batch_sampler`, `resolve_test_sampling`,
`preset_overrides`, `resolve_smoke_overrides`, `resolve_dropout_fields`. Importing this package
registers the built-in methods.
"""

from d2net_jax.methods.base import (  # noqa: F401
    Method, all_methods, get, method_chain, names, preset_overrides, register,
    resolve_dropout_fields, resolve_localizer, resolve_sampling, resolve_smoke_overrides)

# Registration order = the order of tables and `--help` texts.
# (Not sorted: DFE imports the methods it wraps, so it comes last.)
from d2net_jax.methods import d2net  # noqa: F401,E402  pylint: disable=wrong-import-position
from d2net_jax.methods import mil  # noqa: F401,E402  pylint: disable=wrong-import-position
from d2net_jax.methods import sal  # noqa: F401,E402  pylint: disable=wrong-import-position
from d2net_jax.methods import co2net  # noqa: F401,E402  pylint: disable=wrong-import-position
from d2net_jax.methods import dfe  # noqa: F401,E402  pylint: disable=wrong-import-position


def _declared(config, field: str):
  """The outermost non-None `field` of `config.method`'s chain (a wrapper: its base's), or None."""
  for method in reversed(method_chain(config)):
    if getattr(method, field) is not None:
      return getattr(method, field)
  return None


def resolve_batch_sampler(config) -> str:
  """`config.data.sampler`, with 'auto' replaced by the method's `batch_sampler` ('uniform' when
  no method of its chain sets one). The trainer hands it to `TrainBatcher(sampler=...)`."""
  if config.data.sampler != 'auto':
    return config.data.sampler
  return _declared(config, 'batch_sampler') or 'uniform'


def resolve_test_sampling(config) -> str:
  """`config.data.test_sampling`, with 'auto' replaced by the method's `test_sampling`, else
  'resample' when training resamples (`resolve_sampling`) and 'whole' otherwise."""
  if config.data.test_sampling != 'auto':
    return config.data.test_sampling
  return _declared(config, 'test_sampling') or (
      'resample' if resolve_sampling(config) == 'resample' else 'whole')


def config_sections():
  """{section: ConfigDict} of every registered method, for the config schema."""
  sections = {}
  for method in all_methods():
    for name, section in method.config_sections().items():
      if name in sections:
        raise ValueError(f'config section {name!r} claimed by two methods')
      sections[name] = section
  return sections
