"""eval --html: the page's numbers, crops and files, its refusals; the page in a real browser."""

import html.parser
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dssr_jax import eval_lib
from dssr_jax import html_report
from dssr_jax import image_files
from dssr_jax import matlab_bicubic
from dssr_jax import metrics
from dssr_jax import testsets

REPO = __import__('pathlib').Path(__file__).resolve().parent.parent
CROP, WINDOW = 16, 32  # small enough that the 48x48 test images have crops to choose from


class _Tables(html.parser.HTMLParser):
  """table id -> rows of (text, data-v or None) per cell; and the report-data JSON."""

  def __init__(self):
    super().__init__()
    self.tables, self.data, self._table, self._cell, self._script = {}, None, None, None, False

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if tag == 'table':
      self._table = self.tables.setdefault(a.get('id'), [])
    elif tag == 'tr' and self._table is not None:
      self._table.append([])
    elif tag in ('td', 'th') and self._table is not None:
      self._cell = ['', a.get('data-v')]
    elif tag == 'script' and a.get('id') == 'report-data':
      self._script = True

  def handle_endtag(self, tag):
    if tag in ('td', 'th') and self._cell is not None:
      self._table[-1].append(tuple(self._cell))
      self._cell = None
    elif tag == 'table':
      self._table = None
    elif tag == 'script':
      self._script = False

  def handle_data(self, data):
    if self._cell is not None:
      self._cell[0] += data
    if self._script:
      self.data = json.loads(data)


def _parse(page):
  p = _Tables()
  p.feed(page.read_text())
  return p


@pytest.fixture(scope='module')
def small_data(benchmark_dir, tmp_path_factory):
  """A data_dir with one dataset: 48x48 crops of two Set5 images (Gaussian8: 16 records)."""
  d = tmp_path_factory.mktemp('data')
  for name in ('baby', 'bird'):
    hr = image_files.read_image(benchmark_dir / 'Set5' / f'{name}.png')
    image_files.write_png(d / 'Tiny' / f'{name}.png', hr[100:148, 90:138])
  return d


@pytest.fixture(scope='module')
def dssr_report(tiny_ckpt, small_data, tmp_path_factory):
  """(report folder, evaluate's report) of the tiny network on `small_data`, with --html."""
  out = tmp_path_factory.mktemp('report') / 'html'
  collector = html_report.Collector(out, crop=CROP, window=WINDOW, thumb=40)
  report = eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[2],
                             options=eval_lib.EvalOptions(), checkpoint=tiny_ckpt,
                             show_progress=False, on_image=collector.add)
  collector.write(report)
  return out, report


def _hr_and_bicubic(small_data):
  """(lr_stem, HR, MATLAB-bicubic of its Gaussian8 LR as uint8) for every record."""
  d = eval_lib.dataset_dir(small_data, 'Tiny')
  for rec in testsets.gaussian8(d, 2):
    yield rec.lr_stem, rec.hr, image_files.to_uint8(matlab_bicubic.imresize(rec.lr / 255.0, 2))


def test_page_holds_the_reports_numbers_and_bicubics(dssr_report, small_data):
  out, report = dssr_report
  page = _parse(out / 'index.html')
  (res,) = report['results']
  head, *rows = page.tables['images']
  assert [c[0] for c in head] == ['#', 'dataset', 'scale', 'blur σ', 'image', 'bicubic PSNR',
                                  'bicubic SSIM', 'DSSR PSNR', 'DSSR SSIM', 'gain (dB)']
  assert len(rows) == len(res['images']) == 16
  bicubic = {stem: (metrics.psnr_y(bic, hr, 2), metrics.ssim_y(bic, hr, 2))
             for stem, hr, bic in _hr_and_bicubic(small_data)}
  for row, img in zip(rows, res['images']):
    v = [float(c[1]) if c[1] is not None else c[0] for c in row]
    assert v[4] == img['lr_stem'] and v[3] == pytest.approx(img['sigma'], abs=1e-6)
    assert v[7] == pytest.approx(img['psnr'], abs=1e-6)
    assert v[8] == pytest.approx(img['ssim'], abs=1e-6)
    assert v[5:7] == pytest.approx(bicubic[img['lr_stem']], abs=1e-6)
    assert v[9] == pytest.approx(img['psnr'] - bicubic[img['lr_stem']][0], abs=2e-6)
    assert row[7][0] == f'{img["psnr"]:.2f}'
  # The table of scores: bicubic (the mean of the per-image values) then the network's mean,
  # each beside the paper's (none for a dataset the paper does not have).
  head, bic_row, net_row = page.tables['scores']
  assert [c[0] for c in bic_row[:4]] == ['Tiny', 'x2', 'gaussian8', 'bicubic']
  assert float(bic_row[5][1]) == pytest.approx(np.mean([b[0] for b in bicubic.values()]), abs=1e-6)
  assert float(net_row[5][1]) == pytest.approx(res['psnr'], abs=1e-6)
  assert float(net_row[6][1]) == pytest.approx(res['ssim'], abs=1e-6)
  assert net_row[7][0] == '-' and net_row[4][0] == '16'


