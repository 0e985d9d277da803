"""The upscaling page (dssr_jax.app): its steps alone, then the real command in a real browser."""

import os
import pathlib
import socket
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

import browser as browser_lib
import helpers
from dssr_jax import image_files

REPO = pathlib.Path(__file__).resolve().parent.parent
# Tiles forced on a 56x72 image (the budget of tests/test_tiling_memory.py), so the page's file is
# compared with the CLI's under the tiling path, where a different plan would change the pixels.
BUDGET = ['--max_memory_gb=0.003', '--overlap=16']


def _env() -> dict:
  # One XLA setting for the page's and the CLI's processes: the files must be equal.
  return dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=helpers.FAST_XLA,
              TF_CPP_MIN_LOG_LEVEL='2')


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG that declares width x height but holds almost no data: a decompression bomb's header."""
  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack(
        '>I', zlib.crc32(kind + data) & 0xffffffff)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0,
                                                             0)) +
          chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def photo(tmp_path_factory) -> pathlib.Path:
  rng = np.random.default_rng(1)
  path = tmp_path_factory.mktemp('photo') / 'photo.png'
  image_files.write_png(path, (rng.random((56, 72, 3)) * 255).astype(np.uint8))
  return path


# ----------------------------------------------------------------------------------------------
# The steps of one request.


def _float_tiff() -> bytes:
  import io  # pylint: disable=g-import-not-at-top
  import tifffile  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  tifffile.imwrite(buf, np.zeros((4, 4, 3), np.float32))
  return buf.getvalue()


@pytest.mark.parametrize('name,content,expected', [
    ('x.png', b'', 'x.png is an empty file (0 bytes)'),
    ('x.png', b'hello, not an image', 'x.png is not an image this page reads'),
    ('x.png', _png_header_only(12000, 10000), 'x.png is 12000x10000 pixels (120 megapixels), '
                                              'more than the 89 megapixels this page accepts'),
    ('x.png', _png_header_only(30000, 30000), 'x.png: Image size (900000000 pixels) exceeds '
                                              'limit'),
    ('x.tif', _float_tiff(), "cannot read image x.tif: TIFF sample type float32 (only 8- and "
                             '16-bit integers)'),
], ids=['empty', 'not_an_image', 'over_the_limit', 'bomb', 'float_samples'])
def test_bad_uploads_are_refused_with_a_message_naming_the_file(tmp_path, name, content,
                                                                 expected):
  from dssr_jax import app  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'upload' / name
  path.parent.mkdir()
  path.write_bytes(content)
  with pytest.raises(ValueError) as e:
    app.read_upload(str(path), name, Image.MAX_IMAGE_PIXELS)
  assert str(e.value).startswith(expected)
  assert str(tmp_path) not in str(e.value)  # the server's folders are not the user's business


def test_slider_shows_bicubic_and_dssr_at_one_size_shrunk_to_fit():
  from dssr_jax import app  # pylint: disable=g-import-not-at-top
  lr = np.zeros((30, 50, 3), np.uint8)
  lr[:, 25:] = 200
  sr = np.full((60, 100, 3), 7, np.uint8)
  bic, shown = app.slider_pair(lr, sr)
  assert bic.shape == shown.shape == (60, 100, 3)
  assert (shown == sr).all()  # small enough: the file's own pixels
  assert bic[:, :45].max() == 0 and bic[:, 55:].min() == 200  # the LR, enlarged
  bic, shown = app.slider_pair(lr, sr, max_side=40)
  assert bic.shape == shown.shape == (24, 40, 3)
  assert (shown == 7).all()


@pytest.fixture(scope='module')
def engine_and_cli(tiny_ckpt):
  """The page's start-up state, and the CLI's function and planner, from one checkpoint."""
  from dssr_jax import app, checkpoint, upscaling  # pylint: disable=g-import-not-at-top
  loaded = checkpoint.load_model(tiny_ckpt)
  cli_fn = upscaling.make_sr_fn(loaded, ('sr',))
  return (app.make_engine(loaded, max_memory_gb=1),
          (cli_fn, upscaling.tile_planner(cli_fn, 2, max_memory_gb=1)))


