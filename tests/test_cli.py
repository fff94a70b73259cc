from d2net_jax import cli


def test_unknown_command_exits_2(capsys):
  assert cli.main(['no-such-command']) == 2
  assert 'unknown command' in capsys.readouterr().err


def test_help_lists_every_command(capsys):
  assert cli.main(['--help']) == 0
  out = capsys.readouterr().out
  for name in cli.COMMANDS:
    assert name in out
