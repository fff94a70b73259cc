r"""DMI vs pDMI as D2-Net's denoising term: training runs, and a controlled probe of both losses.

  python experiments/dmi_vs_pdmi.py                     # quick: CPU, ~10 min on 2 cores
  python experiments/dmi_vs_pdmi.py --mode full --seeds 3 --steps 1000
  python experiments/dmi_vs_pdmi.py --mode smoke        # seconds; what the tests run
  python experiments/dmi_vs_pdmi.py --config configs/thumos14.py --data-path DIR --mode full

1. Training. D2-Net is trained by the library (`d2net_jax.training.train.train_and_evaluate`, checkpoint
   selected on a held-out validation split, scored once on the test split) with the denoising
   term L_D = w_DS L_DS + w_DV L_DV (Eq. 11) computed by pDMI (Eq. 7), DMI (Eq. 5), the L1 and
   BCE alternatives (snippet level; the video level stays pDMI, as in the paper's comparison),
   or left out. The term is switched on early (`--pdmi-start`, default 10% of the steps) and at
   every step (`--pdmi-every 1`), so it acts for most of a short run. Per variant, over seeds:
   test mAP at each tIoU and its averages, and the health of the term:
     * from every training step (metrics.jsonl): the share of valid videos whose L_DS was left out
       (no pseudo-foreground or pseudo-background snippet, x_ref still zero, or a non-finite
       value: `losses.snippet_denoising_term`), the share of steps whose L_DV was undefined or
       non-finite (DMI: whenever a class is missing from the batch), skipped updates;
     * at probe steps (checkpoints every `--probe-every` steps, replayed on the step's own batch
       and keys): the raw (unguarded) value and gradient of the variant's DMI / pDMI on each
       U_1 (Eq. 9) and on U_2 (Eq. 10), non-finite or not, and the norm of the gradient of the
       guarded L_D w.r.t. the parameters (as trained), beside that of L_Dis.
2. Probe. For random joint distributions of size K (n = 4K samples, one-hot labels): (a) every
   class present, (b) a quarter of the classes missing from the batch (their label columns all
   zero), (c) near-singular predictions (almost the same posterior for every sample), (d) singular
   ones (the same posterior for every sample: U has rank 1). The value
   and gradient (w.r.t. the predictions) of `losses.dmi_loss` and `losses.pdmi_loss` in float32;
   the share of draws where each is non-finite, the median value and gradient norm.

Writes --out (default runs/experiments/dmi_vs_pdmi): results.md (the tables printed), results.json
(every number, per seed), plot.png.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from typing import Any, Dict, List, Sequence

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # noqa: E402  pylint: disable=wrong-import-position

NAME = 'dmi_vs_pdmi'
VARIANTS = ('pdmi', 'dmi', 'l1', 'bce', 'none')
VARIANT_LABELS = {
    'pdmi': 'pDMI (Eq. 7)', 'dmi': 'DMI (Eq. 5)', 'l1': 'L1 (snippet) + pDMI (video)',
    'bce': 'BCE (snippet) + pDMI (video)', 'none': 'no L_D',
}
# Sec. 4.3 of the paper (THUMOS14, real I3D features), for reference only: other data and scale.
PAPER_MAP50 = {'pdmi': '35.9', 'l1': '32.9', 'bce': '33.5', 'none': '32.2'}
CASES = ('all classes', 'missing classes', 'near-singular', 'singular')
PROBE_SIZES = {'smoke': ((2, 4, 8), 16), 'quick': ((2, 4, 8, 16, 32, 64), 200),
               'full': ((2, 4, 8, 16, 32, 64, 128), 1000)}


# ---------------------------------------------------------------------------------------------
# The controlled probe.


def probe_inputs(k: int, case: str, draws: int, rng: np.random.Generator):
  """(predictions, labels), each (draws, 4K, K) float32, of one case (see the module docstring)."""
  n = 4 * k
  present = k - max(1, k // 4) if case == 'missing classes' else k
  predictions = np.empty((draws, n, k), np.float32)
  labels = np.zeros((draws, n, k), np.float32)
  for i in range(draws):
    order = rng.permutation(k)  # Which classes go missing is random.
    drawn = np.concatenate([np.arange(present), rng.integers(0, present, n - present)])
    classes = order[rng.permutation(drawn)]
    labels[i, np.arange(n), classes] = 1.0
    if case == 'near-singular':
      logits = 1e-4 * rng.normal(size=(n, k))
    elif case == 'singular':
      logits = np.broadcast_to(rng.normal(size=k), (n, k))
    else:
      logits = 2.0 * labels[i] + rng.normal(size=(n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    predictions[i] = e / e.sum(axis=1, keepdims=True)
  return predictions, labels


def run_probe(ks: Sequence[int], draws: int, seed: int = 0) -> List[Dict[str, Any]]:
  """One row per (case, K): non-finite shares, median value and gradient norm of DMI and pDMI."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from d2net_jax import losses  # pylint: disable=import-outside-toplevel

  fns = {'dmi': losses.dmi_loss, 'pdmi': losses.pdmi_loss}
  batched = {name: jax.jit(jax.vmap(jax.value_and_grad(fn))) for name, fn in fns.items()}
  rng = np.random.default_rng(seed)
  rows = []
  for case in CASES:
    for k in ks:
      predictions, labels = probe_inputs(k, case, draws, rng)
      row = {'case': case, 'K': int(k), 'n': 4 * int(k), 'draws': int(draws)}
      for name, fn in batched.items():
        value, grad = jax.device_get(fn(jnp.asarray(predictions), jnp.asarray(labels)))
        value_ok = np.isfinite(value)
        grad_ok = np.all(np.isfinite(grad), axis=(1, 2))
        norms = np.sqrt(np.sum(np.where(np.isfinite(grad), grad, 0.0) ** 2, axis=(1, 2)))
        row[f'{name}_value_nonfinite'] = float(1 - value_ok.mean())
        row[f'{name}_grad_nonfinite'] = float(1 - grad_ok.mean())
        row[f'{name}_value_median'] = float(np.median(value[value_ok])) if value_ok.any() else None
        row[f'{name}_value_max'] = float(np.max(value[value_ok])) if value_ok.any() else None
        row[f'{name}_grad_norm_median'] = (float(np.median(norms[grad_ok])) if grad_ok.any()
                                           else None)
        row[f'{name}_grad_norm_max'] = float(np.max(norms[grad_ok])) if grad_ok.any() else None
      rows.append(row)
  return rows


