"""`d2net-jax import` CSV details (issue 14, section 5): a subset typo is an error naming the
allowed subsets; a UTF-8 BOM and spaces around header names are tolerated."""

import numpy as np
import pytest

from d2net_jax.data import own_data
from d2net_jax.data.records import DataError


def _own(tmp_path, text, encoding='utf-8'):
  feats = tmp_path / 'feats'
  feats.mkdir()
  for i, name in enumerate(('clip0', 'clip1')):
    np.save(feats / f'{name}.npy', np.full((6, 4), i, np.float32))
  (tmp_path / 'labels.csv').write_bytes(text.encode(encoding))
  return feats, tmp_path / 'labels.csv'


def test_subset_typo_names_the_allowed_subsets(tmp_path):
  feats, labels = _own(tmp_path, 'video,labels,subset\nclip0,Diving,train\nclip1,Diving,tset\n')
  with pytest.raises(DataError, match=r"video 'clip1': subset 'tset' is not one of "
                     r"\['test', 'train'\]"):
    own_data.build_dataset(feats, labels)


def test_bom_and_spaces_in_the_header_are_tolerated(tmp_path):
  feats, labels = _own(tmp_path, ' video , labels ,subset\nclip0,Diving,train\nclip1,Diving,test\n',
                       encoding='utf-8-sig')
  dataset = own_data.build_dataset(feats, labels)
  assert [(v.video_id, v.subset) for v in dataset.videos] == [('clip0', 'train'),
                                                              ('clip1', 'test')]


def test_import_reports_every_bad_file_in_one_pass(tmp_path, capsys):
  from d2net_jax.commands import cli  # pylint: disable=import-outside-toplevel
  feats, labels = _own(tmp_path, 'video,labels\nclip0,Diving\nclip1,Diving\nclip2,Diving\n')
  np.save(feats / 'clip0.npy', np.zeros((0, 4), np.float32))  # Zero-length.
  (tmp_path / 'classes.txt').write_text('Diving\n')
  with pytest.raises(DataError) as e:
    own_data.build_dataset(feats, labels)
  message = str(e.value)
  assert message.startswith('2 of 3 videos cannot be imported:')
  assert "video 'clip0': zero-length video" in message and "clip2.npy, video 'clip2': missing" \
      in message
  assert cli.main(['import', '--features', str(feats), '--labels', str(labels), '--out',
                   str(tmp_path / 'x.h5')]) == 1
  assert len(capsys.readouterr().err.strip().splitlines()) == 3
  assert not (tmp_path / 'x.h5').exists()
