"""The project's side of experiments/parity_d2net.py, and the comparison it prints.

tests/test_parity_fixtures.py replays the official numbers that script stored
(tests/fixtures/parity_d2net.npz) through `compare`, without the official code and without torch:
the project's network (inference outputs, a training step's gradients), d2net_loss and the
localizer run on the stored weights and inputs with the presets' `d2net,official_protocol`
settings, and every row must be within parity_common.TOLERANCE (1e-5) relative. The Eq. 3 pairing
draws of the project (`pairing.official_permutations`) are set to the stored permutations, the ones
the official torch.randperm calls returned (`forced_pairing`).
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
from typing import Dict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import parity_common as pc  # noqa: E402  pylint: disable=wrong-import-position

REPOSITORY = 'https://github.com/naraysa/D2-Net'
# (preset file, classes); the project runs configs/<preset>.py:d2net,official_protocol.
PATHS = {'thumos': ('thumos14', 20), 'anet': ('activitynet12', 100)}
WIDTH = 16  # Feature width D of the stored checks (D/2 per stream).
FULL_WIDTH = 2048  # The real width (printed only).
ITRS = (1002, 1003)  # Official iterations: denoising on (itr > 1000, even), off.
SECONDS_PER_SNIPPET = 0.64
GRID = 16  # Localizer inputs stored on the grid 2^-16 (exact in float32).


# =================================================================================================
# The project's side.


def project_config(path):
  """configs/<preset>.py:d2net,official_protocol."""
  preset, _ = PATHS[path]
  module = pc.load_module(pc.ROOT / 'configs' / f'{preset}.py', f'_parity_{preset}')
  return module.get_config('d2net,official_protocol')


def project_params(weights: Dict[str, np.ndarray], num_classes: int):
  """The official grouped-conv weights as the project's two streams: group 0 (input channels
  [0, D/2), classifier outputs [0, C)) is the RGB stream, group 1 the flow stream; Flax kernels
  are (k, in, out) = torch (out, in, k) transposed."""
  half = weights['conv.weight'].shape[0] // 2

  def conv(name, lo, hi):
    return {'kernel': np.ascontiguousarray(weights[f'{name}.weight'][lo:hi].transpose(2, 1, 0)),
            'bias': weights[f'{name}.bias'][lo:hi]}

  return {stream: {'conv1': conv('conv', lo, hi), 'conv2': conv('conv1', lo, hi),
                   'classifier': conv('classifier', clo, chi)}
          for stream, lo, hi, clo, chi in (('rgb', 0, half, 0, num_classes),
                                           ('flow', half, 2 * half, num_classes, 2 * num_classes))}


def official_grads(grads: Dict[str, np.ndarray], num_classes: int) -> Dict[str, np.ndarray]:
  """The project's parameter gradients in the official layout (out, in/2, k) (project_params
  inverted), so they compare name by name."""
  out = {}
  for official, ours in (('conv', 'conv1'), ('conv1', 'conv2'), ('classifier', 'classifier')):
    out[f'{official}.weight'] = np.concatenate(
        [np.asarray(grads[s][ours]['kernel']).transpose(2, 1, 0) for s in ('rgb', 'flow')])
    out[f'{official}.bias'] = np.concatenate([np.asarray(grads[s][ours]['bias'])
                                              for s in ('rgb', 'flow')])
  return out


@contextlib.contextmanager
def forced_pairing(perms):
  """The project's Eq. 3 draws (pairing.official_permutations) replaced by `perms` (4, B)."""
  from d2net_jax.methods.d2net import pairing  # pylint: disable=import-outside-toplevel
  original = pairing.official_permutations
  pairing.official_permutations = lambda key, batch_size: perms
  try:
    yield
  finally:
    pairing.official_permutations = original


def _loss_terms(aux):
  return {'total': aux['loss'], 'L_Dis': aux['loss_dis'], 'L_DS': aux['loss_ds'],
          'L_DV': aux['loss_dv'], 'x_ref': aux['state']['x_ref']}


def project_loss(path, case, itrs):
  """d2net_loss on the stand-in outputs: tcam = sigmoid(logits), both zeroed at padding as the
  network's are; per itr of `itrs`: terms, d total / d logits, d total / d embeddings."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  config = project_config(path)
  method = methods.get('d2net')
  T = case['logits'].shape[1]
  mask = (np.arange(T)[None] < case['lengths'][:, None]).astype(np.float32)

  def loss(logits, emb, perms, step):
    m = mask[..., None]
    outputs = {'tcam': jax.nn.sigmoid(logits) * m, 'embeddings': emb * m}
    with forced_pairing(perms):
      return method.loss_fn(outputs, {'mask': mask, 'labels': case['labels']},
                            {'x_ref': case['x_ref'], 'step': step}, config, jax.random.key(0))

  fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
  out = []
  for itr in itrs:
    (_, aux), (g_logits, g_emb) = fn(case['logits'], case['emb'], case['perms'], jnp.int32(itr))
    out.append({**_loss_terms(aux), 'grad_logits': g_logits, 'grad_emb': g_emb})
  return out


def project_step(case, itrs):
  """Training steps (one per itr of `itrs`) of the project's network (dropout off) and
  d2net_loss: terms and the gradient of every weight (official layout)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  config = project_config('thumos')
  config.model.dropout_rate = 0.0
  method = methods.get('d2net')
  model = method.build_model(config, 20, case['features'].shape[-1])
  weights = pc.group(case, 'weights')
  B, T, _ = case['features'].shape
  mask = np.ones((B, T), np.float32)

  def loss(params, perms, step):
    outputs = model.apply({'params': params}, case['features'], mask, train=True,
                          rngs={'dropout': jax.random.key(0)})
    with forced_pairing(perms):
      return method.loss_fn(outputs, {'mask': mask, 'labels': case['labels']},
                            {'x_ref': case['x_ref'], 'step': step}, config, jax.random.key(0))

  fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
  out = []
  for itr in itrs:
    (_, aux), grads = fn(project_params(weights, 20), case['perms'], jnp.int32(itr))
    out.append({**_loss_terms(aux),
                **{f'grad/{k}': v for k, v in official_grads(grads, 20).items()}})
  return out


