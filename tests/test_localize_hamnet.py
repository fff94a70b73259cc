"""CO2-Net's 'hamnet' localizer (d2net_jax/localize/hamnet.py) against a plain-loop NumPy
reference of co2net-facts.md Sec. 5: class scores, attention runs, the index-0 quirk, OIC scores,
the Gaussian soft-NMS (which keeps everything), seconds."""

import types

import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import localize
from d2net_jax.localize import hamnet


def _config(**overrides):
  config = config_lib.base_config().localize.hamnet
  for name, value in overrides.items():
    config[name] = value
  return config


def _softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


def reference(cas, att, config):
  """[(class, start, end, score)] per the procedure, one loop at a time, float64."""
  cas, att = cas.astype(np.float64), att.astype(np.float64)
  e = cas * att[:, None]
  s = e.shape[0]
  k = max(1, s // config.class_topk_ratio)
  p = _softmax(np.sort(e, axis=0)[-k:].mean(axis=0))[:-1]
  classes = [c for c in range(p.shape[0]) if p[c] >= config.class_threshold] or [int(np.argmax(p))]
  found = {c: [] for c in classes}
  for theta in np.linspace(*config.thresholds):
    above = [t for t in range(s) if att[t] > theta]
    if not above or (config.skip_index0_quirk and above == [0]):
      continue
    runs, current = [], [above[0]]
    for t in above[1:]:
      if t == current[-1] + 1:
        current.append(t)
      else:
        runs.append(current)
        current = [t]
    runs.append(current)
    for c in classes:
      for run in runs:
        first, last, n = run[0], run[-1], len(run)
        lo = max(0, int(first - config.outer_lambda * n))
        hi = min(s - 1, int(last + config.outer_lambda * n))
        outer = list(range(lo, first)) + list(range(last + 1, hi + 1))
        outer_mean = np.mean(e[outer, c]) if outer else 0.0
        score = np.mean(e[first:last + 1, c]) - outer_mean + config.gamma * p[c]
        found[c].append([c, score, first, last + 1])
  out = []
  for c in classes:
    dets = [list(d) for d in found[c]]
    while dets:
      top = max(range(len(dets)), key=lambda i: (dets[i][1], -i))  # The first maximum.
      dets[0], dets[top] = dets[top], dets[0]
      best = dets.pop(0)
      out.append(tuple(best))
      for d in dets:
        inter = max(min(best[3], d[3]) - max(best[2], d[2]) + 1, 0.0)
        iou = inter / ((best[3] - best[2] + 1) + (d[3] - d[2] + 1) - inter)
        d[1] *= np.exp(-iou * iou / config.nms_sigma)
  return out


def _as_sorted(detections, spp):
  rows = [(int(c), int(round(a / spp)), int(round(b / spp)), float(v))
          for c, a, b, v in detections.to_list()]
  return sorted(rows, key=lambda r: (r[0], r[1], r[2], -r[3]))


def _video(seed, s=60, classes=4):
  rng = np.random.default_rng(seed)
  cas = rng.normal(size=(s, classes + 1)) * 2
  att = np.clip(np.convolve(rng.random(s), np.ones(5) / 5, mode='same') * 1.4 - 0.1, 0, 1)
  return cas, att


def _check(cas, att, config, spp=0.64, rtol=1e-10, atol=1e-12):
  """localize_video == reference: the same (class, start, end), the same scores; returns it."""
  got = hamnet.localize_video(cas, att, spp, config)
  want = sorted([(c, a, b, v) for c, v, a, b in reference(cas, att, config)],
                key=lambda r: (r[0], r[1], r[2], -r[3]))
  actual = _as_sorted(got, spp)
  assert [g[:3] for g in actual] == [w[:3] for w in want]
  np.testing.assert_allclose([g[3] for g in actual], [w[3] for w in want], rtol=rtol, atol=atol)
  return got


@pytest.mark.parametrize('seed', range(6))
def test_matches_the_loop_reference(seed):
  cas, att = _video(seed)
  got = _check(cas, att, _config(class_threshold=0.1 if seed % 2 else 0.2))
  assert len(got) > 0
  # Times are snippet indices times the snippet duration; sorted by score.
  np.testing.assert_allclose(got.start, got.start_snippet * 0.64)
  np.testing.assert_allclose(got.end, got.end_snippet * 0.64)
  assert np.all(np.diff(got.score) <= 0)


def test_float32_inputs_stay_close_to_the_float64_reference():
  cas, att = _video(11, s=200)
  _check(cas.astype(np.float32), att.astype(np.float32), _config(), 1.0, rtol=1e-5, atol=1e-6)


def test_index0_quirk_and_strict_thresholds():
  """A threshold passed by snippet 0 alone yields nothing with the quirk; a > theta is strict."""
  cas = np.zeros((8, 3))
  cas[:, 0] = 3.0
  att = np.array([0.95, 0.05, 0.05, 0.3, 0.3, 0.05, 0.05, 0.05])
  theta = hamnet.thresholds(_config())
  with_quirk = _check(cas, att, _config())
  without = _check(cas, att, _config(skip_index0_quirk=False))
  alone = int(np.sum(theta >= 0.3))  # The thresholds only snippet 0 passes.
  assert len(without) - len(with_quirk) == alone > 0
  exact = att.copy()
  exact[3:5] = theta[2]  # Equal to a threshold: not above it.
  found = _check(cas, exact, _config())
  assert {(a, b) for _, a, b, _ in _as_sorted(found, 0.64)} == {(0, 1), (3, 5)}
  assert len(found) == 4  # (0, 1) and (3, 5) at the first two thresholds only.


def test_soft_nms_keeps_everything_and_breaks_ties_like_the_code():
  start = np.array([0, 0, 10, 0])
  end = np.array([5, 5, 12, 5])
  order, score = hamnet.soft_nms(start, end, np.array([0.5, 0.9, 0.9, 0.5]), 0.3)
  # Picks 1 (first maximum), then 2; the swap put row 0 where row 1 was, so of the tied 0 and 3
  # (decayed alike) row 0 comes first.
  assert order.tolist() == [1, 2, 0, 3]
  decay = np.exp(-1 / 0.3)
  np.testing.assert_allclose(score, [0.9, 0.9, 0.5 * decay, 0.5 * decay * decay])


def test_class_selection_and_registry():
  cas, att = _video(3)
  config = config_lib.base_config()
  p, _ = hamnet.class_scores(cas.astype(np.float32), att.astype(np.float32), config.localize.hamnet)
  chosen = localize.relevant_classes_of('hamnet', {'cas': cas, 'attention': att}, {}, config)
  np.testing.assert_array_equal(chosen, np.flatnonzero(p >= 0.2) if np.any(p >= 0.2)
                                else [np.argmax(p)])
  found = localize.localize_outputs('hamnet', {'cas': cas, 'attention': att}, {}, 0.5, config)
  assert len(found) == len(hamnet.localize_video(cas, att, 0.5, config.localize.hamnet))


@pytest.mark.parametrize('field,value', [('class_topk_ratio', 0), ('class_threshold', 1.0),
                                         ('thresholds', (0.0, 0.9, 10)), ('thresholds', (0.1, 0.9)),
                                         ('outer_lambda', -1.0), ('nms_sigma', 0.0),
                                         ('skip_index0_quirk', 1)])
def test_bad_settings_name_the_field(field, value):
  config = types.SimpleNamespace(**dict(_config().items()))
  setattr(config, field, value)
  with pytest.raises(ValueError, match=f'localize.hamnet.{field}'):
    hamnet.check_config(config)


def test_bad_inputs_are_one_line_errors():
  cas, att = _video(0)
  with pytest.raises(ValueError, match='background column'):
    hamnet.localize_video(cas[:, :1], att, 1.0, _config())
  with pytest.raises(ValueError, match='attention must have shape'):
    hamnet.localize_video(cas, att[:-1], 1.0, _config())
  with pytest.raises(ValueError, match='finite'):
    hamnet.localize_video(cas * np.nan, att, 1.0, _config())
