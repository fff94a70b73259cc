#!/usr/bin/env python3
"""SAL against its authors' code (lizhilin-ustc/SAL, THUMOS14; lizhilin-ustc/SAL_ActivityNet,
ActivityNet1.3): both on the same weights and inputs.

  python experiments/parity_sal.py --official PATH [--official-anet PATH_ANET]
      [--write-fixture tests/fixtures/parity_sal.npz] [--markdown FILE] [--quick]

PATH (PATH_ANET) is the user's checkout of github.com/lizhilin-ustc/SAL (SAL_ActivityNet), or a git
directory of it (`git clone --mirror`). That code has no license: it is read at run time and never
stored (parity_common.py). Needs torch (CPU) in the environment beside the project; only this
script's official side imports it.

Checked, on seeded inputs, the project with configs/thumos14.py:sal (configs/activitynet13.py:sal):
  step       main_thumos.py's ThumosTrainer.train() itself (main_SA13_1.py's
             Trainer.train_one_step()) on one batch (B = 3, so the direction of the mix-up's batch
             roll shows; every Dropout p = 0, the project's dropout_rate 0): the nine network
             outputs (CAS, background CAS, actionness of both streams, of the mixed videos,
             second-order logits), every loss term (unweighted) and the total, the pseudo-labels g
             and g_mix, the adaptive masks w and w_mix, the running mean and variance behind them,
             and the gradient of the total w.r.t. every weight and the input features. THUMOS14
             from the code's initial statistics (mu = 1/C, var = 1) and from a mid-training state
             (mask far from 1), ActivityNet1.3 from a mid-training state, 20 classes (its 200 are
             a parameter of the step). Widths D = 16, hidden 8 (stored) and the real 2048, 512 at
             T = 750 (THUMOS14, printed only).
  localizer  inference_thumos.inference() itself (Trainer.test_all()) with a stand-in network
             returning seeded outputs vs the project's 'oic' localizer: detections (class, start,
             end in seconds) identical and scores within the tolerance. THUMOS14: 64 snippets per
             video (stored) and 750 (printed only), original lengths 30 to 3000 snippets, an
             argmax-fallback video, a video whose action sits at snippet 0 only; ActivityNet1.3:
             4 to 50 snippets (videos of at most 50 are fed whole), an argmax-fallback video.
Narrow networks: the official model files write their widths as literals (512 hidden, the RGB/flow
split at 1024); the port makes them parameters (parity_common.Edit, listed in the output).

Prints a summary and a table (quantity, max abs diff, max rel diff, pass at 1e-5 relative); exit
status 0 when all pass. --write-fixture stores the inputs and the official outputs of the narrow
checks, which tests/test_parity_fixtures.py replays without the official code. docs/parity_sal.md
shows a run.
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
ANET_FILES = ('main_SA13_1.py', 'core/SA13_1.py', 'core/config13_base.py', 'core/loss_asl.py',
              'core/utils.py', 'eval1/misc_utils.py')
ANET_STEP_SHAPE = (3, 50)  # NUM_SEGMENTS = 50 (>= the 40 pseudo-label positives).
ANET_CLASSES = 20  # The code's 200 classes are a parameter of its step and localizer.
ANET_LOC_VIDEOS = 16


def _width_edits(model_file, literals_512, literals_1024):
  """The model file's widths, literals there, made parameters (the same at the real widths)."""
  return [
      pc.Edit(model_file, r'\b512\b', 'HIDDEN', literals_512,
              f'the hidden width, a literal 512 ({literals_512} times, comments too), made a '
              'module constant HIDDEN...'),
      pc.Edit(model_file, r'^import math$',
              'import math\nHIDDEN = 512  # (parity port) set by the script', 1,
              '...= 512, set by the script'),
      pc.Edit(model_file, r'\b1024\b', 'self.len_feature // 2', literals_1024,
              'the RGB / flow split at 1024 made len_feature / 2 (the same at the real 2048)')]


def _hook_edits(main_file, function):
  """A hook the script sets, called with the training step's locals after its backward pass."""
  return [
      pc.Edit(main_file, r'^import time$',
              'import time\n\n\ndef _parity_hook(scope):  # (parity port) replaced at run time\n'
              '    return None', 1, 'a hook function added'),
      pc.Edit(main_file, r'^(?P<i>[ \t]*)cost\.backward\(\)\s*$',
              r'\g<i>cost.backward()\n\g<i>_parity_hook(locals())', 1,
              f"{function}: the hook reads the step's locals after backward")]


EDITS = _width_edits('models/model_x4.py', 12, 2) + _hook_edits('main_thumos.py', 'train()') + [
    pc.Edit('inference_thumos.py', r'(score_np = score_supp\[0, :\]\.cpu\(\)\.numpy\(\))',
            r'\1.copy()', 1,
            "inference(): score_np copied, as .cpu() of a CUDA tensor copies (on CPU .numpy() "
            "would alias score_supp, whose binarisation would leak into the OIC scores)")]
