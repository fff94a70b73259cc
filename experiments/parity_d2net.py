#!/usr/bin/env python3
"""D2-Net against its authors' code (naraysa/D2-Net): both on the same weights and inputs.

  python experiments/parity_d2net.py --official PATH
      [--write-fixture tests/fixtures/parity_d2net.npz] [--markdown FILE] [--quick]

PATH is the user's checkout of github.com/naraysa/D2-Net, or a git directory of it (`git clone
--mirror`). That code has no license: it is read from PATH at run time and never stored
(parity_common.py). Needs torch (CPU) in the environment beside the project; only this script's
official side imports it.

Checked, each on NumPy-seeded weights and inputs, the project with the presets'
`d2net,official_protocol` settings (configs/thumos14.py, configs/activitynet12.py):
  model      test.py's eval forward (each video alone) vs the project's inference outputs (a padded
             batch): TCAM, embeddings, bottom-up attention lambda' (Eq. 8), with THUMOS14's kernels
             (3,1)+(1,1) and ActivityNet1.2's (5,2)+(5,2); feature width 16 (stored) and the real
             2048 (printed only).
  loss       train.py's train() itself, fed by a stand-in network that returns leaf tensors: L_Dis,
             L_DS, L_DV, the total, the new x_ref and d total / d logits, d total / d embeddings,
             with the denoising terms on (itr 1002) and off (1003); 20 classes and 100 (the official
             ActivityNet branch); the batch holds a video too short to count, an unlabelled one
             and one without foreground (which moves the official Eq. 3 write positions).
  step       train.py's train() with the official network (dropout off): every loss term and the
             gradient of every weight; full-length videos (the official code pads a batch without
             masking and the project masks: they differ next to the padding, by design).
  localizer  detectionMAP.getDetections on test.py's refined TCAM vs the project's localize_video:
             (class, start, end) identical and scores within the tolerance; stored: seeded videos;
             printed only: the 212 THUMOS14 test videos at their real lengths.
The Eq. 3 pairing draws (the official torch.randperm calls, the project's
`pairing.official_permutations`) are both set to stored permutations: the two codes use different
random generators, the pairing rule is what is compared.

Prints a summary and a table (quantity, max abs diff, max rel diff, pass at 1e-5 relative); exit
status 0 when all pass. --write-fixture stores the inputs and the official outputs (not the 2048-wide
check, not the 212 videos), which tests/test_parity_fixtures.py replays without the official code;
--quick skips those two printed-only checks. docs/parity_d2net.md shows a run.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import sys
import tempfile
import time
from typing import List

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position
import parity_d2net_check as ck  # noqa: E402  pylint: disable=wrong-import-position

OFFICIAL_FILES = ('model.py', 'train.py', 'pdmi.py', 'options.py', 'detectionMAP.py', 'utils.py')
LOSS_SHAPE = {'thumos': (6, 32), 'anet': (6, 16)}  # (B, T) of the loss batches.
STEP_SHAPE = (4, 24)
MODEL_LENGTHS = {'thumos': (40, 27, 9), 'anet': (24, 13, 6)}
LOC_VIDEOS = {'thumos': 12, 'anet': 6}

EDITS = [
    pc.Edit('model.py', r'^torch\.set_default_tensor_type\(.*$', 'pass', 1,
            'set_default_tensor_type(cuda FloatTensor) removed (CPU)'),
    pc.Edit('train.py', r'^torch\.set_default_tensor_type\(.*$', 'pass', 1,
            'set_default_tensor_type(cuda FloatTensor) removed (CPU)'),
    pc.Edit('train.py', r'^torch\.autograd\.set_detect_anomaly\(True\)\s*$', 'pass', 1,
            'set_detect_anomaly removed (speed only)'),
    pc.Edit('train.py', r'^from video_dataset import Dataset\s*$', 'Dataset = None', 1,
            'the data loader is not imported (batches are handed to train())'),
    pc.Edit('train.py', r'^from tensorboard_logger import log_value\s*$', 'log_value = None', 1,
            'tensorboard_logger is not imported (train() logs through its logger argument)'),
    pc.Edit('train.py', r'\.data\.cpu\(\)\.numpy\(\)', '.item()', 5,
            "train()'s progress line formats 1-element arrays with %.3f, which NumPy >= 2 refuses: "
            '.item() instead'),
    pc.Edit('model.py', r'\b1024\b', 'self.n_feature // 2', 2,
            'the stream split x[..., 1024:] made n_feature / 2 (the same at the real 2048), so '
            'narrow networks run'),
]


# =================================================================================================
# Inputs (NumPy seeds).


def official_weights(rng, width, num_classes, anet):
  """The official grouped-conv Model's state dict (float32, torch layout (out, in/2, k)):
  N(0, 1/sqrt(fan_in)) kernels and N(0, 0.1) biases, the classifier's 3x wider around -6, so
  the TCAM has foreground and background snippets (the official init, N(0, 0.01) kernels and zero
  biases, makes a near-constant one)."""
  k = 5 if anet else 3
  kc = 5 if anet else 1
  half = width // 2
  shapes = {'conv': (width, half, k, 1, 0), 'conv1': (width, half, k, 1, 0),
            'classifier': (2 * num_classes, half, kc, 3, -6)}
  state = {}
  for name, (out, fan, kernel, gain, shift) in shapes.items():
    std = gain / np.sqrt(fan * kernel)
    state[f'{name}.weight'] = rng.normal(0, std, (out, fan, kernel)).astype(np.float32)
    state[f'{name}.bias'] = (shift + rng.normal(0, 0.1, out)).astype(np.float32)
  return state


def _x_ref(rng, half):
  return rng.normal(0, 1, half).astype(np.float32)


def loss_case(path):
  """A batch of leaf outputs for train(): logits (B, T, C), embeddings (B, T, D/2), lengths,
  labels, x_ref. Video 0 fills the batch; video 1 has 4 snippets (skipped: < 5); video 2 no label
  (skipped); video 3 no foreground (max_c T < 0.5 everywhere); every other valid video has
  foreground and background. Classes at spread levels, background-like embeddings near x_ref,
  so the p clamp, the L_DV floor and both attention thresholds act."""
  _, num_classes = ck.PATHS[path]
  anet = path == 'anet'
  B, T = LOSS_SHAPE[path]
  half = ck.WIDTH // 2
  rng = pc.seeded_rng('loss', path)
  lengths = rng.integers(8, T + 1, size=B)
  lengths[0], lengths[1] = T, 4
  x_ref = _x_ref(rng, half)
  emb = rng.normal(0, 1, size=(B, T, half))
  labels = np.zeros((B, num_classes), np.float32)
  scale = np.exp(rng.uniform(np.log(0.01 if anet else 0.003), 0, size=(B, num_classes)))
  if anet:
    tcam = rng.uniform(0, 0.15, size=(B, T, num_classes)) * scale[:, None]
  else:
    tcam = 1 / (1 + np.exp(-rng.normal(0, 1.5, size=(B, T, num_classes)))) * scale[:, None]
  for i in range(B):
    n = lengths[i]
    cls = rng.choice(num_classes, size=1 + (i % 3 == 0), replace=False)
    if i != 2:
      labels[i, cls] = 1
    order = rng.permutation(n)
    bg, fg = order[:max(3, n // 3)], order[max(3, n // 3):]
    if i == 3:
      fg = fg[:0]
    if anet:
      tcam[i, fg, cls[0]] = rng.uniform(0.4, 1.0, size=len(fg))
      for c in rng.choice(num_classes, size=4, replace=False):  # Distractors, some above 0.2.
        if len(fg):
          sub = rng.choice(fg, size=rng.integers(1, len(fg) + 1), replace=False)
          tcam[i, sub, c] = rng.uniform(0.1, 0.9) * rng.uniform(0.3, 1.0, size=len(sub))
    else:
      tcam[i, :, cls] /= scale[i, cls][:, None]  # Labelled classes at full level...
      if i == 3:
        tcam[i] *= 0.45 / tcam[i].max()  # (Scaled, not clipped: top-k ties would pick either.)
      tcam[i, bg] *= 0.4  # ...background snippets with max_c T <= 0.4.
    emb[i, bg] = x_ref + 0.5 * rng.normal(0, 1, size=(len(bg), half))
  tcam = 1e-4 + (1 - 2e-4) * tcam  # Finite logits, no ties made.
  return {'logits': np.log(tcam / (1 - tcam)).astype(np.float32), 'emb': emb.astype(np.float32),
          'lengths': lengths.astype(np.int64), 'labels': labels, 'x_ref': x_ref,
          'perms': np.stack([rng.permutation(B) for _ in range(4)]).astype(np.int32)}


def step_case():
  """Full-length videos (B, T, D), one unlabelled, and the network's weights (THUMOS14)."""
  rng = pc.seeded_rng('step')
  B, T = STEP_SHAPE
  features = rng.normal(0, 1, size=(B, T, ck.WIDTH)).astype(np.float32)
  labels = np.zeros((B, 20), np.float32)
  for i, cls in enumerate(([3], [7, 12], [], [19])):
    labels[i, cls] = 1
  state = official_weights(rng, ck.WIDTH, 20, anet=False)
  return {'features': features, 'labels': labels, 'x_ref': _x_ref(rng, ck.WIDTH // 2),
          'perms': np.stack([rng.permutation(B) for _ in range(4)]).astype(np.int32),
          **{f'weights/{k}': v for k, v in state.items()}}


def model_case(path, width):
  _, num_classes = ck.PATHS[path]
  rng = pc.seeded_rng('model', path, width)
  lengths = MODEL_LENGTHS[path]
  features = np.zeros((len(lengths), max(lengths), width), np.float32)
  for i, n in enumerate(lengths):
    features[i, :n] = rng.normal(0, 1, size=(n, width))
  state = official_weights(rng, width, num_classes, anet=path == 'anet')
  return {'features': features, 'lengths': np.array(lengths, np.int64),
          'x_ref': _x_ref(rng, width // 2), **{f'weights/{k}': v for k, v in state.items()}}


def _smooth(rng, T, C, width):
  x = rng.normal(size=(T + 2 * width, C))
  k = np.hanning(2 * width + 1)
  k /= k.sum()
  y = np.stack([np.convolve(x[:, c], k, mode='valid') for c in range(C)], 1)[:T]
  return 1 / (1 + np.exp(-3 * y / y.std()))


def _steps(rng, T, C):
  """Plateaus (low 0.03-0.15, high 0.4-1) between short dips: the outer-inner rejection, the
  thresholds and the ActivityNet class floors all act."""
  out = np.empty((T, C))
  for c in range(C):
    kind = rng.choice(3, size=T, p=(0.4, 0.3, 0.3))
    width = np.where(kind == 0, rng.integers(1, 4, size=T), rng.integers(3, 26, size=T))
    level = np.select([kind == 0, kind == 1], [rng.uniform(0, 0.02, T), rng.uniform(0.03, 0.15, T)],
                      rng.uniform(0.4, 1.0, T))
    out[:, c] = np.repeat(level, width)[:T]
  return out


def localizer_case(path, count):
  """Seeded videos: TCAM (T, C) and lambda' (T,) on the 2^-16 grid, smooth and plateau ones."""
  _, num_classes = ck.PATHS[path]
  rng = pc.seeded_rng('localizer', path)
  tcams, atts = [], []
  for v in range(count):
    T = int(rng.integers(20, 140 if path == 'thumos' else 70))
    if v % 2 == 0:
      tcam, att = _smooth(rng, T, num_classes, 4), _smooth(rng, T, 1, 6)[:, 0]
    else:
      tcam, att = _steps(rng, T, num_classes), 0.3 + 0.7 * _steps(rng, T, 1)[:, 0]
    if path == 'anet':
      tcam = tcam * rng.uniform(0.2, 0.9)
    tcams.append(pc.to_grid(tcam, ck.GRID, np.uint16))
    atts.append(pc.to_grid(att, ck.GRID, np.uint16))
  return tcams, atts


def thumos_length_videos(annotations, seed=0):
  """The THUMOS14 test videos at their real lengths (duration * 25/16 snippets): bumps at the
  ground truth, distractors and noise; lambda' = 1. Report only (not stored)."""
  ld = lambda f: np.load(os.path.join(annotations, f), allow_pickle=True)
  dec = lambda a: [x.decode() if isinstance(x, bytes) else str(x) for x in a]
  subset, segs, labels = dec(ld('subset.npy')), ld('segments.npy'), ld('labels.npy')
  dur = ld('duration.npy').reshape(-1)
  classes = dec(ld('classlist.npy'))
  rng = np.random.default_rng(seed)
  tcams = []
  for s, sg, lb, du in zip(subset, segs, labels, dur):
    if s != 'test' or len(sg) == 0:
      continue
    T = max(8, int(du * 25 / 16))
    x = np.zeros((T, 20))
    for (a, b), name in zip(sg, lb):
      c = classes.index(str(name))
      i = int(a * 25 / 16)
      x[i:max(i + 1, int(b * 25 / 16)), c] += rng.uniform(0.3, 0.9)
    for _ in range(rng.integers(0, 6)):
      c, i = rng.integers(20), rng.integers(T)
      x[i:i + rng.integers(1, 15), c] += rng.uniform(0.1, 0.5)
    x += rng.normal(0, 0.08, size=x.shape)
    x = np.stack([np.convolve(x[:, c], np.ones(3) / 3, mode='same') for c in range(20)], 1)
    tcams.append(np.clip(x, 0, 1).astype(np.float32))
  return tcams


# =================================================================================================
# The official side (torch).


def official_args(off, batch_size, num_classes):
  args = off.options.parser.parse_args([])
  args.batch_size, args.num_class, args.activity_net = batch_size, num_classes, num_classes == 100
  return args


class _Logger:
  def __init__(self):
    self.values = {}

  def log_value(self, name, value, step):
    del step
    self.values[name] = float(value.detach().sum()) if hasattr(value, 'detach') else float(value)


class _Optimizer:
  """Stands for train()'s optimizer: step() keeps the gradients instead of updating."""

  def __init__(self, model):
    self.model, self.grads = model, None

  def zero_grad(self):
    self.model.zero_grad()

  def step(self):
    self.grads = {n: p.grad.detach().numpy().copy() for n, p in self.model.named_parameters()
                  if p.grad is not None}


class _Batch:
  def __init__(self, features, labels):
    self.features, self.labels = features, labels

  def load_data(self):
    return self.features.copy(), self.labels.copy()


def official_train(off, model, features, labels, perms, itr):
  """Runs the official train() once on (features, labels); returns its loss terms, the new x_ref,
  whether it stepped, and the gradients it left (model parameters, and whatever leaves the model
  returned, via model.leaves)."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  tr = off.train
  B = features.shape[0]
  args = official_args(off, B, labels.shape[1])
  record = {}
  draws = []

  def randperm(n, *a, **k):
    if len(draws) >= 4:
      raise AssertionError('more than 4 torch.randperm draws in one official step')
    perm = [int(p) for p in perms[len(draws)] if p < n]  # = pairing.restrict_permutation.
    draws.append(n)
    return torch.tensor(perm, dtype=torch.int64)

  def recorded(fn, name):
    def call(*a, **k):
      out = fn(*a, **k)
      record[name] = out
      return out
    return call

  logger, optimizer = _Logger(), _Optimizer(model)
  saved = (torch.randperm, tr.DISLOSS, tr.pDMILOSS)
  torch.randperm = randperm
  tr.DISLOSS, tr.pDMILOSS = recorded(tr.DISLOSS, 'dis'), recorded(tr.pDMILOSS, 'ds')
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      tr.train(itr, _Batch(features, labels), args, model, optimizer, logger, 'cpu')
  finally:
    torch.randperm, tr.DISLOSS, tr.pDMILOSS = saved
  if len(draws) != 4:
    raise AssertionError(f'{len(draws)} pairing draws: the case needs foreground and background')
  l_dis, l_dv, _ = record['dis']
  denoise = 'ds' in record
  value = lambda t: float(t.detach().sum())
  out = {'total': np.float64(logger.values['total_loss']), 'L_Dis': np.float64(value(l_dis)),
         'L_DV': np.float64(value(l_dv)),
         'L_DS': np.float64(value(record['ds']) if denoise else 0.0),
         'x_ref': model.running_bg.detach().numpy()[0].copy(), 'denoise': np.bool_(denoise)}
  if optimizer.grads is None:
    raise AssertionError(f'the official step at itr {itr} did not step (total <= 0)')
  return out, optimizer.grads


def _official_model(off, state, num_classes, x_ref):
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  width = state['conv.weight'].shape[0]
  model = off.model.Model(width, num_classes, official_args(off, 1, num_classes))
  model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}
                        | {'running_bg': torch.tensor(x_ref[None])})
  return model


def official_loss(off, path, case, itr):
  """train() with a stand-in network whose four outputs are leaves: logits_f = logits_r = the
  case's logits (tcam = sigmoid(logits) exactly), feat_f = feat_r = its embeddings."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  B, T, C = case['logits'].shape

  class Leaves(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.running_bg = torch.nn.Parameter(torch.tensor(case['x_ref'][None]))
      self.logits = torch.tensor(case['logits'], requires_grad=True)
      self.emb = torch.tensor(case['emb'], requires_grad=True)

    def forward(self, inputs, device, is_training=True):
      assert inputs.shape[1] == T, 'train() trims the batch to the longest video'
      return self.emb, self.logits, self.emb, self.logits

  # train() counts a video's snippets as its non-zero feature rows.
  features = (np.arange(T)[None, :, None] < case['lengths'][:, None, None]).astype(np.float32)
  model = Leaves()
  out, _ = official_train(off, model, features, case['labels'], case['perms'], itr)
  out['grad_logits'] = model.logits.grad.numpy().copy()
  out['grad_emb'] = model.emb.grad.numpy().copy()
  return out


def official_step(off, case, itr):
  state = pc.group(case, 'weights')
  model = _official_model(off, state, 20, case['x_ref'])
  model.dropout.p = 0.0
  out, grads = official_train(off, model, case['features'], case['labels'], case['perms'], itr)
  return {**out, **{f'grad/{k}': v for k, v in grads.items() if k != 'running_bg'}}


def official_model(off, path, case):
  """test.py L27-50 per video (B = 1): TCAM, embeddings, lambda' (padded with zeros to the batch)."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  _, num_classes = ck.PATHS[path]
  model = _official_model(off, pc.group(case, 'weights'), num_classes, case['x_ref'])
  model.eval()
  B, T, _ = case['features'].shape
  out = {'tcam': np.zeros((B, T, num_classes), np.float32),
         'emb': np.zeros((B, T, case['features'].shape[2] // 2), np.float32),
         'attention': np.zeros((B, T), np.float32)}
  cos = torch.nn.CosineSimilarity(dim=1)
  for i, n in enumerate(case['lengths']):
    with torch.no_grad():
      feat_f, logits_f, feat_r, logits_r = model(torch.tensor(case['features'][i:i + 1, :n]),
                                                 'cpu', is_training=False)
      tcam = (torch.sigmoid(logits_f[0]) + torch.sigmoid(logits_r[0])) / 2
      feat = (feat_f[0] + feat_r[0]) / 2
      att = (1 - cos(feat, model.running_bg.data.clone())) / 2
    out['tcam'][i, :n], out['emb'][i, :n], out['attention'][i, :n] = tcam, feat, att
  return out


def refine(tcam, att, anet):
  """test.py L48-50: the prediction getDetections reads (float32 torch)."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  a = torch.tensor(att)
  a = a * 2 / a.max() if anet else a
  return (torch.tensor(tcam) * a.unsqueeze(1)).numpy()


class OfficialDetector:
  """The official getDetections over per-video predictions (T_i, C): THUMOS14 on a copy of the
  checkout's annotation folder with an empty ambiguous list (that filter is the scorer's),
  ActivityNet on a small annotation folder of its own (every class has ground truth)."""

  def __init__(self, off, source, tmp):
    self.off, self.tmp, self.count = off, tmp, 0
    self.cwd = os.path.join(tmp, 'thumos')
    self.ann = os.path.join(self.cwd, 'Thumos14reduced-Annotations')
    os.makedirs(self.ann)
    for name in source.files():
      if name.startswith('Thumos14reduced-Annotations/') and name.endswith('.npy'):
        with open(os.path.join(self.cwd, name), 'wb') as f:
          f.write(source.read_bytes(name))
    open(os.path.join(self.ann, 'Ambiguous_test.txt'), 'w').close()
    ld = lambda f: np.load(os.path.join(self.ann, f), allow_pickle=True)
    subset = [x.decode() if isinstance(x, bytes) else str(x) for x in ld('subset.npy')]
    segments = ld('segments.npy')
    self.test = [i for i, s in enumerate(subset) if s == 'test']
    self.kept = [j for j, i in enumerate(self.test) if len(segments[i]) > 0]

  def thumos(self, preds: List[np.ndarray]):
    """preds for the first len(preds) test videos with ground truth; the others zero."""
    all_preds = [np.zeros((20, 20), np.float32) for _ in self.test]
    for k, p in enumerate(preds):
      all_preds[self.kept[k]] = p
    cwd = os.getcwd()
    os.chdir(self.cwd)
    try:
      with contextlib.redirect_stdout(io.StringIO()):
        out = self.off.detectionMAP.getDetections(all_preds, self.ann, False, None)
    finally:
      os.chdir(cwd)
    return self._collect(out, len(preds))

  def anet(self, preds: List[np.ndarray], num_classes=100):
    self.count += 1
    ann = os.path.join(self.tmp, f'anet{self.count}')
    os.makedirs(ann)
    n = len(preds)
    classes = np.array([f'class{c:03d}' for c in range(num_classes)])
    segs, labs = np.empty(n, object), np.empty(n, object)
    for i in range(n):
      cs = [(2 * i) % num_classes, (2 * i + 1) % num_classes] if i else list(range(num_classes))
      segs[i] = [[1.0 + j, 2.0 + j] for j in range(len(cs))]
      labs[i] = [str(classes[c]) for c in cs]
    for name, value in (('segments', segs), ('labels', labs),
                        ('videoname', np.array([f'v_{i:05d}' for i in range(n)])),
                        ('subset', np.array(['validation'] * n)), ('classlist', classes),
                        ('duration', np.full(n, 100.0))):
      np.save(os.path.join(ann, f'{name}.npy'), value, allow_pickle=True)
    with contextlib.redirect_stdout(io.StringIO()):
      out = self.off.detectionMAP.getDetections(list(preds), ann, True, np.arange(n))
    return self._collect(out, n)

  @staticmethod
  def _collect(out, count):
    detections, _, class_index, _ = out
    res = [[] for _ in range(count)]
    for c, rows in zip(class_index, detections):
      for row in np.asarray(rows, np.float64).reshape(-1, 4):
        res[int(row[0])].append((int(c), int(row[1]), int(row[2]), float(row[3])))
    return res


def official_arrays(sources, full: bool):
  """Runs the official code on every case: (the fixture's arrays, the port's edits, a function
  adding the printed-only rows (full) to a report, or None)."""
  source = sources['--official']
  arrays, extra = {}, {}
  with pc.OfficialPort(source, EDITS) as port, tempfile.TemporaryDirectory() as tmp:
    off = type('Official', (), {n: port.imp(n) for n in
                                ('options', 'pdmi', 'model', 'train', 'detectionMAP')})
    for path in ck.PATHS:
      for width in ((ck.WIDTH, ck.FULL_WIDTH) if full else (ck.WIDTH,)):
        case = model_case(path, width)
        target = arrays if width == ck.WIDTH else extra
        target.update({f'model/{path}/{width}/in/{k}': v for k, v in case.items()})
        target.update({f'model/{path}/{width}/{k}': v
                       for k, v in official_model(off, path, case).items()})
      case = loss_case(path)
      arrays.update({f'loss/{path}/in/{k}': v for k, v in case.items()})
      for itr in ck.ITRS:
        arrays.update({f'loss/{path}/itr{itr}/{k}': v
                       for k, v in official_loss(off, path, case, itr).items()})
    case = step_case()
    arrays.update({f'step/in/{k}': v for k, v in case.items()})
    for itr in ck.ITRS:
      arrays.update({f'step/itr{itr}/{k}': v for k, v in official_step(off, case, itr).items()})
    detector = OfficialDetector(off, source, tmp)
    for path in ck.PATHS:
      tcams, atts = localizer_case(path, LOC_VIDEOS[path])
      floats = [(pc.from_grid(t, ck.GRID), pc.from_grid(a, ck.GRID)) for t, a in zip(tcams, atts)]
      preds = [refine(t, a, path == 'anet') for t, a in floats]
      found = detector.anet(preds) if path == 'anet' else detector.thumos(preds)
      arrays.update({f'localizer/{path}/tcam': np.concatenate(tcams),
                     f'localizer/{path}/attention': np.concatenate(atts),
                     f'localizer/{path}/lengths': np.array([len(t) for t in tcams], np.int64)})
      arrays.update(pc.pack_detections(f'localizer/{path}/official', found))
    if full:
      tcams = thumos_length_videos(detector.ann)
      t0 = time.perf_counter()
      official = detector.thumos(tcams)
      official_seconds = time.perf_counter() - t0
    applied = port.applied
  if not full:
    return arrays, {'--official': applied}, None

  def add_printed_rows(report):
    ck.compare(extra, report, only=('model',))
    t0 = time.perf_counter()
    ours = ck.project_detections('thumos', tcams, [np.ones(len(t), np.float32) for t in tcams])
    report.detections(f"localizer thumos, the {len(tcams)} THUMOS14 test videos (lambda' = 1)",
                      official, ours, note=f'official {official_seconds:.1f} s, project '
                                           f'{time.perf_counter() - t0:.1f} s')
  return arrays, {'--official': applied}, add_printed_rows


if __name__ == '__main__':
  sys.exit(pc.main('D2-Net parity', [pc.Official('--official', ck.REPOSITORY, OFFICIAL_FILES)],
                   official_arrays, ck.compare, ck.group,
                   quick_help='skip the printed-only checks (2048 wide network, 212 THUMOS14 '
                              'videos)'))