def project_model(path, case):
  """The project's eval path on a padded batch: (tcam, embeddings, lambda') (B, T_pad, ...)."""
  import jax  # pylint: disable=import-outside-toplevel
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  _, num_classes = PATHS[path]
  config = project_config(path)
  method = methods.get('d2net')
  features = case['features']
  width = features.shape[-1]
  pad = 64 * -(-features.shape[1] // 64)  # The evaluation pads to buckets, with a mask.
  x = np.zeros((features.shape[0], pad, width), np.float32)
  x[:, :features.shape[1]] = features
  mask = (np.arange(pad)[None] < case['lengths'][:, None]).astype(np.float32)
  model = method.build_model(config, num_classes, width)

  @jax.jit
  def forward(params, x, mask):
    snippet, _ = method.inference_outputs(model, params, {'x_ref': case['x_ref']}, x, mask, config)
    outputs = model.apply({'params': params}, x, mask, train=False)
    return {'tcam': snippet['tcam'], 'emb': outputs['embeddings'],
            'attention': snippet['attention']}

  return forward(project_params(pc.group(case, 'weights'), num_classes), x, mask)


def project_detections(path, tcams, atts):
  from d2net_jax import localize  # pylint: disable=import-outside-toplevel
  config = project_config(path).localize
  out = []
  for tcam, att in zip(tcams, atts):
    d = localize.localize_video(tcam, att, SECONDS_PER_SNIPPET, config)
    out.append([(int(c), int(s), int(e), float(v)) for c, s, e, v in
                zip(d.class_index, d.start_snippet, d.end_snippet, d.score)])
  return out


# =================================================================================================
# The comparison, shared by this script and tests/test_parity_fixtures.py.

LOSS_TERMS = ('total', 'L_Dis', 'L_DS', 'L_DV', 'x_ref')


def localizer_inputs(arrays, path):
  lengths = arrays[f'localizer/{path}/lengths']
  ends = np.cumsum(lengths)
  split = lambda a: np.split(a, ends[:-1])
  tcams = [pc.from_grid(q, GRID) for q in split(arrays[f'localizer/{path}/tcam'])]
  atts = [pc.from_grid(q, GRID) for q in split(arrays[f'localizer/{path}/attention'])]
  return tcams, atts


def compare(arrays, report: pc.Report, only=None, paths=tuple(PATHS)) -> pc.Report:
  """Rows of `report` for every official quantity stored in `arrays` (the fixture's layout);
  `only`: a collection of section names ('model', 'loss', 'step', 'localizer') to limit it to;
  `paths`: of 'thumos', 'anet'."""
  want = lambda section: only is None or section in only
  for path in paths:
    for width in (WIDTH, FULL_WIDTH):
      prefix = f'model/{path}/{width}'
      if want('model') and f'{prefix}/tcam' in arrays:
        case = pc.group(arrays, f'{prefix}/in')
        ours = project_model(path, case)
        valid = lambda x: np.concatenate([np.asarray(x)[k, :n]  # The videos' own snippets.
                                          for k, n in enumerate(case['lengths'])])
        for name, label in (('tcam', 'TCAM'), ('emb', 'embeddings'), ('attention', "lambda'")):
          report.array(f'model {path} D={width}: {label}', valid(arrays[f'{prefix}/{name}']),
                       valid(ours[name]), note=f'{len(case["lengths"])} videos')
    if want('loss') and f'loss/{path}/in/logits' in arrays:
      case = pc.group(arrays, f'loss/{path}/in')
      for itr, ours in zip(ITRS, project_loss(path, case, ITRS)):
        official = pc.group(arrays, f'loss/{path}/itr{itr}')
        on = 'on' if official['denoise'] else 'off'
        for name in LOSS_TERMS + ('grad_logits', 'grad_emb'):
          if name in ('L_DS', 'L_DV') and not official['denoise']:
            continue  # The official code does not compute them then; the project reports them.
          report.array(f'loss {path} L_D {on}: {name}', official[name], ours[name])
    if want('localizer') and f'localizer/{path}/tcam' in arrays:
      tcams, atts = localizer_inputs(arrays, path)
      report.detections(f'localizer {path} ({len(tcams)} seeded videos)',
                        pc.unpack_detections(arrays, f'localizer/{path}/official'),
                        project_detections(path, tcams, atts))
  if want('step') and 'step/in/features' in arrays:
    case = pc.group(arrays, 'step/in')
    for itr, ours in zip(ITRS, project_step(case, ITRS)):
      official = pc.group(arrays, f'step/itr{itr}')
      on = 'on' if official['denoise'] else 'off'
      for name in LOSS_TERMS + tuple(k for k in official if k.startswith('grad/')):
        if name in ('L_DS', 'L_DV') and not official['denoise']:
          continue
        report.array(f'step L_D {on}: {name.replace("grad/", "d total / d ")}', official[name],
                     ours[name])
  return report


def group(name: str) -> str:
  """The summary line of a row: its check and path, values apart from gradients."""
  head = name.split(':')[0].replace(' L_D on', '').replace(' L_D off', '')
  if 'localizer' in head:
    return head.split(' (')[0].split(',')[0]
  kind = 'gradients' if ('grad' in name or 'd total / d' in name) else 'values'
  return f'{head}: {kind}' if head.startswith(('loss', 'step')) else head