def _num(x, digits=2) -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return '-'
  if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-2):
    return f'{x:.1e}'
  return f'{x:.{digits}f}'


def _share(x: float) -> str:
  """A fraction as a percentage; '<1%' / '>99%' rather than a rounded 0% / 100%."""
  if x is None or not math.isfinite(x):
    return '-'
  if 0 < x < 0.005:
    return '<1%'
  if 0.995 <= x < 1:
    return '>99%'
  return f'{100 * x:.0f}%'


def probe_table(rows: Sequence[Dict[str, Any]]) -> str:
  header = ['case', 'K', 'DMI value non-finite', 'DMI grad non-finite', 'DMI median value',
            'DMI median grad norm', 'pDMI value non-finite', 'pDMI grad non-finite',
            'pDMI median value', 'pDMI median grad norm (max)']
  body = []
  for r in rows:
    body.append([
        r['case'], r['K'],
        _share(r['dmi_value_nonfinite']), _share(r['dmi_grad_nonfinite']),
        _num(r['dmi_value_median']), _num(r['dmi_grad_norm_median']),
        _share(r['pdmi_value_nonfinite']), _share(r['pdmi_grad_nonfinite']),
        _num(r['pdmi_value_median']),
        f'{_num(r["pdmi_grad_norm_median"])} ({_num(r["pdmi_grad_norm_max"])})',
    ])
  return _common.markdown_table(header, body)


# ---------------------------------------------------------------------------------------------
# The term during training.


