"""DFE (Dual-Feature Enhancement, ICASSP 2023) as a method that wraps a base method.

Only DFE's abstract is public (../shared/papers/DFE-abstract.txt). From it: a local feature
enhancement (LFE) within each video, a global memory of per-class representations across videos
(GMM), a global feature enhancement (GFE) that reads that memory, a distillation loss from the
global to the local branch, and GFE removed at inference. Everything else (how each module
computes, the base, the losses' form, every default) is OUR design, spec section 3
(../shared/methods/SAL-DFE-spec.md), one config field each in the `dfe` section (config.py).

  modules.py  LFE (masked temporal self-attention, dilated convolutions) and GFE
  memory.py   the class memory's update and the distillation terms
  model.py    the Flax network: base.encode -> LFE -> base.heads (local), -> GFE -> base.heads
              (global), through the base method's own module

Bases (`dfe.base`): every registered method with a `Method.feature_split` (methods/base.py),
'co2net' (the default, spec 3.2), 'd2net' and 'sal' today; a new base declares its split in its
own folder. DFE wraps its base (`Method.wraps`): the localizer ('hamnet' over CO2-Net, 'tcam'
over D2-Net, 'oic' over SAL), the training sampling and batch sampler, the dataset presets
(`configs/<preset>.py:dfe` applies CO2-Net's settings, then DFE's; `:dfe,base=sal` SAL's), the
smoke overrides and the dropout fields are the base method's, with DFE's own added.

Method state: the base's state plus {'memory' (C, S, E), 'filled' (C,)}. Loss (spec 3.4):
  L = w_local L_base(out_L) + w_global L_feat(out_G) + lambda_kd on(step) L_kd(sg out_G -> out_L)
L_base is the base's loss; L_feat only its terms whose gradient reaches the enhanced features
(`FeatureSplit.feature_terms`): the others (over CO2-Net: the mutual and norm terms of the
attentions; over SAL: the actionness terms L_act, L_mix, L_mc and the rgb / flow second-order
CEs) do not see F_G and are already in L_base(out_L). The base's state (D2-Net's x_ref, SAL's
running mean and variance) is updated from the local branch; the memory from the local branch's
stop-gradient features and the C class columns of its cas (CO2-Net's background column left
out) after GFE has read the old memory.
"""

import jax
import jax.numpy as jnp

from d2net_jax.methods import base as base_lib
from d2net_jax.methods.dfe import config as dfe_config
from d2net_jax.methods.dfe import memory as memory_lib
from d2net_jax.methods.dfe import model as model_lib
from d2net_jax.methods.dfe.model import (  # noqa: F401
    DFE, FEATURES_KEY, GLOBAL_FEATURES_KEY, GLOBAL_KEY, base_split)

MEMORY_KEYS = ('memory', 'filled')


def build_model(config, num_classes: int, feature_dim: int):
  return model_lib.build_model(config, num_classes, feature_dim)


def init_state(config, num_classes: int, feature_dim: int):
  """The base's state plus an empty memory: zeros (C, S, E) and filled = False (C,)."""
  method, split = base_split(config)
  state = dict(method.init_state(config, num_classes, feature_dim))
  width = split.feature_width(config, feature_dim)
  state.update(memory_lib.init_memory(num_classes, config.dfe.gmm.slots_per_class, width))
  return state


def _needs_global_branch(config) -> bool:
  return config.dfe.loss.w_global != 0 or config.dfe.loss.lambda_kd != 0


def train_inputs(state, batch, config):
  """The training forward's extra arguments (`Method.train_inputs`): the memory the global
  branch attends to, and the labels with gfe.restrict_to_labels; none when neither L_feat(out_G)
  nor L_kd is on (the global branch is then not run)."""
  if not _needs_global_branch(config):
    return {}
  inputs = {'memory': state['memory'], 'filled': state['filled']}
  if config.dfe.gfe.restrict_to_labels:
    inputs['labels'] = batch['labels']
  return inputs


def _split_state(state):
  return ({k: v for k, v in state.items() if k not in MEMORY_KEYS},
          {k: state[k] for k in MEMORY_KEYS})


