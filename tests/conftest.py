"""Test session set-up: 8 simulated CPU devices (for the multi-device tests), float32, CPU."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  os.environ['XLA_FLAGS'] = (_flags + ' --xla_force_host_platform_device_count=8').strip()

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture
def shared_data():
  """../shared/data beside the checkout; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip('../shared/data is absent')
  return SHARED_DATA


@pytest.fixture(scope='module')
def fast_compile():
  """For modules that only compare numbers: skip most XLA optimisations to compile quickly
  (use with `pytestmark = pytest.mark.usefixtures('fast_compile')`)."""
  import jax  # pylint: disable=import-outside-toplevel
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)


@pytest.fixture
def x64():
  """float64 enabled for the test (finite-difference gradients), restored afterwards."""
  import jax  # pylint: disable=import-outside-toplevel
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  yield
  jax.config.update('jax_enable_x64', previous)
