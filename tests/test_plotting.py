"""Tests of d2net_jax/evaluation/plotting.py: the PNG is written and readable; bad input is refused."""

import matplotlib.image
import numpy as np
import pytest

from d2net_jax import config as config_lib
from d2net_jax import localize
from d2net_jax.evaluation import plotting



def _plot_video(*args, **kwargs):
  return plotting.plot_video(*args, localize_config=config_lib.localize_config(), **kwargs)


def _figure(**kwargs):
  return plotting.figure(localize_config=config_lib.localize_config(), **kwargs)


NAMES = ['Diving', 'HighJump', 'Shotput']
SPS = 0.64


def _video():
  s = 60
  tcam = np.full((s, 3), 0.05, np.float32)
  tcam[10:20, 0] = 0.9
  tcam[35:45, 2] = 0.8
  attention = np.full(s, 0.2, np.float32)
  attention[10:20] = attention[35:45] = 0.9
  return tcam, attention


def _image(path):
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  image = matplotlib.image.imread(path)
  assert image.shape[0] > 200 and image.shape[1] > 600
  return image


def test_plot_with_detections_and_ground_truth(tmp_path):
  tcam, attention = _video()
  detections = localize.localize_video(tcam, attention, SPS, config_lib.localize_config())
  assert set(detections.class_index.tolist()) == {0, 2}
  path = _plot_video(
      tmp_path / 'nested' / 'video.png', tcam=tcam, attention=attention, seconds_per_snippet=SPS,
      class_names=NAMES, ground_truth=[('Diving', 6.4, 12.8), (2, 22.4, 28.8)],
      detections=detections, title='video_test_0000004')
  image = _image(path)
  assert image[..., :3].std() > 0.05  # Not blank.


def test_default_classes_come_from_the_relevant_rule_gt_and_detections(tmp_path):
  tcam, attention = _video()
  # Only class 0 carries a detection row; class 2 is relevant by its scores; class 1 by its GT.
  path = _plot_video(tmp_path / 'a.png', tcam=tcam, attention=attention,
                             seconds_per_snippet=SPS, class_names=NAMES,
                             ground_truth=[('HighJump', 1.0, 2.0)],
                             detections=[(0, 6.4, 12.8, 0.7)])
  tall = _image(path).shape[0]
  path = _plot_video(tmp_path / 'b.png', tcam=tcam, attention=attention,
                             seconds_per_snippet=SPS, class_names=NAMES, classes=['Diving'])
  assert _image(path).shape[0] < tall  # Three class rows against one.


@pytest.mark.parametrize('kwargs,match', [
    (dict(classes=['Swimming']), "unknown class 'Swimming'"),
    (dict(classes=[7]), 'neither a class name nor an index'),
    (dict(ground_truth=[('Swimming', 1.0, 2.0)]), "ground_truth: unknown class 'Swimming'"),
    (dict(ground_truth=[('Diving', 3.0, 2.0)]), r'bad segment \[3.0, 2.0\]'),
    (dict(ground_truth=[('Diving', 1.0)]), r'expected \(class, start_s, end_s\)'),
    (dict(detections=[('Diving', 1.0, 2.0)]), r'expected \(class, start_s, end_s, score\)'),
    (dict(class_names=['Diving']), '1 class names for a tcam of 3 classes'),
    (dict(attention=np.zeros(5)), 'attention must be'),
    (dict(seconds_per_snippet=0.0), 'seconds_per_snippet'),
])
def test_bad_input(tmp_path, kwargs, match):
  tcam, attention = _video()
  args = dict(tcam=tcam, attention=attention, seconds_per_snippet=SPS, class_names=NAMES)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    _plot_video(tmp_path / 'x.png', **args)
  assert not (tmp_path / 'x.png').exists()


def test_nothing_to_draw(tmp_path):
  with pytest.raises(ValueError, match='no class to draw'):
    _plot_video(tmp_path / 'x.png', tcam=np.zeros((8, 3)), attention=np.zeros(8),
                        seconds_per_snippet=SPS, class_names=NAMES)


