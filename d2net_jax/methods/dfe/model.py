"""The DFE network around a base (spec section 3.2): base.encode -> LFE -> base.heads (local),
and -> GFE(memory) -> the same heads (global, training and the 'global' ablation only).

Parameter tree: 'base' (the base's own tree; D2-Net's is exactly `D2Net`'s), 'lfe' (absent for
lfe.kind='none'), 'gfe'. The memory is method state, not a parameter, and the model never sees it
in `__call__`: in training `__call__` returns the local branch plus the parameters and a dropout
key, and the loss (which holds the memory) runs `global_branch` with them (methods/dfe/__init__).
"""

from typing import Any, Dict

import flax.linen as nn
import jax

from d2net_jax.methods.dfe import bases
from d2net_jax.methods.dfe import memory as memory_lib
from d2net_jax.methods.dfe import modules

# Keys of the training outputs that are not arrays of the local branch.
PARAMS_KEY, RNG_KEY, CONTEXT_KEY = 'dfe_params', 'dfe_global_rng', 'dfe_context'
FEATURES_KEY = 'features_local'


class DFE(nn.Module):
  """__call__(features (B, T, D), mask (B, T), train) -> the base's outputs on F_L, plus
  'features_local' F_L (B, T, E); with train=True also the parameters and a dropout key for the
  loss's global branch."""
  base: nn.Module
  lfe_config: Any
  gfe_config: Any
  num_classes: int
  slots: int = 1

  def setup(self):
    self.lfe = modules.build_lfe(self.lfe_config)
    g = self.gfe_config
    self.gfe = modules.GFE(g.proj_dim, g.temperature, g.dropout, g.gate)

  def local_features(self, features, mask, train: bool = False):
    """(F_L (B, T, E), context): LFE over the base's F and the base's side outputs."""
    f, context = self.base.encode(features, mask, train)
    return (f if self.lfe is None else self.lfe(f, mask, train)), context

  def __call__(self, features, mask, train: bool = False) -> Dict[str, Any]:
    f_l, context = self.local_features(features, mask, train)
    outputs = dict(self.base.heads(f_l, context, mask, train))
    outputs[FEATURES_KEY] = f_l
    if self.is_initializing():  # Create GFE's parameters (memory empty: G = 0).
      empty = memory_lib.init_memory(self.num_classes, self.slots, f_l.shape[-1])
      self.global_branch(f_l, context, mask, empty['memory'], empty['filled'], train=False)
    if train:
      outputs[PARAMS_KEY] = self.variables['params']
      outputs[CONTEXT_KEY] = context
      outputs[RNG_KEY] = (self.make_rng('dropout') if self.has_rng('dropout')
                          else jax.random.PRNGKey(0))
    return outputs

  def global_branch(self, f_l, context, mask, memory, filled, slot_ok=None,
                    train: bool = False):
    """The base's outputs on F_G = GFE(F_L, memory), plus 'features_global' F_G."""
    f_g = self.gfe(f_l, mask, memory, filled, slot_ok, train)
    outputs = dict(self.base.heads(f_g, context, mask, train))
    outputs['features_global'] = f_g
    return outputs

  def forward(self, features, mask, memory=None, filled=None, branch: str = 'local'):
    """Inference outputs of one branch ('local': no GFE parameters needed)."""
    f_l, context = self.local_features(features, mask, False)
    if branch == 'global':
      return self.global_branch(f_l, context, mask, memory, filled, train=False)
    return dict(self.base.heads(f_l, context, mask, False), **{FEATURES_KEY: f_l})


def build_model(config, num_classes: int, feature_dim: int) -> DFE:
  c = config.dfe
  base = bases.get(c.base).build(config, num_classes, feature_dim)
  return DFE(base, c.lfe, c.gfe, num_classes, c.gmm.slots_per_class)