def test_paper_values_beside_ours():
  report = {'results': [{'dataset': 'Set5', 'scale': 2, 'setting': 'gaussian8', 'method': 'dssr',
                         'psnr': 30.0, 'ssim': 0.9, 'num_images': 40}], 'run': {}}
  page = html_report.page_html(report, [])
  # Table V of the paper: DSSR, Set5 x2 Gaussian8 = 37.46 dB / 0.9529 (typed from the paper).
  assert '<td class="n" data-v="37.460000">37.46</td><td class="n" data-v="0.952900">0.9529</td>' \
      in page


def test_names_cannot_end_the_pages_script():
  entry = {'id': 'S/x2/a</script><b>', 'dataset': 'S', 'scale': 2, 'kernel': None,
           'name': 'a</script><b>', 'method': 'dssr', 'gain_db': 1.0,
           'bicubic': {'psnr': 30.0, 'ssim': 0.9}, 'score': {'psnr': 31.0, 'ssim': 0.95}}
  page = _Tables()
  page.feed(html_report.page_html({'results': [], 'run': {}}, [entry]))
  assert page.data == {'images': [entry]}
  assert page.tables['images'][1][4][0] == 'a</script><b>'


def test_crop_is_where_bicubic_loses_most_and_files_hold_it(dssr_report, small_data):
  out, _ = dssr_report
  entries = {e['name']: e for e in _parse(out / 'index.html').data['images']}
  for stem, hr, bic in _hr_and_bicubic(small_data):
    e = entries[stem]
    # Independently: every CROP x CROP window on the x2 grid, summed by brute force.
    err = np.abs(metrics.rgb_to_y(hr) - metrics.rgb_to_y(bic))
    sums = {(t, l): err[t:t + CROP, l:l + CROP].sum()
            for t in range(0, 48 - CROP + 1, 2) for l in range(0, 48 - CROP + 1, 2)}
    best = max(sums, key=sums.get)
    assert tuple(e['crop']) == (*best, CROP), stem
    wt, wl, wh, ww = e['window']
    assert (wh, ww) == (WINDOW, WINDOW) and wt <= best[0] and best[0] + CROP <= wt + wh
    assert wl <= best[1] and best[1] + CROP <= wl + ww and wt % 2 == wl % 2 == 0
    folder = out / 'img' / 'Tiny' / 'x2' / stem
    read = lambda name: image_files.read_image(folder / name)
    np.testing.assert_array_equal(read('hr.png'), hr[wt:wt + wh, wl:wl + ww])
    np.testing.assert_array_equal(read('bicubic.png'), bic[wt:wt + wh, wl:wl + ww])
    lr = next(r.lr for r in testsets.gaussian8(eval_lib.dataset_dir(small_data, 'Tiny'), 2)
              if r.lr_stem == stem)
    np.testing.assert_array_equal(read('lr.png'),
                                  lr[wt // 2:(wt + wh) // 2, wl // 2:(wl + ww) // 2])
    names = {p.name for p in folder.iterdir()}
    assert names == {'lr.png', 'bicubic.png', 'sr.png', 'hr.png', 'd1.png', 'd2.png',
                     'target.png', 'thumb.jpg'}
    assert [d[0] for d in e['details']] == ['d1.png', 'd2.png', 'target.png']
    with Image.open(io.BytesIO((folder / 'thumb.jpg').read_bytes())) as im:
      assert im.size == (40, 40)


def test_refusals(tmp_path):
  (tmp_path / 'r').mkdir()
  html_report.check_free(tmp_path / 'r', overwrite=False)  # an empty folder is fine
  (tmp_path / 'r' / 'index.html').write_text('old')
  with pytest.raises(FileExistsError, match=r"r/index.html' already exists; pass --overwrite"):
    html_report.check_free(tmp_path / 'r', overwrite=False)
  html_report.check_free(tmp_path / 'r', overwrite=True)
  with pytest.raises(ValueError, match='names a folder'):
    html_report.check_free(tmp_path / 'page.html', overwrite=False)
  (tmp_path / 'f').write_text('x')
  with pytest.raises(ValueError, match="'.*/f' is a file"):
    html_report.check_free(tmp_path / 'f', overwrite=True)
  with pytest.raises(ValueError, match='crop <= window'):
    html_report.Collector(tmp_path / 'c', crop=64, window=32)


def test_eval_cli_writes_the_page_and_refuses_to_replace_it(small_data, tmp_path):
  """`eval.py --method=bicubic --html`: the page shows bicubic only, with the JSON's numbers; a
  second run without --overwrite stops before any work and leaves the page as it was."""
  cmd = [sys.executable, str(REPO / 'eval.py'), '--method=bicubic', '--scales=2',
         f'--data_dir={small_data}', '--datasets=Tiny', f'--html={tmp_path / "rep"}',
         f'--output={tmp_path / "r.json"}', '--jax_cache_dir=']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  page = tmp_path / 'rep' / 'index.html'
  assert f'wrote {page}' in proc.stderr
  head, *rows = _parse(page).tables['images']
  assert [c[0] for c in head][-2:] == ['bicubic PSNR', 'bicubic SSIM']
  (res,) = json.loads((tmp_path / 'r.json').read_text())['results']
  assert [float(r[5][1]) for r in rows] == pytest.approx([i['psnr'] for i in res['images']],
                                                           abs=1e-6)
  before = page.read_bytes()
  cmd[-2] = f'--output={tmp_path / "r2.json"}'
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().endswith(f"error: '{page}' already exists; pass --overwrite to "
                                      'replace it')
  assert page.read_bytes() == before and not (tmp_path / 'r2.json').exists()


# ----------------------------------------------------------------------------------------------
# In a real browser.


def _shot(locator) -> np.ndarray:
  """The element as the reader sees it (its CSS size: a fractional position adds a row)."""
  box = locator.bounding_box()
  img = np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert('RGB'), np.float64)
  return img[:round(box['height']), :round(box['width'])]


@pytest.mark.browser
def test_page_in_a_browser_sorts_shows_crops_details_and_slides(browser, dssr_report):
  out, report = dssr_report
  page = browser.new_page(viewport={'width': 1400, 'height': 1000})
  errors = []
  page.on('pageerror', lambda e: errors.append(str(e)))
  page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
  page.goto((out / 'index.html').as_uri())

  # Sorting by the network's PSNR, then the other way round.
  column = lambda: [float(v) for v in page.eval_on_selector_all(
      '#images tbody tr', 'rows => rows.map(r => r.cells[7].dataset.v)')]
  assert column() != sorted(column())  # in file order first, so that sorting has work to do
  page.click('#images th:nth-child(8)')
  assert column() == sorted(column())
  page.click('#images th:nth-child(8)')
  assert column() == sorted(column(), reverse=True)

  # The first row (the best DSSR PSNR) opens the viewer: four crops, T = 2 detail maps and
  # HR - bicubic.
  page.click('#images tbody tr:first-child')
  assert page.is_visible('#viewer')
  main = page.locator('#v-main .pane')
  details = page.locator('#v-details .pane')
  assert main.count() == 4 and details.count() == 3
  loaded = page.eval_on_selector_all(
      '#viewer img', 'imgs => imgs.map(i => i.complete && i.naturalWidth > 0)')
  assert loaded and all(loaded), loaded
  for i in range(main.count()):
    assert _shot(main.nth(i)).std() > 3, f'crop panel {i} is blank'
  for i in range(details.count()):
    assert _shot(details.nth(i)).std() > 3, f'detail map {i} is blank'
  shown = page.eval_on_selector('#images tbody tr.shown', 'r => r.dataset.id')
  name = shown.rsplit('/', 1)[1]
  assert page.inner_text('#v-title').startswith(name)

  # The slider: all bicubic at 100, all DSSR at 0; the picture is each crop drawn large.
  compare = page.locator('#v-compare .pane')
  entry = next(e for e in _parse(out / 'index.html').data['images'] if e['id'] == shown)
  (top, left, size), (wt, wl) = entry['crop'], entry['window'][:2]
  crop = lambda f: image_files.read_image(out / entry['dir'] / f)[
      top - wt:top - wt + size, left - wl:left - wl + size].astype(np.float64)
  page.fill('#v-slider', '100')
  all_bicubic = _shot(compare)
  zoom = all_bicubic.shape[0] // entry['crop'][2]
  big = lambda x: np.repeat(np.repeat(x, zoom, 0), zoom, 1)
  assert np.abs(all_bicubic - big(crop('bicubic.png'))).mean() < 2
  box = compare.bounding_box()
  page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
  page.mouse.down()
  page.mouse.move(box['x'] + 1, box['y'] + box['height'] / 2)
  page.mouse.up()
  all_dssr = _shot(compare)
  assert np.abs(all_dssr - big(crop('sr.png'))).mean() < 2
  assert np.abs(all_dssr - all_bicubic).mean() > 10

  # Dragging the HR crop moves it (towards the middle of the window, where there is room).
  where = page.inner_text('#v-where')
  first = _shot(main.nth(3))
  box = main.nth(3).bounding_box()
  room = WINDOW - CROP
  dy, dx = (4 if top - wt > room / 2 else -4, 4 if left - wl > room / 2 else -4)
  page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
  page.mouse.down()
  page.mouse.move(box['x'] + box['width'] / 2 + dx * 20, box['y'] + box['height'] / 2 + dy * 20)
  page.mouse.up()
  assert page.inner_text('#v-where') != where
  assert np.abs(_shot(main.nth(3)) - first).mean() > 1
  page.click('#v-reset')
  assert page.inner_text('#v-where') == where

  # A click on the thumbnail centres the crop there (as far as the window allows).
  def at():
    text = page.inner_text('#v-where')
    y, x = text.split(' at y ', 1)[1].split(' of ', 1)[0].split(', x ')
    return int(y), int(x)

  thumb = page.locator('#v-compare .thumb img').bounding_box()
  (h, w), (_, _, wh, ww) = entry['size'], entry['window']
  for cy, cx in ((wt + 2, wl + 2), (wt + wh - 2, wl + ww - 2)):  # two corners of the window
    page.mouse.click(thumb['x'] + (cx + 0.5) / w * thumb['width'],
                     thumb['y'] + (cy + 0.5) / h * thumb['height'])
    want = [min(max(c - size / 2, lo), lo + extent - size)
            for c, lo, extent in ((cy, wt, wh), (cx, wl, ww))]
    assert at() == pytest.approx(want, abs=1.5), (cy, cx)
  assert not errors, errors
  page.close()


@pytest.mark.browser
def test_screenshot_of_the_viewer_for_the_docs(browser, dssr_report, tmp_path):
  out, _ = dssr_report
  png = tmp_path / 'report.png'
  html_report.screenshot(out, png, image='bird_sig1.03', browser=browser)
  shot = image_files.read_image(png)
  assert shot.shape[1] == 1240 and shot[300:].std() > 10  # the crops below the title
  with pytest.raises(FileExistsError, match='report.png'):
    html_report.screenshot(out, png, browser=browser)
  with pytest.raises(ValueError, match="no image of the report starts with 'nope'"):
    html_report.screenshot(out, tmp_path / 'other.png', image='nope', browser=browser)
