r"""Extraction speed (issue 22): I3D snippets per second, and the fraction of the FLOP/s of a plain
big convolution timed in the same process.

  python experiments/bench_extract.py                        # batch sizes 1 and 8, one video
  python experiments/bench_extract.py --batch-sizes 1,4,8 --repeats 5 --video my.mp4

Rows:
- `I3D forward, batch B`: the jitted feature forward of `Extractor` (uint8 RGB snippets of 16 x
  224 x 224 -> 1024-d) on random frames, after compilation: snippets/s, the achieved FLOP/s and
  its fraction of the convolution's FLOP/s below. FLOPs per snippet: XLA's cost analysis of the
  compiled forward (which counts a 'SAME'-padded convolution's multiply-adds with the zero padding
  left out), and the analytic count of every convolution including the padding
  (`i3d.conv_flops`, 2 x multiply-adds; the I3D paper's 108 GFLOPs at 64 frames is its
  multiply-adds).
- `convolution`: one 3x3x3 convolution of (1, 8, 56, 56, 192) -> 192 channels ('SAME'; Conv3d_2c
  / Mixed_3b's size), the reference FLOP/s of this machine and backend.
- `extract (decode + resize + I3D)`: `d2net-jax extract`'s per-video loop on a real video
  (default: the opencv-doc footage cup.mp4.gz, 13 snippets) at the largest batch size: snippets
  per wall second and per CPU second of this process (the cores may be shared).
"""

from __future__ import annotations

import argparse
import gzip
import os
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

CUP = pathlib.Path('/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz')


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int) -> float:
  """Median wall seconds of `fn()` (blocked until ready) over `repeats` calls after one warm-up."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def conv_flops_per_second(repeats: int) -> tuple[float, float]:
  """(FLOP/s, FLOPs) of the reference convolution."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 8, 56, 56, 192)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 192, 192)) * 0.01, jnp.float32)
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1, 1), 'SAME', dimension_numbers=('NTHWC', 'THWIO', 'NTHWC')))
  flops = 2.0 * 8 * 56 * 56 * 192 * 192 * 27
  return flops / timed(lambda: conv(x, w), repeats), flops


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch-sizes', default='1,8')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--video', type=pathlib.Path, default=None,
                      help='video for the end-to-end row (default: opencv-doc cup.mp4.gz)')
  parser.add_argument('--out', type=pathlib.Path, default=None, help='also write Markdown here')
  args = parser.parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  from d2net_jax.video import extract, i3d, weights  # pylint: disable=import-outside-toplevel
  meta = _common.run_metadata(argv)
  load = os.getloadavg()[0]
  variables = weights.load_kinetics_rgb()
  settings = extract.Settings(rgb_weights_sha256=weights.KINETICS_RGB_SHA256)
  analytic = i3d.conv_flops((16, 224, 224))
  conv_rate, _ = conv_flops_per_second(args.repeats)
  rows = [['convolution 3x3x3, (1, 8, 56, 56, 192) -> 192', '-', '-',
           f'{conv_rate / 1e9:.1f}', '100%']]
  sizes = [int(b) for b in args.batch_sizes.split(',')]
  extractor = None
  for batch in sizes:
    extractor = extract.Extractor(settings, variables, batch_size=batch,
                                  devices=jax.local_devices()[:1])
    x = np.random.default_rng(1).integers(0, 256, (batch, 16, 224, 224, 3), dtype=np.uint8)
    compiled = extractor._forward.lower(extractor._variables['rgb'], x).compile()  # pylint: disable=protected-access
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla = float(cost.get('flops', float('nan'))) / batch
    seconds = timed(lambda: compiled(extractor._variables['rgb'], x), args.repeats)  # pylint: disable=protected-access
    rate = batch / seconds
    rows.append([f'I3D forward, batch {batch}', f'{rate:.2f}',
                 f'{xla / 1e9:.1f} (XLA), {analytic / 1e9:.1f} (analytic)',
                 f'{rate * xla / 1e9:.1f} (XLA count)', f'{rate * xla / conv_rate:.0%}'])
  video = args.video
  with tempfile.TemporaryDirectory() as scratch:
    if video is None and CUP.is_file():
      video = pathlib.Path(scratch) / 'cup.mp4'
      video.write_bytes(gzip.decompress(CUP.read_bytes()))
    if video is not None:
      extractor.video_features(video)  # Compiles the remainder sizes.
      wall, cpu = time.perf_counter(), cpu_seconds()
      features, _ = extractor.video_features(video)
      wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
      rows.append([f'extract {video.name} (decode + resize + I3D), batch {sizes[-1]}',
                   f'{len(features) / wall:.2f} per wall s, {len(features) / cpu:.2f} per CPU s',
                   '-', '-', '-'])
  table = _common.markdown_table(['what', 'snippets/s', 'GFLOPs per snippet', 'GFLOP/s',
                                  'of the convolution'], rows)
  notes = [f'load average at the start: {load:.1f} (other processes share the cores: the '
           'fractions, measured in one process, move less than the rates)']
  text = f'{_common.markdown_header("I3D feature extraction speed", meta, notes)}\n{table}\n'
  print(text)
  if args.out:
    args.out.write_text(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
