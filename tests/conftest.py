"""Test session set-up: 8 simulated CPU devices (for the multi-device tests), float32, CPU, and
XLA settings that compile quickly.

Compilation dominates the suite (thousands of small programs, each run a few times on tiny
shapes), so by default every test compiles with XLA's optimisations mostly off: JAX's
`jax_disable_most_optimizations` and, where this jaxlib knows them, the CPU backend's legacy
(non-MLIR) fusion emitters in one codegen piece. On the tiny training steps that is about 7x
less compile time (numbers below); the programs compute the same functions (no fast-math; every tolerance is
unchanged). The settings travel to the subprocesses the tests start (environment variables).
Set D2NET_TEST_XLA_DEFAULTS=1 to run the suite with JAX's and XLA's default compiler pipeline
(as users run the package).
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

# Must happen before JAX initialises its backends.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  os.environ['XLA_FLAGS'] = (_flags + ' --xla_force_host_platform_device_count=8').strip()

# XLA CPU flags that cut compile time (the one-device training steps of d2net, sal, dfe and mil
# at tests/train_fixtures.py's tiny config: 3.6 CPU s to compile all four with these flags and
# jax_disable_most_optimizations, 11.6 with the latter alone, 26 with neither; jaxlib 0.10.2). XLA aborts the process on a flag it does not know, so a new jaxlib that drops
# one is tried in a subprocess first (once per session: xdist workers inherit the environment).
FAST_COMPILE_XLA_FLAGS = ('--xla_cpu_use_fusion_emitters=false',
                          '--xla_cpu_parallel_codegen_split_count=1')
_PROBED = 'D2NET_TEST_XLA_FLAGS_PROBED'


def _xla_accepts(flags: str) -> bool:
  """Whether a fresh process with XLA_FLAGS=`flags` starts a CPU backend (unknown flags abort)."""
  env = dict(os.environ, XLA_FLAGS=flags)
  probe = subprocess.run([sys.executable, '-c', 'import jax; jax.devices()'], env=env,
                         capture_output=True, check=False)
  return probe.returncode == 0


if os.environ.get('D2NET_TEST_XLA_DEFAULTS', '0') in ('', '0') and _PROBED not in os.environ:
  os.environ[_PROBED] = '1'
  os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
  if 'jax' in sys.modules:  # Imported already (by a plugin): JAX read its environment then.
    sys.modules['jax'].config.update('jax_disable_most_optimizations',
                                     os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] == '1')
  _candidate = ' '.join([os.environ['XLA_FLAGS'], *FAST_COMPILE_XLA_FLAGS])
  if all(f.split('=')[0] not in os.environ['XLA_FLAGS'] for f in FAST_COMPILE_XLA_FLAGS) and (
      _xla_accepts(_candidate)):
    os.environ['XLA_FLAGS'] = _candidate

# JAX's persistent compilation cache in a folder made for this process and removed at its exit:
# tests build the same program through new jit objects (a StepRunner per test, a resumed run, the
# same smoke run in several modules), which the in-memory cache does not share. One folder per
# process (xdist worker), so no process reads an entry another is writing; subprocesses a test
# starts inherit it. A cache folder the caller set (JAX_COMPILATION_CACHE_DIR) is used as given.
_OWN_CACHE = 'D2NET_TEST_COMPILATION_CACHE'
if os.environ.get('D2NET_TEST_XLA_DEFAULTS', '0') in ('', '0') and (
    os.environ.get('JAX_COMPILATION_CACHE_DIR') in (None, os.environ.get(_OWN_CACHE))):
  _cache_dir = tempfile.mkdtemp(prefix='d2net-jax-tests-xla-cache-')
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)  # xdist workers: unconfigure.
  os.environ[_OWN_CACHE] = os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache_dir
  # Programs that compile in under 0.1 s are cheaper to compile again than to store.
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.1'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  if 'jax' in sys.modules:
    sys.modules['jax'].config.update('jax_compilation_cache_dir', _cache_dir)

import pathlib  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402


def pytest_unconfigure(config):
  """Removes this process's compilation cache (xdist workers end without running atexit)."""
  del config
  own = os.environ.get(_OWN_CACHE)
  if own and own == os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    shutil.rmtree(own, ignore_errors=True)


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
  (use with `pytestmark = pytest.mark.usefixtures('fast_compile')`). The session default
  already (module docstring) unless D2NET_TEST_XLA_DEFAULTS=1."""
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