def loss_fn(outputs, batch, state, config, key, *, axis_name=None):
  """L of spec 3.4 (module docstring); aux['state'] = base state (local) + updated memory.

  outputs: the training forward's, with the global branch's under 'global' (`train_inputs`).
  aux: the base's aux of the local branch, 'global_<term>' for each feature term of the global
  branch (unweighted), the distillation terms, 'loss_local', 'loss_global', 'loss_kd'.
  """
  c = config.dfe
  method, split = base_split(config)
  mask, labels = batch['mask'], batch['labels']
  outputs = dict(outputs)
  out_g = outputs.pop(GLOBAL_KEY, None)
  f_l = outputs[FEATURES_KEY]
  base_state, mem = _split_state(state)  # base_state keeps 'step'.

  loss_local, aux_local = method.loss_fn(outputs, batch, base_state, config, key,
                                         axis_name=axis_name)
  view_l = split.kd_view(outputs)
  zero = jnp.zeros((), f_l.dtype)
  loss_global, kd = zero, {'kd_cas': zero, 'kd_att': zero, 'kd_feat': zero}
  aux_global = {}
  if _needs_global_branch(config):
    if out_g is None:
      raise ValueError("DFE's loss needs the global branch's outputs: run the training forward "
                       'with the memory (methods.get("dfe").train_inputs)')
    terms, _ = split.loss_terms(out_g, batch, base_state, config, key, axis_name=axis_name)
    loss_global = base_lib.weighted_sum(terms, split.feature_terms)
    aux_global = {f'global_{name}': terms[name][1] for name in split.feature_terms}
    view_g = split.kd_view(out_g)
    kd['kd_cas'] = memory_lib.kd_cas(view_l['cas'], view_g['cas'], mask, c.loss.kd_temperature,
                                     c.loss.kd_cas, axis_name)
    if view_l['att'] is not None:
      kd['kd_att'] = memory_lib.kd_att(view_l['att'], view_g['att'], mask, axis_name)
    kd['kd_feat'] = memory_lib.kd_feat(f_l, out_g[GLOBAL_FEATURES_KEY], mask, axis_name)
  loss_kd = (c.loss.w_kd_cas * kd['kd_cas'] + c.loss.w_kd_att * kd['kd_att']
             + c.loss.w_kd_feat * kd['kd_feat'])
  kd_on = state['step'] >= c.loss.kd_start_step
  loss = (c.loss.w_local * loss_local + c.loss.w_global * loss_global
          + c.loss.lambda_kd * jnp.where(kd_on, loss_kd, 0.0))

  # Memory update from the local branch (no gradient), after GFE read the old memory.
  att = view_l['att'] if c.gmm.source == 'attention' else None
  cas_classes = view_l['cas'][..., :labels.shape[-1]]  # Without a background column (co2net).
  r = memory_lib.class_representations(f_l, cas_classes, mask, c.gmm.topk_ratio, att)
  rbar, present = memory_lib.batch_class_means(r, labels, mask, c.gmm.normalize, axis_name)
  new_memory, new_filled = memory_lib.update_memory(mem['memory'], mem['filled'], rbar, present,
                                                    c.gmm.momentum, c.gmm.normalize)

  new_state = dict(aux_local['state'], memory=new_memory, filled=new_filled)
  aux = {k: v for k, v in aux_local.items() if k not in ('state', 'loss')}
  aux.update(aux_global)
  aux.update(kd, loss=loss, loss_local=loss_local, loss_global=loss_global, loss_kd=loss_kd,
             memory_filled=jnp.mean(new_filled.astype(f_l.dtype)))
  aux = jax.tree_util.tree_map(jax.lax.stop_gradient, aux)
  aux['state'] = new_state
  return loss, aux


def inference_outputs(model, params, state, features, mask, config):
  """The base's inference arrays on the local branch (default; no GFE parameters or memory
  needed) or, with dfe.inference_branch='global', on the global branch (ablation)."""
  c = config.dfe
  branch = c.inference_branch
  if branch == 'global':
    outputs = model.apply({'params': params}, features, mask, state['memory'], state['filled'],
                          'global', method=DFE.forward)
  else:
    outputs = model.apply({'params': params}, features, mask, method=DFE.forward)
  return base_split(config)[1].inference(outputs, state, mask, config)


