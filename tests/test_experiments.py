"""Smoke tests of the experiment scripts: each runs end to end (`--mode smoke`), writes its files.

Each script runs as `python experiments/<name>.py --mode smoke ...` would, in a helper process
with one CPU device as on a user's machine (tests/experiment_runner.py: the scripts of this module
run one after another in it, sharing one JAX start-up), with a tiny synthetic set, one seed and a
handful of steps; the scripts share one JAX compilation cache. A broken import, a crash, or a
table without the expected rows fails. Timing is not tested (experiments/ measures).
"""

import json
import os
import pathlib
import queue
import subprocess
import sys
import threading
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


class ScriptRunner:
  """A tests/experiment_runner.py process (started again if it died) and its stderr file."""

  def __init__(self, folder: pathlib.Path):
    self.folder = folder
    self.process = None

  def _start(self):
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    # One device, as on a user's CPU machine; the suite's fast-compile flags stay (conftest.py).
    env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                                if not f.startswith('--xla_force_host_platform_device_count'))
    self.stderr = open(self.folder / f'runner-{uuid.uuid4().hex}.stderr', 'a+', encoding='utf-8')
    self.process = subprocess.Popen(
        [sys.executable, str(ROOT / 'tests' / 'experiment_runner.py')], cwd=ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
    self.lines = queue.Queue()
    threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()

  @staticmethod
  def _read(stream, lines):
    for line in stream:
      lines.put(line)
    lines.put(None)

  def __call__(self, argv, timeout=600):
    """(exit status, stdout, stderr) of `python argv...` run in the helper process."""
    if self.process is None or self.process.poll() is not None:
      self._start()
    start = self.stderr.seek(0, os.SEEK_END)
    token = uuid.uuid4().hex
    self.process.stdin.write(json.dumps({'argv': [str(a) for a in argv], 'token': token}) + '\n')
    self.process.stdin.flush()
    while True:
      try:
        line = self.lines.get(timeout=timeout)
      except queue.Empty:
        self.close()
        return -1, '', f'timed out after {timeout} s'
      if line is None:  # The process died (a crash in native code).
        self.process.wait()
        return self.process.returncode, '', self._stderr_since(start)
      if token in line:
        result = json.loads(line[line.index(token) + len(token):])
        return result['code'], result['stdout'], self._stderr_since(start)

  def _stderr_since(self, offset):
    self.stderr.flush()
    self.stderr.seek(offset)
    return self.stderr.read()

  def close(self):
    if self.process is not None and self.process.poll() is None:
      self.process.stdin.close()
      try:
        self.process.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
  """Folders shared by the scripts: the synthetic store and the compilation cache."""
  return tmp_path_factory.mktemp('experiments_shared')


@pytest.fixture(scope='module')
def runner(shared):
  script_runner = ScriptRunner(shared)
  yield script_runner
  script_runner.close()


def run_script(runner, name, out, *args):
  code, stdout, stderr = runner([ROOT / 'experiments' / f'{name}.py', '--mode', 'smoke', '--out',
                                 out, *args])
  assert code == 0, f'{name} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}'
  return stdout


def table_rows(markdown, heading):
  """First column of the Markdown table under `heading` (a line starting with '## ')."""
  lines = markdown.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith('## ') and heading in line)
  rows = []
  for line in lines[start + 1:]:
    if line.startswith('## '):
      break
    if line.startswith('| ') and not line.startswith('|--'):
      rows.append(line.strip('|').split('|')[0].strip())
  return rows[1:]  # Without the header row.


