r"""A real-footage WTAL benchmark small enough for the tests (issue 22): untrimmed videos composed
from the footage Debian's `opencv-doc` package ships, their I3D features extracted once with
`d2net-jax extract` and kept in experiments/real_footage/.

  apt-get install opencv-doc && pip install -e '.[video]'
  python experiments/real_footage.py                           # compose, extract, write (~1 h)
  python experiments/real_footage.py --compose-only --workdir /tmp/rf   # only the videos

Footage (examples/data/ and opencv4/html/ of opencv-doc 4.6): backgrounds `vtest.avi` (a street
seen from above, pedestrians, 79.5 s) and `tree.avi` (a tree, a lawn, 68 frames over 29.6 s); the
actions, one class each: `cup` (cup.mp4.gz: a hand turning a black cup, 8.1 s), `box`
(box.mp4.gz: a hand holding a box, 15.2 s) and `talking` (Megamind.avi: an animated face
talking, 11.3 s, its black first second left out).

Each video: a background stretch (10-18 s, random start) with 1-3 action instances (1.5-4 s
each, at least 0.8 s apart; one class, the classes in turn, two in every fifth video) laid over
it: the action
clip, sped up or slowed down (x0.8-1.25), flipped, zoomed (random crop), its brightness and
contrast changed, either over the whole frame or as a picture in the picture (55-85% of the
frame, random position). The training videos take their backgrounds and action stretches from
the first 60% of each clip, the test videos from the last 40%: no test frame is seen in training.
Composed at 25 fps, 340 x 256, H.264 (libx264, CRF 18).

The ground truth is the instances' spans (seconds). Features: the Kinetics-400 RGB I3D, the
field's THUMOS14 snippets (16 frames at 25 fps, 0.64 s), RGB only (no flow weights here):
1024-d, stored as float16 (gzip). results.md says what the run made and what I3D's Kinetics
classifier says of each class's snippets.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

OUT = _common.ROOT / 'experiments' / 'real_footage'
FOOTAGE = pathlib.Path('/usr/share/doc/opencv-doc')
BACKGROUNDS = {'street': 'examples/data/vtest.avi', 'tree': 'examples/data/tree.avi'}
ACTIONS = {'cup': 'opencv4/html/cup.mp4.gz', 'box': 'opencv4/html/box.mp4.gz',
           'talking': 'examples/data/Megamind.avi'}
SKIP_START_S = {'talking': 1.2}  # Megamind.avi opens on black frames.
SKIP_END_S = {'tree': 4.0}  # A hand covers the lens at the end of tree.avi.
FPS = 25
HEIGHT, WIDTH = 256, 340
TRAIN_FRACTION = 0.6


def footage_paths(root: pathlib.Path, scratch: pathlib.Path) -> dict:
  """{name: readable video file} (the .gz ones unpacked into `scratch`)."""
  paths = {}
  for name, relative in {**BACKGROUNDS, **ACTIONS}.items():
    path = root / relative
    if not path.is_file():
      raise SystemExit(f'{path}: missing; install the footage with `apt-get install opencv-doc`')
    if path.suffix == '.gz':
      target = scratch / path.stem
      with gzip.open(path, 'rb') as f, open(target, 'wb') as out:
        shutil.copyfileobj(f, out)
      path = target
    paths[name] = path
  return paths


def load_clip(path, name) -> np.ndarray:
  """(N, 256, W, 3) uint8 frames at 25 fps, the ends listed above cut."""
  from d2net_jax.video import decode  # pylint: disable=import-outside-toplevel
  frames = np.stack(list(decode.VideoFrames(path, FPS, HEIGHT)))
  start = round(SKIP_START_S.get(name, 0) * FPS)
  end = len(frames) - round(SKIP_END_S.get(name, 0) * FPS)
  return frames[start:end]


def augment(frames: np.ndarray, rng, height: int, width: int) -> np.ndarray:
  """A random zoom (crop of 80-100% of the side), flip, brightness and contrast, resized to
  (height, width)."""
  import cv2  # pylint: disable=import-outside-toplevel
  h, w = frames.shape[1:3]
  scale = rng.uniform(0.8, 1.0)
  ch, cw = int(h * scale), int(min(w, h * scale * width / height))
  top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
  flip, gain, offset = rng.random() < 0.5, rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
  out = np.empty((len(frames), height, width, 3), np.uint8)
  for i, frame in enumerate(frames):
    crop = frame[top:top + ch, left:left + cw]
    crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    crop = crop[:, ::-1] if flip else crop
    out[i] = np.clip(crop.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
  return out


def stretch(clip: np.ndarray, part: str, seconds: float, speed: float, rng) -> np.ndarray:
  """`seconds` of `clip` at `speed`, from a random start inside its train / test part."""
  n = len(clip)
  lo, hi = (0, int(n * TRAIN_FRACTION)) if part == 'train' else (int(n * TRAIN_FRACTION), n)
  need = min(int(round(seconds * FPS * speed)), hi - lo)
  start = rng.integers(lo, hi - need + 1)
  index = start + np.minimum((np.arange(round(need / speed)) * speed).astype(int), need - 1)
  return clip[index]


def compose_video(clips: dict, part: str, classes: list, rng) -> tuple[np.ndarray, list]:
  """One untrimmed video (T, 256, 340, 3) with instances of `classes`, and the instances
  [(class, start_s, end_s)]."""
  background = rng.choice(list(BACKGROUNDS))
  length_s = rng.uniform(10, 18)
  available = len(clips[background]) * (TRAIN_FRACTION if part == 'train' else
                                        1 - TRAIN_FRACTION) / FPS
  frames = augment(stretch(clips[background], part, min(length_s, available), 1.0, rng), rng,
                   HEIGHT, WIDTH)
  total = len(frames)
  instances, taken = [], np.zeros(total, bool)
  for _ in range(int(rng.integers(len(classes), 4))):
    name = classes[len(instances) % len(classes)]
    action = stretch(clips[name], part, rng.uniform(1.5, 4.0), rng.uniform(0.8, 1.25), rng)
    n = min(len(action), total // 3)
    free = [s for s in range(0, total - n) if not taken[max(0, s - 20):s + n + 20].any()]
    if not free:
      continue
    start = int(rng.choice(free))
    pip = rng.random() < 0.5
    scale = rng.uniform(0.55, 0.85) if pip else 1.0
    h, w = int(HEIGHT * scale) // 2 * 2, int(WIDTH * scale) // 2 * 2
    top, left = rng.integers(0, HEIGHT - h + 1), rng.integers(0, WIDTH - w + 1)
    frames[start:start + n, top:top + h, left:left + w] = augment(action[:n], rng, h, w)
    taken[start:start + n] = True
    instances.append((name, start / FPS, (start + n) / FPS))
  return frames, sorted(instances, key=lambda x: x[1])


def write_mp4(path: pathlib.Path, frames: np.ndarray) -> None:
  import av  # pylint: disable=import-outside-toplevel
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('libx264', rate=FPS, options={'crf': '18',
                                                                'preset': 'veryfast'})
    stream.height, stream.width, stream.pix_fmt = HEIGHT, WIDTH, 'yuv420p'
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def compose(workdir: pathlib.Path, num_train: int, num_test: int, seed: int,
            footage: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
  """Writes workdir/videos/*.mp4, labels.csv and segments.csv; returns their paths."""
  videos = workdir / 'videos'
  videos.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  with tempfile.TemporaryDirectory() as scratch:
    clips = {name: load_clip(path, name)
             for name, path in footage_paths(footage, pathlib.Path(scratch)).items()}
  labels, segments = [], []
  names = list(ACTIONS)
  for index in range(num_train + num_test):
    part = 'train' if index < num_train else 'test'
    video_id = f'{part}_{index:03d}'
    i = index if part == 'train' else index - num_train  # Classes in turn, in each subset;
    classes = [names[i % 3]] + ([names[(i + 1) % 3]] if i % 5 == 4 else [])  # a fifth: two.
    frames, instances = compose_video(clips, part, classes, rng)
    write_mp4(videos / f'{video_id}.mp4', frames)
    labels.append((video_id, ';'.join(sorted({c for c, _, _ in instances})), part))
    segments += [(video_id, c, f'{s:.2f}', f'{e:.2f}') for c, s, e in instances]
    print(f'{video_id}: {len(frames) / FPS:.1f} s, {instances}', flush=True)
  labels_path, segments_path = workdir / 'labels.csv', workdir / 'segments.csv'
  for path, header, rows in ((labels_path, ('video', 'labels', 'subset'), labels),
                             (segments_path, ('video', 'label', 'start', 'end'), segments)):
    with open(path, 'w', newline='') as f:
      csv.writer(f).writerows([header] + rows)
  return videos, labels_path, segments_path


def kinetics_summary(store: pathlib.Path, label_map) -> list[str]:
  """Per class (and background): the Kinetics-400 classes I3D's own classifier gives its test
  snippets most often, from the stored features (logits = W feature + b at 16 x 224 x 224)."""
  from d2net_jax.data import hdf5_store  # pylint: disable=import-outside-toplevel
  from d2net_jax.video import i3d, weights  # pylint: disable=import-outside-toplevel
  layer = weights.load_kinetics_rgb()['params'][i3d.LOGITS]['conv_3d']
  kernel, bias = layer['kernel'].reshape(1024, -1), layer['bias']
  names = label_map.read_text().splitlines() if label_map else [str(i) for i in range(400)]
  dataset = hdf5_store.read_store(store)
  top = {}
  for video in dataset.videos:
    features = video.features()
    centers = (np.arange(len(features)) + 0.5) * video.seconds_per_snippet
    kind = np.full(len(features), 'background', object)
    for (s, e), c in zip(video.segments, video.segment_classes):
      kind[(centers >= s) & (centers < e)] = dataset.class_names[c]
    for k, label in zip(kind, (features @ kernel + bias).argmax(1)):
      top.setdefault(k, []).append(names[label])
  lines = []
  for k, found in sorted(top.items()):
    values, counts = np.unique(found, return_counts=True)
    order = np.argsort(-counts)[:3]
    lines.append(f'{k} ({len(found)} snippets): ' + ', '.join(
        f'{values[i]} {counts[i] / len(found):.0%}' for i in order))
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', type=pathlib.Path, default=pathlib.Path('runs/real_footage'),
                      help='composed videos and the resumable features folder')
  parser.add_argument('--out', type=pathlib.Path, default=OUT)
  parser.add_argument('--footage', type=pathlib.Path, default=FOOTAGE)
  parser.add_argument('--num-train', type=int, default=24)
  parser.add_argument('--num-test', type=int, default=16)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--compose-only', action='store_true')
  parser.add_argument('--label-map', type=pathlib.Path, default=None,
                      help="Kinetics-400 class names, one per line (kinetics-i3d's "
                      'data/label_map.txt), for the summary')
  args = parser.parse_args(argv)
  meta = _common.run_metadata(argv)
  start = time.time()
  videos, labels, segments = compose(args.workdir, args.num_train, args.num_test, args.seed,
                                     args.footage)
  if args.compose_only:
    return 0
  from d2net_jax.commands import extract  # pylint: disable=import-outside-toplevel
  args.out.mkdir(parents=True, exist_ok=True)
  store = args.out / 'real_footage.h5'
  code = extract.main([str(videos), '--out', str(store), '--labels', str(labels),
                       '--segments', str(segments), '--gt-out', str(args.out / 'gt.json'),
                       '--features-dir', str(args.workdir / 'features'),
                       '--feature-dtype', 'float16', '--compression', 'gzip',
                       '--batch-size', str(args.batch_size), '--name', 'real_footage'])
  if code:
    return code
  shutil.copy(labels, args.out / 'labels.csv')
  shutil.copy(segments, args.out / 'segments.csv')
  meta['wall_s'] = time.time() - start
  infos = [json.loads(p.read_text()) for p in sorted((args.workdir / 'features').glob('*.json'))
           if p.name != 'extractor.json']
  notes = [f'{len(infos)} videos ({args.num_train} train, {args.num_test} test), '
           f'{sum(i["num_snippets"] for i in infos)} snippets, '
           f'{sum(i["duration"] for i in infos) / 60:.1f} min of video, classes '
           f'{", ".join(ACTIONS)}',
           f'store: {store.stat().st_size / 1e6:.1f} MB (float16, gzip)']
  text = _common.markdown_header('Real-footage benchmark (opencv-doc footage, I3D RGB)', meta,
                                 notes)
  text += ('\nI3D\'s Kinetics-400 classifier on the stored snippet features (most frequent top-1 '
           'classes, all videos):\n\n' + '\n'.join(
               f'- {line}' for line in kinetics_summary(store, args.label_map)) + '\n')
  (args.out / 'results.md').write_text(text)
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