ANET_EDITS = _width_edits('core/SA13_1.py', 13, 3) + _hook_edits(
    'main_SA13_1.py', 'train_one_step()') + [
        pc.Edit('main_SA13_1.py', r'^from core\.SA13_2 import SALModel$',
                'from core.SA13_1 import SALModel', 1,
                'the model is imported from core/SA13_2.py, absent from the repository: '
                'core/SA13_1.py'),
        pc.Edit('main_SA13_1.py',
                r'(score_np = score_supp\[0, :\]\.cpu\(\)\.data\.numpy\(\))', r'\1.copy()',
                1, 'test_all(): score_np copied, as .cpu() of a CUDA tensor copies')]


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


def anet_localizer_case(count):
  """ActivityNet1.3's test feeding: a video of L <= 50 snippets is fed whole (T = L), a longer one
  resampled to 50 (T = 50); T >= 4 (the code's top-k of T // 4 is empty below). Outputs stored
  padded to 50, with T."""
  rng = pc.seeded_rng('anet localizer')
  cases = []
  for v in range(count):
    T = {1: 4, 2: 7}.get(v, 50 if v % 3 == 0 else int(rng.integers(4, 51)))
    v_len = int(rng.integers(51, 3000)) if T == 50 else T
    cas, a_f, a_r, sc = _bumps(rng, T, ANET_CLASSES, v_len)
    if v == 5:  # No class passes: the argmax fallback.
      cas, sc = cas * 0.05, sc * 0.05
    pad = lambda a: np.concatenate([a, np.zeros((50 - T,) + a.shape[1:])])
    cases.append((pad(cas), pad(a_f), pad(a_r), sc, v_len, T))
  cas, a_f, a_r, sc, v_len, T = (np.stack(x) for x in zip(*cases))
  return {'cas': pc.to_grid(cas, ck.GRID_LOGITS, np.int16),
          'a_f': pc.to_grid(a_f, ck.GRID_UNIT, np.uint16),
          'a_r': pc.to_grid(a_r, ck.GRID_UNIT, np.uint16),
          'sc': pc.to_grid(sc, ck.GRID_LOGITS, np.int16), 'v_len': v_len.astype(np.int64),
          'T': T.astype(np.int64)}


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


class _NoUpdate:
  """Stands for the optimizer: the step's gradients are what is compared, not Adam's update."""

  def __init__(self, net):
    self.net = net

  def zero_grad(self):
    self.net.zero_grad()

  def step(self):
    pass


# The official locals holding the unweighted loss terms, the input and the network (THUMOS14,
# ActivityNet1.3 code); L_bg and L_mc are recomputed unweighted from the tensors the code weights.
_LOCALS = {'thumos': {'mil': 'mil_loss', 'act': 'act_loss', 'mix': 'mix_loss', 'se': 'se_loss',
                      'x': '_data'},
           'anet': {'mil': 'base_loss', 'act': 'sta_loss', 'mix': 'aug_loss', 'se': 'sc_loss',
                    'x': 'data'}}


