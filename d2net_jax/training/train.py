"""Training and evaluation of any registered method: `train_and_evaluate(config, workdir)`.

Read top to bottom, the banner sections are the architecture: update step, input, model and state,
checkpoints and resume, evaluation, the loop. Everything a step needs is in `TrainState`, and the
data order is a pure function of (seed, step), so a run resumed from a checkpoint reaches the same
parameters as an uninterrupted one.
"""

import contextlib
import dataclasses
import functools
import json
import pathlib
import time
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax import lax

from d2net_jax.training import checkpointing
from d2net_jax.config import checks as config_checks
from d2net_jax.data import check as data_check
from d2net_jax.evaluation import detections as detections_lib
from d2net_jax.evaluation import mean_ap as evaluation
from d2net_jax import inference
from d2net_jax.utils import interrupts
from d2net_jax.methods import layers
from d2net_jax import methods
from d2net_jax.training import guards
from d2net_jax.training import parallel
from d2net_jax.training import run_data
from d2net_jax.training import selection as selection_lib
from d2net_jax.runs import run_dir
from d2net_jax.training.setup import (build, has_ground_truth, load_data,  # noqa: F401
                                      make_batcher, restore_trained, selection_pool,
                                      selection_videos, split_validation)
from d2net_jax.data import batching
from d2net_jax.runs import run_log
from d2net_jax.training.train_state import TrainState
from d2net_jax.utils import progress as progress_lib

# ---------------------------------------------------------------------------------------------
# Update step.


COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def loss_and_grads(state: TrainState, batch: Dict[str, jax.Array], *, model,
                   config: ml_collections.ConfigDict, loss_fn: Callable[..., Any],
                   axis_name: Optional[str] = None):
  """((loss, aux), grads) of this device's batch (before any pmean), as `train_step` computes it.

  Mixed precision (`train.compute_dtype='bfloat16'`): the model runs on bfloat16 copies of the
  float32 parameters and features (convolutions and matmuls in bfloat16), its outputs go back to
  float32 before the loss, so every loss reduction, SVD and determinant (pDMI) is float32, and
  the gradients reach the float32 parameters through the casts.

  A method with `train_inputs` (DFE: its class memory) gets them as keyword arguments of the
  forward pass.
  """
  step_key = jax.random.fold_in(state.key, state.step)
  loss_key, dropout_key = jax.random.split(step_key)
  if axis_name is not None:
    dropout_key = jax.random.fold_in(dropout_key, lax.axis_index(axis_name))
  dtype = COMPUTE_DTYPES[config.train.compute_dtype]
  loss_state = dict(state.method_state, step=state.step)
  train_inputs = methods.get(config.method).train_inputs
  extra = {} if train_inputs is None else train_inputs(loss_state, batch, config)

  def loss_and_aux(params):
    features = batch['features']
    if dtype != jnp.float32:
      params, features = layers.cast_floats(params, dtype), features.astype(dtype)
    outputs = model.apply({'params': params}, features, batch['mask'], train=True,
                          rngs={'dropout': dropout_key}, **extra)
    if dtype != jnp.float32:
      outputs = layers.cast_floats(outputs, jnp.float32)
    return loss_fn(outputs, batch, loss_state, config, loss_key, axis_name=axis_name)

  return jax.value_and_grad(loss_and_aux, has_aux=True)(state.params)


def train_step(state: TrainState, batch: Dict[str, jax.Array], *, model, optimizer,
               config: ml_collections.ConfigDict, loss_fn: Callable[..., Any],
               axis_name: Optional[str] = None):
  """One update from a batch ('features' (B, T, D), 'mask' (B, T), 'labels' (B, C)).

  `loss_fn(outputs, batch, state, config, key, axis_name=...)` is the method's loss
  (`Method.loss_fn`); it gets the method state plus 'step' and returns (loss, aux) with the new
  method state in aux['state'].

  With `axis_name` the batch is this device's part of the global batch, inside `jax.pmap`:
  `loss_fn` returns the global loss (batch-level terms gathered over the axis), the gradients are
  `lax.pmean`-ed and every device computes the same new state. Without it, the batch is global
  (single device, or `jax.jit` over a mesh).

  Keys: step_key = fold_in(state.key, step); the loss key (D2-Net's Eq. 3 pairing) comes from
  step_key alone (the same on every device: draws over the global batch); the dropout key also
  folds in the device index, so dropout masks differ between device counts by construction.

  A non-finite loss or gradient (or, with `train.skip_nonpositive_loss`, a loss <= 0 as in the
  official D2-Net code) leaves params, optimizer state and method state unchanged; the step still
  advances and `metrics['skipped']` is 1. Decided on device, no host round-trip.

  Returns (new_state, metrics): metrics are float32 scalars, the same on every device.
  """
  (loss, aux), grads = loss_and_grads(state, batch, model=model, config=config, loss_fn=loss_fn,
                                      axis_name=axis_name)
  if axis_name is not None:
    grads = lax.pmean(grads, axis_name)

  grad_norm = optax.tree.norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if config.train.skip_nonpositive_loss:
    ok &= loss > 0
  updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = optax.apply_updates(state.params, updates)
  keep_new = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  skipped = jnp.logical_not(ok).astype(jnp.int32)
  new_state = state.replace(
      step=state.step + 1,
      params=keep_new(new_params, state.params),
      opt_state=keep_new(new_opt_state, state.opt_state),
      method_state=keep_new(lax.stop_gradient(aux['state']), state.method_state),
      num_skipped=state.num_skipped + skipped,
  )
  metrics = {k: v for k, v in aux.items() if k != 'state' and jnp.ndim(v) == 0}
  metrics.update(loss=loss, grad_norm=grad_norm, skipped=skipped, num_skipped=new_state.num_skipped)
  return new_state, jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), metrics)


