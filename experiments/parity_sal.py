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

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time
import zlib
from typing import Dict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position

REPOSITORY = 'https://github.com/lizhilin-ustc/SAL'
OFFICIAL_FILES = ('main_thumos.py', 'inference_thumos.py', 'models/model_x4.py',
                  'config/config_thumos.py', 'utils/loss.py', 'utils/misc_utils.py')
NUM_CLASSES = 20
WIDTH, HIDDEN = 16, 16  # Feature width D and hidden width of the stored checks.
FULL = (2048, 512)
STEP_SHAPE = (3, 64)  # (B, T) of the stored step; printed only: (2, 750) at full width.
LABELS = ([3], [7, 12], [19])
LOC_VIDEOS = 16
LOC_SEGMENTS = 64
GRID_LOGITS, GRID_UNIT = 10, 16  # Localizer inputs on dyadic grids (exact in float32).
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


def _rng(*key):
  """A generator seeded by `key` (strings by their CRC-32: stable across processes)."""
  return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key])


# =================================================================================================
# Inputs.


def features(rng, B, T, D):
  """Non-negative I3D-like features: gamma noise times a smooth per-video level."""
  x = rng.gamma(0.8, 0.5, size=(B, T, D))
  for b in range(B):
    s = np.convolve(rng.normal(0, 1, T + 8), np.ones(9) / 9, mode='valid')[:T]
    x[b] *= (1 + 0.5 * np.tanh(s))[:, None]
  return x.astype(np.float32)


def labels_of(label_sets, num_classes=NUM_CLASSES):
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
  rng = _rng('localizer', S)
  out = {k: [] for k in ('cas', 'a_f', 'a_r', 'sc', 'v_len')}
  for v in range(count):
    v_len = int(rng.integers(30, 3000))
    cas, a_f, a_r, sc = _bumps(rng, S, NUM_CLASSES, v_len)
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
  return {'cas': pc.to_grid(np.stack(out['cas']), GRID_LOGITS, np.int16),
          'a_f': pc.to_grid(np.stack(out['a_f']), GRID_UNIT, np.uint16),
          'a_r': pc.to_grid(np.stack(out['a_r']), GRID_UNIT, np.uint16),
          'sc': pc.to_grid(np.stack(out['sc']), GRID_LOGITS, np.int16),
          'v_len': np.array(out['v_len'], np.int64)}


def localizer_floats(case):
  return {'cas': pc.from_grid(case['cas'], GRID_LOGITS), 'a_f': pc.from_grid(case['a_f'], GRID_UNIT),
          'a_r': pc.from_grid(case['a_r'], GRID_UNIT), 'sc': pc.from_grid(case['sc'], GRID_LOGITS)}


def seconds_per_snippet(v_len, S, feature_fps=25):
  """Seconds one of the S fed snippets covers for a video of v_len 16-frame snippets."""
  return 16.0 * v_len / (S * feature_fps)


# =================================================================================================
# The project's side (no torch: tests/test_parity_fixtures.py runs it from the stored arrays).


def project_config(hidden):
  """configs/thumos14.py:sal at hidden width `hidden`, dropout off."""
  module = pc.load_module(pc.ROOT / 'configs' / 'thumos14.py', '_parity_thumos14')
  config = module.get_config('sal')
  config.sal.hidden = hidden
  config.sal.dropout_rate = 0.0
  return config


_CONV = ('encoder', 'action_rgb', 'action_flow')
_HEADS = ('cls', 'cls_rgb', 'cls_flow')
_DENSE = ('fc', 'fc1')


def project_params(weights: Dict[str, np.ndarray]):
  """torch state dict -> Flax params: Conv1d (out, in, k) -> (k, in, out); kernel-1 heads (out,
  in, 1) -> Dense (in, out); Linear (out, in) -> (in, out). The bilinear Gram matrix is symmetric,
  so the two codes' flatten orders agree."""
  w = lambda name, fn=lambda a: a: np.ascontiguousarray(fn(weights[name]))
  p = {}
  for name in _CONV:
    p[name] = {'conv': {'kernel': w(f'{name}.0.weight', lambda a: a.transpose(2, 1, 0)),
                        'bias': w(f'{name}.0.bias')}}
  for name in _HEADS:
    p[name] = {'conv': {'kernel': w(f'{name}.0.weight', lambda a: a[:, :, 0].T),
                        'bias': w(f'{name}.0.bias')}}
  for name in _DENSE:
    p[name] = {'kernel': w(f'{name}.weight', lambda a: a.T), 'bias': w(f'{name}.bias')}
  return p


