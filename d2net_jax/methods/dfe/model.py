"""The DFE network around a base method (spec section 3.2), through the base's own module:

  base.encode -> LFE -> base.heads                       local branch (training and inference)
                     -> GFE(memory) -> base.heads        global branch (training; the 'global'
                                                         inference ablation)

The base is any registered method with a `FeatureSplit` (methods/base.py): its `build_model`
module has `encode` (features -> F, context) and `heads` (F, context -> its outputs). Parameter
tree: 'base' (the base method's own tree, so its checkpoints load there), 'lfe' (absent for
lfe.kind='none'), 'gfe'. The memory is method state, not a parameter: the training forward gets
it as an argument (`train_inputs` in methods/dfe/__init__.py, `Method.train_inputs`) and returns
both branches' outputs, so the loss never runs the model again.
"""

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from d2net_jax.methods import base as base_lib
from d2net_jax.methods.dfe import memory as memory_lib
from d2net_jax.methods.dfe import modules

FEATURES_KEY = 'features_local'  # F_L (B, T, E) in the outputs.
GLOBAL_KEY = 'global'  # The global branch's outputs dict, in the training outputs.
GLOBAL_FEATURES_KEY = 'features_global'  # F_G (B, T, E) in the global branch's outputs.


def splittable_methods() -> Tuple[str, ...]:
  """The registered methods DFE can wrap: those with a `feature_split`."""
  return tuple(m.name for m in base_lib.all_methods() if m.feature_split is not None)


def base_split(config) -> Tuple[base_lib.Method, base_lib.FeatureSplit]:
  """(Method, FeatureSplit) of `config.dfe.base`; ValueError (one line) for a method that is not
  registered or declares no feature split."""
  name = config.dfe.base
  names = ', '.join(splittable_methods())
  try:
    method = base_lib.get(name)
  except ValueError:
    raise ValueError(f'config.dfe.base={name!r}: no registered method of that name; DFE wraps '
                     f'one of: {names}') from None
  if method.feature_split is None:
    raise ValueError(f'config.dfe.base={name!r}: method {name!r} declares no feature split '
                     f'(Method.feature_split), so DFE cannot wrap it; it wraps one of: {names}')
  return method, method.feature_split


class DFE(nn.Module):
  """__call__(features (B, T, D), mask (B, T), train, memory, filled, labels) -> the base's
  outputs on F_L plus 'features_local' F_L (B, T, E); in training with the memory (C, S, E) and
  filled (C,) also 'global': the global branch's outputs (`global_branch`). labels (B, C): the
  slots a video may read with gfe.restrict_to_labels."""
  base: nn.Module
  lfe_config: Any
  gfe_config: Any
  num_classes: int
  slots: int = 1
  global_updates_backbone: bool = True
  restrict_to_labels: bool = False

  def setup(self):
    self.lfe = modules.build_lfe(self.lfe_config)
    g = self.gfe_config
    self.gfe = modules.GFE(g.proj_dim, g.temperature, g.dropout, g.gate)

  def local_features(self, features, mask, train: bool = False):
    """(F_L (B, T, E), context): LFE over the base's F, and the base's context."""
    f, context = self.base.encode(features, mask, train)
    return (f if self.lfe is None else self.lfe(f, mask, train)), context

  def __call__(self, features, mask, train: bool = False, memory=None, filled=None,
               labels=None) -> Dict[str, Any]:
    f_l, context = self.local_features(features, mask, train)
    outputs = dict(self.base.heads(f_l, context, mask, train))
    outputs[FEATURES_KEY] = f_l
    if self.is_initializing() and memory is None:  # Create GFE's parameters (G = 0).
      empty = memory_lib.init_memory(self.num_classes, self.slots, f_l.shape[-1])
      self.global_branch(f_l, context, mask, empty['memory'], empty['filled'], train=False)
    if train and memory is not None:
      slot_ok = None
      if self.restrict_to_labels:
        if labels is None:
          raise ValueError('dfe.gfe.restrict_to_labels: the training forward needs the labels')
        slot_ok = jnp.repeat(labels > 0, self.slots, axis=-1)
      outputs[GLOBAL_KEY] = self.global_branch(f_l, context, mask, memory, filled, slot_ok,
                                               train)
    return outputs

  def global_branch(self, f_l, context, mask, memory, filled, slot_ok=None,
                    train: bool = False) -> Dict[str, Any]:
    """The base's outputs on F_G = GFE(F_L, memory), plus 'features_global' F_G. In training
    with global_updates_backbone=False, F_L, the context and the heads' parameters enter without
    gradient: the global branch's loss trains GFE alone."""
    frozen = train and not self.global_updates_backbone
    if frozen:
      f_l, context = lax.stop_gradient(f_l), lax.stop_gradient(context)
    f_g = self.gfe(f_l, mask, memory, filled, slot_ok, train)
    heads = self._frozen_heads if frozen else self.base.heads
    outputs = dict(heads(f_g, context, mask, train))
    outputs[GLOBAL_FEATURES_KEY] = f_g
    return outputs

  def _frozen_heads(self, f, context, mask, train: bool):
    """The base's heads on stop-gradient copies of its parameters (same values and dropout
    stream semantics, no gradient into the base)."""
    params = jax.tree.map(lax.stop_gradient, self.base.variables['params'])
    rngs = {'dropout': self.make_rng('dropout')} if self.has_rng('dropout') else {}
    return self.base.clone(parent=None).apply({'params': params}, f, context, mask, train,
                                              method='heads', rngs=rngs)

  def forward(self, features, mask, memory=None, filled=None, branch: str = 'local'):
    """Inference outputs of one branch ('local': no GFE parameters needed)."""
    f_l, context = self.local_features(features, mask, False)
    if branch == 'global':
      return self.global_branch(f_l, context, mask, memory, filled, train=False)
    return dict(self.base.heads(f_l, context, mask, False), **{FEATURES_KEY: f_l})


def build_model(config, num_classes: int, feature_dim: int) -> DFE:
  """DFE around the module of `config.dfe.base`'s own `build_model`."""
  c = config.dfe
  method, _ = base_split(config)
  base = method.build_model(config, num_classes, feature_dim)
  return DFE(base, c.lfe, c.gfe, num_classes, c.gmm.slots_per_class,
             c.loss.global_updates_backbone, c.gfe.restrict_to_labels)