def check_outputs(out, stdout, plot=True):
  markdown = (out / 'results.md').read_text()
  assert markdown.strip() in stdout  # The printed table is the written one.
  assert 'git commit:' in markdown and 'device:' in markdown and 'command:' in markdown
  results = json.loads((out / 'results.json').read_text())
  if plot:
    png = (out / 'plot.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 1000
  return markdown, results


@pytest.mark.slow
def test_dmi_vs_pdmi_smoke(tmp_path, shared, runner):
  out = tmp_path / 'dmi_vs_pdmi'
  stdout = run_script(runner, 'dmi_vs_pdmi', out, '--variants', 'pdmi,none', '--steps', '4',
                      '--pdmi-start', '0', '--probe-every', '2', '--probe-ks', '4',
                      '--probe-draws', '8', '--data-dir', str(shared / 'data'),
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout)
  assert table_rows(markdown, 'Test mAP') == ['pDMI (Eq. 7)', 'no L_D']
  assert table_rows(markdown, 'Health') == ['pDMI (Eq. 7)', 'no L_D']
  assert table_rows(markdown, 'Probe') == ['all classes', 'missing classes', 'near-singular',
                                           'singular']
  runs = results['runs']
  assert [r['variant'] for r in runs] == ['pdmi', 'none']
  assert all(len(r['mAP']) == len(r['tiou']) == 7 for r in runs)
  # The training probe replayed the kept checkpoints (steps 2; 4 is the final state).
  assert [p['step'] for p in runs[0]['probes']] == [2]
  # DMI on a batch missing classes is non-finite; pDMI never is (the probe's point).
  missing = [r for r in results['probe'] if r['case'] == 'missing classes']
  assert all(r['dmi_value_nonfinite'] == 1.0 for r in missing)
  assert all(r['pdmi_value_nonfinite'] == 0.0 for r in results['probe'])


@pytest.mark.slow
def test_ablation_smoke(tmp_path, shared, runner):
  out = tmp_path / 'ablation'
  stdout = run_script(runner, 'ablation', out, '--variants', 'ce,full,nms_0.5', '--steps', '3',
                      '--data-dir', str(shared / 'data'),
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout)
  assert table_rows(markdown, 'Loss terms') == ['L_CE', 'L_Dis + L_D (D2-Net, official loss settings)']
  assert table_rows(markdown, 'switches') == ['L_Dis + L_D (D2-Net, official loss settings)',
                                              'D2-Net, NMS 0.5 (paper)']
  variants = [r['variant'] for r in results['runs']]
  assert variants == ['ce', 'full', 'nms_0.5']
  for r in results['runs']:
    assert 0.0 <= r['f1']['f1'] <= 1.0 and len(r['mAP']) == 7


@pytest.mark.slow
def test_benchmark_smoke(tmp_path, shared, runner):
  out = tmp_path / 'benchmark'
  stdout = run_script(runner, 'benchmark', out, '--data-dir', str(shared / 'loader'))
  markdown, results = check_outputs(out, stdout, plot=False)
  assert 'device:' in stdout
  names = {row[0] for row in results['rows']}
  assert names >= {'training step', 'model + d2net_loss, fwd + bwd', 'loader: TrainBatcher',
                   'localize (Sec. 3.3, NumPy)', 'evaluation (mAP, NumPy)'}


@pytest.mark.slow
def test_compare_methods_smoke(tmp_path, shared, runner):
  out = tmp_path / 'compare_methods'
  stdout = run_script(runner, 'compare_methods', out, '--methods', 'mil', '--steps', '2',
                      '--data-dir', str(shared / 'data'),
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout)
  assert table_rows(markdown, 'thumos14_like') == ['mil', 'mil (gaussian features)']
  assert table_rows(markdown, 'activitynet12_like') == ['mil', 'mil (gaussian features)']
  assert 'avg 0.5:0.95' in markdown and 'avg 0.1:0.7' in markdown
  runs = results['runs']
  assert [(r['dataset'], r['features']) for r in runs] == [
      ('thumos14_like', 'i3d_like'), ('thumos14_like', 'gaussian'),
      ('activitynet12_like', 'i3d_like'), ('activitynet12_like', 'gaussian')]
  assert [len(r['mAP']) for r in runs] == [7, 7, 10, 10]  # THUMOS14 / ActivityNet tIoUs.
  assert all(r['train_seconds'] > 0 for r in runs)
  # --reuse reads the finished runs back: the same numbers, nothing trained again.
  stamps = {p: p.stat().st_mtime_ns for p in (out / 'runs').glob('*/results.json')}
  run_script(runner, 'compare_methods', out, '--methods', 'mil', '--steps', '2', '--reuse',
             '--data-dir', str(shared / 'data'), '--compilation-cache', str(shared / 'jax_cache'))
  again = json.loads((out / 'results.json').read_text())['runs']
  assert [r['mAP'] for r in again] == [r['mAP'] for r in runs]
  assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


# Settings of a method's synthetic recipe that compare_methods' smoke mode sizes for every method.
_RUN_LENGTH = ('train.num_steps', 'train.eval_every', 'train.checkpoint_every')


def test_compare_methods_variants_and_configs():
  """Every registered method is compared; its config is configs/synthetic.py:<method> (its
  synthetic preset applied) plus, on activitynet12_like, the ActivityNet settings."""
  import argparse  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(ROOT / 'experiments'))
  try:
    import compare_methods  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  variants = compare_methods.variants(list(methods.names()))
  assert {m for m, _, _ in variants} == set(methods.names())
  assert ('d2net', '', 'gaussian') in variants and ('mil', '', 'gaussian') in variants
  # A wrapper runs over each base it accepts, with the base's synthetic settings.
  assert ('dfe', 'd2net', 'i3d_like') in variants and ('dfe', 'sal', 'i3d_like') in variants
  assert ('co2net', '', 'i3d_like') in variants and ('dfe', 'co2net', 'i3d_like') in variants
  assert compare_methods.label('dfe', 'co2net', 'i3d_like') == 'dfe on co2net'
  assert not any(m == 'dfe' and b in ('mil', 'dfe') for m, b, _ in variants)
  # --bases: a wrapper over the named bases only.
  assert sorted(compare_methods.variants(['co2net', 'dfe', 'mil'], ['co2net'])) == [
      ('co2net', '', 'i3d_like'), ('dfe', 'co2net', 'i3d_like'), ('mil', '', 'gaussian'),
      ('mil', '', 'i3d_like')]
  args = argparse.Namespace(mode='smoke', steps=None, data_dir=pathlib.Path('/nonexistent'))
  for method, base, _ in [v for v in variants if v[2] == 'i3d_like']:
    arg = compare_methods.preset_arg(method, base)
    expected = compare_methods._flatten(compare_methods._preset('synthetic', arg + ',smoke'))
    got = compare_methods.variant_config(method, base, 'i3d_like', 'thumos14_like', args)
    flat = compare_methods._flatten(got)
    for name in filter(None, (base, method)):
      for dotted in methods.get(name).presets.get('synthetic', {}):
        if dotted not in _RUN_LENGTH:  # The mode sizes the run (smoke: a few steps for all).
          assert flat[dotted] == expected[dotted], (arg, dotted)
    quick = compare_methods.variant_config(
        method, base, 'i3d_like', 'thumos14_like', argparse.Namespace(mode='quick', steps=None,
                                                                      data_dir=args.data_dir))
    own = compare_methods.own_steps(method, base)
    assert quick.train.num_steps == (own or compare_methods.SIZES['quick']['steps']), arg
    if base:
      assert flat[f'{method}.base'] == base
    anet = compare_methods.variant_config(method, base, 'gaussian', 'activitynet12_like', args)
    assert anet.data.num_classes == 100 and anet.data.synthetic.features == 'gaussian'
    assert anet.evaluation.tiou_thresholds[0] == 0.5 and len(anet.evaluation.tiou_thresholds) == 10
    assert anet.train.learning_rate == got.train.learning_rate  # The schedule stays the demo's.