def official_layout(grads) -> Dict[str, np.ndarray]:
  """The project's parameter gradients in the torch layout (project_params inverted)."""
  g = lambda *path: np.asarray(grads[path[0]][path[1]][path[2]] if len(path) == 3
                               else grads[path[0]][path[1]])
  out = {}
  for name in _CONV:
    out[f'{name}.0.weight'] = g(name, 'conv', 'kernel').transpose(2, 1, 0)
    out[f'{name}.0.bias'] = g(name, 'conv', 'bias')
  for name in _HEADS:
    out[f'{name}.0.weight'] = g(name, 'conv', 'kernel').T[:, :, None]
    out[f'{name}.0.bias'] = g(name, 'conv', 'bias')
  for name in _DENSE:
    out[f'{name}.weight'] = g(name, 'kernel').T
    out[f'{name}.bias'] = g(name, 'bias')
  return out


OUTPUTS = {'cas': 'cas', 'cas_bg': 'cas_bg', 'action_flow': 'a_f', 'action_rgb': 'a_r',
           'action_flow_aug': 'a_f_mix', 'action_rgb_aug': 'a_r_mix', 'sc': 'sc',
           'sc_flow': 'sc_flow', 'sc_rgb': 'sc_rgb'}
TERMS = ('mil', 'bg', 'act', 'mix', 'mc', 'se')


