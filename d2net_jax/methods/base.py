"""What a WTAL method is to the framework: the `Method` record and the registry of methods.

A method is one folder under `d2net_jax/methods/<name>/` (its model, its losses, its own math)
whose `__init__.py` builds one `Method` and calls `register`. Everything else is shared: the
trainer (`d2net_jax/training/train.py`) reads `config.method`, asks the registry for that `Method` and only
ever calls the functions below; the data pipeline, the localizers (`d2net_jax/localize/`) and the
evaluator know nothing of any method.

The flow a method plugs into:

  features (B, T, D), mask (B, T)              data.batching (sampling: 'crop' or 'resample')
    -> build_model(...).apply(...) -> outputs  the method's Flax model (a dict of arrays)
    -> loss_fn(outputs, batch, state, ...)     the method's loss; aux['state'] = new method state
    -> train step (pmap / jit)                 shared: gradients, optimiser, skip rule
  at test time:
    -> inference_outputs(...)                  per-snippet (B, T, ...) and per-video (B, ...) arrays
    -> localizer (by name)                     d2net_jax.localize.LOCALIZERS
    -> evaluator                               d2net_jax.evaluation.mean_ap

A method may wrap another (DFE wraps a base method, `config.dfe.base`): `Method.wraps` names the
wrapped method under a config, and the framework's per-method defaults then come from the chain
of methods (`method_chain`): `resolve_localizer`, `resolve_sampling`, `preset_overrides`,
`resolve_smoke_overrides` and `resolve_dropout_fields`. Read those, never the fields directly.
A method that can be wrapped at its snippet features (DFE's bases) declares how it splits there:
`Method.feature_split`, a `FeatureSplit`.
"""

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import ml_collections

