"""The project against its authors' code, without that code: the official numbers that
experiments/parity_d2net.py and experiments/parity_sal.py stored (tests/fixtures/parity_*.npz, with
the official commit and the command in the .json beside each) replayed through the same comparison
the scripts print, at 1e-5 relative. The mutation tests change one checked detail of the project
(monkeypatch) and require the comparison to fail, so the fixtures are known to catch such changes.
"""

import importlib.util
import pathlib

import pytest

pytestmark = pytest.mark.usefixtures('fast_compile')  # Numbers only: compile quickly.

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'tests' / 'fixtures'


def _load(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


d2net = _load('parity_d2net_check')
sal = _load('parity_sal_check')
pc = d2net.pc


@pytest.fixture(scope='module')
def d2net_arrays():
  return pc.read_fixture(FIXTURES / 'parity_d2net.npz')[0]


@pytest.fixture(scope='module')
def sal_arrays():
  return pc.read_fixture(FIXTURES / 'parity_sal.npz')[0]


def _report(module, arrays, only=None):
  return module.compare(arrays, pc.Report(), only=only)


def test_fixtures_say_where_they_come_from():
  for name, repos in (('parity_d2net', [d2net.REPOSITORY]),
                      ('parity_sal', [sal.REPOSITORY, sal.ANET_REPOSITORY])):
    arrays, meta = pc.read_fixture(FIXTURES / f'{name}.npz')
    assert [m['repository'] for m in meta['official']] == repos
    assert all(len(m['commit']) == 40 and not m['modified_working_tree']
               for m in meta['official'])
    assert meta['command'].startswith(f'python experiments/{name}.py --official <checkout of')
    assert meta['date'] and sorted(meta['keys']) == sorted(arrays)
    assert (FIXTURES / f'{name}.npz').stat().st_size < 300_000


def test_d2net_matches_its_authors_code(d2net_arrays):
  report = _report(d2net, d2net_arrays)
  assert report.ok, '\n'.join(report.failures())
  names = ' '.join(r.name for r in report.rows)
  for part in ('model thumos', 'model anet', 'loss thumos L_D on: L_DS', 'loss anet L_D on: L_DV',
               'grad_logits', 'step L_D on: d total / d conv.weight', 'localizer thumos',
               'localizer anet'):
    assert part in names


def test_sal_matches_its_authors_code(sal_arrays):
  report = _report(sal, sal_arrays)
  assert report.ok, '\n'.join(report.failures())
  names = ' '.join(r.name for r in report.rows)
  for part in ('step D=16 hidden=8 from initial: output sc', 'from mid: loss mix',
               'mix-up pseudo-labels g_mix', 'adaptive mask w', 'new var',
               'd total / d fc1.weight', 'd total / d x', 'anet step D=16 hidden=8 from mid',
               'localizer (16 videos', 'anet localizer (16 videos'):
    assert part in names


# ------------------------------------------------------------------------------------------------
# Mutations: each changes one detail the authors' code fixes; the comparison must fail there.


def _config(field, value):
  """A mutation: the project's config (module.project_config) with `field` set to `value`."""
  *sections, name = field.split('.')

  def apply(monkeypatch, module):
    original = module.project_config

    def mutated(*args):
      config = original(*args)
      target = config
      for section in sections:
        target = target[section]
      setattr(target, name, value)
      return config
    monkeypatch.setattr(module, 'project_config', mutated)
  return apply


def _roll_backwards(monkeypatch, module):
  """SAL's mix-up pairs video b with b + 1 instead of b - 1 (the code's roll(x, 1, 0))."""
  del module
  from d2net_jax.methods.sal import model as sal_model  # pylint: disable=import-outside-toplevel
  roll = sal_model.global_roll
  monkeypatch.setattr(sal_model, 'global_roll',
                      lambda x, shift=1, axis_name=None: roll(x, -shift, axis_name))


def _pair_in_reverse(monkeypatch, module):
  """D2-Net's Eq. 3 lists met in another order (each draw read backwards)."""
  del module
  from d2net_jax.methods.d2net import pairing  # pylint: disable=import-outside-toplevel
  restrict = pairing.restrict_permutation
  monkeypatch.setattr(pairing, 'restrict_permutation', lambda perm, n: restrict(perm[::-1], n))


MUTATIONS = {
    # name: (module, section compared, mutation(monkeypatch, module), a failing row contains)
    'd2net Eq. 3 partners in another order': ('d2net', 'loss', _pair_in_reverse, 'L_Dis'),
    'd2net w_DS 0.2': ('d2net', 'loss', _config('loss.w_ds', 0.2), 'L_D on: total'),
    'd2net leaky slope 0.1': ('d2net', 'model', _config('model.leaky_slope', 0.1), 'TCAM'),
    'd2net NMS threshold 0.35': ('d2net', 'localizer', _config('localize.nms_threshold', 0.35),
                                 'localizer'),
    'sal bilinear divisor T': ('sal', 'step', _config('sal.bilinear_divisor', 't'), 'output sc'),
    'sal mix-up roll direction': ('sal', 'step', _roll_backwards, 'output action_flow_aug'),
    # The ActivityNet code's soft-NMS alpha is 0.35 (THUMOS14's 0.3).
    'sal ActivityNet soft-NMS alpha 0.3': ('sal', 'anet_localizer',
                                           _config('localize.oic.soft_alpha', 0.3), 'localizer'),
    # The code hands its gamma (0.2) to get_proposal_oic's lambda; the function's default is 0.25.
    'sal OIC outer lambda 0.25': ('sal', 'localizer', _config('localize.oic.outer_lambda', 0.25),
                                  'localizer'),
}


@pytest.mark.parametrize('name', sorted(MUTATIONS))
def test_a_changed_detail_fails_the_comparison(name, monkeypatch, d2net_arrays, sal_arrays):
  module_name, section, mutation, row = MUTATIONS[name]
  module, arrays = (d2net, d2net_arrays) if module_name == 'd2net' else (sal, sal_arrays)
  mutation(monkeypatch, module)
  kwargs = {'paths': ('thumos',)} if module is d2net else {}  # One path is enough to notice.
  report = module.compare(arrays, pc.Report(), only=(section,), **kwargs)
  failed = [r.name for r in report.rows if not r.ok]
  assert failed, f'{name}: the fixture did not notice'
  assert any(row in f for f in failed), failed
