"""Writing an output so that it is never left half-written: the whole new file or the old one.

`write_text` writes through a temporary file in the same folder and renames it over the target.
On failure (disk full, read-only folder, quota) the temporary file is removed and the OSError
names the target, with the cause in one line (`reason`). The HDF5 store (`hdf5_store.write_store`)
and the checkpoints (`checkpointing`) follow the same rule with their own temporary files.
"""

import errno
import os
import pathlib
import re
import threading


def reason(error: BaseException) -> str:
  """The cause of a failed write in a few words: the OS message of its errno ('No space left on
  device'; a tensorstore error's os_error_code too), else the 'error message' an HDF5 error
  carries, else its first line."""
  code = _errno(error)
  if code:
    return os.strerror(code)
  text = str(error)
  match = re.search(r"error message = '([^']+)'", text) or re.search(r'\[Errno \d+\] ([^\n:(]+)',
                                                                      text)
  if match:
    return match.group(1).strip()
  first = text.strip().splitlines()[0][:200] if text.strip() else ''
  return f'{type(error).__name__}: {first}' if first else type(error).__name__


def _errno(error: BaseException) -> int:
  """The OS error number of `error`: its errno, else the one a tensorstore error carries
  ("[os_error_code='28']"), else 0."""
  code = getattr(error, 'errno', None)
  if isinstance(code, int) and code > 0:
    return code
  match = re.search(r"os_error_code='?(\d+)", str(error))
  return int(match.group(1)) if match else 0


def temporary_path(path: pathlib.Path) -> pathlib.Path:
  """A hidden sibling of `path`, unique to this process and thread."""
  return path.with_name(f'.{path.name}.tmp-{os.getpid()}-{threading.get_ident()}')


def remove(path: pathlib.Path) -> None:
  """Removes a temporary file if it is there; never raises (on a read-only file system even the
  removal of a missing file fails, and must not replace the error being reported)."""
  try:
    path.unlink(missing_ok=True)
  except OSError:
    pass


def write_failed(path, error: BaseException, what: str = '') -> OSError:
  """The OSError to raise for a failed write of `path`: its errno, filename `path`, and a strerror
  that says the cause and that nothing was left half-written."""
  code = _errno(error) or errno.EIO
  what = f'{what} ' if what else ''
  return OSError(code, f'{what}not written ({reason(error)}); no partial file left', str(path))


def write_text(path, text: str) -> pathlib.Path:
  """Writes `text` to `path` atomically (module docstring); returns the path.

  Raises:
    OSError: the write failed; `filename` is `path`, `strerror` the cause in one line.
  """
  path = pathlib.Path(path)
  tmp = temporary_path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    raise write_failed(path, e) from e
  finally:
    remove(tmp)
  return path
