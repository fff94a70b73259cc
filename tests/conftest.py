"""Test session set-up: 8 simulated CPU devices (for the multi-device tests), float32, CPU."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  os.environ['XLA_FLAGS'] = (_flags + ' --xla_force_host_platform_device_count=8').strip()

import pathlib  # noqa: E402
import subprocess  # noqa: E402

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
def small_disk(tmp_path):
  """`small_disk(kib)`: a folder on a new tmpfs of `kib` KiB, a disk that really fills up
  (unmounted after the test). Mounting needs root: the test is skipped, with the reason, else."""
  mounts = []

  def make(kib: int) -> pathlib.Path:
    if os.geteuid() != 0:
      pytest.skip('a full disk is a small tmpfs, and mounting one needs root')
    folder = tmp_path / f'disk{len(mounts)}'
    folder.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={kib}k', 'tmpfs', str(folder)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
      pytest.skip(f'cannot mount a tmpfs: {result.stderr.strip()}')
    mounts.append(folder)
    return folder

  yield make
  for folder in mounts:
    subprocess.run(['umount', '-l', str(folder)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
  """A folder nothing can be written into: a read-only tmpfs for root (whom permissions do not
  stop), a chmod 500 folder for anyone else."""
  folder = tmp_path / 'read_only'
  folder.mkdir()
  if os.geteuid() != 0:
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)
    return
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(folder)],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    pytest.skip(f'cannot mount a read-only tmpfs: {result.stderr.strip()}')
  yield folder
  subprocess.run(['umount', '-l', str(folder)], check=False)


@pytest.fixture
def x64():
  """float64 enabled for the test (finite-difference gradients), restored afterwards."""
  import jax  # pylint: disable=import-outside-toplevel
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  yield
  jax.config.update('jax_enable_x64', previous)
