"""Every video of every subset read and validated in one pass: `d2net-jax check` and train's start.

`find_problems(dataset)` loads each video's features (the readers validate shape, feature dim,
finite values, snippet count) and collects every failure, so a bad test video is found before
hours of training, not after. `check_for_run` does the same at the start of `train`, once per
data version: a passing check leaves WORKDIR/data_check.json with a fingerprint of the data files
(paths, sizes, modification times), and a later start on unchanged data skips the pass.
The command line is `d2net_jax/commands/check.py`.
"""

import json
import pathlib
import time
from typing import Callable, List, Optional

from d2net_jax.data.records import DataError, Dataset

MARKER = 'data_check.json'


def find_problems(dataset: Dataset, log: Optional[Callable[[str], None]] = None) -> List[str]:
  """One line per video whose features cannot be read or are invalid (all subsets)."""
  problems, t0 = [], time.perf_counter()
  for i, video in enumerate(dataset.videos):
    try:
      video.features()
    except (DataError, OSError, ValueError) as e:
      problems.append(f'{video.subset}/{video.video_id}: {e}')
    if log is not None and time.perf_counter() - t0 > 5 and (i + 1) % 100 == 0:
      log(f'  checked {i + 1} of {len(dataset.videos)} videos')
  return problems


def fingerprint(path) -> dict:
  """{file: [size, mtime_ns]} of the data file, or of every file under a data folder."""
  path = pathlib.Path(path).expanduser().resolve()
  files = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
  return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}


def _data_location(config, workdir: pathlib.Path) -> Optional[pathlib.Path]:
  if config.data.kind != 'synthetic':
    return pathlib.Path(config.data.path)
  folder = pathlib.Path(config.data.path) if config.data.path else workdir / 'data'
  return folder if folder.exists() else None


def check_for_run(config, dataset: Dataset, workdir, log=print) -> None:
  """Raises DataError (one line: the count and the first problem) unless every video reads.

  Skipped when WORKDIR/data_check.json records a passing check of the same data files.
  """
  workdir = pathlib.Path(workdir)
  location = _data_location(config, workdir)
  marker = workdir / MARKER
  prints = fingerprint(location) if location is not None else None
  if prints is not None and marker.is_file():
    try:
      if json.loads(marker.read_text()).get('files') == prints:
        return
    except ValueError:
      pass
  t0 = time.perf_counter()
  problems = find_problems(dataset, log)
  if problems:
    raise DataError(f'{len(problems)} of {len(dataset.videos)} videos cannot be used, first '
                    f'{problems[0]} (`d2net-jax check --config ...` lists them all)')
  if prints is not None:
    marker.write_text(json.dumps({'files': prints, 'num_videos': len(dataset.videos)}) + '\n')
  seconds = time.perf_counter() - t0
  if seconds > 2:
    log(f'Checked all {len(dataset.videos)} videos in {seconds:.0f} s (skipped next time).')
