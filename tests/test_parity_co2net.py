"""CO2-Net against its authors' code, without that code: the official numbers that
experiments/parity_co2net.py stored (tests/fixtures/parity_co2net.npz, with the official commit
and the command in the .json beside it) replayed through the comparison the script prints, at
1e-5 relative. The mutation tests change one checked detail of the project and require the
comparison to fail there, so the fixture is known to catch such changes.
"""

import pathlib

import numpy as np
import pytest
from test_parity_fixtures import _config as parity_mutation_config
from test_parity_fixtures import _load

pytestmark = pytest.mark.usefixtures('fast_compile')  # Numbers only: compile quickly.

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'parity_co2net.npz'

co2net = _load('parity_co2net')
pc = co2net.pc


@pytest.fixture(scope='module')
def arrays():
  return pc.read_fixture(FIXTURE)[0]


def test_fixture_says_where_it_comes_from(arrays):
  _, meta = pc.read_fixture(FIXTURE)
  assert meta['official_repository'] == co2net.REPOSITORY
  assert len(meta['official_commit']) == 40 and meta['command'] and meta['date']
  assert sorted(meta['keys']) == sorted(arrays)
  assert FIXTURE.stat().st_size < 400_000
  # The stored inputs are the script's seeded ones.
  np.testing.assert_array_equal(arrays['features'], co2net.make_batch()[0])
  for name, value in co2net.make_weights().items():
    np.testing.assert_array_equal(arrays[f'weights/{name}'], value)


def test_co2net_matches_its_authors_code(arrays):
  report = co2net.compare(arrays, pc.Report())
  assert report.ok, '\n'.join(report.failures())
  names = ' '.join(r.name for r in report.rows)
  for part in ('thumos output cas', 'anet output attn', 'thumos loss contrastive',
               'anet loss mutual', 'thumos loss guide', 'thumos d total / d features',
               'd total / d vAttn.channel_conv.0.weight', 'anet d total / d features',
               'localizer'):
    assert part in names, part
  assert len(pc.unpack_detections(arrays, 'localizer/official')) == len(co2net.LOC_LENGTHS)


# ------------------------------------------------------------------------------------------------
# Mutations: each changes one detail the authors' code fixes; the comparison must fail there.


def _config(field, value):
  """A mutation: co2net's project config with `field` set to `value` (test_parity_fixtures')."""
  apply = parity_mutation_config(field, value)
  return lambda monkeypatch: apply(monkeypatch, co2net)


def _pairs_shifted(monkeypatch):
  """The contrastive pairs (1, 2), (3, 4), (5, 6) instead of (0, 1), (2, 3), (4, 5)."""
  from d2net_jax.methods.co2net import losses  # pylint: disable=import-outside-toplevel
  coactivity = losses.coactivity
  monkeypatch.setattr(losses, 'coactivity', lambda high, low, labels, *a: coactivity(
      high[1:], low[1:], labels[1:], *a))


def _time_min(monkeypatch):
  """The suppressed cas with the minimum over time (the spec's text) instead of over classes."""
  from d2net_jax.methods.co2net import losses  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def over_time(cas, attention):
    low = jnp.min(cas, 1, keepdims=True)
    return attention[..., None] * (cas - low) + low
  monkeypatch.setattr(losses, 'suppressed_cas', over_time)


MUTATIONS = {
    # name: (section compared, mutation(monkeypatch), a failing row contains)
    'contrastive pairs shifted by one row': ('thumos', _pairs_shifted, 'loss contrastive'),
    'suppressed cas: minimum over time': ('thumos', _time_min, 'loss mil_supp'),
    'guide term detached from the classifier': (
        'thumos', _config('co2net.guide_detach_background', True), 'd total / d classifier'),
    'ActivityNet without the smoothing': ('anet', _config('co2net.smooth_kernel', 0),
                                          'anet output cas'),
    'no index-0 quirk': ('localizer', _config('localize.hamnet.skip_index0_quirk', False),
                         'localizer'),
    'soft-NMS sigma 0.5': ('localizer', _config('localize.hamnet.nms_sigma', 0.5), 'localizer'),
}


@pytest.mark.parametrize('name', sorted(MUTATIONS))
def test_a_changed_detail_fails_the_comparison(name, monkeypatch, arrays):
  section, mutation, row = MUTATIONS[name]
  mutation(monkeypatch)
  report = co2net.compare(arrays, pc.Report(), only=(section,))
  failed = [r.name for r in report.rows if not r.ok]
  assert failed, f'{name}: the fixture did not notice'
  assert any(row in f for f in failed), failed