def test_other_localizer_draws_the_arrays_as_given_and_its_classes(tmp_path):
  # A method with the 'oic' localizer (SAL): no refined sequence, no Sec. 3.3 class rule; the
  # default classes are the localizer's (relevant_classes), the GT's and the detections'.
  tcam, attention = _video()
  args = dict(tcam=tcam, attention=attention, seconds_per_snippet=SPS, class_names=NAMES,
              localizer='oic')
  one = _image(_plot_video(tmp_path / 'a.png', relevant_classes=[2], **args)).shape[0]
  two = _image(_plot_video(tmp_path / 'b.png', relevant_classes=[2],
                                   ground_truth=[('Diving', 6.4, 12.8)], **args)).shape[0]
  assert two > one
  with pytest.raises(ValueError, match='no class to draw'):  # No D2-Net rule for 'oic'.
    _plot_video(tmp_path / 'c.png', **args)


def test_relevant_classes_of_the_oic_localizer():
  rng = np.random.default_rng(0)
  cas = rng.normal(size=(40, 3)).astype(np.float32)
  cas[:, 1] += 4
  a = rng.random(40).astype(np.float32)
  config = config_lib.base_config()
  snippet, video = {'cas': cas, 'a_f': a, 'a_r': a}, {'sc': np.zeros(3, np.float32)}
  assert localize.relevant_classes_of('oic', snippet, video, config).tolist() == [1]
  assert localize.relevant_classes_of('tcam', snippet, video, config) is None
  found = localize.localize_outputs('oic', snippet, video, SPS, config)
  assert set(found.class_index.tolist()) == {1}


@pytest.mark.parametrize('suffix,magic', [('png', b'\x89PNG'), ('pdf', b'%PDF'), ('svg', b'<?xml')])
def test_format_follows_the_extension(tmp_path, suffix, magic):
  tcam, attention = _video()
  path = _plot_video(tmp_path / f'v.{suffix}', tcam=tcam, attention=attention,
                             seconds_per_snippet=SPS, class_names=NAMES, classes=['Diving'])
  assert path.read_bytes().startswith(magic)


def test_other_formats_are_refused_before_any_work(tmp_path, monkeypatch):
  monkeypatch.setattr(plotting, 'figure', lambda **kwargs: pytest.fail('drew a figure'))
  with pytest.raises(ValueError, match=r'one of \.png, \.pdf, \.svg \(got \.jpg\)'):
    _plot_video(tmp_path / 'v.jpg', tcam=np.zeros((4, 3)), attention=np.zeros(4),
                        seconds_per_snippet=SPS, class_names=NAMES)
  assert not list(tmp_path.iterdir())


def test_window_and_legend_tell_ground_truth_from_predicted_only_classes():
  tcam, attention = _video()  # Diving at 6.4-12.8 s, Shotput at 22.4-28.8 s (relevant).
  fig = _figure(tcam=tcam, attention=attention, seconds_per_snippet=SPS,
                        class_names=NAMES, ground_truth=[('Diving', 6.4, 12.8)],
                        detections=[('Shotput', 22.4, 28.8, 0.8)], window=(5.0, 30.0))
  top, bottom = fig.axes
  assert bottom.get_xlim() == (5.0, 30.0)
  labels = [t.get_text() for t in top.get_legend().get_texts()]
  assert 'T: Diving (ground truth)' in labels and 'T: Shotput (predicted only)' in labels
  rows = [t.get_text() for t in bottom.get_yticklabels()]
  assert rows == ['Shotput (predicted only)', 'Diving (ground truth)']
  assert [t.get_text() for t in bottom.get_legend().get_texts()] == ['ground truth', 'detections']
  # A window after Diving's instance: Diving (relevant by its scores) is still a GT class.
  fig = _figure(tcam=tcam, attention=attention, seconds_per_snippet=SPS,
                        class_names=NAMES, ground_truth=[('Diving', 6.4, 12.8)],
                        window=(20.0, float('inf')))
  assert fig.axes[1].get_xlim() == (20.0, 60 * SPS)
  assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == [
      'Shotput (predicted only)', 'Diving (ground truth)']
  for window, says in [((10.0, 5.0), 'start < end'), ((100.0, 200.0), 'past the end')]:
    with pytest.raises(ValueError, match=says):
      _figure(tcam=tcam, attention=attention, seconds_per_snippet=SPS,
                      class_names=NAMES, window=window)
