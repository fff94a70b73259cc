"""Shared helpers of the experiment scripts (dmi_vs_pdmi.py, ablation.py, benchmark.py).

Run metadata for the Markdown header (command, date, device, git commit), the run sizes
('smoke' / 'quick' / 'full') as config overrides of configs/synthetic.py, training one variant
through `d2net_jax.training.train.train_and_evaluate`, mean ± std formatting, F1 from the evaluator's
TP/FP counts, and writing results.md / results.json / plot.png.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import math
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_module(path: pathlib.Path, name: str):
  """Imports a file (configs/*.py, experiments/*.py) as a module."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def enable_compilation_cache(folder: pathlib.Path) -> None:
  """JAX's persistent compilation cache in `folder`: variants that lower to the same program
  (seeds of one variant, the evaluation forward pass) compile once per process and machine."""
  import jax  # pylint: disable=import-outside-toplevel
  folder.mkdir(parents=True, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', str(folder))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


# ---------------------------------------------------------------------------------------------
# Run metadata.


def git_commit() -> str:
  """HEAD's short hash, with '+dirty' when tracked files are modified ('unknown' outside git)."""
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.strip()
    return head + ('+dirty' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def device_description() -> str:
  """'<count> x <kind> (<backend>), JAX <version>, <cores> CPU cores'."""
  import jax  # pylint: disable=import-outside-toplevel
  devices = jax.devices()
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return (f'{len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), '
          f'JAX {jax.__version__}, {cores} CPU cores')


def run_metadata(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """command, date (UTC), device and git commit of this run."""
  argv = sys.argv[1:] if argv is None else list(argv)
  script = pathlib.Path(sys.argv[0]).resolve()
  try:
    script = script.relative_to(ROOT)
  except ValueError:
    pass
  return {
      'command': ' '.join(['python', str(script)] + [shlex.quote(a) for a in argv]),
      'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
      'device': device_description(),
      'git_commit': git_commit(),
  }


def markdown_header(title: str, meta: Dict[str, str], notes: Sequence[str] = ()) -> str:
  lines = [f'# {title}', '', f'- command: `{meta["command"]}`', f'- date: {meta["date"]}',
           f'- device: {meta["device"]}', f'- git commit: {meta["git_commit"]}']
  if 'wall_s' in meta:
    lines.append(f'- wall time: {float(meta["wall_s"]):.0f} s')
  lines += [f'- {n}' for n in notes]
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# Tables and statistics.


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """(mean, sample std) of the finite values; std 0 for one value, NaN for none."""
  finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  if not finite:
    return math.nan, math.nan
  std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
  return float(np.mean(finite)), std


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
  """'mean ± std' of values * scale ('-' when there is none; the mean alone for one value)."""
  mean, std = mean_std(values)
  if math.isnan(mean):
    return '-'
  if len(values) == 1:
    return f'{mean * scale:.{digits}f}'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Optional[str] = None) -> str:
  """A GitHub Markdown table; align: 'l' / 'r' per column (default: the first left, others right).

  Cells must not contain '|'.
  """
  cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
  align = align or 'l' + 'r' * (len(header) - 1)
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

  def line(row):
    return '| ' + ' | '.join(c.ljust(w) if a == 'l' else c.rjust(w)
                             for c, w, a in zip(row, widths, align)) + ' |'

  rule = '|' + '|'.join('-' * (w + 1) + ('-' if a == 'l' else ':') for w, a in zip(widths, align))
  return '\n'.join([line(cells[0]), rule + '|'] + [line(r) for r in cells[1:]]) + '\n'


def map_table(runs: Sequence[Dict[str, Any]], labels: Dict[str, str],
              max_tiou: float = 1.0, extra: Optional[Dict[str, Sequence[str]]] = None,
              extra_header: Sequence[str] = ()) -> str:
  """Test mAP (%) at each tIoU <= max_tiou, its averages and F1@0.5, mean ± std over seeds.

  runs: records with 'variant', 'tiou', 'mAP', 'range_mAP', 'f1'; one row per variant, in the
  order of `labels`; `extra`: more cells per variant (headers `extra_header`).
  """
  tiou = [t for t in runs[0]['tiou'] if t <= max_tiou + 1e-9]
  ranges = [k for k in ('0.1:0.5', '0.1:0.7') if k in runs[0]['range_mAP']
            and float(k.split(':')[1]) <= max_tiou + 1e-9]
  header = (['variant', 'seeds'] + [f'mAP@{t:g}' for t in tiou] + [f'avg {k}' for k in ranges]
            + ['F1@0.5'] + list(extra_header))
  rows = []
  for variant, label in labels.items():
    rs = [r for r in runs if r['variant'] == variant]
    if not rs:
      continue
    rows.append([label, len(rs)]
                + [pm([r['mAP'][i] for r in rs], 100) for i in range(len(tiou))]
                + [pm([r['range_mAP'][k] for r in rs], 100) for k in ranges]
                + [pm([r['f1']['f1'] for r in rs], 100)]
                + list((extra or {}).get(variant, ['-'] * len(extra_header))))
  return markdown_table(header, rows)


def test_record(variant: str, seed: int, test: Dict[str, Any], **more) -> Dict[str, Any]:
  """The per-run record the tables read: test mAP by tIoU, averages and F1@0.5."""
  return dict({'variant': variant, 'seed': seed, 'tiou': test['tiou'], 'mAP': test['mAP'],
               'range_mAP': test['range_mAP'], 'average_mAP': test['average_mAP'],
               'f1': f1_at(test, 0.5)}, **more)


def plot_map(ax, runs: Sequence[Dict[str, Any]], labels: Dict[str, str], title: str) -> None:
  """Test mAP (%) against tIoU per variant, mean with a ± std bar over seeds."""
  for variant, label in labels.items():
    values = np.array([[100 * m for m in r['mAP']] for r in runs if r['variant'] == variant])
    if not len(values):
      continue
    ax.errorbar(runs[0]['tiou'], values.mean(0),
                yerr=values.std(0, ddof=1) if len(values) > 1 else None,
                marker='o', capsize=3, label=label)
  ax.set_xlabel('tIoU')
  ax.set_ylabel('test mAP (%)')
  ax.set_title(title)
  ax.legend(fontsize=7)


def f1_at(test: Dict[str, Any], iou: float = 0.5) -> Dict[str, float]:
  """Precision, recall and F1 of the test detections at tIoU `iou`.

  `test` is `EvaluationResult.to_dict()`. The detections are the localizer's output (after its
  class, proposal, score and NMS thresholds), matched greedily by the evaluator: TP / FP are its
  counts at `iou` summed over classes; recall = TP / GT instances; F1 = 2 P R / (P + R).
  """
  index = int(np.argmin(np.abs(np.asarray(test['tiou']) - iou)))
  if abs(test['tiou'][index] - iou) > 1e-9:
    raise ValueError(f'tIoU {iou} is not among the evaluated thresholds {test["tiou"]}')
  tp, fp = test['true_positives'][index], test['false_positives'][index]
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / test['num_instances'] if test['num_instances'] else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {'precision': precision, 'recall': recall, 'f1': f1, 'tp': tp, 'fp': fp}


# ---------------------------------------------------------------------------------------------
# Run sizes and training.

# Overrides of configs/synthetic.py per size. 'quick' is sized for < 15 min per script on 2 CPU
# cores (compilation included); 'smoke' only checks that everything runs (tests).
SIZES: Dict[str, Dict[str, Any]] = {
    'smoke': dict(feature_dim=16, max_seqlen=32, batch_size=4, num_train=16, num_test=12,
                  steps=6, seeds=1, eval_bucket=512, learning_rate=2e-3, evaluations=1),
    # quick: the demo's own settings (configs/synthetic.py, tuned on its validation split).
    'quick': dict(feature_dim=256, max_seqlen=256, batch_size=10, num_train=-1, num_test=-1,
                  steps=1000, seeds=3, eval_bucket=256, learning_rate=1e-3, evaluations=2),
    'full': dict(feature_dim=128, max_seqlen=256, batch_size=10, num_train=-1, num_test=-1,
                 steps=3000, seeds=3, eval_bucket=64, learning_rate=5e-4, evaluations=6),
}


def base_config(size: str, steps: Optional[int] = None, data_dir: Optional[pathlib.Path] = None,
                preset: str = 'synthetic', preset_arg: Optional[str] = None):
  """configs/<preset>.py (default: the synthetic demo) shrunk to `size` (see SIZES).

  The synthetic data, model input and learning rate follow SIZES (quick: the demo's settings);
  other presets keep theirs. The
  checkpoint is selected on the held-out validation split, evaluated `evaluations` times evenly
  over the run; the test split is scored once at the end (the library's protocol).
  """
  config = load_module(ROOT / 'configs' / f'{preset}.py', f'd2net_configs_{preset}').get_config(
      preset_arg)
  s = SIZES[size]
  steps = int(steps or s['steps'])
  if config.data.kind == 'synthetic':
    config.data.feature_dim = s['feature_dim']
    config.data.synthetic.num_train = s['num_train']
    config.data.synthetic.num_test = s['num_test']
    if data_dir is not None:
      config.data.path = str(data_dir)  # One generated store shared by every variant.
    config.data.max_seqlen = s['max_seqlen']
    config.data.eval_bucket = s['eval_bucket']
    # Similar-pair batches (CO2-Net, DFE over it) need room for their groups (3 pairs: 6 rows).
    groups = (config.data.num_similar * config.data.similar_size
              if config.data.sampler == 'similar_pairs' else 0)
    config.train.batch_size = max(s['batch_size'], groups)
    config.train.learning_rate = s['learning_rate']
  config.train.num_steps = steps
  config.train.log_every = max(1, min(25, steps))
  config.train.eval_every = max(1, steps // s['evaluations'])
  config.train.checkpoint_every = steps
  config.train.tensorboard = False
  # The official L_D schedule scaled to the run: on after 5% of the steps (official: 1000 of
  # 20000), every loss.pdmi_every-th (2nd) step. Batch size and learning rate stay the size's
  # (quick: the demo's batch 10, lr 1e-3 cosine; official: 20, 1e-4 constant): describe_schedule.
  config.loss.pdmi_start_step = steps // 20
  return config


def describe_schedule(config) -> str:
  """One line: the L_D schedule, batch and learning rate the runs used (what 'official' means)."""
  c, t = config.loss, config.train
  start = c.pdmi_start_step
  share = f' ({start / t.num_steps:.0%} of {t.num_steps} steps, as the official 1000 of 20000)'
  return (f'L_D on after step {start}{share if start > 0 else ""}, every {c.pdmi_every} step(s); '
          f'batch {t.batch_size}, lr {t.learning_rate:g} {t.lr_schedule} (official code: batch '
          '20, lr 1e-4 constant)')


def _parse(text: str):
  """A command-line value: true / false, a Python literal (number, tuple), else the string."""
  import ast  # pylint: disable=import-outside-toplevel
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config, overrides: Dict[str, Any]):
  """A copy of `config` with dotted fields set: {'loss.denoising': 'dmi', ...}.

  String values for non-string fields (from the command line) are parsed first; ConfigDict
  checks the types.
  """
  config = config.copy_and_resolve_references()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split('.')
    target = config
    for p in parents:
      target = target[p]
    if leaf not in target:
      raise KeyError(f'config has no field {dotted!r}')
    if isinstance(value, str) and not isinstance(target[leaf], str):
      value = _parse(value)
    target[leaf] = value
  return config


def run_seconds(history: Sequence[Dict[str, Any]]) -> float:
  """Wall seconds a run trained, summed over its history's start -> end segments (a resumed
  run counts each call; 1 s resolution); a start without an end counts nothing."""
  total, start = 0.0, None
  for row in history:
    if row.get('event') == 'start':
      start = datetime.datetime.fromisoformat(row['date'])
    elif row.get('event') == 'end' and start is not None:
      total += (datetime.datetime.fromisoformat(row['date']) - start).total_seconds()
      start = None
  return total


def same_config(config, workdir: pathlib.Path) -> bool:
  """Whether `workdir` holds a run (config.json) of exactly `config`."""
  try:
    return json.loads((pathlib.Path(workdir) / 'config.json').read_text()) == json.loads(
        config.to_json())
  except (OSError, ValueError):
    return False


def finished_summary(config, workdir: pathlib.Path) -> Optional[Dict[str, Any]]:
  """The summary of a run of exactly `config` that already finished in `workdir` (its
  results.json holds the same resolved config and its history ends 'finished'), rebuilt from the
  workdir: 'test', 'selection', 'num_skipped' (last metrics row), 'metrics', and 'seconds'
  (`run_seconds`); None when there is no such run."""
  workdir = pathlib.Path(workdir)
  try:
    results = json.loads((workdir / 'results.json').read_text())
    history = read_jsonl(workdir / 'history.jsonl')
  except (OSError, ValueError):
    return None
  if (results.get('config') != json.loads(config.to_json()) or not history
      or history[-1].get('outcome') != 'finished' or 'test' not in results):
    return None
  metrics = read_jsonl(workdir / 'metrics.jsonl')
  skipped = [m['num_skipped'] for m in metrics if 'num_skipped' in m]
  return {'test': results['test'], 'selection': results['selected_checkpoint'],
          'num_skipped': int(skipped[-1]) if skipped else 0, 'metrics': metrics,
          'seconds': run_seconds(history), 'reused': True}


class RunInterrupted(SystemExit):
  """A variant's training was stopped by a signal; its checkpoint is kept for --reuse."""


def train_variant(config, workdir: pathlib.Path, reuse: bool = False) -> Dict[str, Any]:
  """Trains and tests `config` from scratch in `workdir` (emptied first) with the library's
  `train.train_and_evaluate`; returns its summary plus 'seconds' and 'metrics' (the per-step
  metrics.jsonl rows). Its progress lines go to `<workdir>.log`. reuse: a run of the same config
  that already finished there is read back (`finished_summary`) instead of trained again, and one
  that was interrupted resumes from its checkpoint ('seconds' then sums every call). A signal
  that stops the training raises RunInterrupted (one line: how to resume)."""
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(workdir)
  resume = reuse and same_config(config, workdir)
  if resume:
    summary = finished_summary(config, workdir)
    if summary is not None:
      return summary
  elif workdir.exists():
    shutil.rmtree(workdir)
  workdir.parent.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  with open(workdir.with_suffix('.log'), 'a' if resume else 'w') as log_file:
    with contextlib.redirect_stderr(log_file):
      summary = train.train_and_evaluate(config, workdir, progress=False,
                                         log=lambda s: print(s, file=log_file))
  if summary.get('interrupted'):
    raise RunInterrupted(f'{workdir}: training interrupted ({summary["interrupted"]}) at step '
                         f'{summary["step"]}; run the same command with --reuse to resume it')
  summary['seconds'] = (run_seconds(read_jsonl(workdir / 'history.jsonl')) if resume
                        else time.perf_counter() - start)
  summary['metrics'] = read_jsonl(workdir / 'metrics.jsonl')
  return summary


def quiet_logs() -> None:
  """absl (orbax) warnings and info off the console: errors only."""
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.ERROR)


def read_jsonl(path: pathlib.Path) -> List[Dict[str, Any]]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def describe_data(config) -> str:
  """One line: which data the runs trained and tested on."""
  d = config.data
  if d.kind == 'synthetic':
    counts = f'{d.synthetic.num_train} train / {d.synthetic.num_test} test videos'
    counts = counts.replace('-1', 'all')
    return f'synthetic {d.synthetic.preset} (seed {d.synthetic.seed}, D={d.feature_dim}, {counts})'
  return f'{d.kind} data at {d.path} (D={d.feature_dim})'


def describe_selection(config) -> str:
  """How the tested checkpoint was chosen (train.selection, selection_iou, val_fraction)."""
  iou = config.train.selection_iou
  metric = f'mAP@{iou:g}' if iou >= 0 else 'the mean mAP over the evaluation tIoUs'
  if config.train.selection == 'validation':
    where = (f'a validation split of {config.data.val_fraction:.0%} held out from the training '
             'videos')
  else:
    where = 'the TEST split (the published protocol; optimistic)'
  return (f'test split scored once, on the checkpoint selected by {metric} on {where} '
          f'(evaluated every {config.train.eval_every} steps); mAP by the '
          f'{config.evaluation.protocol!r} protocol (evaluation.protocol)')


def prepare_data(config, log: Callable[[str], None] = print):
  """Builds the synthetic store (`synthetic.ensure_store`, once per set of generation
  parameters) before the first variant, so its time is not a variant's; returns the config."""
  if config.data.kind != 'synthetic':
    return config
  from d2net_jax.data import loading  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  dataset = loading.load_dataset(config.data, cache_dir=pathlib.Path(config.data.path or '.'))
  log(f'data: {dataset.name}, {len(dataset.train_videos())} train / '
      f'{len(dataset.test_videos())} test videos, D={dataset.feature_dim} '
      f'({time.perf_counter() - start:.0f} s)')
  return config


# ---------------------------------------------------------------------------------------------
# Command line and start-up shared by the training scripts.


def add_output_arguments(parser, data_dir: bool = True) -> None:
  """--data-dir (a script on synthetic data), --out, --compilation-cache and --reuse;
  `resolve_output_arguments` fills them."""
  if data_dir:
    parser.add_argument('--data-dir', type=pathlib.Path,
                        help='synthetic store cache (default OUT/data)')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--compilation-cache', type=pathlib.Path,
                      help="JAX's persistent compilation cache (default OUT/jax_cache)")
  parser.add_argument('--reuse', action='store_true',
                      help='read back the runs under OUT that finished with the same config and '
                           'resume the interrupted ones from their checkpoints')


def split_choices(parser, text: str, allowed, what: str) -> List[str]:
  """The comma-separated names in `text`; a one-line parser error names any not in `allowed`."""
  names = [n for n in text.split(',') if n]
  unknown = sorted(set(names) - set(allowed))
  if unknown:
    parser.error(f'unknown {what} {unknown}; choose from {tuple(allowed)}')
  return names


def add_set_argument(parser, example: str = '') -> None:
  """--set FIELD=VALUE (repeatable): config overrides for every run, as (field, value) pairs."""
  parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                      type=lambda s: tuple(s.split('=', 1)),
                      help=f'config override for every run{example} (repeatable)')


def resolve_output_arguments(args, name: str):
  """Defaults of `add_output_arguments`: OUT = runs/experiments/<name>, OUT/data, OUT/jax_cache."""
  args.out = args.out or ROOT / 'runs' / 'experiments' / name
  if hasattr(args, 'data_dir'):
    args.data_dir = args.data_dir or args.out / 'data'
  args.compilation_cache = args.compilation_cache or args.out / 'jax_cache'
  return args


def start_script(args, argv: Sequence[str], name: str):
  """(metadata, log, start time) of a training script: the compilation cache on, absl quiet,
  the first line printed."""
  start = time.perf_counter()
  enable_compilation_cache(args.compilation_cache)
  quiet_logs()
  meta = run_metadata(argv)
  log = lambda s: print(s, flush=True)
  log(f'{name}: {args.mode} mode on {meta["device"]}')
  return meta, log, start


# ---------------------------------------------------------------------------------------------
# Outputs.


def to_jsonable(value):
  """NumPy / JAX scalars and arrays to plain Python (NaN and inf as strings)."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, 'tolist'):
    return to_jsonable(value.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return str(value)


def write_outputs(out: pathlib.Path, markdown: str, results: Dict[str, Any], figure=None
                  ) -> List[pathlib.Path]:
  """out/results.md, out/results.json and (with a matplotlib figure) out/plot.png."""
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / 'results.md', out / 'results.json']
  paths[0].write_text(markdown)
  paths[1].write_text(json.dumps(to_jsonable(results), indent=1, sort_keys=True) + '\n')
  if figure is not None:
    paths.append(out / 'plot.png')
    figure.savefig(paths[-1], dpi=110, bbox_inches='tight')
  return paths


def finish(out: pathlib.Path, markdown: str, results: Dict[str, Any], figure=None) -> int:
  """A script's end: `write_outputs`, the markdown and the written paths printed; exit status 0."""
  paths = write_outputs(out, markdown, results, figure)
  print(markdown)
  print('wrote ' + ', '.join(str(p) for p in paths))
  return 0


def new_figure(ncols: int, width: float = 5.0, height: float = 3.6):
  """(figure, axes) with the headless Agg backend."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
  return figure, axes[0]
