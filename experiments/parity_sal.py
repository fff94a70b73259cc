#!/usr/bin/env python3
"""SAL against its authors' code (lizhilin-ustc/SAL, THUMOS14): both on the same weights and inputs.

  python experiments/parity_sal.py --official PATH [--write-fixture tests/fixtures/parity_sal.npz]

PATH is the user's checkout of github.com/lizhilin-ustc/SAL, or a git directory of it (`git clone
--mirror`). That code has no license: it is read from PATH at run time and never stored
(parity_common.py). Needs torch (CPU) in the environment beside the project; only this script's
official side imports it.

Checked, on seeded inputs, the project with configs/thumos14.py:sal:
  step       main_thumos.py's ThumosTrainer.train() itself on one batch (B = 3, so the direction of
             the mix-up's batch roll shows; every Dropout p = 0, the project's dropout_rate 0):
             the nine network outputs (CAS, background CAS, actionness of both streams, of the
             mixed videos, second-order logits), every loss term (unweighted) and the total, the
             pseudo-labels g and g_mix, the adaptive masks w and w_mix, the running mean and
             variance behind them, and the gradient of the total w.r.t. every weight and the
             input features; from the code's initial statistics (mu = 1/C, var = 1) and from a
             mid-training state (mask far from 1). Widths D = 16, hidden 16 (stored) and the real
             2048, 512 at T = 750 (printed only).
  localizer  inference_thumos.inference() itself with a stand-in network returning seeded outputs
             vs the project's 'oic' localizer: detections (class, start, end in seconds) identical
             and scores within the tolerance; 64 snippets per video (stored) and 750 (printed
             only), original lengths from 30 to 3000 snippets, an argmax-fallback video, a video
             whose action sits at snippet 0 only.
Narrow networks: the official model file writes its widths as literals (512 hidden, the RGB/flow
split at 1024); the port makes them parameters (parity_common.Edit, listed in the output).

Prints a table (quantity, max abs diff, max rel diff, pass at 1e-5 relative); exit status 0 when all
pass. --write-fixture stores the inputs and the official outputs of the narrow checks, which
tests/test_parity_fixtures.py replays without the official code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position
import parity_sal_check as ck  # noqa: E402  pylint: disable=wrong-import-position

OFFICIAL_FILES = ('main_thumos.py', 'inference_thumos.py', 'models/model_x4.py',
                  'config/config_thumos.py', 'utils/loss.py', 'utils/misc_utils.py')
WIDTH = 16  # Feature width D of the stored checks (hidden: parity_sal_check.HIDDEN).
FULL = (2048, 512)
STEP_SHAPE = (3, 64)  # (B, T) of the stored step; printed only: (2, 750) at full width.
LABELS = ([3], [7, 12], [19])
LOC_VIDEOS = 16
LOC_SEGMENTS = 64
STUBS = ('matplotlib', 'matplotlib.pyplot', 'tqdm', 'terminaltables', 'torch.utils.tensorboard')

EDITS = [
    pc.Edit('models/model_x4.py', r'\b512\b', 'HIDDEN', 12,
            'the hidden width, a literal 512 (12 times), made a module constant HIDDEN...'),
    pc.Edit('models/model_x4.py', r'^import math$',
            'import math\nHIDDEN = 512  # (parity port) set by the script', 1,
            '...= 512, set by the script'),
    pc.Edit('models/model_x4.py', r'\b1024\b', 'self.len_feature // 2', 2,
            'the RGB / flow split at 1024 made len_feature / 2 (the same at the real 2048)'),
    pc.Edit('main_thumos.py', r'^import time$',
            'import time\n\n\ndef _parity_hook(scope):  # (parity port) replaced at run time\n'
            '    return None', 1, 'a hook function added'),
    pc.Edit('main_thumos.py', r'^(?P<i>[ \t]*)cost\.backward\(\)\s*$',
            r'\g<i>cost.backward()\n\g<i>_parity_hook(locals())', 1,
            "train(): the hook reads the step's locals after backward (before Adam)"),
    pc.Edit('inference_thumos.py', r'(score_np = score_supp\[0, :\]\.cpu\(\)\.numpy\(\))',
            r'\1.copy()', 1,
            "inference(): score_np copied, as .cpu() of a CUDA tensor copies (on CPU .numpy() "
            "would alias score_supp, whose binarisation would leak into the OIC scores)"),
]


# =================================================================================================
# Inputs.


def features(rng, B, T, D):
  """Non-negative I3D-like features: gamma noise times a smooth per-video level."""
  x = rng.gamma(0.8, 0.5, size=(B, T, D))
  for b in range(B):
    s = np.convolve(rng.normal(0, 1, T + 8), np.ones(9) / 9, mode='valid')[:T]
    x[b] *= (1 + 0.5 * np.tanh(s))[:, None]
  return x.astype(np.float32)


def labels_of(label_sets, num_classes=ck.NUM_CLASSES):
  y = np.zeros((len(label_sets), num_classes), np.float32)
  for b, cs in enumerate(label_sets):
    y[b, cs] = 1
  return y


def _bumps(rng, S, C, v_len):
  """Seeded (cas (S, C) logits, a_f, a_r (S,), sc (C,)) with 1-3 actions of one class."""
  sig = lambda z: 1 / (1 + np.exp(-z))
  smooth = lambda x, w: np.apply_along_axis(
      lambda v: np.convolve(v, np.ones(w) / w, mode='full')[(w - 1) // 2:(w - 1) // 2 + S], 0, x)
  z = smooth(rng.normal(0, 1.2, S), 5) - 2.2
  cas = smooth(rng.normal(0, 1.0, (S, C)), 3) - 0.5
  c = int(rng.integers(C))
  for _ in range(rng.integers(1, 4)):
    i = int(rng.integers(0, S - 2))
    j = min(S, i + int(rng.integers(2, max(3, S // 4))))
    z[i:j] += rng.uniform(2.5, 6.0)
    cas[i:j, c] += rng.uniform(1.5, 5.0)
  for _ in range(rng.integers(0, 4)):  # Distractors.
    d, i = int(rng.integers(C)), int(rng.integers(S))
    z[i:i + rng.integers(1, 8)] += rng.uniform(1.0, 4.0)
    cas[i:i + rng.integers(1, 8), d] += rng.uniform(0.5, 3.0)
  a_f = sig(z + rng.normal(0, 0.3, S))
  a_r = sig(0.8 * z + rng.normal(0, 0.6, S) - 0.3)
  sc = rng.normal(0, 1.0, C)
  sc[c] += rng.uniform(2.0, 5.0)
  del v_len
  return cas, a_f, a_r, sc


def localizer_case(count, S, stored=True):
  """Seeded per-video network outputs at S snippets and original lengths v_len: video 5 flat (no
  class passes: the argmax fallback), video 7 with its action at snippet 0 only (the code's
  `if temp_list.any()` skips a run that is index 0 alone). Stored on dyadic grids."""
  rng = pc.seeded_rng('localizer', S)
  out = {k: [] for k in ('cas', 'a_f', 'a_r', 'sc', 'v_len')}
  for v in range(count):
    v_len = int(rng.integers(30, 3000))
    cas, a_f, a_r, sc = _bumps(rng, S, ck.NUM_CLASSES, v_len)
    if v % 24 == 5:
      cas, sc = cas * 0.05, sc * 0.05
    if v % 24 == 7:
      top = int(np.argmax(sc))
      cas[0, top] += 8.0
      a_f, a_r = np.minimum(a_f, 0.8), np.minimum(a_r, 0.8)
      a_f[0] = a_r[0] = 0.88
      a_f[1:4] = a_r[1:4] = 0.05
    for k, x in (('cas', cas), ('a_f', a_f), ('a_r', a_r), ('sc', sc), ('v_len', v_len)):
      out[k].append(x)
  return {'cas': pc.to_grid(np.stack(out['cas']), ck.GRID_LOGITS, np.int16),
          'a_f': pc.to_grid(np.stack(out['a_f']), ck.GRID_UNIT, np.uint16),
          'a_r': pc.to_grid(np.stack(out['a_r']), ck.GRID_UNIT, np.uint16),
          'sc': pc.to_grid(np.stack(out['sc']), ck.GRID_LOGITS, np.int16),
          'v_len': np.array(out['v_len'], np.int64)}


# =================================================================================================
# The official side (torch).


@contextlib.contextmanager
def _argv(args):
  saved = sys.argv
  sys.argv = list(args)
  try:
    yield
  finally:
    sys.argv = saved


def official_config(port, T, out_dir, width, data_path='/nonexistent'):
  """The official Config from the official parse_args with scripts/train.sh's flags that matter
  (--soft_nms) and --num_segments T; len_feature set to the width."""
  cfgmod = port.imp('config.config_thumos')
  with _argv(['main_thumos.py', '--exp_name', 'parity', '--model_name', 'ThumosModel',
              '--output_dir', out_dir, '--data_path', data_path, '--num_epochs', '1',
              '--soft_nms', '--num_segments', str(T)]):
    args = cfgmod.parse_args()
  config = cfgmod.Config(args)
  config.len_feature = width
  return config


def official_weights(port, width, hidden, seed):
  """The official Model's own initialisation (torch.manual_seed(seed)), as a NumPy state dict."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  model_mod = port.imp('models.model_x4')
  model_mod.HIDDEN = hidden
  torch.manual_seed(seed)
  net = model_mod.Model(width, ck.NUM_CLASSES, 0)
  return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def official_steps(port, tmp, case, mid_state):
  """ThumosTrainer.train() on the case's batch, once from the code's initial statistics and once
  from a mid-training state; {'state_initial': {...}, 'state_mid': {...}}."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  F = torch.nn.functional
  mt = port.imp('main_thumos')
  x, labels = case['x'], case['labels']
  weights = pc.group(case, 'weights')
  B, T, width = x.shape
  port.imp('models.model_x4').HIDDEN = weights['fc1.weight'].shape[0]
  config = official_config(port, T, os.path.join(tmp, f'out{T}'), width)
  results = {}
  for name in ('state_initial', 'state_mid'):
    data = torch.tensor(x, requires_grad=True)
    batch = (data, torch.tensor(labels), torch.zeros(1), [f'v{i}' for i in range(B)],
             torch.full((B,), T))
    mt.get_dataloaders = lambda config: ([batch], None)
    trainer = mt.ThumosTrainer(config)
    trainer.net.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    for m in trainer.net.modules():
      if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
    if name == 'state_mid':
      with torch.no_grad():  # mu = mean + std / 2, var = std^2 of max softmax(cas) over the batch.
        pm = trainer.net(torch.tensor(x), config)[0].softmax(-1).max(-1)[0].double()
      trainer.prob_max_mu_t, trainer.prob_max_var_t = float(pm.mean() + 0.5 * pm.std()), float(
          pm.var())
    seen = {'state_before/mu': np.float64(trainer.prob_max_mu_t),
            'state_before/var': np.float64(trainer.prob_max_var_t)}

    def hook(scope):
      sq = lambda t: t.detach().numpy().copy()
      for k in ck.OUTPUTS:
        seen[f'out/{k}'] = sq(scope[k])[:, 0] if k.startswith('action') else sq(scope[k])
      with torch.no_grad():  # Unweighted terms: the code's weights 10 (bg) and 5 (mc) removed.
        seen['loss/mil'] = scope['mil_loss'].item()
        seen['loss/bg'] = F.kl_div(scope['cas_top_bg'].log(), scope['label_bg'],
                                   reduction='batchmean').item()
        seen['loss/act'] = scope['act_loss'].item()
        seen['loss/mix'] = scope['mix_loss'].item()
        seen['loss/mc'] = F.mse_loss(scope['action_rgb'], scope['action_flow']).item()
        seen['loss/se'] = scope['se_loss'].item()
        seen['loss/total'] = scope['cost'].item()
      tr = scope['self']
      seen['train/g'] = sq(scope['cls_agnostic_gt'])[:, 0]
      seen['train/g_mix'] = sq(scope['cls_agnostic_gt_aug'])[:, 0].astype(np.float32)
      seen['train/w'], seen['train/w_mix'] = sq(scope['mask']), sq(scope['mask_aug'])
      seen['state/mu'], seen['state/var'] = np.float64(tr.prob_max_mu_t), np.float64(
          tr.prob_max_var_t)
      for n, p in tr.net.named_parameters():
        seen[f'grad/{n}'] = p.grad.detach().numpy().copy()
      seen['grad/x'] = sq(scope['_data'].grad)

    mt._parity_hook = hook
    try:
      with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    finally:
      mt._parity_hook = lambda scope: None
    if 'loss/total' not in seen:
      raise AssertionError('the official train() did not reach its backward pass')
    results[name] = {k: np.asarray(v) for k, v in seen.items()
                     if not (name == 'state_mid' and k.startswith('out/'))}  # As from initial.
    if not mid_state:
      break
  return results


def official_detections(port, tmp, case):
  """inference_thumos.inference() on the case's videos through a stand-in network; per video
  [(class, start_s, end_s, score)] in the official order."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  f = ck.localizer_floats(case)
  V, S, _ = f['cas'].shape
  inf = port.imp('inference_thumos')
  classes = port.imp('config.config_thumos').class_dict
  names = [f'video_{v:03d}' for v in range(V)]

  class Outputs(torch.nn.Module):
    def forward(self, x, config):
      del config
      v = int(x.reshape(-1)[0].item())
      cas = torch.from_numpy(f['cas'][v])[None]
      a_f = torch.from_numpy(f['a_f'][v])[None, None]
      a_r = torch.from_numpy(f['a_r'][v])[None, None]
      sc = torch.from_numpy(f['sc'][v])[None]
      z = torch.zeros
      return cas, z(cas.shape), a_f, a_r, z(a_f.shape), z(a_r.shape), sc, z(sc.shape), z(sc.shape)

  loader = [(torch.full((1, 1, 1), float(v)), torch.zeros(1, ck.NUM_CLASSES), torch.zeros(1),
             [names[v]], torch.tensor([int(case['v_len'][v])])) for v in range(V)]
  config = official_config(port, S, os.path.join(tmp, f'loc{S}'), WIDTH, data_path=tmp)
  saved = inf.evaluate
  inf.evaluate = lambda *a, **k: (0.0, None)  # The scorer is not compared here.
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      inf.inference(Outputs(), config, loader, model_file=None)
  finally:
    inf.evaluate = saved
  with open(os.path.join(config.model_path, 'temp_result.json')) as fh:
    results = json.load(fh)['results']
  index = {n: c for c, n in classes.items()}
  return [[(index[r['label']], float(r['segment'][0]), float(r['segment'][1]), float(r['score']))
           for r in results.get(n, [])] for n in names]