@pytest.mark.parametrize('base_method', ['sal', 'co2net'])
def test_dfe_ablation_over_sal_and_co2net_configs(base_method):
  """--base sal / co2net: each variant trains with the base's synthetic settings (resampling;
  sal.hidden and the 'oic' localizer / CO2-Net's similar pairs and 'hamnet' localizer), the base
  alone as its own method, the others as DFE over it."""
  sys.path.insert(0, str(ROOT / 'experiments'))
  try:
    import dfe_ablation  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  from d2net_jax import methods  # pylint: disable=import-outside-toplevel
  from d2net_jax.data import sampling  # pylint: disable=import-outside-toplevel
  args = dfe_ablation.parse_args(['--mode', 'smoke', '--base', base_method, '--out',
                                  '/nonexistent'])
  base = dfe_ablation.ablation_config(args)
  for variant in dfe_ablation.TRAINED:
    config = dfe_ablation.variant_config(base, variant, args.base, seed=1)
    assert config.method == (base_method if variant == 'base' else 'dfe'), variant
    assert config.dfe.base == base_method, variant
    if base_method == 'sal':
      assert config.sal.hidden == methods.get('sal').presets['synthetic']['sal.hidden'], variant
      assert methods.resolve_localizer(config) == 'oic', variant
    else:
      assert config.co2net.attention_hidden == 64, variant
      assert methods.resolve_localizer(config) == 'hamnet', variant
      assert methods.resolve_batch_sampler(config) == 'similar_pairs', variant
    assert methods.resolve_sampling(config) == 'resample', variant
  no_lfe = dfe_ablation.variant_config(base, 'gfe', args.base, seed=1)
  assert (no_lfe.dfe.lfe.kind, no_lfe.dfe.loss.w_global, no_lfe.dfe.loss.lambda_kd) == ('none', 1, 1)
  assert dfe_ablation.variant_config(base, 'dfe_conv', args.base, seed=1).dfe.lfe.kind == (
      'dilated_conv')


