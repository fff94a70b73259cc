"""`d2net-jax` in a child process, for the faults a test process cannot survive or observe from
inside: segfaults at interpreter exit, signals, the whole stderr a user sees."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED='1', JAX_PLATFORMS='cpu')


def command(*args) -> list[str]:
  return [sys.executable, '-m', 'd2net_jax.commands.cli', *map(str, args)]


def run(*args, cwd=None, timeout=120, env=None) -> subprocess.CompletedProcess:
  """`d2net-jax ARGS...` to its end: returncode, stdout, stderr (text); `env` adds variables."""
  return subprocess.run(command(*args), capture_output=True, text=True, env={**ENV, **(env or {})},
                        cwd=cwd, timeout=timeout, check=False)


def popen(*args, cwd=None, env=None) -> subprocess.Popen:
  return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**ENV, **(env or {})}, cwd=cwd)


def signal_when(process: subprocess.Popen, stream: str, starts: str, signum: int,
                timeout: float = 120) -> tuple[str, str]:
  """Sends `signum` to `process` once a line of its `stream` ('stdout' or 'stderr') starts with
  `starts` ('' : the first line), then waits for its end: (stdout, stderr) after that line."""
  try:
    for line in getattr(process, stream):
      if line.startswith(starts):
        break
    process.send_signal(signum)
    return process.communicate(timeout=timeout)
  finally:
    process.kill()


def last_line(err: str) -> str:
  lines = [line for line in err.strip().splitlines() if line.strip()]
  return lines[-1] if lines else ''


def assert_clean_failure(returncode: int, err: str, code: int, *names: str) -> str:
  """Exit status `code`; no traceback, no 'Exception ignored'; the last stderr line names every
  one of `names`. Returns that line."""
  assert returncode == code, (returncode, err[-3000:])
  assert 'Traceback' not in err and 'Exception ignored' not in err, err[-3000:]
  line = last_line(err)
  for name in names:
    assert str(name) in line, (name, line)
  return line
