"""How hard is the synthetic benchmark? mAP of reference localizers on its test videos.

  .venv/bin/python experiments/synthetic_baselines.py [--preset thumos14_like] [--feature-dim 256]
      [--seed 0] [--steps 1500] [--noise-scale 1.0]

Rows of the table (detection mAP in %, d2net_jax.evaluation.mean_ap, tIoU 0.1:0.7):
  perfect           the ground truth itself as detections (score 1): the ceiling, mAP 100.
  GT as TCAM        the ground truth as a binary snippet-level TCAM through the localizer below:
                    the ceiling of that localizer (neighbouring instances merge, snippet edges).
  chance            per test video, random segments (lengths drawn from the training instances)
                    of random classes: the floor.
  chance, true cls  the same segments labelled with the video's true classes: localisation alone
                    at chance.
  MIL (weak)        a linear snippet classifier (D -> C) trained with the weak labels only: mean
                    of the top-k snippet logits (k = ceil(T / 8)), binary cross-entropy, Adam. Its
                    sigmoid class activations go through the D2-Net localizer (d2net_jax.localize,
                    official settings, attention = 1): thresholds, connected runs, outer-inner
                    contrast, NMS. Also reported: its video-level classification mAP.
  linear (strong)   the same linear classifier trained with per-snippet labels (full
                    supervision, softmax with a background class): what a linear read-out
                    of the features can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from d2net_jax import config as config_lib
from d2net_jax import localize
from d2net_jax.data import batching
from d2net_jax.data import synthetic
from d2net_jax.data.records import VideoRecord
from d2net_jax.evaluation import mean_ap as evaluation


def perfect_detections(videos):
  return {v.video_id: [(int(c), float(s), float(e), 1.0)
                       for (s, e), c in zip(v.segments, v.segment_classes)] for v in videos}


def oracle_tcam_detections(videos, num_classes, localize_config):
  """The ground truth as a binary TCAM (snippets inside an instance = 1) through the localizer."""
  out = {}
  for v in videos:
    tcam = np.zeros((v.num_snippets, num_classes), np.float32)
    for (s, e), c in zip(v.segments, v.segment_classes):
      a = int(s / v.seconds_per_snippet)
      b = max(a + 1, int(np.ceil(e / v.seconds_per_snippet)))
      tcam[a:b, c] = 1.0
    out[v.video_id] = localize.localize_video(tcam, np.ones(v.num_snippets, np.float32),
                                              v.seconds_per_snippet, localize_config)
  return out


def chance_detections(videos, train_videos, num_classes, rng, per_video=30, true_classes=False):
  lengths = np.concatenate([np.diff(v.segments, axis=1)[:, 0] for v in train_videos])
  out = {}
  for v in videos:
    rows = []
    present = np.flatnonzero(v.labels)
    for _ in range(per_video):
      length = min(float(rng.choice(lengths)), v.duration)
      start = rng.uniform(0, v.duration - length)
      if true_classes and present.size:
        c = int(rng.choice(present))
      else:
        c = int(rng.integers(num_classes))
      rows.append((c, start, start + length, float(rng.random())))
    out[v.video_id] = rows
  return out


def topk_mean(logits, mask, ratio=8):
  """(B, T, C), (B, T) -> (B, C): mean of the top ceil(s / ratio) valid logits per class."""
  s = mask.sum(1)
  k = jnp.maximum(1, jnp.ceil(s / ratio))
  masked = jnp.where(mask[..., None] > 0, logits, -1e9)
  ranked = -jnp.sort(-masked, axis=1)
  take = (jnp.arange(logits.shape[1])[None, :] < k[:, None]).astype(logits.dtype)
  ranked = jnp.where(take[..., None] > 0, ranked, 0.0)
  return ranked.sum(1) / k[:, None]


def train_linear(batcher, feature_dim, num_classes, steps, lr, strong=False, seed=0):
  """Linear snippet classifier: weak (top-k MIL + BCE on the video labels) or, with `strong`,
  softmax over C classes + background on per-snippet targets stored as the last feature column."""
  key = jax.random.PRNGKey(seed)
  num_out = num_classes + (1 if strong else 0)
  # Bias at the log-odds of the base rate, so the steps go to the weights from the start.
  prior = np.mean([v.labels for v in batcher.videos], axis=0).clip(1e-3, 1 - 1e-3)
  bias = np.zeros(num_out) if strong else np.log(prior / (1 - prior))
  params = {'w': 0.01 * jax.random.normal(key, (feature_dim, num_out)),
            'b': jnp.asarray(bias, jnp.float32)}
  opt = optax.adamw(lr, weight_decay=1e-4)
  opt_state = opt.init(params)

  def weak_loss(p, batch):
    logits = batch['features'] @ p['w'] + p['b']
    video = topk_mean(logits, batch['mask'])
    return optax.sigmoid_binary_cross_entropy(video, batch['labels']).mean()

  def strong_loss(p, batch):
    features, targets = batch['features'][..., :-1], batch['features'][..., -1]
    logits = features @ p['w'] + p['b']
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets.astype(jnp.int32))
    return (ce * batch['mask']).sum() / batch['mask'].sum()

  loss_fn = strong_loss if strong else weak_loss

  @jax.jit
  def step(p, s, batch):
    loss, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  with batcher.iterate(0, num_steps=steps) as batches:
    for batch in batches:
      params, opt_state, loss = step(params, opt_state, batch)
  return jax.device_get(params), float(loss)


def snippet_targets(video, num_classes):
  """(T,) class of each snippet (background = num_classes), nearest-snippet rounding."""
  target = np.full(video.num_snippets, num_classes, np.int32)
  for (s, e), c in zip(video.segments, video.segment_classes):
    a = int(np.floor(s / video.seconds_per_snippet + 0.5))
    b = max(a + 1, int(np.floor(e / video.seconds_per_snippet + 0.5)))
    target[a:b] = c
  return target


def mil_detections(params, videos, features, localize_config):
  out = {}
  scores, labels = [], []
  for v, x in zip(videos, features):
    logits = x @ params['w'] + params['b']
    cas = 1 / (1 + np.exp(-logits))
    k = max(1, int(np.ceil(len(x) / 8)))
    video_logits = -np.sort(-logits, axis=0)[:k].mean(0)
    scores.append(1 / (1 + np.exp(-video_logits)))
    labels.append(v.labels)
    found = localize.localize_video(cas.astype(np.float32), np.ones(len(x), np.float32),
                                    v.seconds_per_snippet, localize_config)
    out[v.video_id] = found
  return out, classification_map(np.array(scores), np.array(labels))


def strong_detections(params, videos, features, localize_config, num_classes):
  out = {}
  for v, x in zip(videos, features):
    logits = x @ params['w'] + params['b']
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = (e / e.sum(1, keepdims=True))[:, :num_classes]
    out[v.video_id] = localize.localize_video(prob.astype(np.float32),
                                              np.ones(len(x), np.float32),
                                              v.seconds_per_snippet, localize_config)
  return out


def classification_map(scores, labels):
  aps = []
  for c in range(labels.shape[1]):
    if labels[:, c].sum() == 0:
      continue
    order = np.argsort(-scores[:, c])
    hits = labels[order, c] > 0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    aps.append(precision[hits].mean())
  return float(np.mean(aps))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='thumos14_like')
  parser.add_argument('--feature-dim', type=int, default=256)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num-train', type=int, default=-1)
  parser.add_argument('--num-test', type=int, default=-1)
  parser.add_argument('--noise-scale', type=float, default=None)
  parser.add_argument('--features', default=None, choices=('i3d_like', 'gaussian'),
                      help="feature model (default: the preset's, i3d_like)")
  parser.add_argument('--steps', type=int, default=1500)
  parser.add_argument('--batch-size', type=int, default=16)
  parser.add_argument('--max-seqlen', type=int, default=750)
  parser.add_argument('--lr', type=float, default=1e-2)
  parser.add_argument('--skip-strong', action='store_true')
  args = parser.parse_args()

  t0 = time.perf_counter()
  dataset = synthetic.generate(args.preset, feature_dim=args.feature_dim, seed=args.seed,
                               num_train=args.num_train, num_test=args.num_test,
                               noise_scale=args.noise_scale, features=args.features)
  train_videos, test_videos = dataset.train_videos(), dataset.test_videos()
  train_features = [v.features() for v in train_videos]
  test_features = [v.features() for v in test_videos]
  print(f'{dataset.name}: {len(train_videos)} train / {len(test_videos)} test videos, '
        f'D={args.feature_dim}, generated in {time.perf_counter() - t0:.1f} s')
  stats = synthetic.annotation_statistics(dataset.videos)
  print('annotations: ' + ', '.join(f'{k} {v:.3g}' for k, v in stats.items()))

  tiou = config_lib.evaluation_config().tiou_thresholds
  localize_config = config_lib.localize_config()
  names = list(dataset.class_names)

  def score(detections):
    result = evaluation.evaluate_detections(dataset, detections, tiou,
                                            subset=dataset.test_subset, class_names=names)
    return result

  rows = []
  rows.append(('perfect', score(perfect_detections(test_videos)), None))
  rows.append(('GT as TCAM', score(oracle_tcam_detections(test_videos, len(names),
                                                          localize_config)), None))
  rng = np.random.default_rng(args.seed)
  rows.append(('chance', score(chance_detections(test_videos, train_videos, len(names), rng)),
               None))
  rows.append(('chance, true cls', score(chance_detections(test_videos, train_videos, len(names),
                                                           rng, true_classes=True)), None))

  cached = [VideoRecord(v.video_id, v.subset, v.labels, v.segments, v.segment_classes,
                                 v.duration, v.seconds_per_snippet, v.num_snippets,
                                 load=(lambda x=x: x)) for v, x in zip(train_videos,
                                                                       train_features)]
  batcher = batching.TrainBatcher(cached, args.batch_size, args.max_seqlen, args.seed)
  t0 = time.perf_counter()
  params, loss = train_linear(batcher, args.feature_dim, len(names), args.steps, args.lr)
  mil_time = time.perf_counter() - t0
  detections, cls_map = mil_detections(params, test_videos, test_features, localize_config)
  rows.append(('MIL (weak)', score(detections), cls_map))

  if not args.skip_strong:
    # Targets ride along as a last feature column, so the crops cut them like the features.
    labelled = [dataclasses.replace(v, load=(lambda x=x, v=v: np.concatenate(
        [x, snippet_targets(v, len(names))[:, None].astype(np.float32)], axis=1)))
                for v, x in zip(cached, train_features)]
    strong_batcher = batching.TrainBatcher(labelled, args.batch_size, args.max_seqlen, args.seed,
                                           cache=True)
    params, _ = train_linear(strong_batcher, args.feature_dim, len(names), args.steps, args.lr,
                             strong=True)
    rows.append(('linear (strong)', score(strong_detections(params, test_videos, test_features,
                                                            localize_config, len(names))), None))

  print(f'\nMIL: {args.steps} steps of {args.batch_size} x {args.max_seqlen}, final loss '
        f'{loss:.3f}, {mil_time:.1f} s')
  header = ['method'] + [f'@{t:.1f}' for t in tiou] + ['avg', 'cls mAP']
  print('| ' + ' | '.join(header) + ' |')
  print('|' + '---|' * len(header))
  for name, result, cls in rows:
    cells = [name] + [f'{100 * m:.1f}' for m in result.mAP] + [f'{100 * result.average_mAP:.1f}',
                                                               '' if cls is None else
                                                               f'{100 * cls:.1f}']
    print('| ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