def make_step_fn(config: ml_collections.ConfigDict, model, optimizer,
                 loss_fn: Optional[Callable[..., Any]] = None):
  """`train_step` with its dependencies bound; `loss_fn` defaults to `config.method`'s loss.

  Returns fn(state, batch, axis_name=None) -> (state, metrics).
  """
  if loss_fn is None:
    loss_fn = methods.get(config.method).loss_fn
  return functools.partial(train_step, model=model, optimizer=optimizer, config=config,
                           loss_fn=loss_fn)


# ---------------------------------------------------------------------------------------------
# Config checks (config/checks.py); input, model and state (training/setup.py); health (guards.py).
ConfigError, validate_config = config_checks.ConfigError, config_checks.validate_config
NoUpdateError = guards.NoUpdateError

# ---------------------------------------------------------------------------------------------
# Evaluation.


@dataclasses.dataclass
class Evaluator:
  """Scores a state's detections on a set of videos (Sec. 3.3 + mAP)."""
  forward: Callable
  dataset: Any
  videos: list
  config: ml_collections.ConfigDict
  split: str
  progress: Optional[bool] = None  # A bar for passes over 2 s (None: on a terminal).

  def run(self, state, scored: bool = True):
    """(EvaluationResult, {video_id: Detections}); the result is None unless `scored`."""
    params, method_state = jax.device_get((state.params, state.method_state))
    return inference.evaluate(self.forward, params, method_state, self.dataset, self.videos,
                              self.config, progress=self.progress, scored=scored)


# ---------------------------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir, *,
                       progress: Optional[bool] = None, log=print, argv=None,
                       allow_config_change: bool = False, per_class: bool = False
                       ) -> Dict[str, Any]:
  """Trains (resuming from `workdir` if it holds a checkpoint), selects and tests the best state.

  Writes to `workdir`: config.json (resolved config, once the run has started), model.json (class
  names), history.jsonl (every call), metrics.jsonl (per step), eval.jsonl (per evaluation),
  checkpoints/, best/ (see checkpointing.py), and at the end results.json (test mAP, with the
  selection protocol, config, commit and date) and detections_test.json; validation and test mAP
  also go to TensorBoard. per_class: print the per-class AP table of the test. A workdir holding
  a run of another config is refused (run_dir.check_resume) unless `allow_config_change`; a second
  training on the same workdir stops at start (run_dir.Lock). Returns a summary dict.
  """
  validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  with run_dir.Lock(workdir) if is_main else contextlib.nullcontext():
    changes = run_dir.check_resume(workdir, config, allow_config_change)
    record = _Done()
    try:
      summary = _train_and_evaluate(config, workdir, progress, log, argv, changes, record,
                                    per_class)
    except BaseException as e:
      if isinstance(e, KeyboardInterrupt):  # Where it stopped, for the command's message.
        e.phase, e.step = record.phase, record.step
      if record.checkpointer is not None:  # No orbax writer left, no temporary folder.
        record.checkpointer.abort()
      if record.started and is_main:
        with contextlib.suppress(OSError):  # Disk full: the first error is the one to report.
          run_dir.append_history(workdir, 'end', outcome=f'{type(e).__name__}: {e}'[:500])
      raise
    if is_main:
      run_dir.append_history(workdir, 'end', outcome=summary.get('interrupted') or 'finished',
                             step=summary['step'])
    return summary