@pytest.mark.parametrize('kind', ['grey16_alpha', 'rgba8', 'tiff_grey8', 'tiff_rgb16'])
def test_page_file_is_the_cli_file_for_every_mode(engine_and_cli, tmp_path, kind):
  from dssr_jax import app, upscaling  # pylint: disable=g-import-not-at-top
  engine, (cli_fn, cli_planner) = engine_and_cli
  rng = np.random.default_rng(2)
  src = tmp_path / 'in' / {'grey16_alpha': 'g.png', 'rgba8': 'c.png', 'tiff_grey8': 't.tif',
                           'tiff_rgb16': 'u.tif'}[kind]
  samples = {'grey16_alpha': lambda: (rng.random((20, 18, 2)) * 65535).astype(np.uint16),
             'rgba8': lambda: (rng.random((20, 18, 4)) * 255).astype(np.uint8),
             'tiff_grey8': lambda: (rng.random((20, 18, 1)) * 255).astype(np.uint8),
             'tiff_rgb16': lambda: (rng.random((20, 18, 3)) * 65535).astype(np.uint16)}[kind]()
  image_files.write_native(src, samples)
  steps = []
  result = app.upscale_upload(engine, str(src), str(tmp_path / 'page'),
                              progress=lambda i, n: steps.append((i, n)))
  cli_dst = tmp_path / 'cli' / pathlib.Path(result.file).name
  upscaling.upscale_file(cli_fn, src, cli_dst, 2, planner=cli_planner)
  assert pathlib.Path(result.file).name == src.stem + ('_x2.tif' if 'tiff' in kind else '_x2.png')
  assert pathlib.Path(result.file).read_bytes() == cli_dst.read_bytes()
  out = image_files.read_native(result.file)
  assert (out.grey, out.alpha is not None, out.bits) == (
      'grey' in kind, 'alpha' in kind or 'rgba' in kind, 16 if '16' in kind else 8)
  assert steps == [(0, 1), (1, 1)]
  assert len(result.details) == helpers.TINY['num_steps']
  assert result.details[0].shape == (40, 36, 3) and result.details[0].std() > 0
  assert result.slider[0].shape == result.slider[1].shape == (40, 36, 3)


def test_only_the_app_imports_gradio():
  """The library and the other commands stay light (the GPU benchmarks import them)."""
  code = ('import sys\nfrom dssr_jax import upscaling, infer, image_files, tiling, plots, eval_lib\n'
          'from dssr_jax.commands import serve\n'
          'assert "gradio" not in sys.modules, "gradio imported"\n'
          'from dssr_jax import app\nassert "gradio" not in sys.modules, "gradio imported by app"')
  proc = subprocess.run([sys.executable, '-c', code], env=_env(), capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]


# ----------------------------------------------------------------------------------------------
# The browser policy (tests/browser.py).

PROBE = '''
import pytest

@pytest.mark.browser
def test_looks_at_a_page():
  pass

def test_plain():
  pass
'''


@pytest.mark.parametrize('required', [False, True])
def test_a_missing_browser_is_one_line_or_a_failure_in_ci(tmp_path, required):
  (tmp_path / 'test_probe.py').write_text(PROBE)
  (tmp_path / 'pytest.ini').write_text('[pytest]\nmarkers =\n    browser: in Chromium\n')
  env = dict(os.environ, PATH=str(tmp_path / 'empty'), PYTHONPATH=str(REPO / 'tests'))
  env.pop(browser_lib.CHROMIUM_ENV, None)
  env.pop(browser_lib.REQUIRE_ENV, None)
  if required:
    env[browser_lib.REQUIRE_ENV] = '1'
  proc = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'browser', '-p',
                         'no:cacheprovider', '-q', 'test_probe.py'], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
  lines = [l for l in proc.stdout.splitlines() if 'did not run' in l]
  if required:
    assert proc.returncode == 1, proc.stdout
    assert '1 passed, 1 error' in proc.stdout
    assert 'DSSR_REQUIRE_BROWSER=1 but no chromium on PATH: sudo apt-get install chromium' in (
        proc.stdout)
    assert not lines
  else:
    assert proc.returncode == 0, proc.stdout
    assert '1 passed, 1 skipped' in proc.stdout
    assert lines == ['1 browser test did not run (no chromium on PATH): '
                     'test_probe.py::test_looks_at_a_page. To run them: '
                     'sudo apt-get install chromium'], proc.stdout


def test_a_busy_port_is_one_error_line_before_the_model_loads(tmp_path):
  with socket.socket() as busy:
    busy.bind(('127.0.0.1', 0))
    busy.listen()
    port = busy.getsockname()[1]
    proc = subprocess.run([sys.executable, '-m', 'dssr_jax.app', f'--checkpoint={tmp_path}',
                           f'--port={port}'], env=_env(), capture_output=True, text=True,
                          timeout=300, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f'error: cannot listen on 127.0.0.1:{port}: Address already in use'), proc.stderr


# ----------------------------------------------------------------------------------------------
# The real command, in Chromium.


@pytest.fixture(scope='module')
def server(tiny_ckpt, tmp_path_factory):
  """`python -m dssr_jax.app` on a free local port: its URL; stopped after the module."""
  port = browser_lib.free_port()
  argv = [sys.executable, '-m', 'dssr_jax.app', f'--checkpoint={tiny_ckpt}', f'--port={port}',
          '--jax_cache_dir='] + BUDGET
  try:
    with browser_lib.serving(argv, port, tmp_path_factory.mktemp('server') / 'log.txt',
                             env=_env(), cwd=tmp_path_factory.mktemp('cwd')) as url:
      yield url
  except RuntimeError as e:
    pytest.fail(str(e))