@pytest.mark.slow
def test_real_footage_methods_smoke(tmp_path, shared, runner):
  """Seeds on the committed real-footage store (2 steps of mil): one row, every tIoU, the
  validation curve each run was selected on; the variants cover every method and DFE over its
  default base and over d2net."""
  out = tmp_path / 'real_footage_methods'
  stdout = run_script(runner, 'real_footage_methods', out, '--methods', 'mil', '--seeds', '1,2',
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout, plot=False)
  assert table_rows(markdown, 'Test mAP') == ['mil']
  runs = results['runs']
  assert [(r['seed'], r['steps'], len(r['mAP'])) for r in runs] == [(1, 2, 7), (2, 2, 7)]
  assert all(r['validation'] and r['train_seconds'] > 0 for r in runs)
  sys.path.insert(0, str(ROOT / 'experiments'))
  try:
    import real_footage_methods  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  found = real_footage_methods.variants(real_footage_methods.METHODS)
  assert [m for m, _ in found][:4] == ['mil', 'd2net', 'sal', 'co2net']
  assert ('dfe', 'd2net') in found and found[4][0] == 'dfe' and found[4][1]
  assert len(set(found)) == len(found)


@pytest.mark.slow
def test_dfe_ablation_smoke(tmp_path, shared, runner):
  out = tmp_path / 'dfe_ablation'
  stdout = run_script(runner, 'dfe_ablation', out, '--steps', '3', '--variants', 'base,dfe_global',
                      '--data-dir', str(shared / 'data'),
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout)
  assert table_rows(markdown, 'Test mAP') == [  # --base: co2net, DFE's default.
      'co2net alone', '+ LFE + GFE (train only) + distillation (DFE)',
      'DFE, global branch at test (upper bound)']
  # The global-branch row re-scores the DFE checkpoints, so DFE is trained too.
  assert [r['variant'] for r in results['runs']] == ['base', 'dfe', 'dfe_global']
  assert results['parameters']['dfe_deployed'] < results['parameters']['dfe_total']


def test_train_variant_resumes_an_interrupted_run_and_stops_cleanly(tmp_path, monkeypatch):
  """--reuse: an interrupted run of the same config resumes in place (its checkpoint is kept, its
  time sums both calls); another config starts from an empty folder; a signal during training
  stops the script with one line instead of a KeyError on the missing test results."""
  sys.path.insert(0, str(ROOT / 'experiments'))
  try:
    import _common  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.pop(0)
  from d2net_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  from d2net_jax.training import train  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config()
  workdir = tmp_path / 'run'
  calls = []

  def fake_train(cfg, wd, progress, log):  # pylint: disable=unused-argument
    wd = pathlib.Path(wd)
    calls.append(sorted(p.name for p in wd.iterdir()) if wd.exists() else None)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / 'config.json').write_text(cfg.to_json())
    (wd / 'checkpoint').write_text('kept')
    second = len(calls) > 1
    with open(wd / 'history.jsonl', 'a') as f:
      f.write(json.dumps({'event': 'start', 'date': f'2026-01-01T00:0{2 * second}:00+00:00'}) + '\n')
      f.write(json.dumps({'event': 'end', 'date': f'2026-01-01T00:0{2 * second + 1}:00+00:00',
                          'outcome': 'finished' if second else 'SIGTERM'}) + '\n')
    if not second:
      return {'step': 5, 'interrupted': 'SIGTERM'}
    return {'step': 10, 'interrupted': None, 'test': {}}

  monkeypatch.setattr(train, 'train_and_evaluate', fake_train)
  with pytest.raises(_common.RunInterrupted, match=r'run.*interrupted \(SIGTERM\) at step 5.*--reuse'):
    _common.train_variant(config, workdir, reuse=True)
  summary = _common.train_variant(config, workdir, reuse=True)
  assert calls[1] == ['checkpoint', 'config.json', 'history.jsonl']  # Resumed in place.
  assert summary['seconds'] == 120.0  # Both calls, one minute each.
  config.train.seed += 1  # Another config: the folder is emptied first, even with --reuse.
  _common.train_variant(config, workdir, reuse=True)
  assert calls[2] is None


