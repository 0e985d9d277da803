"""Shared test fixtures: where ../shared lies (reference outputs and benchmark images)."""

import os
import pathlib

import pytest

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
