r"""How many evaluation programs a dataset compiles, and at what padding, per bucket mode.

  python experiments/bench_eval_programs.py [--bucket 64] [--max-programs 8]

Evaluation pads every whole video to one of a few lengths; each length is one XLA program per
batch size. For each dataset this prints, per bucket mode ('multiple', 'pow2', 'fitted'), the
programs compiled and the padding (padded snippets / real snippets - 1). Datasets: the real
THUMOS14 test and ActivityNet1.2 validation annotations when ../shared/data is beside the checkout
(T = int(duration / 0.64), the I3D feature timing).
Methods that resample every video to a fixed length (data.sampling='resample': SAL) compile one
program whatever the mode; the table is for 'crop' methods (D2-Net, mil).
"""

import argparse
import pathlib

import numpy as np

from d2net_jax.data import batching
from d2net_jax.data.records import VideoRecord

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared' / 'data'


def _records(lengths):
  return [VideoRecord(f'v{i}', 'test', np.zeros(1, np.float32), np.zeros((0, 2)),
                      np.zeros(0, np.int32), n * 0.64, 0.64, int(n), load=lambda: None)
          for i, n in enumerate(lengths)]


def real_lengths(name, subset):
  folder = SHARED / name
  if not folder.is_dir():
    return None
  durations = np.load(folder / 'duration.npy', allow_pickle=True).astype(float).reshape(-1)
  subsets = np.load(folder / 'subset.npy', allow_pickle=True).astype(str)
  return [max(1, int(d / 0.64)) for d, s in zip(durations, subsets) if s == subset]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--bucket', type=int, default=64)
  parser.add_argument('--max-programs', type=int, default=8)
  args = parser.parse_args()
  datasets = {
      'THUMOS14 test (real annotations)': real_lengths('thumos14', 'test'),
      'ActivityNet1.2 validation (real annotations)': real_lengths('activitynet12', 'validation'),
  }
  print(f'bucket {args.bucket}, fitted: at most {args.max_programs} programs\n')
  print('| dataset | videos | longest | multiple | pow2 | fitted |')
  print('|---|---|---|---|---|---|')
  for name, lengths in datasets.items():
    if lengths is None:
      print(f'| {name} | - | - | ../shared/data absent | | |')
      continue
    videos = _records(lengths)
    cells = []
    for mode in ('multiple', 'pow2', 'fitted'):
      padded = batching.padded_lengths(videos, args.bucket, mode, args.max_programs)
      programs = len(set(padded))
      padding = sum(padded) / sum(lengths) - 1
      cells.append(f'{programs} programs, {100 * padding:.0f}% padding')
    print(f'| {name} | {len(lengths)} | {max(lengths)} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
