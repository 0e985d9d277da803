"""Headless Chromium for the tests that look at pages (the web app, the HTML report).

A test marked `@pytest.mark.browser` takes the `page` fixture (a fresh Playwright page,
downloads allowed) and runs in Debian's chromium, driven by Playwright's Python API. Playwright's
own browser download is not used: `apt-get install chromium` is the one way to get a browser, on
a laptop and in CI alike.

The policy for a machine without a browser, as a pytest plugin (tests/conftest.py loads it; a
child pytest loads it with `-p browser`):
- the browser tests are skipped and the run ends with ONE line naming them and how to install
  chromium; every other test runs;
- with DSSR_REQUIRE_BROWSER=1 (.ci/run sets it) they fail instead, so CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

REQUIRE_ENV = 'DSSR_REQUIRE_BROWSER'
CHROMIUM_ENV = 'DSSR_CHROMIUM'  # a chromium binary elsewhere than on PATH
INSTALL = 'sudo apt-get install chromium'
SKIP_PREFIX = 'no browser: '
# No sandbox: CI runs as root, where Chromium refuses its sandbox. The rest keeps a headless run
# off the network and off the GPU (neither exists in CI).
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']


def find_chromium() -> str | None:
  """The chromium binary: $DSSR_CHROMIUM, else `chromium` (Debian) or `chromium-browser` on PATH."""
  if os.environ.get(CHROMIUM_ENV):
    path = os.environ[CHROMIUM_ENV]
    return path if os.access(path, os.X_OK) else None
  return shutil.which('chromium') or shutil.which('chromium-browser')


def missing() -> str | None:
  """Why the browser tests cannot run here, or None when they can."""
  try:
    import playwright.sync_api  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return 'the playwright package is not installed (pip install -r requirements.txt)'
  if find_chromium() is None:
    return 'no chromium on PATH'
  return None


def pixels(png: bytes) -> np.ndarray:
  """A screenshot (PNG bytes) as a uint8 array."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(png)) as im:
    return np.asarray(im.convert('RGB'))


def is_blank(png: bytes, rows=(0.0, 1.0), cols=(0.0, 1.0)) -> bool:
  """True when a screenshot is one flat colour (nothing drawn there) within the window of
  `rows` x `cols` (fractions of its height and width): a window keeps out labels and handles
  that a page draws over an image, which would make even an empty image look drawn."""
  x = pixels(png)
  h, w = x.shape[:2]
  window = x[int(rows[0] * h):int(rows[1] * h), int(cols[0] * w):int(cols[1] * w)]
  return window.size == 0 or float(window.std()) == 0.0


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def serving(argv: list[str], port: int, log: os.PathLike, timeout: float = 240, **popen):
  """Runs the server command `argv` (listening on 127.0.0.1:port) until the block ends.

  Yields its URL once it answers; raises RuntimeError with the end of its log (stdout and
  stderr) when it exits or does not answer in `timeout` seconds. Stopped with SIGTERM (SIGKILL
  after 20 s).
  """
  with open(log, 'w') as out:
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **popen)
  url = f'http://127.0.0.1:{port}/'
  tail = lambda: open(log).read()[-3000:]
  try:
    deadline = time.monotonic() + timeout
    while True:
      if proc.poll() is not None:
        raise RuntimeError(f'{argv[:3]} exited ({proc.returncode}):\n{tail()}')
      try:
        with urllib.request.urlopen(url, timeout=5) as r:
          if r.status == 200:
            break
      except OSError:
        pass
      if time.monotonic() > deadline:
        raise RuntimeError(f'{argv[:3]} did not answer in {timeout:.0f} s:\n{tail()}')
      time.sleep(1)
    yield url
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


# ----------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope='session')
def browser():
  """One headless chromium for the whole session."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
    try:
      yield b
    finally:
      b.close()


@pytest.fixture
def page(browser):  # pylint: disable=redefined-outer-name
  """A fresh page (own cookies and storage) with downloads allowed, 1280x900."""
  context = browser.new_context(accept_downloads=True, viewport={'width': 1280, 'height': 900})
  try:
    yield context.new_page()
  finally:
    context.close()


# ----------------------------------------------------------------------------------------------
# The plugin: the policy for a missing browser.


def pytest_runtest_setup(item):
  if item.get_closest_marker('browser') is None:
    return
  why = missing()
  if why is None:
    return
  if os.environ.get(REQUIRE_ENV) == '1':
    pytest.fail(f'{REQUIRE_ENV}=1 but {why}: {INSTALL}', pytrace=False)
  pytest.skip(SKIP_PREFIX + why)


def _skipped_browser_tests(terminalreporter) -> tuple[list[str], str]:
  names, why = [], ''
  for report in terminalreporter.stats.get('skipped', []):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix('Skipped: ')
    if reason.startswith(SKIP_PREFIX):
      names.append(report.nodeid)
      why = reason[len(SKIP_PREFIX):]
  return names, why


def pytest_terminal_summary(terminalreporter):
  names, why = _skipped_browser_tests(terminalreporter)
  if names:
    terminalreporter.write_line(
        f'{len(names)} browser test{"s" * (len(names) > 1)} did not run ({why}): '
        f'{", ".join(names)}. '
        f'To run them: {INSTALL}', yellow=True, bold=True)
