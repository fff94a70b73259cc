import pathlib
import re

import pytest

from d2net_jax.commands import cli

SMOKE = str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'synthetic.py:smoke')


def test_unknown_command_exits_2(capsys):
  assert cli.main(['no-such-command']) == 2
  assert 'unknown command' in capsys.readouterr().err


def test_help_lists_every_command(capsys):
  assert cli.main(['--help']) == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in out


def test_unknown_command_is_one_line_with_a_suggestion(capsys):
  assert cli.main(['trian']) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "did you mean 'train'?" in err


@pytest.mark.parametrize('argv,misspelt', [
    (['train', '--config', SMOKE, '--workdri', 'x'], 'workdri'),
    (['localize', '--workdri', 'x'], 'workdri'),
    (['plot', '--vido', 'v'], 'vido'),
    (['check', '--confg', SMOKE], 'confg'),
    (['evaluate', '--ground-truth', 'gt.json', '--detectons', 'det.json'], 'detectons'),
    (['convert', '--layot', 'wtalc'], 'layot'),
    (['import', '--featurs', 'feats', '--bogus=1'], 'featurs'),
    (['synthetic', '--ot', 'x'], 'ot'),
    (['compare', 'run', '--al-fields'], 'al-fields'),
])
def test_a_bad_flag_is_one_line_suggesting_only_flags_that_exist(argv, misspelt, capsys):
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith(f'd2net-jax {argv[0]}: error:'), err
  assert misspelt in err
  suggested = set(re.findall(r'--([\w.-]+)', err)) | set(
      re.findall(r'Did you mean: ([\w.-]+)', err))
  suggested -= {misspelt, 'bogus'}
  assert suggested, err  # Each of these misspellings has a close flag.
  assert cli.main([argv[0], '--help']) == 0
  listed = capsys.readouterr().out
  for name in suggested:
    assert f'--{name}' in listed or f'--[no]{name}' in listed, (name, err)