def official_arrays(source, full: bool):
  """Runs the official code on every case: (the fixture's arrays, the port's edits, a function
  adding the printed-only rows (full) to a report, or None)."""
  arrays, extra = {}, {}
  with pc.OfficialPort(source, EDITS, STUBS) as port, tempfile.TemporaryDirectory() as tmp:
    variants = [('step', arrays, WIDTH, ck.HIDDEN, STEP_SHAPE, True)]
    if full:
      variants.append(('step_full', extra, *FULL, (2, 750), False))
    for prefix, target, width, hidden, (B, T), mid in variants:
      rng = pc.seeded_rng('step', width)
      case = {'x': features(rng, B, T, width), 'labels': labels_of(LABELS[:B]),
              **{f'weights/{k}': v for k, v in official_weights(port, width, hidden, 0).items()}}
      target.update({f'{prefix}/in/{k}': v for k, v in case.items()})
      for name, seen in official_steps(port, tmp, case, mid).items():
        target.update({f'{prefix}/{name}/{k}': v for k, v in seen.items()})
    localizers = [('localizer', arrays, LOC_VIDEOS, LOC_SEGMENTS)]
    if full:
      localizers.append(('localizer_full', extra, 48, 750))
    for prefix, target, count, S in localizers:
      case = localizer_case(count, S)
      target.update({f'{prefix}/in/{k}': v for k, v in case.items()})
      target.update(pc.pack_detections(f'{prefix}/official', official_detections(port, tmp, case)))
    applied = port.applied
  return arrays, applied, (lambda report: ck.compare(extra, report)) if full else None


if __name__ == '__main__':
  sys.exit(pc.main('SAL parity', ck.REPOSITORY, OFFICIAL_FILES, official_arrays, ck.compare,
                   ck.group,
                   quick_help='skip the printed-only checks (the real widths at T = 750, 750 '
                              'snippets per video)'))
