#!/usr/bin/env python3
"""CO2-Net against its authors' code (harlanhong/MM2021-CO2-Net): both on the same weights and inputs.

  python experiments/parity_co2net.py --official PATH [--write-fixture tests/fixtures/parity_co2net.npz]

PATH is the user's checkout of github.com/harlanhong/MM2021-CO2-Net, or a git directory of it
(`git clone --mirror`). That code has no license: it is read from PATH at run time and never stored
(parity_common.py). Needs torch (CPU), scipy and pandas in the environment beside the project; only
this script's official side imports torch.

Checked, on seeded inputs, the project with configs/thumos14.py:co2net (`CO2`) and
configs/activitynet12.py:co2net (`ANT_CO2`, the output smoothing, mutual weight 1):
  thumos / anet  the official model (eval mode: no dropout; the project's dropout rates 0) on one
                 batch of B = 10 videos, rows (0, 1), (2, 3), (4, 5) sharing classes as the
                 similar-pair sampler delivers them: the five outputs (fused features, cas, the
                 three attentions), every loss term (the official `topkloss` and `Contrastive`
                 themselves; the mutual, norm and guide terms as differences of the official
                 `criterion` with one alpha at a time), the total, and the gradient of the total
                 w.r.t. the input features and (thumos) every weight.
  localizer      the official `multiple_threshold_hamnet` on seeded cas / attention of videos of
                 8 to 200 snippets (the ambiguous-region filter finds no file: not applied) vs the
                 project's 'hamnet' localizer at 1 s per snippet (the official output stays in
                 snippets): the same (class, start, end), scores within the tolerance.
Narrow networks (D = 16): the official model file writes its widths as literals (the RGB / flow
split at 1024, the attention width 512, the classifier width 2048); the port makes them module
constants (parity_common.Edit, listed in the output).

Prints a table (quantity, max abs diff, max rel diff, pass at 1e-5 relative); exit status 0 when all
pass. --write-fixture stores the inputs and the official numbers, which tests/test_parity_co2net.py
replays without the official code.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import sys
import tempfile
import zlib
from typing import Dict, List

import jax
import numpy as np

from d2net_jax import methods
from d2net_jax.localize import hamnet

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position

REPOSITORY = 'https://github.com/harlanhong/MM2021-CO2-Net'
OFFICIAL_FILES = ('model.py', 'proposal_methods.py', 'options.py', 'utils/wsad_utils.py')
NUM_CLASSES = 20
B, T, WIDTH, HIDDEN = 10, 32, 16, 8  # Batch, snippets, feature width D, attention width.
# Pairs (0, 1), (2, 3), (4, 5) share a class (row 1 also has its own; pair (4, 5) repeats pair
# (2, 3)'s class, as the sampler's draw with replacement can); rows 6-9 anything.
LABELS = ([3], [3, 11], [7], [7], [7, 2], [7], [0], [5, 9], [19], [3])
LOC_LENGTHS = (8, 12, 20, 31, 47, 64, 90, 128, 160, 200)
GRID_LOGITS, GRID_UNIT = 10, 16  # Localizer inputs on dyadic grids (exact in float32).
STUBS = ('matplotlib', 'matplotlib.pyplot', 'tensorboard_logger', 'tqdm')
# Terms the official side gets as differences of `criterion` totals (one alpha at a time).
DIFFERENCES = ('mutual', 'norm', 'guide')

EDITS = [
    pc.Edit('model.py', r"^torch\.set_default_tensor_type\('torch\.cuda\.FloatTensor'\)$",
            '# (parity port) CPU tensors', 1, 'the global CUDA default tensor type dropped (CPU)'),
    pc.Edit('model.py', r'embed_dim = 1024', 'embed_dim = HALF', 1,
            'BWA_fusion_dropout_feat_v2: its width, a literal 1024, made HALF'),
    pc.Edit('model.py', r'\b512\b', 'HIDDEN', 4, 'the attention width, a literal 512, made HIDDEN'),
    pc.Edit('model.py', r'\(1024,args\)', '(HALF,args)', 4,
            'CO2 / ANT_CO2: the CCM width, a literal 1024, made HALF'),
    pc.Edit('model.py', r'feat\[:,(:?)1024(:?),:\]', r'feat[:,\1HALF\2,:]', 8,
            'CO2 / ANT_CO2 forward: the RGB / flow split at 1024 made HALF'),
    pc.Edit('model.py', r'embed_dim=2048', 'embed_dim=n_feature', 2,
            'CO2 / ANT_CO2: the classifier width, a literal 2048 (= the feature width), made '
            'n_feature'),
    pc.Edit('model.py', r'^import math$',
            'import math\nHALF, HIDDEN = 1024, 512  # (parity port) set by the script', 1,
            'module constants HALF (= 1024) and HIDDEN (= 512), set by the script'),
    pc.Edit('proposal_methods.py', r'^args = options\.parser\.parse_args\(\)$',
            'args = options.parser.parse_args([])', 1,
            'the options parsed from an empty command line (their defaults), not the script\'s'),
]

# torch parameter names of one CCM and of the rest, with their Flax places.
_CCM = {'bit_wise_attn.0': 'bit_wise_attn', 'channel_conv.0': 'channel_conv',
        'attention.0': 'attention_0', 'attention.3': 'attention_1', 'attention.5': 'attention_2'}


def _rng(*key):
  """A generator seeded by `key` (strings by their CRC-32: stable across processes)."""
  return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key])


# =================================================================================================
# Inputs.


def weight_shapes(D=WIDTH, H=HIDDEN, C=NUM_CLASSES) -> Dict[str, tuple]:
  """torch name -> shape of every weight CO2 uses (Conv1d: (out, in, k))."""
  E = D // 2
  shapes = {}
  for ccm in ('vAttn', 'fAttn'):
    for name, shape in (('bit_wise_attn.0', (E, E, 3)), ('channel_conv.0', (E, E, 3)),
                        ('attention.0', (H, E, 3)), ('attention.3', (H, H, 3)),
                        ('attention.5', (1, H, 1))):
      shapes[f'{ccm}.{name}.weight'], shapes[f'{ccm}.{name}.bias'] = shape, shape[:1]
  for name, shape in (('fusion.0', (D, D, 1)), ('classifier.1', (D, D, 3)),
                      ('classifier.4', (C + 1, D, 1))):
    shapes[f'{name}.weight'], shapes[f'{name}.bias'] = shape, shape[:1]
  return shapes


def make_weights(seed=0) -> Dict[str, np.ndarray]:
  """Seeded weights: kaiming-uniform kernels (as the code's init), small random biases (the code
  starts them at 0; non-zero ones check that they are used the same way)."""
  rng = _rng('weights', seed)
  out = {}
  for name, shape in weight_shapes().items():
    if name.endswith('weight'):
      bound = np.sqrt(6 / (shape[1] * shape[2]))
      out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
    else:
      out[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
  return out


def make_batch(seed=0):
  """(features (B, T, D) non-negative I3D-like, labels (B, C))."""
  rng = _rng('batch', seed)
  x = rng.gamma(0.8, 0.5, size=(B, T, WIDTH))
  for b in range(B):
    level = np.convolve(rng.normal(0, 1, T + 8), np.ones(9) / 9, mode='valid')[:T]
    x[b] *= (1 + 0.5 * np.tanh(level))[:, None]
  labels = np.zeros((B, NUM_CLASSES), np.float32)
  for b, classes in enumerate(LABELS):
    labels[b, classes] = 1
  return x.astype(np.float32), labels


def localizer_case(seed=0):
  """Seeded cas (sum of lengths, C + 1) on a 2^-10 grid and attention on a 2^-16 grid (exact in
  float32), one action of one class per video plus distractors; the video of 20 snippets has
  its attention peak at snippet 0 only (the code's `any()` skips such a lone index 0)."""
  rng = _rng('localizer', seed)
  cas, att = [], []
  for S in LOC_LENGTHS:
    smooth = lambda v, w: np.convolve(v, np.ones(w) / w, mode='same')
    z = smooth(rng.normal(0, 1.2, S), 5) - 1.5
    c = rng.normal(0, 1.0, (S, NUM_CLASSES + 1))
    k = int(rng.integers(NUM_CLASSES))
    for _ in range(int(rng.integers(1, 4))):
      i = int(rng.integers(0, S - 1))
      j = min(S, i + int(rng.integers(2, max(3, S // 3))))
      z[i:j] += rng.uniform(2.0, 5.0)
      c[i:j, k] += rng.uniform(1.5, 4.0)
    a = 1 / (1 + np.exp(-z))
    if S == 20:
      a = np.minimum(a, 0.5)
      a[0], a[1:3] = 0.93, 0.05
    cas.append(c)
    att.append(a)
  return {'cas': pc.to_grid(np.concatenate(cas), GRID_LOGITS, np.int16),
          'attn': pc.to_grid(np.concatenate(att), GRID_UNIT, np.uint16),
          'lengths': np.asarray(LOC_LENGTHS, np.int64)}


def localizer_videos(case) -> List[tuple]:
  """[(cas (S, C + 1), attention (S,)) float32] of `localizer_case`."""
  cas, att = pc.from_grid(case['cas'], GRID_LOGITS), pc.from_grid(case['attn'], GRID_UNIT)
  ends = np.cumsum(case['lengths'])
  return [(cas[e - s:e], att[e - s:e]) for s, e in zip(case['lengths'], ends)]


# =================================================================================================
# The project's side (no torch: tests/test_parity_co2net.py runs it from the stored arrays).


def project_config(variant: str):
  """configs/<thumos14|activitynet12>.py:co2net at the narrow widths, dropout off."""
  name = 'thumos14' if variant == 'thumos' else 'activitynet12'
  module = pc.load_module(pc.ROOT / 'configs' / f'{name}.py', f'_parity_{name}')
  config = module.get_config('co2net')
  config.co2net.attention_hidden = HIDDEN
  for field in ('dropout_rate', 'classifier_dropout', 'ccm_dropout', 'attention_logit_dropout'):
    config.co2net[field] = 0.0
  return config


def project_params(weights: Dict[str, np.ndarray]):
  """torch state dict -> Flax params: Conv1d (out, in, k) -> (k, in, out); the kernel-1 fusion
  and classifier output (out, in, 1) -> Dense (in, out)."""
  conv = lambda name: {'kernel': np.ascontiguousarray(weights[f'{name}.weight'].transpose(2, 1, 0)),
                       'bias': weights[f'{name}.bias']}
  dense = lambda name: {'kernel': np.ascontiguousarray(weights[f'{name}.weight'][:, :, 0].T),
                        'bias': weights[f'{name}.bias']}
  params = {flax: {place: conv(f'{torch}.{name}') for name, place in _CCM.items()}
            for flax, torch in (('v_attn', 'vAttn'), ('f_attn', 'fAttn'))}
  params.update(fusion=dense('fusion.0'), classifier_conv=conv('classifier.1'),
                classifier_out=dense('classifier.4'))
  return params


def project_step(variant: str, weights, features, labels):
  """(outputs, terms, gradients) of the project: d total / d features and / d each torch weight."""
  config = project_config(variant)
  method = methods.get('co2net')
  model = method.build_model(config, NUM_CLASSES, WIDTH)
  batch = {'features': features, 'labels': labels, 'mask': np.ones(features.shape[:2], np.float32)}

  def total(params, x):
    out = model.apply({'params': params}, x, batch['mask'], train=False)
    loss, aux = method.loss_fn(out, dict(batch, features=x), {}, config, None)
    return loss, (out, aux)

  (_, (out, aux)), (g_params, g_x) = jax.jit(jax.value_and_grad(total, argnums=(0, 1),
                                                                has_aux=True))(
      project_params(weights), features)
  out, aux, g_params, g_x = jax.device_get((out, aux, g_params, g_x))
  terms = {name: aux[f'loss_{name}'] for name in ('mil_orig', 'mil_supp', 'contrastive',
                                                  'mutual', 'norm', 'guide')}
  terms['total'] = aux['loss']
  grads = {'features': g_x}
  for flax, torch in (('v_attn', 'vAttn'), ('f_attn', 'fAttn')):
    for name, place in _CCM.items():
      grads[f'{torch}.{name}.weight'] = g_params[flax][place]['kernel'].transpose(2, 1, 0)
      grads[f'{torch}.{name}.bias'] = g_params[flax][place]['bias']
  for torch, flax, kind in (('fusion.0', 'fusion', 'dense'), ('classifier.1', 'classifier_conv',
                                                              'conv'),
                            ('classifier.4', 'classifier_out', 'dense')):
    kernel = g_params[flax]['kernel']
    grads[f'{torch}.weight'] = (kernel.T[:, :, None] if kind == 'dense'
                                else kernel.transpose(2, 1, 0))
    grads[f'{torch}.bias'] = g_params[flax]['bias']
  outputs = {'feat': out['feat'], 'cas': out['cas'], 'attn': out['attn'], 'v_atn': out['v_atn'],
             'f_atn': out['f_atn']}
  return outputs, terms, grads


def project_detections(case) -> List[List[tuple]]:
  """The 'hamnet' localizer at 1 s per snippet: (class, start, end, score) in snippets."""
  config = project_config('thumos').localize.hamnet
  found = []
  for cas, att in localizer_videos(case):
    d = hamnet.localize_video(cas, att, 1.0, config)
    found.append(list(zip(d.class_index.tolist(), d.start.tolist(), d.end.tolist(),
                          d.score.tolist())))
  return found


def compare(arrays: Dict[str, np.ndarray], report: pc.Report, only=None) -> pc.Report:
  """The stored official numbers against the project's, row by row into `report`."""
  weights = pc.group(arrays, 'weights')
  for variant in ('thumos', 'anet'):
    if only and variant not in only:
      continue
    official = pc.group(arrays, variant)
    outputs, terms, grads = project_step(variant, weights, arrays['features'], arrays['labels'])
    for name, value in outputs.items():
      report.array(f'{variant} output {name}', official[f'out/{name}'], value)
    for name, value in terms.items():
      if name in DIFFERENCES:  # Resolved only to float32 steps of the criterion's total.
        report.array(f'{variant} loss {name}', official[f'term/{name}'], value,
                     note='official: a difference of two criterion totals; relative to the total',
                     scale=float(abs(official['term/total'])))
      else:
        report.array(f'{variant} loss {name}', official[f'term/{name}'], value)
    for name, value in grads.items():
      if f'grad/{name}' in official:
        report.array(f'{variant} d total / d {name}', official[f'grad/{name}'], value)
  if not only or 'localizer' in only:
    case = pc.group(arrays, 'localizer')
    report.detections('localizer (snippets)', pc.unpack_detections(arrays, 'localizer/official'),
                      project_detections(case))
  return report


# =================================================================================================
# The official side (torch).


def _official_opt(options, variant):
  flags = ['--k', '7', '--max-seqlen', str(T)] if variant == 'thumos' else [
      '--k', '5', '--max-seqlen', '60', '--lr', '3e-5', '--dataset', 'AntSampleDataset']
  return options.parser.parse_args(flags + ['--num-class', str(NUM_CLASSES)])


def official_step(port, variant, weights, features, labels):
  """The official model and criterion on one batch: outputs, terms, gradients."""
  import torch  # pylint: disable=import-outside-toplevel  (the official side only)
  model_mod, options = port.imp('model'), port.imp('options')
  model_mod.HALF, model_mod.HIDDEN = WIDTH // 2, HIDDEN
  opt = _official_opt(options, variant)
  cls = model_mod.CO2 if variant == 'thumos' else model_mod.ANT_CO2
  torch.manual_seed(0)
  model = cls(WIDTH, NUM_CLASSES, opt=opt)
  state = model.state_dict()
  for name, value in weights.items():
    state[name] = torch.from_numpy(value)
  model.load_state_dict(state)
  model.eval()
  x = torch.from_numpy(features).requires_grad_(True)
  y = torch.from_numpy(labels)
  out = model(x, is_training=True, opt=opt)

  def criterion(a1, a2, a3, a4):
    o = argparse.Namespace(**dict(vars(opt), alpha1=a1, alpha2=a2, alpha3=a3, alpha4=a4))
    return model.criterion(out, y, opt=o)

  base = criterion(0, 0, 0, 0)  # mil_orig + mil_supp (+ the mutual term: ANT_CO2 ignores alpha4).
  supp = model._multiply(out['cas'], out['attn'], include_min=True)  # pylint: disable=protected-access
  terms = {
      'mil_orig': model.topkloss(out['cas'], y, is_back=True, rat=opt.k)[0].mean(),
      'mil_supp': model.topkloss(supp, y, is_back=False, rat=opt.k)[0].mean(),
      'contrastive': model.Contrastive(out['feat'], supp, y, is_back=False),
      'norm': criterion(1, 0, 0, 0) - base, 'guide': criterion(0, 1, 0, 0) - base}
  terms['mutual'] = (base - terms['mil_orig'] - terms['mil_supp'] if variant == 'anet'
                     else criterion(0, 0, 0, 1) - base)
  total = criterion(opt.alpha1, opt.alpha2, opt.alpha3, opt.alpha4)
  total.backward()
  terms['total'] = total
  grads = {'features': x.grad.numpy()}
  if variant == 'thumos':
    params = dict(model.named_parameters())
    grads.update({name: params[name].grad.numpy() for name in weights})
  arrays = {f'out/{k}': v.detach().numpy().squeeze(-1) if k in ('attn', 'v_atn', 'f_atn')
            else v.detach().numpy() for k, v in out.items()}
  arrays.update({f'term/{k}': np.float64(v.item()) for k, v in terms.items()})
  arrays.update({f'grad/{k}': v for k, v in grads.items()})
  return arrays


def official_detections(port, case) -> List[List[tuple]]:
  """The official multiple_threshold_hamnet on each video (snippet units), in a working directory
  without Thumos14reduced-Annotations/, so its ambiguous-region filter finds nothing."""
  import torch  # pylint: disable=import-outside-toplevel  (the official side only)
  pm = port.imp('proposal_methods')
  found = []
  cwd = os.getcwd()
  with tempfile.TemporaryDirectory(prefix='parity_co2net_cwd_') as empty:
    os.chdir(empty)
    try:
      for v, (cas, att) in enumerate(localizer_videos(case)):
        data = {'cas': torch.from_numpy(cas)[None], 'attn': torch.from_numpy(att)[None, :, None]}
        with contextlib.redirect_stdout(io.StringIO()):
          frame = pm.multiple_threshold_hamnet(f'video_{v}'.encode(), data)
        found.append([(int(r['label']), float(r['t-start']), float(r['t-end']), float(r['score']))
                      for _, r in frame.iterrows()])
    finally:
      os.chdir(cwd)
  return found


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--official', required=True, help='checkout (or git directory) of '
                      f'{REPOSITORY}')
  parser.add_argument('--write-fixture', default='', help='store inputs and official numbers here')
  args = parser.parse_args(argv)
  import torch  # pylint: disable=import-outside-toplevel  (the official side only)
  torch.set_num_threads(2)
  source = pc.open_source(args.official, OFFICIAL_FILES)
  weights = make_weights()
  features, labels = make_batch()
  case = localizer_case()
  arrays = {'features': features, 'labels': labels}
  arrays.update({f'weights/{k}': v for k, v in weights.items()})
  arrays.update({f'localizer/{k}': v for k, v in case.items()})
  with pc.OfficialPort(source, EDITS, STUBS) as port:
    for variant in ('thumos', 'anet'):
      step = official_step(port, variant, weights, features, labels)
      arrays.update({f'{variant}/{k}': v for k, v in step.items()})
    arrays.update(pc.pack_detections('localizer/official', official_detections(port, case)))
    edits = list(port.applied)
  report = compare(arrays, pc.Report())
  print(f'official {REPOSITORY} at {source.describe()}; port edits:')
  print('\n'.join(f'  {e}' for e in edits))
  print(report.table())
  if args.write_fixture:
    size = pc.write_fixture(args.write_fixture, arrays,
                            pc.run_metadata(source, REPOSITORY, edits, torch.__version__))
    print(f'wrote {args.write_fixture} ({size} bytes)')
  print('all quantities match' if report.ok else 'MISMATCH: ' + '; '.join(report.failures()))
  return 0 if report.ok else 1


if __name__ == '__main__':
  sys.exit(main())