def make_term_probe(config, model):
  """jit (params, x_ref, key, step, batch) -> the health of L_D at one training step.

  Replays the step like `train.train_step` on one device (same pairing and dropout keys): the
  gradient w.r.t. the parameters of L_D (guarded, as trained) is grad(L with L_D on) minus
  grad(L_Dis alone); and the raw DMI / pDMI value and gradient w.r.t. U of each video's U_1
  (Eq. 9) and of the batch's U_2 (Eq. 10), without the guard that training applies.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from d2net_jax import losses  # pylint: disable=import-outside-toplevel

  c = config.loss
  on = _common.apply_overrides(config, {'loss.pdmi_start_step': -1, 'loss.pdmi_every': 1}).loss
  dis_only = _common.apply_overrides(config, {'loss.denoising': 'none'}).loss
  ds_kind = c.denoising if c.denoising in ('pdmi', 'dmi') else None
  dv_kind = None if c.denoising == 'none' else ('dmi' if c.denoising == 'dmi' else 'pdmi')
  raw = {'dmi': losses.dmi_from_joint,
         'pdmi': lambda u: losses.pdmi_from_joint(u, c.pdmi_eps)}

  def finite_grad(fn, u):
    value, grad = jax.value_and_grad(fn)(u)
    return jnp.isfinite(value), jnp.all(jnp.isfinite(grad))

  @jax.jit
  def probe(params, x_ref, key, step, batch):
    step_key = jax.random.fold_in(key, step)
    pairing_key, dropout_key = jax.random.split(step_key)
    if config.train.parallelism == 'pmap':
      dropout_key = jax.random.fold_in(dropout_key, 0)

    def outputs_of(p):
      return model.apply({'params': p}, batch['features'], batch['mask'], train=True,
                         rngs={'dropout': dropout_key})

    def loss_of(loss_config):
      def fn(p):
        return losses.d2net_loss(outputs_of(p), batch, {'x_ref': x_ref, 'step': step},
                                 loss_config, pairing_key)
      return fn

    (_, aux), grad_on = jax.value_and_grad(loss_of(on), has_aux=True)(params)
    grad_dis = jax.grad(lambda p: loss_of(dis_only)(p)[0])(params)
    grad_d = jax.tree.map(jnp.subtract, grad_on, grad_dis)
    result = {'grad_norm_d': optax.tree.norm(grad_d), 'grad_norm_dis': optax.tree.norm(grad_dis),
              'grad_d_finite': jnp.isfinite(optax.tree.norm(grad_on))}

    outputs = outputs_of(params)
    tcam, emb = outputs['tcam'], outputs['embeddings']
    labels = batch['labels'].astype(tcam.dtype)
    valid = losses.video_validity(batch['mask'], labels, c.min_snippets)
    u1, defined = jax.vmap(lambda t, e, m, y: losses.snippet_joint_distribution(
        t, e, m, y, aux['x_ref'], c.snippet_fg_threshold, c.snippet_bg_threshold))(
            tcam, emb, batch['mask'], labels)
    counted = valid & defined & jnp.any(aux['x_ref'] != 0)
    result['ds_videos'] = jnp.sum(counted)
    result['valid_videos'] = jnp.sum(valid)
    if ds_kind is not None:
      value_ok, grad_ok = jax.vmap(lambda u: finite_grad(raw[ds_kind], u))(u1)
      result['ds_value_nonfinite'] = jnp.sum(counted & ~value_ok)
      result['ds_grad_nonfinite'] = jnp.sum(counted & ~grad_ok)
    if dv_kind is not None:
      p = losses.topk_pool(tcam, batch['mask'], c.topk_ratio)
      u2 = losses.video_joint_distribution(p, labels, valid, c.video_score_floor,
                                           c.video_renormalize, c.prob_clip)
      value_ok, grad_ok = finite_grad(raw[dv_kind], u2)
      result['dv_value_nonfinite'] = ~value_ok
      result['dv_grad_nonfinite'] = ~grad_ok
      result['classes_in_batch'] = jnp.sum(jnp.any(labels * valid[:, None] > 0, axis=0))
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), result)

  return probe


def replay_probes(config, workdir: pathlib.Path) -> List[Dict[str, float]]:
  """`make_term_probe` at every checkpoint the run kept, on that step's own training batch."""
  import jax  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import batching  # pylint: disable=import-outside-toplevel

  dataset = train.load_data(config, workdir)
  train_videos, _, _ = train.selection_videos(config, dataset)
  batcher = batching.TrainBatcher(train_videos, config.train.batch_size, config.data.max_seqlen,
                                  config.train.seed, dataset.num_classes)
  model, _, template = train.build(config, dataset.num_classes, dataset.feature_dim)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  probe = make_term_probe(config, model)
  manager = ocp.CheckpointManager(workdir / 'checkpoints',
                                  item_handlers=ocp.StandardCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  rows = []
  try:
    for step in sorted(manager.all_steps()):
      if step >= config.train.num_steps:  # The final state took no step: nothing to replay.
        continue
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
      result = jax.device_get(probe(state.params, state.x_ref, state.key, state.step,
                                    batcher.batch(step)))
      rows.append(dict({k: float(v) for k, v in result.items()}, step=int(step)))
  finally:
    manager.close()
  return rows


def term_health(summary: Dict[str, Any], probes: List[Dict[str, float]]) -> Dict[str, float]:
  """Per-run statistics of L_D (see the module docstring); NaN where they do not apply."""
  on = [m for m in summary['metrics'] if m.get('denoise_on', 0) > 0]
  nan = math.nan
  valid = sum(m['num_valid'] for m in on)
  out = {
      'active_steps': len(on) / max(len(summary['metrics']), 1),
      'ds_left_out': 1 - sum(m['num_ds'] for m in on) / valid if on and valid else nan,
      'dv_undefined': 1 - float(np.mean([m['dv_defined'] for m in on])) if on else nan,
      'skipped': float(summary.get('num_skipped', 0)),
  }
  if not probes:
    return out
  total = lambda key: sum(p.get(key, nan) for p in probes)
  ds_videos = total('ds_videos')
  out.update({
      'ds_value_nonfinite': total('ds_value_nonfinite') / ds_videos if ds_videos else nan,
      'ds_grad_nonfinite': total('ds_grad_nonfinite') / ds_videos if ds_videos else nan,
      'dv_value_nonfinite': total('dv_value_nonfinite') / len(probes),
      'dv_grad_nonfinite': total('dv_grad_nonfinite') / len(probes),
      'classes_in_batch': total('classes_in_batch') / len(probes),
      'grad_norm_d_median': float(np.median([p['grad_norm_d'] for p in probes])),
      'grad_norm_d_max': float(np.max([p['grad_norm_d'] for p in probes])),
      'grad_norm_ratio_median': float(np.median(
          [p['grad_norm_d'] / max(p['grad_norm_dis'], 1e-30) for p in probes])),
      'grad_d_nonfinite': 1 - total('grad_d_finite') / len(probes),
      'probes': len(probes),
  })
  return out


def variant_config(base, variant: str, args):
  return _common.apply_overrides(base, {
      'loss.denoising': variant,
      'loss.pdmi_start_step': args.pdmi_start,
      'loss.pdmi_every': args.pdmi_every,
      'train.checkpoint_every': args.probe_every,
      'train.keep_checkpoints': args.steps // args.probe_every + 2,
  })


def run_training(args, log) -> tuple[List[Dict[str, Any]], Any]:
  """(one record per (variant, seed): test metrics, F1 and the term's health; the base config)."""
  base = _common.base_config(args.mode, args.steps, args.data_dir, args.config, args.config_arg)
  base = _common.apply_overrides(base, dict(args.set))
  base = _common.prepare_data(base, log)
  runs = []
  for variant in args.variants:
    for seed in range(1, args.seeds + 1):
      config = _common.apply_overrides(variant_config(base, variant, args), {'train.seed': seed})
      workdir = args.out / 'runs' / f'{variant}_seed{seed}'
      summary = _common.train_variant(config, workdir)
      start = time.perf_counter()
      probes = replay_probes(config, workdir)
      record = _common.test_record(
          variant, seed, summary['test'], train_seconds=summary['seconds'],
          probe_seconds=time.perf_counter() - start,
          selected_step=summary['selection']['step'], health=term_health(summary, probes),
          probes=probes)
      runs.append(record)
      log(f'{variant:5s} seed {seed}: avg mAP {100 * record["average_mAP"]:.1f}, '
          f'F1@0.5 {100 * record["f1"]["f1"]:.1f} ({summary["seconds"]:.0f} s + '
          f'{record["probe_seconds"]:.0f} s probes)')
  return runs, base


def _pct(values) -> str:
  return _common.pm([100 * v for v in values], digits=0 if len(values) == 1 else 1)


def training_tables(runs: Sequence[Dict[str, Any]]) -> tuple[str, str]:
  """(test mAP table, health-of-L_D table)."""
  labels = {v: VARIANT_LABELS[v] for v in VARIANTS}
  paper = {v: [PAPER_MAP50.get(v, '-')] for v in VARIANTS}
  table = _common.map_table(runs, labels, extra=paper,
                            extra_header=['paper mAP@0.5 (THUMOS14)'])
  health_rows = []
  for v in dict.fromkeys(r['variant'] for r in runs):
    rs = [r for r in runs if r['variant'] == v]
    h = lambda key: [r['health'].get(key, math.nan) for r in rs]
    na = v == 'none'
    health_rows.append([
        VARIANT_LABELS[v], '-' if na else _pct(h('active_steps')),
        '-' if na else _pct(h('ds_left_out')),
        '-' if v not in ('pdmi', 'dmi') else _pct(h('ds_value_nonfinite')),
        '-' if v not in ('pdmi', 'dmi') else _pct(h('ds_grad_nonfinite')),
        '-' if na else _pct(h('dv_undefined')),
        '-' if na else _pct(h('dv_grad_nonfinite')),
        '-' if na else _common.pm(h('classes_in_batch'), digits=1),
        '-' if na else (_common.pm(h('grad_norm_d_median'), digits=3) + ' (max '
                        + _num(max(h('grad_norm_d_max')), 3) + ')'),
        '-' if na else _common.pm(h('grad_norm_ratio_median'), digits=3),
        '-' if na else _pct(h('grad_d_nonfinite')),
        _common.pm(h('skipped'), digits=0),
    ])
  health = _common.markdown_table(
      ['L_D', 'L_D on (% steps)', 'L_DS left out (% videos)', 'raw L_DS non-finite (%)',
       'raw ∇L_DS non-finite (%)', 'L_DV undefined (% steps)', 'raw ∇L_DV non-finite (%)',
       'classes in batch', '‖∇θ L_D‖ median', '‖∇θ L_D‖ / ‖∇θ L_Dis‖', '∇θ L non-finite (%)',
       'skipped updates'], health_rows)
  return table, health


def plot(runs, probe_rows):
  """Probe: non-finite share and median gradient norm against K; training: test mAP by tIoU."""
  figure, axes = _common.new_figure(3 if runs else 2)
  colors = dict(zip(CASES, ('tab:green', 'tab:orange', 'tab:purple', 'tab:red')))
  for case in CASES:
    rows = [r for r in probe_rows if r['case'] == case]
    ks = [r['K'] for r in rows]
    for name, style in (('dmi', 'o-'), ('pdmi', 's--')):
      label = f'{"DMI" if name == "dmi" else "pDMI"}, {case}'
      axes[0].plot(ks, [100 * r[f'{name}_grad_nonfinite'] for r in rows], style,
                   color=colors[case], label=label, alpha=0.8)
      norms = [r[f'{name}_grad_norm_median'] for r in rows]
      axes[1].plot([k for k, g in zip(ks, norms) if g], [g for g in norms if g], style,
                   color=colors[case], label=label, alpha=0.8)
  axes[0].set_ylabel('draws with a non-finite gradient (%)')
  axes[0].set_ylim(-5, 105)
  axes[0].set_title('probe: where the loss breaks (o DMI, s pDMI)')
  axes[1].set_yscale('log')
  axes[1].set_ylabel('median gradient norm (finite draws)')
  axes[1].set_title('probe: gradient size')
  for ax in axes[:2]:
    ax.set_xscale('log', base=2)
    ax.set_xlabel('K (classes)')
  axes[0].legend(fontsize=6)
  if runs:
    _common.plot_map(axes[2], runs, VARIANT_LABELS, 'training: test mAP by denoising term')
  figure.tight_layout()
  return figure


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--mode', choices=('smoke', 'quick', 'full'), default='quick',
                      help='sizes of data, model and run (experiments/_common.py SIZES)')
  parser.add_argument('--seeds', type=int, help='seeds per variant (train.seed = 1..N)')
  parser.add_argument('--steps', type=int, help='training steps per run')
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated subset of {",".join(VARIANTS)}')
  parser.add_argument('--pdmi-start', type=int, help='L_D on after this step (default 10%%)')
  parser.add_argument('--pdmi-every', type=int, default=1, help='L_D on every this many steps')
  parser.add_argument('--probe-every', type=int, help='checkpoint + probe every this many steps')
  parser.add_argument('--probe-ks', help='comma-separated K of the probe')
  parser.add_argument('--probe-draws', type=int, help='random draws per (K, case)')
  parser.add_argument('--skip-training', action='store_true', help='the probe only')
  parser.add_argument('--config', default='synthetic', help='a preset in configs/ (synthetic, '
                      'thumos14, activitynet12); real data needs --set data.path=...')
  parser.add_argument('--config-arg', default=None, help="the preset's argument, e.g. 'paper'")
  _common.add_set_argument(parser, ', e.g. --set data.path=/data/thumos14')
  parser.add_argument('--data-dir', type=pathlib.Path,
                      help='synthetic store cache (default OUT/data)')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--compilation-cache', type=pathlib.Path,
                      help="JAX's persistent compilation cache (default OUT/jax_cache)")
  args = parser.parse_args(argv)
  size = _common.SIZES[args.mode]
  args.seeds = args.seeds or size['seeds']
  args.steps = args.steps or size['steps']
  args.variants = _common.split_choices(parser, args.variants, VARIANTS, 'variants')
  args.pdmi_start = args.steps // 10 if args.pdmi_start is None else args.pdmi_start
  args.probe_every = args.probe_every or max(1, args.steps // 6)
  ks, draws = PROBE_SIZES[args.mode]
  args.probe_ks = [int(k) for k in args.probe_ks.split(',')] if args.probe_ks else list(ks)
  args.probe_draws = args.probe_draws or draws
  args.out = args.out or _common.ROOT / 'runs' / 'experiments' / NAME
  args.data_dir = args.data_dir or args.out / 'data'
  args.compilation_cache = args.compilation_cache or args.out / 'jax_cache'
  return args


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  start = time.perf_counter()
  _common.enable_compilation_cache(args.compilation_cache)
  _common.quiet_logs()
  meta = _common.run_metadata(argv)
  log = lambda s: print(s, flush=True)
  log(f'{NAME}: {args.mode} mode on {meta["device"]}')

  probe_rows = run_probe(args.probe_ks, args.probe_draws)
  log(f'probe done ({time.perf_counter() - start:.0f} s)')
  runs, base = ([], None) if args.skip_training else run_training(args, log)
  meta['wall_s'] = time.perf_counter() - start

  notes = []
  sections = []
  if runs:
    table, health = training_tables(runs)
    notes.append(
        f'training: configs/{args.config}.py, {args.mode} size: {_common.describe_data(base)}; '
        f'{args.steps} steps, {args.seeds} seed(s) per variant, L_D on after step '
        f'{args.pdmi_start} every {args.pdmi_every} step(s); '
        + _common.describe_selection(base))
    sections += [
        '## Test mAP (%) by denoising term (mean ± std over seeds)\n', table,
        '\nF1@0.5: precision / recall of the localizer\'s detections at tIoU 0.5 '
        '(the evaluator\'s greedy TP / FP counts).\n',
        '## Health of the denoising term\n', health,
        '\nPer run, then mean ± std over seeds. "L_DS left out": share of the valid videos of '
        'the L_D steps whose snippet term was not counted (no pseudo-foreground / background '
        'snippet, or a non-finite value); "L_DV undefined": share of L_D steps whose video term '
        'was undefined or non-finite and zeroed. "raw": the DMI / pDMI of the variant on the '
        'U_1 (per video) and U_2 (per batch) of probe steps, without the guard training uses; '
        '"classes in batch": distinct classes among the valid videos of a probe batch (U_2 is '
        'C x C, singular whenever one is missing); gradient norms w.r.t. the parameters at '
        'probe steps.\n']
  sections += ['## Probe: DMI and pDMI on random joint distributions\n', probe_table(probe_rows),
               f'\nfloat32, n = 4K samples, {args.probe_draws} draws per row; "missing classes": '
               'a quarter of the classes (at least one) absent from the labels; "near-singular": '
               'posteriors softmax(1e-4 N(0, 1)), almost equal for every sample; "singular": one '
               'posterior for all samples (U of rank 1). Gradients w.r.t. the predictions. pDMI '
               'ignores singular values <= 1e-5 (loss.pdmi_eps): with one class left it is 0, '
               'with no gradient.\n']
  markdown = (_common.markdown_header('DMI vs pDMI', meta, notes) + '\n' + '\n'.join(sections))
  figure = plot(runs, probe_rows)
  results = {'meta': meta, 'args': {k: str(v) for k, v in vars(args).items()},
             'probe': probe_rows, 'runs': runs}
  return _common.finish(args.out, markdown, results, figure)


if __name__ == '__main__':
  sys.exit(main())