def _recorder(seen, kind, net, rename):
  """The hook the port calls after the official backward pass: outputs, loss terms, targets, new
  statistics and gradients into `seen` (parameter names through `rename`)."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  F = torch.nn.functional
  names = _LOCALS[kind]

  def hook(scope):
    sq = lambda t: t.detach().numpy().copy()
    for k in ck.OUTPUTS:
      seen[f'out/{k}'] = sq(scope[k])[:, 0] if k.startswith('action') else sq(scope[k])
    with torch.no_grad():
      for term in ('mil', 'act', 'mix', 'se'):
        seen[f'loss/{term}'] = scope[names[term]].item()
      seen['loss/bg'] = F.kl_div(scope['cas_top_bg'].log(), scope['label_bg'],
                                 reduction='batchmean').item()
      seen['loss/mc'] = F.mse_loss(scope['action_rgb'], scope['action_flow']).item()
      seen['loss/total'] = scope['cost'].item()
    trainer = scope['self']
    seen['train/g'] = sq(scope['cls_agnostic_gt'])[:, 0].astype(np.float32)
    seen['train/g_mix'] = sq(scope['cls_agnostic_gt_aug'])[:, 0].astype(np.float32)
    seen['train/w'], seen['train/w_mix'] = sq(scope['mask']), sq(scope['mask_aug'])
    seen['state/mu'] = np.float64(trainer.prob_max_mu_t)
    seen['state/var'] = np.float64(trainer.prob_max_var_t)
    for n, param in net.named_parameters():
      seen[f'grad/{rename(n)}'] = sq(param.grad)
    seen['grad/x'] = sq(scope[names['x']].grad)
  return hook


def _mid_state(cas, var_divisor):
  """A mid-training state, so the adaptive mask is far from 1: mu = mean + std / 2 and
  var = std^2 / var_divisor of max_c softmax(cas) over the batch."""
  pm = cas.softmax(-1).max(-1)[0].double()
  return float(pm.mean() + 0.5 * pm.std()), float(pm.var() / var_divisor)


def _run_hooked(module, hook, run):
  module._parity_hook = hook  # pylint: disable=protected-access
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      run()
  finally:
    module._parity_hook = lambda scope: None  # pylint: disable=protected-access


def _dropout_off(net):
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  for m in net.modules():
    if isinstance(m, torch.nn.Dropout):
      m.p = 0.0


def official_steps(port, tmp, case, mid_state):
  """ThumosTrainer.train() on the case's batch, once from the code's initial statistics and once
  from a mid-training state; {'state_initial': {...}, 'state_mid': {...}}."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  mt = port.imp('main_thumos')
  x, labels = case['x'], case['labels']
  weights = pc.group(case, 'weights')
  B, T, width = x.shape
  port.imp('models.model_x4').HIDDEN = weights['fc1.weight'].shape[0]
  config = official_config(port, T, os.path.join(tmp, f'out{T}'), width)
  results = {}
  for name in ('state_initial', 'state_mid')[:1 + mid_state]:
    batch = (torch.tensor(x, requires_grad=True), torch.tensor(labels), torch.zeros(1),
             [f'v{i}' for i in range(B)], torch.full((B,), T))
    mt.get_dataloaders = lambda config: ([batch], None)
    trainer = mt.ThumosTrainer(config)
    trainer.net.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    _dropout_off(trainer.net)
    if name == 'state_mid':
      with torch.no_grad():
        cas = trainer.net(torch.tensor(x), config)[0]
      trainer.prob_max_mu_t, trainer.prob_max_var_t = _mid_state(cas, 1.0)
    seen = {'state_before/mu': np.float64(trainer.prob_max_mu_t),
            'state_before/var': np.float64(trainer.prob_max_var_t)}
    _run_hooked(mt, _recorder(seen, 'thumos', trainer.net, lambda n: n), trainer.train)
    if 'loss/total' not in seen:
      raise AssertionError('the official train() did not reach its backward pass')
    results[name] = {k: np.asarray(v) for k, v in seen.items()
                     if not (name == 'state_mid' and k.startswith('out/'))}  # As from initial.
  return results


def _anet_config(port, num_classes=ANET_CLASSES):
  """build_args(dataset='ActivityNet') with NUM_CLASSES = num_classes."""
  with _argv(['main_SA13_1.py']):
    config = port.imp('core.config13_base').build_args(dataset='ActivityNet')
  config.NUM_CLASSES = num_classes
  return config


def _to_anet(name):
  return name.replace('encoder.', 'base_module.', 1)


def _from_anet(name):
  return name.replace('base_module.', 'encoder.', 1)


def official_anet_weights(port, width, hidden, num_classes, seed):
  """The ActivityNet SALModel's own initialisation, names as the THUMOS14 model's (its encoder
  'base_module' stored as 'encoder')."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  port.imp('core.SA13_1').HIDDEN = hidden
  torch.manual_seed(seed)
  net = port.imp('core.SA13_1').SALModel(width, num_classes, _anet_config(port, num_classes))
  return {_from_anet(k): v.detach().numpy().copy() for k, v in net.state_dict().items()}


def official_anet_step(port, case):
  """main_SA13_1.py's Trainer.train_one_step on the case's batch from a mid-training state."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  ms = port.imp('main_SA13_1')
  x, labels = case['x'], case['labels']
  weights = pc.group(case, 'weights')
  port.imp('core.SA13_1').HIDDEN = weights['fc1.weight'].shape[0]
  config = _anet_config(port, labels.shape[1])
  net = port.imp('core.SA13_1').SALModel(x.shape[2], labels.shape[1], config)
  net.load_state_dict({_to_anet(k): torch.tensor(v) for k, v in weights.items()})
  _dropout_off(net)
  trainer = ms.Trainer(config)
  with torch.no_grad():
    trainer.prob_max_mu_t, trainer.prob_max_var_t = _mid_state(net(torch.tensor(x))[0], 6.0)
  seen = {'state_before/mu': np.float64(trainer.prob_max_mu_t),
          'state_before/var': np.float64(trainer.prob_max_var_t)}
  data = torch.tensor(x, requires_grad=True)
  _run_hooked(ms, _recorder(seen, 'anet', net, _from_anet), lambda: trainer.train_one_step(
      net, iter([(data, torch.tensor(labels))]), _NoUpdate(net), None, 1))
  if 'loss/total' not in seen:
    raise AssertionError('the official train_one_step() did not reach its backward pass')
  return {'state_mid': {k: np.asarray(v) for k, v in seen.items()}}


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