def project_step(case, states):
  """The project's training step (dropout off) from each (mu, var) of `states`: outputs, loss
  terms, pseudo-labels, masks, new statistics and the gradients (torch layout, and d / d x)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  from d2net_jax.methods.sal import losses  # pylint: disable=import-outside-toplevel
  x, labels = case['x'], case['labels']
  weights = pc.group(case, 'weights')
  config = project_config(weights['fc1.weight'].shape[0])
  c = config.sal
  method = methods.get('sal')
  model = method.build_model(config, NUM_CLASSES, x.shape[-1])
  mask = np.ones(x.shape[:2], np.float32)
  batch = {'mask': mask, 'labels': labels}

  def loss(params, x, state):
    outputs = model.apply({'params': params}, x, mask, train=True,
                          rngs={'dropout': jax.random.key(0)})
    value, aux = method.loss_fn(outputs, batch, state, config, jax.random.key(0))
    return value, (outputs, aux)

  def targets(outputs, state):
    """g, w, g_mix, w_mix as sal_loss makes them (losses.py), for the comparison."""
    g = losses.pseudo_labels(outputs['a_f'], outputs['a_r'], outputs['cas'], labels, mask,
                             rgb_weight=c.pl_rgb_weight, topk=c.pl_topk, topk_ratio=c.topk_ratio,
                             topk_extra=c.pl_topk_extra, conf_gate=c.pl_conf_gate,
                             gate_ratio=c.pl_gate_ratio)
    pm = jnp.max(jax.nn.softmax(outputs['cas'], -1), -1)
    mu, var = losses.update_mask_statistics(pm, mask, state['prob_max_mu'],
                                            state['prob_max_var'], ema=c.mask_ema)
    w = losses.adaptive_mask(pm, mu, var, c.mask_denominator) * mask
    g_mix, w_mix = losses.mixup_targets(g, w)
    return {'g': g, 'w': w, 'g_mix': g_mix, 'w_mix': w_mix}

  @jax.jit
  def step(params, x, state):
    (total, (outputs, aux)), (g_params, g_x) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True)(params, x, state)
    return total, outputs, aux, g_params, g_x, targets(outputs, state)

  params = project_params(weights)
  results = []
  for mu, var in states:
    state = {'prob_max_mu': jnp.float32(mu), 'prob_max_var': jnp.float32(var)}
    total, outputs, aux, g_params, g_x, tg = step(params, x, state)
    r = {f'out/{k}': outputs[ours] for k, ours in OUTPUTS.items()}
    r.update({f'loss/{t}': aux[f'loss_{t}'] for t in TERMS})
    r['loss/total'] = total
    r.update({f'train/{k}': v for k, v in tg.items()})
    r['state/mu'], r['state/var'] = aux['state']['prob_max_mu'], aux['state']['prob_max_var']
    r.update({f'grad/{k}': v for k, v in official_layout(g_params).items()})
    r['grad/x'] = g_x
    results.append(r)
  return results


def project_detections(case):
  from d2net_jax import localize  # pylint: disable=import-outside-toplevel
  config = project_config(HIDDEN).localize.oic
  f = localizer_floats(case)
  S = f['cas'].shape[1]
  out = []
  for v, v_len in enumerate(case['v_len']):
    d = localize.oic.localize_video(f['cas'][v], f['a_f'][v], f['a_r'][v], f['sc'][v],
                                    seconds_per_snippet(int(v_len), S), config)
    out.append(d.to_list())
  return out


# =================================================================================================
# The comparison, shared by this script and tests/test_parity_fixtures.py.

KINDS = {'out': 'output', 'loss': 'loss', 'train': '', 'state': 'new', 'grad': 'd total / d'}
# L_bg = mean_b sum_c (log u - log p_bc) / C with p near uniform: a difference of numbers near
# log C that float32 resolves to ~1e-7, whatever its (small) value.
BG_NOTE = 'relative to log C = %.2f (a difference of numbers near it)'

LABELS_OF = {'g': 'pseudo-labels g', 'g_mix': 'mix-up pseudo-labels g_mix', 'w': 'adaptive mask w',
             'w_mix': 'mix-up mask w_mix'}


def compare(arrays, report: pc.Report, only=None) -> pc.Report:
  """Rows of `report` for the official quantities in `arrays` (the fixture's layout); `only`: a
  collection of sections ('step', 'localizer')."""
  want = lambda section: only is None or section in only
  for prefix in ('step', 'step_full'):
    if not (want('step') and f'{prefix}/in/x' in arrays):
      continue
    case = pc.group(arrays, f'{prefix}/in')
    names = sorted({k.split('/')[1] for k in arrays if k.startswith(f'{prefix}/state')})
    officials = [pc.group(arrays, f'{prefix}/{n}') for n in names]
    states = [(o['state_before/mu'], o['state_before/var']) for o in officials]
    size = f'D={case["x"].shape[2]} hidden={case["weights/fc1.weight"].shape[0]}'
    for name, official, ours in zip(names, officials, project_step(case, states)):
      label = f'{prefix.replace("_", " ")} {size} {name.replace("state_", "from ")}'
      keys = [k for k in official if not k.startswith('state_before/')]
      for key in sorted(keys, key=lambda k: (list(KINDS).index(k.split('/')[0]), k)):
        kind, what = key.split('/', 1)
        text = f'{label}: ' + ' '.join(filter(None, (KINDS[kind], LABELS_OF.get(what, what))))
        if kind == 'train' and what.startswith('g'):
          report.equal(text, official[key], ours[key])
        elif key == 'loss/bg':
          report.array(text, official[key], ours[key], scale=np.log(NUM_CLASSES),
                       note=BG_NOTE % np.log(NUM_CLASSES))
        else:
          report.array(text, official[key], ours[key])
  for prefix in ('localizer', 'localizer_full'):
    if want('localizer') and f'{prefix}/in/cas' in arrays:
      case = pc.group(arrays, f'{prefix}/in')
      V, S, _ = case['cas'].shape
      report.detections(f'{prefix.replace("_", " ")} ({V} videos, {S} snippets each)',
                        pc.unpack_detections(arrays, f'{prefix}/official'),
                        project_detections(case))
  return report


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
  net = model_mod.Model(width, NUM_CLASSES, 0)
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
      for k in OUTPUTS:
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
  f = localizer_floats(case)
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

  loader = [(torch.full((1, 1, 1), float(v)), torch.zeros(1, NUM_CLASSES), torch.zeros(1),
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
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  arrays, extra = {}, {}
  with pc.OfficialPort(source, EDITS, STUBS) as port, tempfile.TemporaryDirectory() as tmp:
    variants = [('step', arrays, WIDTH, HIDDEN, STEP_SHAPE, True)]
    if full:
      variants.append(('step_full', extra, *FULL, (2, 750), False))
    for prefix, target, width, hidden, (B, T), mid in variants:
      rng = _rng('step', width)
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
  return arrays, extra, applied


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--official', required=True,
                      help='checkout or git directory of github.com/lizhilin-ustc/SAL')
  parser.add_argument('--write-fixture', default=None,
                      help='store inputs and official outputs here (.npz + .json)')
  parser.add_argument('--quick', action='store_true',
                      help='skip the printed-only checks (full widths at T = 750, 750 snippets)')
  opts = parser.parse_args()
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  source = pc.open_source(opts.official, OFFICIAL_FILES)
  t0 = time.perf_counter()
  arrays, extra, applied = official_arrays(source, full=not opts.quick)
  report = compare(arrays, pc.Report())
  if extra:
    compare(extra, report)
  print(f'# SAL parity: project vs {REPOSITORY} @ {source.describe()}\n')
  print(report.table())
  print('official code as run: CUDA calls removed; ' + '; '.join(
      e for e in applied if '.cuda()' not in e))
  if opts.write_fixture:
    meta = pc.run_metadata(source, REPOSITORY, applied, torch.__version__)
    size = pc.write_fixture(opts.write_fixture, arrays, meta)
    print(f'\nwrote {opts.write_fixture} ({size / 1024:.0f} kB, {len(arrays)} arrays) + .json')
  print(f'\n{"PASS" if report.ok else "FAIL"}: {sum(r.ok for r in report.rows)}/'
        f'{len(report.rows)} quantities within {pc.TOLERANCE:g} relative '
        f'({time.perf_counter() - t0:.0f} s)')
  return 0 if report.ok else 1


if __name__ == '__main__':
  sys.exit(main())