def export_inference(params, state):
  """(params, state) of the deployed local branch: no GFE parameters ('gfe'), no memory."""
  return ({k: v for k, v in params.items() if k != 'gfe'},
          {k: v for k, v in state.items() if k not in MEMORY_KEYS})


def _validate(config):
  c = config.dfe
  base_method, base = base_split(config)  # One-line error for a method DFE cannot wrap.
  checks = {
      'dfe.inference_branch': (c.inference_branch, ('local', 'global')),
      'dfe.lfe.kind': (c.lfe.kind, ('self_attention', 'dilated_conv', 'none')),
      'dfe.lfe.positional': (c.lfe.positional, ('none', 'sinusoidal')),
      'dfe.gmm.update': (c.gmm['update'], ('ema',)),
      'dfe.gmm.source': (c.gmm.source, ('cas', 'attention')),
      'dfe.loss.kd_cas': (c.loss.kd_cas, ('softmax', 'sigmoid')),
      'dfe.shared_heads': (c.shared_heads, (True,)),
  }
  for field, (value, allowed) in checks.items():
    if value not in allowed:
      extra = (" ('learned' of the spec is not implemented)" if field == 'dfe.gmm.update'
               else '')
      raise ValueError(f'config.{field}={value!r}: must be one of {allowed}{extra}')
  if c.gmm.source == 'attention' and not base.has_attention:
    raise ValueError(f"config.dfe.gmm.source='attention': base {c.base!r} has no attention head")
  for field in ('lfe.attn_dropout', 'lfe.dropout', 'gfe.dropout'):
    section, key = field.split('.')
    if not 0 <= c[section][key] < 1:
      raise ValueError(f'config.dfe.{field}={c[section][key]}: must be in [0, 1)')
  if not 0 <= c.gmm.momentum < 1:
    raise ValueError(f'config.dfe.gmm.momentum={c.gmm.momentum}: must be in [0, 1)')
  if c.lfe.kind == 'self_attention' and config.data.feature_dim > 0:
    width = base.feature_width(config, config.data.feature_dim)  # E: D (d2net), sal.hidden.
    if width % c.lfe.num_heads:
      raise ValueError(f'config.dfe.lfe.num_heads={c.lfe.num_heads}: must divide the feature '
                       f'width E={width} of base {c.base!r}')
  if c.gmm.slots_per_class < 1:
    raise ValueError(f'config.dfe.gmm.slots_per_class={c.gmm.slots_per_class}: must be >= 1')
  base_method.validate_config(config)


METHOD = base_lib.register(base_lib.Method(
    name='dfe',
    description='DFE: local + global (memory) feature enhancement with distillation over a base '
                '(ICASSP 2023; our design from the abstract)',
    config_sections=lambda: {'dfe': dfe_config.dfe_config()},
    build_model=build_model,
    init_state=init_state,
    loss_fn=loss_fn,
    inference_outputs=inference_outputs,
    localizer=None,  # The base's ('hamnet' over CO2-Net, 'tcam' over D2-Net, 'oic' over SAL).
    sampling=None,  # The base's ('resample' / 'crop'): `wraps`.
    progress_metrics=('loss', 'loss_local', 'loss_global', 'loss_kd'),
    smoke_overrides={'dfe.lfe.num_heads': 2, 'dfe.gfe.proj_dim': 8},
    presets={'activitynet12': {'dfe.gmm.momentum': 0.99},  # Spec 3.5: 0.99 on ActivityNet.
             'activitynet13': {'dfe.gmm.momentum': 0.99}},
    dropout_fields=('dfe.lfe.attn_dropout', 'dfe.lfe.dropout', 'dfe.gfe.dropout'),
    validate_config=_validate,
    train_inputs=train_inputs,
    wraps=lambda config: base_split(config)[0].name,
))