def official_anet_detections(port, tmp, case):
  """main_SA13_1.py's Trainer.test_all() on the case's videos through a stand-in network (the
  official scorer, which needs the real ground truth, stubbed); per video
  [(class, start_s, end_s, score)] in the official order."""
  import torch  # pylint: disable=import-outside-toplevel  (official side only)
  f = ck.localizer_floats(case)
  ms = port.imp('main_SA13_1')
  config = _anet_config(port)
  config.OUTPUT_PATH = tmp
  names = [f'v_anet_{v:03d}' for v in range(len(case['T']))]

  class Outputs(torch.nn.Module):
    def forward(self, x):
      v = int(x.reshape(-1)[0].item())
      T = int(case['T'][v])
      cas = torch.from_numpy(f['cas'][v, :T])[None]
      a_f = torch.from_numpy(f['a_f'][v, :T])[None, None]
      a_r = torch.from_numpy(f['a_r'][v, :T])[None, None]
      sc = torch.from_numpy(f['sc'][v])[None]
      z = torch.zeros
      return cas, z(cas.shape), a_f, a_r, z(a_f.shape), z(a_r.shape), sc, z(sc.shape), z(sc.shape)

  class NoScorer:
    def __init__(self, *args, **kwargs):
      pass

    def evaluate(self):
      return np.zeros(len(config.TIOU_THRESH)), 0.0

  loader = [([names[v]], torch.full((1, int(T), 1), float(v)), torch.zeros(1, ANET_CLASSES),
             torch.tensor([int(v_len)]), torch.tensor([v_len * 16 / 25]))
            for v, (T, v_len) in enumerate(zip(case['T'], case['v_len']))]
  info = {'step': [], 'test_acc': [], 'average_mAP': [],
          **{f'mAP@{t:.2f}': [] for t in config.TIOU_THRESH}}
  saved = ms.ANETdetection
  ms.ANETdetection = NoScorer
  try:
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all='ignore'):
      ms.Trainer(config).test_all(Outputs(), config, loader, info, 0)
  finally:
    ms.ANETdetection = saved
  with open(os.path.join(tmp, 'result.json')) as fh:
    results = json.load(fh)['results']
  index = {n: c for c, n in enumerate(config.class_name_lst)}
  return [[(index[r['label']], float(r['segment'][0]), float(r['segment'][1]), float(r['score']))
           for r in results.get(n, [])] for n in names]


def official_anet_arrays(source, arrays):
  """The ActivityNet1.3 code's step and localizer, into `arrays`; returns the port's edits."""
  with pc.OfficialPort(source, ANET_EDITS, STUBS) as port, tempfile.TemporaryDirectory() as tmp:
    rng = pc.seeded_rng('anet step')
    B, T = ANET_STEP_SHAPE
    case = {'x': features(rng, B, T, WIDTH),
            'labels': labels_of(([17 % ANET_CLASSES], [2, 3], [19])[:B], ANET_CLASSES),
            **{f'weights/{k}': v for k, v in
               official_anet_weights(port, WIDTH, ck.HIDDEN, ANET_CLASSES, 0).items()}}
    arrays.update({f'anet_step/in/{k}': v for k, v in case.items()})
    for name, seen in official_anet_step(port, case).items():
      arrays.update({f'anet_step/{name}/{k}': v for k, v in seen.items()})
    case = anet_localizer_case(ANET_LOC_VIDEOS)
    arrays.update({f'anet_localizer/in/{k}': v for k, v in case.items()})
    arrays.update(pc.pack_detections('anet_localizer/official',
                                     official_anet_detections(port, tmp, case)))
    return port.applied


def official_arrays(sources, full: bool):
  """Runs the official code on every case: (the fixture's arrays, the ports' edits, a function
  adding the printed-only rows (full) to a report, or None)."""
  source = sources['--official']
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
    applied = {'--official': port.applied}
  if '--official-anet' in sources:
    applied['--official-anet'] = official_anet_arrays(sources['--official-anet'], arrays)
  return arrays, applied, (lambda report: ck.compare(extra, report)) if full else None


if __name__ == '__main__':
  sys.exit(pc.main('SAL parity', [
      pc.Official('--official', ck.REPOSITORY, OFFICIAL_FILES),
      pc.Official('--official-anet', ck.ANET_REPOSITORY, ANET_FILES, required=False)],
      official_arrays, ck.compare, ck.group,
      quick_help='skip the printed-only checks (the real widths at T = 750, 750 snippets per '
                 'video)'))
