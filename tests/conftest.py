"""Shared test fixtures: where ../shared lies (reference outputs and benchmark images), a tiny
checkpoint, a GCS emulator, and headless Chromium (`browser.py`: the `page` fixture and the policy
for machines without a browser)."""

import os
import pathlib
import uuid

import pytest

# The browser plugin's fixtures and hooks, registered by being names of this conftest.
from browser import browser, page, pytest_runtest_setup, pytest_terminal_summary  # pylint: disable=unused-import
import gcs_emulator
import helpers

REPO = pathlib.Path(__file__).resolve().parent.parent
# ../shared beside the checkout; DSSR_SHARED points elsewhere when the checkout moved.
SHARED = pathlib.Path(os.environ.get('DSSR_SHARED', REPO.parent / 'shared'))


@pytest.fixture(scope='session')
def shared_dir() -> pathlib.Path:
  if not SHARED.is_dir():
    pytest.skip(f'{SHARED} is absent')
  return SHARED


@pytest.fixture(scope='session')
def fixtures_dir(shared_dir) -> pathlib.Path:
  d = shared_dir / 'fixtures'
  if not d.is_dir():
    pytest.skip(f'{d} is absent')
  return d


@pytest.fixture(scope='session')
def benchmark_dir(shared_dir) -> pathlib.Path:
  d = shared_dir / 'data' / 'benchmark'
  if not d.is_dir():
    pytest.skip(f'{d} is absent')
  return d


@pytest.fixture(scope='session')
def tiny_ckpt(tmp_path_factory) -> pathlib.Path:
  """A checkpoint of the `helpers.TINY` network with random PyTorch-scale weights."""
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp('tiny')
  params = helpers.random_params(model_lib.DSSR(**helpers.TINY))
  checkpoint.save_params(d, params, helpers.TINY, step=1)
  return d


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """(bucket URL, environment to add) of a running GCS emulator; os.environ holds it meanwhile."""
  bucket = f'test-{uuid.uuid4().hex[:8]}'  # fresh names: TF caches stats per path
  with gcs_emulator.running(tmp_path_factory.mktemp('gcs'), bucket) as env:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
      yield f'gs://{bucket}', env
    finally:
      os.environ.clear()
      os.environ.update(saved)
