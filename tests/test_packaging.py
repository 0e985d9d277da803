"""`pip install .`: the package, its data and its console scripts, usable from any folder."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ('dssr-upscale', 'dssr-export', 'dssr-convert', 'dssr-testsets', 'dssr-plots',
           'dssr-demo-report', 'dssr-app')


def _pins(path: pathlib.Path) -> list[str]:
  return [l.strip() for l in path.read_text().splitlines() if l.strip() and l[0] not in '#-']


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """The folder `pip install --target` filled from a copy of the checkout (setuptools builds in
  the source tree: the copy keeps build/ out of the checkout). Offline, no dependencies."""
  tmp = tmp_path_factory.mktemp('install')
  src = tmp / 'src'
  src.mkdir()
  for name in ('pyproject.toml', 'README.md', 'requirements-lib.txt'):
    shutil.copy(REPO / name, src)
  shutil.copytree(REPO / 'dssr_jax', src / 'dssr_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  site = tmp / 'site'
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation',
                  '--no-index', '--quiet', '--target', str(site), str(src)], check=True,
                 capture_output=True, timeout=600)
  return site


def test_the_package_is_dssr_jax_with_its_data_and_nothing_else(installed):
  assert (installed / 'dssr_jax' / 'paper_results.csv').is_file()
  assert (installed / 'dssr_jax' / 'commands' / 'upscale.py').is_file()
  assert sorted(p.name for p in installed.iterdir() if not p.name.endswith('.dist-info')) == [
      'bin', 'dssr_jax']  # no tests, configs or benchmarks
  assert sorted(p.name for p in (installed / 'bin').iterdir()) == sorted(SCRIPTS)


def test_it_depends_on_the_pins_make_test_installs(installed):
  (meta,) = installed.glob('dssr_jax-*.dist-info/METADATA')
  requires = [l.split(': ', 1)[1] for l in meta.read_text().splitlines()
              if l.startswith('Requires-Dist: ')]
  want = _pins(REPO / 'requirements-lib.txt')
  assert [r.replace('-', '_') for r in requires] == [w.replace('-', '_') for w in want]
  assert '-r requirements-lib.txt' in (REPO / 'requirements.txt').read_text().splitlines()


def test_import_and_a_console_script_from_another_folder(installed, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(installed), JAX_PLATFORMS='cpu')
  done = subprocess.run([sys.executable, '-c', 'import dssr_jax.paper as p; print(p.__file__); '
                         'print(len(p.cells()))'], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  path, cells = done.stdout.split()
  assert path == str(installed / 'dssr_jax' / 'paper.py') and int(cells) > 0  # the CSV came too
  done = subprocess.run([str(installed / 'bin' / 'dssr-upscale'), '--help'], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=300)
  assert (done.returncode, done.stderr) == (0, '')
  assert 'dssr-upscale photo.png' in done.stdout and '--checkpoint:' in done.stdout