@pytest.mark.slow
def test_sal_sweep_smoke(tmp_path, shared, runner):
  out = tmp_path / 'sal_sweep'
  stdout = run_script(runner, 'sal_sweep', out, '--recipes', 'preset_1203,authors',
                      '--test-seeds', '1,2', '--data-dir', str(shared / 'data'),
                      '--compilation-cache', str(shared / 'jax_cache'))
  markdown, results = check_outputs(out, stdout, plot=False)
  chosen = results['chosen']
  assert chosen in ('preset_1203', 'authors')
  assert [r['seed'] for r in results['runs'] if r['variant'] == chosen] == [1, 2]
  assert [r['seed'] for r in results['runs'] if r['variant'] == 'preset_1203'] == [1, 2]
  assert len(table_rows(markdown, 'Validation mAP')) == 2
  assert table_rows(markdown, 'Test mAP')[0] == f'`{chosen}`'
  for r in results['runs']:
    assert 0.0 <= r['validation'] <= 1.0 and len(r['mAP']) == 7


def test_sal_sweep_recipes_and_choice():
  """Each recipe sets its fields explicitly (whatever SAL's preset is now), on the demo's SAL
  config and data; the choice reads the validation mean over the sweep seeds, never test mAP."""
  sys.path.insert(0, str(ROOT / 'experiments'))
  try:
    import sal_sweep  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.remove(str(ROOT / 'experiments'))
  args = sal_sweep.parse_args(['--out', '/nonexistent'])
  assert args.seeds == [1, 2] and args.test_seeds == [1, 2, 3]
  assert {'preset_1203', 'authors', 'authors_nomix'} <= set(sal_sweep.RECIPES)
  for name, (_, settings) in sal_sweep.RECIPES.items():
    config = sal_sweep.recipe_config(name, 3, args)
    assert config.method == 'sal' and config.data.synthetic.preset == 'thumos14_like'
    assert config.train.selection == 'validation' and config.train.seed == 3
    assert config.train.eval_every == settings['train.num_steps'] // sal_sweep.EVALUATIONS
    for dotted, value in settings.items():
      section, field = dotted.split('.')
      assert config[section][field] == value, (name, dotted)
  runs = [dict(variant='a', seed=1, validation=0.05, average_mAP=0.30),
          dict(variant='a', seed=2, validation=0.03, average_mAP=0.30),
          dict(variant='b', seed=1, validation=0.04, average_mAP=0.01),
          dict(variant='b', seed=2, validation=0.05, average_mAP=0.01),
          dict(variant='b', seed=3, validation=0.00, average_mAP=0.01)]
  assert sal_sweep.choose(runs, ['a', 'b'], [1, 2]) == 'b'
  assert sal_sweep.choose(runs, ['a', 'b'], [1]) == 'a'
  runs.append(dict(variant=sal_sweep.OLD, seed=1, validation=0.001, average_mAP=0.5))
  names = ['a', 'b', sal_sweep.OLD]
  assert sal_sweep.contenders(runs, names, 1, None) == names
  assert sal_sweep.contenders(runs, names, 1, 0.5) == ['a', sal_sweep.OLD]
  assert sal_sweep.contenders(runs, names, 1, 1.0) == names