@dataclasses.dataclass
class _Done:
  """How far `_train_and_evaluate` got, for `train_and_evaluate`'s error path."""
  started: bool = False  # config.json is written.
  phase: str = 'start-up'  # Then 'training', then 'final evaluation' (with the final `step`).
  step: Optional[int] = None
  checkpointer: Any = None


def _train_and_evaluate(config, workdir, progress, log, argv, changes, record, per_class):
  """`train_and_evaluate` in the locked workdir, recording how far it got in `record`."""
  method = methods.get(config.method)
  is_main = jax.process_index() == 0
  c = config.train

  # Data: every video of every subset read once (data_check.py), so a bad test video stops now.
  dataset = load_data(config, workdir)
  run_data.check_streams(run_dir.read_model_info(workdir), dataset,  # A resumed run's streams.
                         config.data.path or workdir / 'data', workdir)
  data_check.check_for_run(config, dataset, workdir, log)
  interrupts.check()  # Ctrl-C during set-up stops here if JAX swallowed it (interrupts.py).
  train_videos, select_videos, protocol = selection_videos(config, dataset)
  if not select_videos and protocol != 'final':
    raise ConfigError(f'config.train.selection={c.selection!r} leaves no video to select on')
  batcher = make_batcher(config, train_videos, dataset.num_classes)
  selecting = (f'{len(select_videos)} {protocol} videos select the checkpoint' if select_videos
               else f'no ground-truth segment in the {selection_pool(config)} videos, so no '
               'checkpoint selection: the final state is the result (segments only score; '
               'training needs the video labels alone)')
  log(f'{method.name} on {dataset.name}: {len(train_videos)} training videos, {selecting}, '
      f'{len(dataset.test_videos())} test videos.')

  # Model, state and resume: the latest good checkpoint in workdir, else a fresh start.
  model, optimizer, state = build(config, dataset.num_classes, dataset.feature_dim)
  interrupts.check()
  checkpointer = record.checkpointer = checkpointing.Checkpointer(workdir, keep=c.keep_checkpoints)
  restored = checkpointer.restore_latest(state)
  if restored is not None:
    state = restored
    log(f'Resumed from {workdir / "checkpoints"} at step {int(state.step)}.')
  if is_main:  # The run has started: only now config.json may change.
    run_dir.commit_config(workdir, config, argv, changes)
    run_dir.write_model_info(workdir, dataset.class_names, dataset.feature_dim, method.name,
                             dataset.streams)
    record.started = True
    if changes:
      log('Config changed on resume (recorded in history.jsonl): ' + ', '.join(
          f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items()))
  devices = parallel.usable_devices(c.batch_size, c.parallelism)
  runner = parallel.StepRunner(make_step_fn(config, model, optimizer), c.parallelism, devices)
  if c.batch_size % runner.num_devices:
    raise ConfigError(f'config.train.batch_size={c.batch_size} is not divisible by the '
                      f'{runner.num_devices} devices')
  log(f'{c.parallelism} over {runner.num_devices} of {jax.device_count()} '
      f'{jax.devices()[0].platform} devices, global batch {c.batch_size}.')
  state = runner.put_state(state)
  evaluator = Evaluator(inference.make_forward(model, config), dataset, select_videos, config,
                        protocol, progress)
  best = checkpointer.best_selection() or {}
  last_eval_step = None
  writer = run_log.MetricWriter(workdir, tensorboard=c.tensorboard and is_main)

  def evaluate_and_select(state):
    nonlocal best, last_eval_step
    result, _ = evaluator.run(state)
    name, value = inference.selection_value(result, c.selection_iou)
    step = last_eval_step = int(jax.device_get(state.step))
    record = {'step': step, 'split': protocol, name: value, 'average_mAP': result.average_mAP,
              'evaluation_protocol': result.protocol_name}
    if is_main:
      with (workdir / 'eval.jsonl').open('a') as f:
        f.write(json.dumps(record) + '\n')
    if not best or value > best['value']:
      checkpointer.save_best(state, {
          'metric': name, 'value': value, 'protocol': protocol,
          'videos': [v.video_id for v in select_videos]})
      best = checkpointer.best_selection()
    writer.scalars(step, {f'{protocol}/{name}': value, f'{protocol}/average_mAP':
                          result.average_mAP})
    log(f'step {step}: {protocol} {name} = {100 * value:.2f}% ({value:.4f} in eval.jsonl; best '
        f'{100 * best["value"]:.2f}% at step {best["step"]})')

  # Training.
  start = int(jax.device_get(state.step))
  steps = range(start, c.num_steps)
  bar = progress_lib.Progress(start, c.num_steps, disable=None if progress is None else not progress)
  log = bar.wrap(log)  # Log lines during training clear and redraw the bar.
  pending, last_logged, t0 = [], start, time.perf_counter()
  skipped_before = int(jax.device_get(state.num_skipped))
  # Each process builds only its own rows of the global batch (all of them on one host).
  rows = batching.process_rows(c.batch_size, jax.process_index(), jax.process_count())
  batches = batcher.iterate(start, len(steps), config.data.prefetch, rows=rows)
  interrupts.check()
  record.phase = 'training'
  with run_dir.StopFlag() as interrupt, batches:
    try:
      for step, batch in zip(steps, batches):
        state, metrics = runner(state, runner.put_batch(batch, local=True))
        pending.append(metrics)  # Stays on device until a log step.
        done = step + 1
        if done % c.log_every == 0 or done == c.num_steps or interrupt.stop:
          fetched = jax.device_get(pending)
          fetched[-1]['steps_per_sec'] = (done - last_logged) / max(time.perf_counter() - t0, 1e-9)
          if is_main:
            for i, m in enumerate(fetched):
              writer.write(done - len(fetched) + i + 1, m)
            writer.flush()
          skipped = sum(int(m['skipped']) for m in fetched)
          if skipped:
            log(f'step {done}: {skipped} of the last {len(fetched)} updates skipped (non-finite '
                f'or non-positive loss or gradient); {int(fetched[-1]["num_skipped"])} in all.')
          guards.check_updates(int(fetched[-1]['num_skipped']) - skipped_before, start, done,
                               batch, config)
          bar.update(done, progress_lib.window_means(fetched, method.progress_metrics),
                     window=len(fetched))
          last_logged, t0, pending = done, time.perf_counter(), []
        if done % c.checkpoint_every == 0 or interrupt.stop:
          checkpointer.save(state)
        if interrupt.stop:
          break
        if done % c.eval_every == 0 and done < c.num_steps and select_videos:
          evaluate_and_select(state)
          t0 = time.perf_counter()  # steps/s counts training only.
    finally:
      bar.close()
      writer.close()
  checkpointer.save(state, force=True)
  checkpointer.wait()
  final_step = int(jax.device_get(state.step))
  record.phase, record.step = 'final evaluation', final_step
  summary = {'step': final_step, 'interrupted': interrupt.signal_name,
             'num_skipped': int(jax.device_get(state.num_skipped))}
  if interrupt.stop:
    checkpointer.close()
    log(f'Interrupted ({interrupt.signal_name}): checkpoint saved at step {final_step}; run '
        'the same command to resume.')
    return summary

  # Selection and the test set.
  if select_videos:
    if last_eval_step != final_step and best.get('step') != final_step:
      evaluate_and_select(state)
    selection = checkpointer.best_selection()
  else:
    selection = selection_lib.no_selection(final_step, selection_pool(config))
  summary['selection'] = selection
  if c.final_test:
    if select_videos:
      best_state, selection = selection_lib.best_or_final(checkpointer, jax.device_get(state),
                                                          selection, log)
    else:
      best_state = jax.device_get(state)
    test_videos = dataset.test_videos()
    scored = has_ground_truth(test_videos)
    test_evaluator = dataclasses.replace(evaluator, videos=test_videos, split='test')
    result, detections = test_evaluator.run(best_state, scored=scored)
    note = None if scored else f'no ground-truth segment in the {len(test_videos)} test videos'
    if is_main:
      detections_lib.write_detections(workdir / 'detections_test.json', detections,
                                      dataset.class_names)
      run_dir.write_json_atomic(workdir / 'results.json', {
          **run_dir.provenance(), 'config': run_dir.config_dict(config),
          'test': result.to_dict() if scored else None,
          **({} if scored else {'test_note': f'{note}: detections written, nothing scored'}),
          'selected_checkpoint': selection,
          'preset': config.preset,
          'official_protocol': 'official_protocol' in config.preset.partition(':')[2].split(','),
          'evaluation_protocol': result.protocol_name if scored else None,
          'evaluation_protocol_description': result.protocol if scored else None,
          'ground_truth': result.ground_truth if scored else None,
          'selection_protocol': selection_lib.PROTOCOLS[protocol],
      })
    if scored:
      log(f'\nTest set, {selection_lib.selected_words(selection, protocol)}:')
      log(evaluation.format_table(result, per_class=per_class))
      writer.scalars(final_step, {'test/average_mAP': result.average_mAP})
      summary['test'] = result.to_dict()
    else:
      log(f'\nTest set, {selection_lib.selected_words(selection, protocol)}: detections written to '
          f'{workdir / "detections_test.json"}; {note}, nothing scored.')
      summary['test'] = None
  checkpointer.close()
  return summary