@pytest.fixture(scope='module')
def cli_png(tiny_ckpt, photo, tmp_path_factory) -> bytes:
  """What `python -m dssr_jax.infer` writes for `photo` under the page's budget."""
  out = tmp_path_factory.mktemp('cli')
  proc = subprocess.run([sys.executable, '-m', 'dssr_jax.infer', str(photo),
                         f'--checkpoint={tiny_ckpt}', f'--out={out}', '--jax_cache_dir='] + BUDGET,
                        env=_env(), capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'tiles of' in proc.stderr  # the budget tiles it
  return (out / 'photo_x2.png').read_bytes()


def _upscale(page, path):
  clear = page.locator('#upload button[aria-label="Clear"]')
  if clear.count():  # the previous upload is still there
    clear.click()
  page.locator('#upload input[type=file]').set_input_files(str(path))
  page.locator(f'#upload [aria-label="{path.name}"]').wait_for()
  page.click('#run')


def _download(page, tmp_path) -> bytes:
  link = page.locator('#download a[download]')
  link.wait_for(timeout=120_000)
  with page.expect_download() as d:
    link.click()
  dst = tmp_path / 'downloaded.png'
  d.value.save_as(dst)
  assert d.value.suggested_filename == 'photo_x2.png'
  return dst.read_bytes()


@pytest.mark.browser
def test_page_upscales_an_upload_into_the_cli_file_with_slider_and_step_maps(
    server, page, photo, cli_png, tmp_path):
  page.goto(server)
  _upscale(page, photo)
  assert _download(page, tmp_path) == cli_png
  assert 'tiles of' in page.locator('#summary').inner_text()
  slider = page.locator('#slider img')
  assert slider.count() == 2
  for i in range(2):  # both sides of the slider were decoded by the browser
    assert slider.nth(i).evaluate('img => img.complete && img.naturalWidth') == 144
  # Away from the slider's label (top left), buttons (top right) and handle (middle): bicubic
  # on the left, DSSR on the right.
  shot = slider.first.screenshot()
  assert not browser_lib.is_blank(shot, rows=(0.3, 0.95), cols=(0.05, 0.4))
  assert not browser_lib.is_blank(shot, rows=(0.3, 0.95), cols=(0.6, 0.95))
  maps = page.locator('#details img')
  assert maps.count() == helpers.TINY['num_steps']
  for i in range(maps.count()):  # inside the rounded corners, above the caption (bottom right)
    assert not browser_lib.is_blank(maps.nth(i).screenshot(), rows=(0.1, 0.6), cols=(0.1, 0.9))
  assert page.locator('#details').get_by_text('step 2').count() == 1


@pytest.mark.browser
def test_a_bad_upload_shows_its_message_and_the_next_upload_works(
    server, page, photo, cli_png, tmp_path):
  page.goto(server)
  bad = tmp_path / 'notes.png'
  bad.write_text('not an image')
  _upscale(page, bad)
  message = page.locator('#summary').get_by_text('notes.png is not an image this page reads')
  message.wait_for(timeout=60_000)
  assert message.is_visible()
  _upscale(page, photo)
  assert _download(page, tmp_path) == cli_png


def test_two_requests_at_once_are_queued_and_both_complete(server, photo):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  from gradio_client.utils import Status  # pylint: disable=g-import-not-at-top
  client = Client(server, verbose=False)
  # One with the self-ensemble: eight passes, so the other arrives while it runs.
  jobs = [client.submit(handle_file(str(photo)), flag, api_name='/run') for flag in (True, False)]
  state = {Status.PROCESSING: 'runs', Status.PROGRESS: 'runs', Status.IN_QUEUE: 'waits'}
  seen, both, longest = [], 0, 0
  while not all(job.done() for job in jobs):
    seen.append(tuple(state.get(job.status().code, 'other') for job in jobs))
    both = both + 1 if seen[-1] == ('runs', 'runs') else 0
    longest = max(longest, both)
    time.sleep(0.05)
  results = [job.result(timeout=300) for job in jobs]
  assert any('runs' in states for states in seen), set(seen)  # the watch saw the work...
  # ...one request at a time, the other waiting its turn. The client learns each job's status from
  # its own event stream, so the hand-over can look like both running for a poll or two; two
  # requests served at once would show it for the whole of the shorter one.
  assert any(sorted(states) == ['runs', 'waits'] for states in seen), set(seen)
  assert longest <= 3, (longest, set(seen))
  for (_, details, path, summary), ensemble in zip(results, (True, False)):
    assert pathlib.Path(path).name == 'photo_x2.png'
    assert len(details) == helpers.TINY['num_steps']
    assert ('self-ensemble' in summary) == ensemble