# (outputs, batch, state, config, key, *, axis_name) -> (loss, aux); aux['state'] is the new
# method state (no gradient), every other scalar of aux is logged as a metric.
LossFn = Callable[..., Tuple[Any, Dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class FeatureSplit:
  """A method split at its snippet features F, so that a wrapper (DFE) can enhance F in between.

  The module of the method's `build_model` has, besides `__call__`, two methods with
  `__call__(features, mask, train) == heads(*encode(features, mask, train), mask, train)`:
    encode(features (B, T, D), mask (B, T), train) -> (F (B, T, E) zero at padded snippets,
      context): context is a dict of the outputs the method computes without F (SAL: its
      actionness branches on the raw features; D2-Net: none), handed unchanged to `heads`;
    heads(F, context, mask, train) -> the method's outputs dict, what its `loss_fn` reads.
  The wrapper runs both through the method's own module (its parameter names, its numbers), so a
  checkpoint of the method's parameters loads into the wrapper's copy of them.

  Attributes:
    feature_width: (config, D) -> E, the width of F.
    loss_terms: (outputs, batch, state, config, key, *, axis_name) -> (terms, aux): the method's
      loss as named terms {name: (weight, value)}, sum of weight * value = `loss_fn`'s loss
      (aux as `loss_fn`'s: aux['state'] the new state).
    feature_terms: the names of the terms whose gradient reaches F through `heads` (D2-Net: its
      whole loss; SAL: L_mil, L_bg and the CE of sc). The others depend only on the context:
      a second branch over enhanced features (DFE's global branch) adds only `feature_terms`,
      since a copy of the others would train the context's parameters twice.
    inference: (outputs, state, mask, config) -> (snippet, video), the method's inference arrays
      from its outputs dict (`inference_outputs` without the forward pass).
    kd_view: outputs -> {'cas': (B, T, C') class logits, 'att': (B, T) attention or None}: what
      DFE's distillation and memory read. C' = C, or C + 1 with the background last (CO2-Net):
      the distillation reads all C' columns, the class memory the first C.
    has_attention: whether kd_view's 'att' is an array (an attention / actionness head).
  """
  feature_width: Callable[[ml_collections.ConfigDict, int], int]
  loss_terms: Callable[..., Tuple[Dict[str, Tuple[Any, Any]], Dict[str, Any]]]
  feature_terms: Tuple[str, ...]
  inference: Callable[..., Tuple[Dict[str, Any], Dict[str, Any]]]
  kd_view: Callable[[Dict[str, Any]], Dict[str, Any]]
  has_attention: bool = False


def weighted_sum(terms: Mapping[str, Tuple[Any, Any]], names=None):
  """sum of weight * value over `terms` {name: (weight, value)} (only `names`, in their order)."""
  names = tuple(terms) if names is None else names
  total = 0.0
  for name in names:
    weight, value = terms[name]
    total = total + weight * value
  return total


@dataclasses.dataclass(frozen=True)
class Method:
  """One WTAL method, as the shared trainer, inference and commands see it.

  Attributes:
    name: the registry name, the value of `config.method`.
    description: one line for `--help` texts and tables.
    config_sections: () -> {section name: ConfigDict of defaults}. The schema
      (`d2net_jax.config.base_config`) composes the sections of every registered method, so
      `--config.<section>.<field>=...` works for all of them and a misspelt field fails.
    build_model: (config, num_classes, feature_dim) -> flax.linen.Module whose
      `apply({'params': p}, features (B, T, D), mask (B, T), train=..., rngs=...)` returns a dict
      of arrays. Padded snippets (mask 0) must change nothing.
    init_state: (config, num_classes, feature_dim) -> the method's non-parameter state, a pytree
      of arrays (D2-Net: {'x_ref'}); `TrainState.method_state`, checkpointed with everything else.
    loss_fn: (outputs, batch, state, config, key, *, axis_name) -> (loss, aux). `state` is the
      method state plus 'step' (int32 scalar, 0-based index of this update); `key` is the same on
      every device (draws over the global batch); with `axis_name` (inside pmap) the loss must be
      the global-batch loss on every device and the new state identical on every device.
      aux['state'] is the new method state; the other float scalars of aux are metrics.
    inference_outputs: (model, params, state, features, mask, config) -> (snippet, video): dicts
      of arrays, per snippet (B, T, ...) and per video (B, ...). Traced under jit. `snippet` must
      hold 'tcam' (B, T, C) class scores and 'attention' (B, T), which `d2net-jax plot` draws.
    localizer: name of the localizer in `d2net_jax.localize.LOCALIZERS` that turns one video's
      outputs into detections; None: the wrapped method's (`wraps`). Read it with
      `resolve_localizer(config)`.
    sampling: default training sampling of `data.sampling='auto'`: 'crop' (random contiguous crop
      and pad, D2-Net) or 'resample' (every video resampled to `data.num_segments` snippets);
      None: the wrapped method's. Read it with `resolve_sampling(config)`.
    batch_sampler: which videos a training batch holds under `data.sampler='auto'`: 'uniform' or
      'similar_pairs' (groups of videos sharing a class first: CO2-Net); None: the wrapped
      method's, else 'uniform'. Read it with `methods.resolve_batch_sampler(config)`.
    test_sampling: what the network sees at test under `data.test_sampling='auto'`: 'whole'
      (every snippet: CO2-Net) or 'resample' (`data.num_segments` snippets); None: the wrapped
      method's, else 'resample' when training resamples and 'whole' otherwise. Read it with
      `methods.resolve_test_sampling(config)`.
    progress_metrics: aux names shown on the training progress bar.
    smoke_overrides: {'section.field': value} that shrink the method for the smoke presets and
      the per-method tests (e.g. a smaller hidden size); applied after the smoke settings.
    presets: {preset name: {'section.field': value}}: the method's settings on each dataset
      preset ('thumos14', 'activitynet12', 'activitynet13', 'synthetic'), applied by
      `configs/<preset>.py:<method>` after the preset's shared settings (e.g. SAL's batch size,
      learning rate and num_segments on THUMOS14). D2-Net's are the presets' own values.
    dropout_fields: the 'section.field' names of its dropout rates. The multi-device tests set
      them to 0: dropout masks differ between device counts by construction.
    validate_config: optional (config) -> None raising ValueError (one line naming the field)
      for settings of its sections the method cannot run with.
    feature_split: optional `FeatureSplit`: how the method splits at its snippet features, for a
      wrapper that enhances them (DFE's bases); None: it cannot be such a base.
    train_inputs: optional (state, batch, config) -> {name: array}, extra keyword arguments of
      the training forward `model.apply(..., train=True, **train_inputs(...))` for a model that
      reads its method state (`state` with 'step'; DFE: the class memory its global branch
      attends to, and the labels).
    wraps: optional (config) -> the registry name of the method this one wraps under `config`
      (DFE: `config.dfe.base`), or None; raises ValueError (one line) for a base that cannot run.
      The wrapped method's presets, smoke_overrides and dropout_fields then apply before (and
      together with) this method's own, and its localizer and sampling where this method's are
      None; the wrapper's `validate_config` validates the wrapped method's sections itself.
  """
  name: str
  description: str
  config_sections: Callable[[], Mapping[str, ml_collections.ConfigDict]]
  build_model: Callable[..., Any]
  init_state: Callable[..., Any]
  loss_fn: LossFn
  inference_outputs: Callable[..., Tuple[Dict[str, Any], Dict[str, Any]]]
  localizer: Optional[str] = 'tcam'
  sampling: Optional[str] = 'crop'
  batch_sampler: Optional[str] = None
  test_sampling: Optional[str] = None
  progress_metrics: Tuple[str, ...] = ('loss',)
  smoke_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  dropout_fields: Tuple[str, ...] = ()
  validate_config: Callable[[ml_collections.ConfigDict], None] = lambda config: None
  feature_split: Optional[FeatureSplit] = None
  train_inputs: Optional[Callable[..., Dict[str, Any]]] = None
  wraps: Optional[Callable[[ml_collections.ConfigDict], Optional[str]]] = None


_REGISTRY: Dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds `method` to the registry (its name must be new); returns it."""
  if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
    raise ValueError(f'a method named {method.name!r} is already registered')
  _REGISTRY[method.name] = method
  return method


def names() -> Tuple[str, ...]:
  """The registered method names, in registration order."""
  return tuple(_REGISTRY)


def get(name: str) -> Method:
  """The registered method `name`; ValueError (one line, listing the methods) otherwise."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(f'config.method={name!r}: no such method; registered: '
                     f'{", ".join(names())}') from None


def all_methods() -> Tuple[Method, ...]:
  return tuple(_REGISTRY.values())


# ---------------------------------------------------------------------------------------------
# Per-config resolution of the per-method defaults, through the methods a method wraps.


def method_chain(config) -> Tuple[Method, ...]:
  """`config.method`'s Method and the methods it wraps, innermost first: (sal, dfe) for DFE with
  dfe.base='sal', (d2net,) for D2-Net. ValueError (one line) for an unknown or cyclic name."""
  chain = [get(config.method)]
  while chain[-1].wraps is not None:
    name = chain[-1].wraps(config)
    if name is None:
      break
    if any(m.name == name for m in chain):
      raise ValueError(f'config.method={config.method!r}: method {chain[-1].name!r} wraps '
                       f'{name!r}, which is already in the chain')
    chain.append(get(name))
  return tuple(reversed(chain))


def _outermost(config, field: str) -> str:
  for method in reversed(method_chain(config)):
    value = getattr(method, field)
    if value is not None:
      return value
  raise ValueError(f'config.method={config.method!r}: no method of its chain sets a {field}')


def resolve_localizer(config) -> str:
  """The localizer name of `config.method` (a wrapper without its own: the wrapped method's)."""
  return _outermost(config, 'localizer')


def resolve_sampling(config) -> str:
  """`config.data.sampling`, with 'auto' replaced by `config.method`'s own (through the chain:
  DFE's is its base's). The data layer is handed the result (`TrainBatcher(sampling=...)`)."""
  if config.data.sampling != 'auto':
    return config.data.sampling
  return _outermost(config, 'sampling')


def preset_overrides(config, preset: str) -> Dict[str, Any]:
  """{'section.field': value} of dataset preset `preset` for `config.method`: the presets of
  the methods it wraps first, then its own (DFE over SAL on 'synthetic': SAL's, then DFE's)."""
  overrides = {}
  for method in method_chain(config):
    overrides.update(method.presets.get(preset, {}))
  return overrides


def resolve_smoke_overrides(config) -> Dict[str, Any]:
  """The smoke overrides of `config.method` and of the methods it wraps (innermost first)."""
  overrides = {}
  for method in method_chain(config):
    overrides.update(method.smoke_overrides)
  return overrides


def resolve_dropout_fields(config) -> Tuple[str, ...]:
  """The dropout fields of `config.method` and of the methods it wraps, without repeats."""
  fields = []
  for method in method_chain(config):
    fields += [f for f in method.dropout_fields if f not in fields]
  return tuple(fields)
