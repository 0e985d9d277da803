"""The commands' shared front door (`dssr_jax.commands.run`): one error line, help, entry points."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# A command as dssr_jax's are written, small enough to start in a second (absl only).
TOY = '''\
"""Toy: does what --what says.

  toy --what=KIND
"""
from absl import flags
from dssr_jax import commands

FLAGS = flags.FLAGS
flags.DEFINE_enum('what', 'ok', ['ok', 'missing', 'bug'], 'What to do.')
flags.DEFINE_integer('n', 1, 'A count.', lower_bound=0)


def ok():
  print('ran ok', FLAGS.n)


def missing():
  raise FileNotFoundError('input.png does not exist')


def bug():
  return {}['no such key']


def main(argv):
  return commands.dispatch(argv, {'ok': ok, 'missing': missing, 'bug': bug})


if __name__ == '__main__':
  commands.run(main)
'''


def _run(args, cwd=REPO, env=None):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', **(env or {}))
  done = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                        text=True, timeout=300, env=env)
  return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  path = tmp_path_factory.mktemp('toy') / 'toy.py'
  path.write_text(TOY)
  return path


@pytest.mark.parametrize('args,message', [
    (['missing'], 'input.png does not exist'),              # a user error in main
    (['ok', '--n=-1'], 'flag --n=-1: -1 is not a non-negative integer'),  # absl's check
    (['ok', '--nn=3'], 'Unknown command line flag'),        # a typo of a flag
    (['oops'], 'give one of ok, missing, bug; got oops'),   # not a subcommand
    ([], 'give one of ok, missing, bug; got nothing'),
])
def test_user_errors_are_one_line_and_status_2(toy, args, message):
  status, out, err = _run([toy, *args])
  assert status == 2 and out == ''
  (line,) = err.splitlines()  # no traceback, no usage text
  assert line.startswith('error: ') and message in line


def test_a_bug_keeps_its_traceback(toy):
  status, _, err = _run([toy, 'bug'])
  assert status == 1 and 'Traceback' in err and "KeyError: 'no such key'" in err


def test_help_is_the_usage_text_and_the_commands_own_flags(toy):
  status, out, err = _run([toy, 'ok', '--help'])
  assert (status, err) == (0, '')
  assert out.startswith('Toy: does what --what says.\n\n  toy --what=KIND\n\nflags:\n')
  assert '--what: <ok|missing|bug>: What to do.' in out
  assert '--verbosity' not in out  # absl's own flags stay in --helpfull


def test_a_config_typo_is_one_line():
  status, _, err = _run(['eval.py', '--config=configs/default.py', '--config.model.chanels=8',
                         '--method=bicubic', '--data_dir=.'])
  assert status == 2
  (line,) = err.splitlines()
  assert line.startswith('error: ') and 'chanels' in line


@pytest.mark.parametrize('name,usage', [
    ('infer', 'dssr-upscale photo.png'), ('export', 'dssr-export --checkpoint'),
    ('convert', 'dssr-convert --pth'), ('testsets', 'dssr-testsets gaussian8'),
    ('plots', 'dssr-plots steps'), ('demo_report', 'dssr-demo-report --workdir'),
])
def test_python_m_entry_points_run_their_commands(name, usage, tmp_path):
  """`python -m dssr_jax.NAME` runs the command in dssr_jax/commands/, from any folder."""
  status, out, err = _run(['-m', f'dssr_jax.{name}', '--help'], cwd=tmp_path)
  assert (status, err) == (0, '') and usage in out and '\nflags:\n' in out
