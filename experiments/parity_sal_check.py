"""The project's side of experiments/parity_sal.py, and the comparison it prints.

tests/test_parity_fixtures.py replays the official numbers that script stored
(tests/fixtures/parity_sal.npz) through `compare`, without the official code and without torch:
the project's SAL (configs/thumos14.py:sal, dropout off) takes a training step on the stored
weights and batch, its 'oic' localizer the stored network outputs, and every row must be within
parity_common.TOLERANCE (1e-5) relative (pseudo-labels: exactly equal).
"""

from __future__ import annotations

import pathlib
import sys
from typing import Dict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position

REPOSITORY = 'https://github.com/lizhilin-ustc/SAL'
ANET_REPOSITORY = 'https://github.com/lizhilin-ustc/SAL_ActivityNet'
# The project's preset of each check: configs/<preset>.py:sal.
PRESETS = {'step': 'thumos14', 'step_full': 'thumos14', 'anet_step': 'activitynet13',
           'localizer': 'thumos14', 'localizer_full': 'thumos14',
           'anet_localizer': 'activitynet13'}
NUM_CLASSES = 20
HIDDEN = 8  # Hidden width of the stored checks (the real one: 512).
GRID_LOGITS, GRID_UNIT = 10, 16  # Localizer inputs on dyadic grids (exact in float32).


def localizer_floats(case):
  return {'cas': pc.from_grid(case['cas'], GRID_LOGITS), 'a_f': pc.from_grid(case['a_f'], GRID_UNIT),
          'a_r': pc.from_grid(case['a_r'], GRID_UNIT), 'sc': pc.from_grid(case['sc'], GRID_LOGITS)}


def seconds_per_snippet(v_len, S, feature_fps=25):
  """Seconds one of the S fed snippets covers for a video of v_len 16-frame snippets."""
  return 16.0 * v_len / (S * feature_fps)


# =================================================================================================
# The project's side.


def project_config(hidden, preset='thumos14'):
  """configs/<preset>.py:sal at hidden width `hidden`, dropout off."""
  module = pc.load_module(pc.ROOT / 'configs' / f'{preset}.py', f'_parity_{preset}')
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


def project_step(case, states, preset='thumos14'):
  """The project's training step (dropout off) from each (mu, var) of `states`: outputs, loss
  terms, pseudo-labels, masks, new statistics and the gradients (torch layout, and d / d x)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  from d2net_jax.methods.sal import losses  # pylint: disable=import-outside-toplevel
  x, labels = case['x'], case['labels']
  weights = pc.group(case, 'weights')
  config = project_config(weights['fc1.weight'].shape[0], preset)
  c = config.sal
  method = methods.get('sal')
  model = method.build_model(config, labels.shape[1], x.shape[-1])
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


def project_detections(case, preset='thumos14'):
  """The 'oic' localizer on each video's first T snippets (T: case['T'], else all)."""
  from d2net_jax import localize  # pylint: disable=import-outside-toplevel
  config = project_config(HIDDEN, preset).localize.oic
  f = localizer_floats(case)
  lengths = case.get('T', np.full(len(case['v_len']), f['cas'].shape[1]))
  out = []
  for v, (v_len, T) in enumerate(zip(case['v_len'], lengths)):
    d = localize.oic.localize_video(f['cas'][v, :T], f['a_f'][v, :T], f['a_r'][v, :T],
                                    f['sc'][v], seconds_per_snippet(int(v_len), int(T)), config)
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
  collection of the checks to limit it to (keys of PRESETS)."""
  want = lambda prefix: only is None or prefix in only
  for prefix in ('step', 'step_full', 'anet_step'):
    if not (want(prefix) and f'{prefix}/in/x' in arrays):
      continue
    case = pc.group(arrays, f'{prefix}/in')
    names = sorted({k.split('/')[1] for k in arrays if k.startswith(f'{prefix}/state')})
    officials = [pc.group(arrays, f'{prefix}/{n}') for n in names]
    states = [(o['state_before/mu'], o['state_before/var']) for o in officials]
    size = f'D={case["x"].shape[2]} hidden={case["weights/fc1.weight"].shape[0]}'
    for name, official, ours in zip(names, officials,
                                    project_step(case, states, PRESETS[prefix])):
      label = f'{prefix.replace("_", " ")} {size} {name.replace("state_", "from ")}'
      keys = [k for k in official if not k.startswith('state_before/')]
      for key in sorted(keys, key=lambda k: (list(KINDS).index(k.split('/')[0]), k)):
        kind, what = key.split('/', 1)
        text = f'{label}: ' + ' '.join(filter(None, (KINDS[kind], LABELS_OF.get(what, what))))
        if kind == 'train' and what.startswith('g'):
          report.equal(text, official[key], ours[key])
        elif key == 'loss/bg':
          log_c = np.log(case['labels'].shape[1])
          report.array(text, official[key], ours[key], scale=log_c, note=BG_NOTE % log_c)
        else:
          report.array(text, official[key], ours[key])
  for prefix in ('localizer', 'localizer_full', 'anet_localizer'):
    if want(prefix) and f'{prefix}/in/cas' in arrays:
      case = pc.group(arrays, f'{prefix}/in')
      V, S, _ = case['cas'].shape
      size = f'{S} snippets each' if 'T' not in case else f'{min(case["T"])}-{S} snippets'
      report.detections(f'{prefix.replace("_", " ")} ({V} videos, {size})',
                        pc.unpack_detections(arrays, f'{prefix}/official'),
                        project_detections(case, PRESETS[prefix]))
  return report


def group(name: str) -> str:
  """The summary line of a row: its check and starting state, and the kind of quantity."""
  head, _, rest = name.partition(': ')
  if not rest:
    return head.split(' (')[0] + ' (' + head.split(' (')[1]
  kinds = (('output', 'outputs'), ('loss', 'loss terms'), ('d total / d', 'gradients'),
           ('new', 'running statistics'), ('pseudo-labels', 'pseudo-labels'), ('mask', 'masks'))
  return f'{head}: ' + next(label for prefix, label in kinds if prefix in rest)
