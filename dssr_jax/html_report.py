r"""The visual report of an evaluation: one self-contained web page, with small PNG crops beside it.

  python eval.py --checkpoint=CKPT --data_dir=DATA --datasets=Set5,Set14 --html=report/
  python -m dssr_jax.html_report --html=report/ --out=report.png [--image=baby_sig1.14]

`Collector.add` is `eval_lib.evaluate`'s `on_image`: for every scored image it writes that image's
crops at once (so no image is kept in memory) and keeps its numbers; `Collector.write(report)`
then writes DIR/index.html. The page needs no server and no network: it opens from disk, its
CSS and JavaScript are inline, its pictures are files beside it. It holds

- the table of scores (one row per dataset x scale, as eval.py prints it) with the paper's value
  beside ours where the paper publishes one (`paper.lookup`), and the bicubic baseline's;
- a row per image with Y-PSNR/SSIM of bicubic and of the method and the gain over bicubic, sorted
  by clicking a column's header;
- for the image a row is clicked on: LR (nearest), bicubic, the method's output and HR at the
  same zoomed crop, a before/after slider (bicubic | method) on that crop, and the detail map of
  each of the network's T steps beside HR - bicubic, the detail there is to restore.

The crop starts where bicubic loses most (`demo_report.detail_box`: it depends on the image and
the blur, not on the network). Only a window of WINDOW x WINDOW HR pixels around it is written,
not the whole image, so that a report of 100 DIV2K-size images stays a few tens of MB; the reader
drags the crop anywhere inside that window, or clicks the thumbnail of the whole output to move
it there. Files, per image:

  DIR/img/<dataset>/x<scale>/<lr_stem>/lr.png       the window's LR pixels (the page draws them
                                                    nearest-neighbour, `scale` times larger)
                                       bicubic.png, sr.png, hr.png       the window
                                       d1.png ... dT.png, target.png     detail maps, HR - bicubic
                                       thumb.jpg    the whole output, THUMB px on its long side

Bicubic is MATLAB's imresize of the same LR, scored by `eval_lib.score_image`, exactly as
`--method=bicubic` scores it. Detail maps are drawn as 0.5 + g d with one gain g per image
(`demo_report.detail_gain`), as in the demo figure.

Run as a module it photographs a report in headless Chromium (playwright): the docs' picture.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
import os
import runpy
import urllib.parse
from typing import Any, Mapping, Sequence

from etils import epath
import numpy as np
from PIL import Image

from dssr_jax import demo_report
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import losses
from dssr_jax import paper

CROP = 96  # HR pixels per side of the crop the page shows.
WINDOW = 192  # HR pixels per side of the window written around it, in which the crop moves.
THUMB = 256  # Pixels on the long side of the whole-image thumbnail.
PAGE = 'index.html'
IMAGES = 'img'


@dataclasses.dataclass(frozen=True)
class Box:
  """Where one image's crop and window lie, in HR pixels (multiples of the scale)."""
  crop: tuple[int, int, int]  # top, left, size (square)
  window: tuple[int, int, int, int]  # top, left, height, width; holds the crop


def check_free(html_dir: os.PathLike | str, overwrite: bool) -> None:
  """Refuses, before any work, a --html that is not a folder or already holds a report."""
  root = epath.Path(html_dir)
  if root.suffix.lower() in ('.html', '.htm'):
    raise ValueError(f'--html names a folder (the page is written as {PAGE} inside it, its '
                     f'images beside it), not an .html file: {str(root)!r}')
  if root.exists() and not root.is_dir():
    raise ValueError(f'--html {str(root)!r} is a file; it must name a folder')
  image_files.check_free([root / PAGE, root / IMAGES], overwrite)


def choose_box(hr: np.ndarray, bicubic: np.ndarray, scale: int, crop: int = CROP,
               window: int = WINDOW) -> Box:
  """The crop where bicubic loses most and the window around it (both clipped to the image)."""
  h, w = hr.shape[:2]
  size = max(min(crop, h, w) // scale * scale, scale)
  top, left = demo_report.detail_box(hr, bicubic, size, scale)

  def place(start: int, extent: int, length: int) -> int:
    # Centred on the crop, on the scale's grid (the LR window must be whole pixels), holding the
    # crop, inside the image.
    at = (start + size // 2 - extent // 2) // scale * scale
    at = min(max(at, start + size - extent), start)
    return min(max(at, 0), length - extent)

  wh = max(min(window, h) // scale * scale, size)
  ww = max(min(window, w) // scale * scale, size)
  return Box((top, left, size), (place(top, wh, h), place(left, ww, w), wh, ww))


def method_label(method: str) -> str:
  """'dssr' -> 'DSSR', 'dssr+' -> 'DSSR+' (self-ensemble); other methods keep their name."""
  return 'DSSR' + method[4:] if method.startswith('dssr') else method


def _jpeg_bytes(img: np.ndarray, quality: int = 85) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format='JPEG', quality=quality)
  return buf.getvalue()


def thumbnail(img: np.ndarray, long_side: int = THUMB) -> np.ndarray:
  """`img` shrunk (box filter) so that its long side is at most `long_side` pixels."""
  h, w = img.shape[:2]
  f = min(1.0, long_side / max(h, w))
  size = (max(1, round(w * f)), max(1, round(h * f)))
  return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))


def image_dir(dataset: str, scale: int, stem: str) -> str:
  """An image's folder relative to the page (file names as they are, '/'-separated)."""
  return f'{IMAGES}/{dataset}/x{scale}/{stem}'


def material(head: Mapping[str, Any], record: Any, lr: np.ndarray, out: Mapping[str, np.ndarray],
             row: Mapping[str, Any], crop: int = CROP, window: int = WINDOW, thumb: int = THUMB
             ) -> tuple[dict[str, Any], dict[str, bytes]]:
  """What the page shows of one scored image: (its entry, {file name: encoded file}).

  Args: those of `eval_lib.evaluate`'s `on_image` (head, record, lr, out, row); crop, window,
  thumb: sizes in pixels (module constants).
  """
  scale, method = int(head['scale']), str(head['method'])
  hr = np.asarray(record.hr)
  sr = np.asarray(out['sr'])
  label = method_label(method)
  if method.startswith('bicubic'):
    bic, bic_row = sr, row
  else:
    bic_out = eval_lib.bicubic_sr_fn(scale)(np.asarray(lr, np.float64)[None] / 255.0)
    bic_out = {'sr': bic_out['sr'][0]}
    bic = image_files.to_uint8(bic_out['sr'])
    grey = bool(head.get('grey_as_y')) and bool(getattr(record, 'grey', False))
    bic_row = eval_lib.score_image(bic_out, hr, scale, grey)
  box = choose_box(hr, bic, scale, crop, window)
  wt, wl, wh, ww = box.window
  cut = lambda x: np.ascontiguousarray(x[..., wt:wt + wh, wl:wl + ww, :])
  lr_window = np.asarray(record.lr)[wt // scale:(wt + wh) // scale, wl // scale:(wl + ww) // scale]
  files = {'lr.png': lr_window, 'bicubic.png': cut(bic), 'hr.png': cut(hr)}
  main = [['lr.png', f'LR (nearest x{scale})'],
          ['bicubic.png', f'bicubic {bic_row["psnr"]:.2f} dB']]
  if bic is not sr:
    files['sr.png'] = cut(sr)
    main.append(['sr.png', f'{label} {row["psnr"]:.2f} dB'])
    compare = [['bicubic.png', 'bicubic'], ['sr.png', label]]
  else:
    compare = [['bicubic.png', 'bicubic'], ['hr.png', 'HR']]
  main.append(['hr.png', 'HR'])
  details, gain = [], None
  if out.get('details') is not None:
    maps = [cut(np.asarray(d, np.float32)) for d in out['details']]
    # What the maps are trained towards: the loss's label, HR minus PyTorch's bicubic of the LR
    # (not the MATLAB bicubic of the panels above).
    target = losses.detail_label(np.asarray(record.lr, np.float32)[None] / 255,
                                hr[None].astype(np.float32) / 255, scale)
    maps.append(cut(np.asarray(target)[0]))
    gain = demo_report.detail_gain(maps)
    psnrs = row.get('per_step_psnr') or [None] * (len(maps) - 1)
    for t, (d, p) in enumerate(zip(maps, list(psnrs) + [None]), start=1):
      name = 'target.png' if t == len(maps) else f'd{t}.png'
      files[name] = demo_report.detail_panel(d, gain)
      details.append([name, 'target: HR - bic' if t == len(maps) else
                      f'step {t} detail' + ('' if p is None else f', SR_{t} {p:.2f} dB')])
  encoded = {k: image_files.png_bytes(v) for k, v in files.items()}
  # A lossy thumbnail is enough to show where the crop lies, and far smaller than a PNG.
  encoded['thumb.jpg'] = _jpeg_bytes(thumbnail(sr, thumb))
  stem = getattr(record, 'lr_stem', '') or record.name
  kernel = row.get('sigma')
  if kernel is None:
    kernel = head.get('kernel_width')
  gain_db = None if method.startswith('bicubic') else row['psnr'] - bic_row['psnr']
  entry = {
      'id': f'{head["dataset"]}/x{scale}/{stem}',
      'dir': urllib.parse.quote(image_dir(head['dataset'], scale, stem)),
      'dataset': head['dataset'], 'scale': scale, 'setting': head['setting'], 'method': method,
      'name': stem, 'kernel': kernel,
      'bicubic': {'psnr': bic_row['psnr'], 'ssim': bic_row['ssim']},
      'score': {'psnr': row['psnr'], 'ssim': row['ssim']}, 'gain_db': gain_db,
      'crop': list(box.crop), 'window': list(box.window), 'size': list(hr.shape[:2]),
      'main': main, 'compare': compare, 'details': details, 'detail_gain': gain,
  }
  return entry, encoded


class Collector:
  """Gathers the page's material while an evaluation runs; `write` then writes the page.

  `add` has the signature of `eval_lib.evaluate`'s `on_image` and writes the image's files at
  once; what it keeps is numbers only.
  """

  def __init__(self, html_dir: os.PathLike | str, crop: int = CROP, window: int = WINDOW,
               thumb: int = THUMB):
    if crop < 1 or window < crop or thumb < 1:
      raise ValueError(f'html_report: need 1 <= crop <= window and thumb >= 1, got crop {crop}, '
                       f'window {window}, thumb {thumb}')
    self.root = epath.Path(html_dir)
    self.sizes = (crop, window, thumb)
    self.entries: list[dict[str, Any]] = []

  def add(self, head, record, lr, out, row) -> None:
    entry, files = material(head, record, lr, out, row, *self.sizes)
    folder = self.root / image_dir(head['dataset'], int(head['scale']), entry['name'])
    for name, data in files.items():
      image_files.write_bytes(folder / name, data)
    self.entries.append(entry)

  def write(self, report: Mapping[str, Any]) -> epath.Path:
    """Writes DIR/index.html for `report` (eval_lib.evaluate's) and the images added."""
    path = self.root / PAGE
    image_files.write_text(path, page_html(report, self.entries))
    return path


# ----------------------------------------------------------------------------------------------
# A picture of the page (the docs' figure), in headless Chromium.

CHROMIUM_ARGS = ('--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run')


def screenshot(html_dir: os.PathLike | str, out: os.PathLike | str, image: str | None = None,
               width: int = 1240, overwrite: bool = False, browser: Any = None) -> epath.Path:
  """Opens DIR/index.html in headless Chromium, opens the viewer on the first row whose image
  name starts with `image` (the first row when None) and saves what the reader sees as PNG.

  `browser`: a playwright Browser to use; None starts Chromium (the one on PATH, else
  playwright's) and closes it again. Needs playwright (pip install playwright).
  """
  image_files.check_free([out], overwrite)
  page_path = image_files.absolute(epath.Path(html_dir) / PAGE)
  if image_files.is_url(page_path) or not page_path.is_file():
    raise FileNotFoundError(f'no report at {str(page_path)!r} (a local folder written by '
                            'eval.py --html)')
  if browser is None:
    import shutil  # pylint: disable=g-import-not-at-top
    try:
      from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ValueError('the screenshot needs playwright: pip install playwright') from e
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=shutil.which('chromium'), args=CHROMIUM_ARGS)
      try:
        return screenshot(html_dir, out, image, width, overwrite, browser)
      finally:
        browser.close()
  page = browser.new_page(viewport={'width': width, 'height': 800})
  try:
    page.goto(page_path.as_uri())
    ids = page.eval_on_selector_all('#images tbody tr', 'rows => rows.map(r => r.dataset.id)')
    chosen = [i for i in ids if image is None or i.rsplit('/', 1)[1].startswith(image)]
    if not chosen:
      raise ValueError(f'no image of the report starts with {image!r}')
    page.click(f'#images tbody tr[data-id="{chosen[0]}"]')
    page.wait_for_function('Array.from(document.querySelectorAll("#viewer img"))'
                           '.every(i => i.complete)')
    # The viewer scrolls inside the window: make the window as tall as its content.
    height = page.eval_on_selector('#viewer', 'v => v.scrollHeight')
    page.set_viewport_size({'width': width, 'height': int(height)})
    data = page.screenshot()
  finally:
    page.close()
  image_files.write_bytes(out, data)
  return epath.Path(out)


# ----------------------------------------------------------------------------------------------
# The page.


def _num(x: float | None) -> str:
  """A sort key for the page's JavaScript (`Number(...)` reads all of these)."""
  if x is None:
    return 'NaN'
  if math.isinf(x):
    return 'Infinity' if x > 0 else '-Infinity'
  return f'{x:.6f}'


def _fmt(x: float | None, digits: int, sign: bool = False) -> str:
  if x is None or math.isnan(x):
    return '-'
  return f'{x:+.{digits}f}' if sign else f'{x:.{digits}f}'


def _cell(value: float | None, digits: int, sign: bool = False) -> str:
  return f'<td class="n" data-v="{_num(value)}">{_fmt(value, digits, sign)}</td>'


def summary_rows(report: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]
                 ) -> list[dict[str, Any]]:
  """The table of scores: each result of the report, preceded by the bicubic baseline of the same
  images (the mean of their per-image scores, as `eval_lib.score_records` averages) when the
  method is not bicubic itself; each with the paper's cell, or None."""
  rows = []
  for r in report['results']:
    key = (r['dataset'], r['scale'])
    base = {'dataset': r['dataset'], 'scale': r['scale'], 'setting': r['setting'],
            'kernel_width': r.get('kernel_width')}
    mine = [e for e in entries if (e['dataset'], e['scale']) == key and e['method'] == r['method']]
    if not r['method'].startswith('bicubic') and mine:
      rows.append({**base, 'method': 'bicubic', 'num_images': len(mine),
                   'psnr': float(np.mean([e['bicubic']['psnr'] for e in mine])),
                   'ssim': float(np.mean([e['bicubic']['ssim'] for e in mine]))})
    rows.append({**base, 'method': r['method'], 'num_images': r.get('num_images'),
                 'psnr': r['psnr'], 'ssim': r['ssim']})
  for row in rows:
    # The paper's numbers are without self-ensemble: a '+' row has no published counterpart.
    row['paper'] = None if row['method'].endswith('+') else paper.lookup(
        row['dataset'], int(row['scale']), row['setting'], row['method'], row['kernel_width'])
  return rows


def _summary_table(rows: Sequence[Mapping[str, Any]]) -> str:
  head = ('<tr><th>dataset</th><th>scale</th><th>setting</th><th>method</th><th>images</th>'
          '<th>PSNR (dB)</th><th>SSIM</th><th>paper PSNR</th><th>paper SSIM</th></tr>')
  body = []
  for r in rows:
    setting = r['setting'] + ('' if r['kernel_width'] is None else f' {r["kernel_width"]:g}')
    cell = r['paper']
    body.append(
        f'<tr><td>{html.escape(r["dataset"])}</td><td>x{r["scale"]}</td>'
        f'<td>{html.escape(setting)}</td><td>{html.escape(method_label(r["method"]))}</td>'
        f'<td class="n">{r["num_images"] or "-"}</td>{_cell(r["psnr"], 2)}{_cell(r["ssim"], 4)}'
        f'{_cell(cell and cell.psnr, 2)}{_cell(cell and cell.ssim, 4)}</tr>')
  return (f'<table id="scores"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>')


def _images_table(entries: Sequence[Mapping[str, Any]]) -> str:
  bicubic_only = all(e['method'].startswith('bicubic') for e in entries)
  label = method_label(entries[0]['method']) if entries else ''
  cols = ['#', 'dataset', 'scale', 'blur σ', 'image', 'bicubic PSNR', 'bicubic SSIM']
  if not bicubic_only:
    cols += [f'{label} PSNR', f'{label} SSIM', 'gain (dB)']
  head = ''.join(f'<th>{html.escape(c)}</th>' for c in cols)
  body = []
  for i, e in enumerate(entries, start=1):
    cells = [_cell(i, 0), f'<td>{html.escape(e["dataset"])}</td>',
             f'<td class="n" data-v="{e["scale"]}">x{e["scale"]}</td>',
             _cell(e['kernel'], 2), f'<td>{html.escape(e["name"])}</td>',
             _cell(e['bicubic']['psnr'], 2), _cell(e['bicubic']['ssim'], 4)]
    if not bicubic_only:
      cells += [_cell(e['score']['psnr'], 2), _cell(e['score']['ssim'], 4),
                _cell(e['gain_db'], 2, sign=True)]
    body.append(f'<tr tabindex="0" data-id="{html.escape(e["id"])}">{"".join(cells)}</tr>')
  return (f'<table id="images"><thead><tr>{head}</tr></thead>'
          f'<tbody>{"".join(body)}</tbody></table>')


def page_html(report: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
  """The whole page: tables, viewer, and the entries as JSON for its script."""
  title = 'dssr-jax evaluation: ' + ', '.join(
      dict.fromkeys(f'{r["dataset"]} x{r["scale"]}' for r in report['results']))
  # '</' inside a script element would end it: JSON allows '<\/' for '</'.
  safe = eval_lib._json_safe({'images': list(entries)})  # pylint: disable=protected-access
  data = json.dumps(safe).replace('</', '<\\/')
  return _TEMPLATE.format(
      title=html.escape(title), run=html.escape(eval_lib.describe(report)),
      scores=_summary_table(summary_rows(report, entries)), images=_images_table(entries),
      data=data, css=_CSS, js=_JS)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
<h1>{title}</h1>
<p class="run">{run}</p>
<h2>Scores</h2>
<p class="note">Y-PSNR (dB) and SSIM, the mean over the images (and kernels) of each set.
Paper: the value Li et al. publish for the same set, scale and setting, where they publish one.</p>
{scores}
<h2>Per image</h2>
<p class="note">Click a column's header to sort by it (again to reverse), a row to see its
crops. In the viewer: drag a picture to move the crop, click the thumbnail to move it there,
&larr; &rarr; for the previous and next row, Esc to close.</p>
{images}
<section id="viewer" hidden aria-label="image viewer">
<div class="bar"><h2 id="v-title"></h2>
<span><button id="v-prev" title="previous row">&larr;</button><button id="v-next"
 title="next row">&rarr;</button><button id="v-reset">worst crop</button><button
 id="v-close" title="close (Esc)">&times;</button></span></div>
<p id="v-scores"></p>
<p id="v-where" class="note"></p>
<div id="v-main" class="row"></div>
<h3>Before / after</h3>
<div id="v-compare" class="row"></div>
<h3 id="v-details-title">Detail maps</h3>
<p id="v-details-note" class="note"></p>
<div id="v-details" class="row"></div>
</section>
<script type="application/json" id="report-data">{data}</script>
<script>{js}</script>
</body></html>
"""

_CSS = """
body { font: 14px/20px system-ui, sans-serif; margin: 20px; color: #222; background: #fff; }
h1 { font-size: 20px; line-height: 28px; } h2 { font-size: 16px; line-height: 24px; }
h3 { font-size: 14px; line-height: 20px; margin: 12px 0 8px; }
.note, .run { color: #555; max-width: 60em; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 2px 9px; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
#images th { cursor: pointer; user-select: none; background: #f3f3f3; position: sticky; top: 0; }
#images th[aria-sort=ascending]::after { content: " \\25B2"; }
#images th[aria-sort=descending]::after { content: " \\25BC"; }
#images tbody tr { cursor: pointer; } #images tbody tr:hover { background: #eef4ff; }
#images tbody tr.shown { background: #dde8ff; }
#viewer { position: fixed; inset: 0; overflow: auto; background: #fff; padding: 14px 20px; }
#viewer .bar { display: flex; justify-content: space-between; align-items: center; }
#viewer .bar h2 { margin: 0; } #viewer button { margin-left: 6px; font-size: 14px; }
.row { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; line-height: 16px; color: #333; }
.pane { position: relative; overflow: hidden; cursor: grab; background: #888;
        touch-action: none; }
.pane img { position: absolute; left: 0; top: 0; max-width: none; transform-origin: 0 0;
            image-rendering: pixelated; pointer-events: none; user-select: none; }
.pane .after { position: absolute; inset: 0; }
.pane.compare { cursor: ew-resize; }
.divider { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px;
           background: #ffeb3b; box-shadow: 0 0 3px #000; pointer-events: none; }
.thumb { position: relative; cursor: crosshair; display: inline-block; line-height: 0; }
.thumb .rect { position: absolute; border: 1px dashed #fff; box-shadow: 0 0 0 1px #000;
               pointer-events: none; }
.thumb .rect.crop { border: 2px solid #ffeb3b; }
#v-slider { display: block; }
figcaption.sides { display: flex; justify-content: space-between; }
"""

# The viewer: every picture is a window-sized image inside a crop-sized box, moved by one
# offset (`pan`, HR pixels) times the box's zoom, so that all of them show the same crop.
_JS = r"""
(() => {
'use strict';
const data = JSON.parse(document.getElementById('report-data').textContent);
const byId = new Map(data.images.map(e => [e.id, e]));
const table = document.getElementById('images');
const tbody = table.tBodies[0];
const viewer = document.getElementById('viewer');
const $ = id => document.getElementById(id);
let current = null, pan = [0, 0], panes = [], thumbCrop = null, split = 50;

// Sorting: cells with data-v by number, others as text (numbers inside names in order).
const heads = Array.from(table.tHead.rows[0].cells);
heads.forEach((th, col) => th.addEventListener('click', () => {
  const asc = th.getAttribute('aria-sort') !== 'ascending';
  heads.forEach(h => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  const key = tr => {
    const c = tr.cells[col];
    return c.dataset.v !== undefined ? Number(c.dataset.v) : c.textContent;
  };
  const cmp = (x, y) => typeof x === 'number'
      ? (Number.isNaN(x) ? 1 : Number.isNaN(y) ? -1 : x - y || 0)
      : x.localeCompare(y, undefined, {numeric: true});
  const rows = Array.from(tbody.rows);
  rows.sort((a, b) => asc ? cmp(key(a), key(b)) : cmp(key(b), key(a)));
  rows.forEach(r => tbody.appendChild(r));
}));

const zoomFor = (size, px) => Math.max(1, Math.floor(px / size));
const el = (tag, cls) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
};

function picture(file, e, zoom) {
  const img = el('img');
  img.alt = file; img.draggable = false;
  img.src = e.dir + '/' + file;
  img.style.width = e.window[3] * zoom + 'px';
  img.style.height = e.window[2] * zoom + 'px';
  img.dataset.zoom = zoom;
  return img;
}

function pane(parent, caption, zoom, cls) {
  const fig = el('figure'), box = el('div', 'pane' + (cls ? ' ' + cls : ''));
  box.style.width = box.style.height = current.crop[2] * zoom + 'px';
  const cap = el('figcaption'); cap.textContent = caption;
  fig.append(box, cap); parent.append(fig);
  return box;
}

function draggable(box, zoom) {
  box.addEventListener('pointerdown', ev => {
    box.setPointerCapture(ev.pointerId);
    const start = [ev.clientY, ev.clientX, pan[0], pan[1]];
    const move = m => setPan(start[2] - (m.clientY - start[0]) / zoom,
                             start[3] - (m.clientX - start[1]) / zoom);
    const up = () => {
      box.removeEventListener('pointermove', move);
      box.removeEventListener('pointerup', up);
    };
    box.addEventListener('pointermove', move); box.addEventListener('pointerup', up);
  });
}

function setPan(y, x) {
  const e = current, max = [e.window[2] - e.crop[2], e.window[3] - e.crop[2]];
  const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi));
  pan = [clamp(y, max[0]), clamp(x, max[1])];
  render();
}

function setSplit(v) {
  split = Math.min(Math.max(Number(v), 0), 100);
  $('v-slider').value = split;
  render();
}

function open(id) {
  const e = byId.get(id);
  if (!e) return;
  current = e; panes = [];
  pan = [e.crop[0] - e.window[0], e.crop[1] - e.window[1]];
  const size = e.crop[2];
  $('v-title').textContent = e.name + ' \u2014 ' + e.dataset + ' x' + e.scale +
      (e.kernel === null ? '' : ', blur \u03c3 ' + e.kernel.toFixed(2));
  const f = (r, t) => t + ' ' + (r.psnr === null ? '-' : r.psnr.toFixed(2)) + ' dB / ' +
      (r.ssim === null ? '-' : r.ssim.toFixed(4));
  $('v-scores').textContent = e.method.startsWith('bicubic') ? f(e.bicubic, 'bicubic')
      : f(e.bicubic, 'bicubic') + ',  ' + f(e.score, e.compare[1][1]) + ',  gain ' +
        (e.gain_db === null ? '-' : (e.gain_db >= 0 ? '+' : '') + e.gain_db.toFixed(2)) +
        ' dB (Y-PSNR / SSIM of the whole image)';
  for (const id of ['v-main', 'v-compare', 'v-details']) $(id).replaceChildren();
  const z = zoomFor(size, 288);
  for (const [file, caption] of e.main) {
    const box = pane($('v-main'), caption, z);
    box.append(picture(file, e, z));
    draggable(box, z); panes.push(box);
  }
  // The thumbnail of the whole output: the written window dashed, the crop solid.
  const fig = el('figure'), th = el('div', 'thumb'), img = el('img');
  img.src = e.dir + '/thumb.jpg'; img.alt = 'thumbnail'; img.draggable = false;
  const win = el('div', 'rect'); thumbCrop = el('div', 'rect crop');
  const pct = (v, n) => (100 * v / n) + '%';
  win.style.top = pct(e.window[0], e.size[0]); win.style.left = pct(e.window[1], e.size[1]);
  win.style.height = pct(e.window[2], e.size[0]); win.style.width = pct(e.window[3], e.size[1]);
  th.append(img, win, thumbCrop);
  th.addEventListener('click', ev => {
    const r = img.getBoundingClientRect();
    setPan((ev.clientY - r.top) / r.height * e.size[0] - e.window[0] - size / 2,
           (ev.clientX - r.left) / r.width * e.size[1] - e.window[1] - size / 2);
  });
  const cap = el('figcaption'); cap.textContent = 'whole image; click to move the crop';
  fig.append(th, cap);

  const cz = zoomFor(size, 420), [before, after] = e.compare;
  const box = pane($('v-compare'), before[1] + ' | ' + after[1], cz, 'compare');
  const top = el('div', 'after'), line = el('div', 'divider');
  box.append(picture(before[0], e, cz));
  top.append(picture(after[0], e, cz));
  box.append(top, line);
  // Which side is which, under the picture: the divider shows `before` to its left.
  const sides = box.nextSibling, tagL = el('span'), tagR = el('span');
  tagL.textContent = '\u25c0 ' + before[1]; tagR.textContent = after[1] + ' \u25b6';
  sides.className = 'sides'; sides.style.width = box.style.width;
  sides.replaceChildren(tagL, tagR);
  box.dataset.before = before[0]; box.dataset.after = after[0];
  panes.push(box);
  const slider = el('input'); slider.type = 'range'; slider.id = 'v-slider';
  slider.min = 0; slider.max = 100; slider.value = split;
  slider.setAttribute('aria-label', 'share of ' + before[1] + ' shown from the left');
  slider.style.width = size * cz + 'px';
  slider.addEventListener('input', () => setSplit(slider.value));
  box.parentNode.append(slider);
  $('v-compare').append(fig);
  box.addEventListener('pointerdown', ev => {
    box.setPointerCapture(ev.pointerId);
    const at = m =>
        setSplit(100 * (m.clientX - box.getBoundingClientRect().left) / box.clientWidth);
    at(ev);
    const up = () => {
      box.removeEventListener('pointermove', at);
      box.removeEventListener('pointerup', up);
    };
    box.addEventListener('pointermove', at); box.addEventListener('pointerup', up);
  });

  const dz = zoomFor(size, 192);
  $('v-details-title').hidden = $('v-details-note').hidden = !e.details.length;
  $('v-details-note').textContent = e.details.length
      ? 'Drawn as 0.5 + g\u00b7d with g = ' + e.detail_gain.toFixed(1) +
        ' for every map of this image (grey: no detail).' : '';
  for (const [file, caption] of e.details) {
    const box = pane($('v-details'), caption, dz);
    box.append(picture(file, e, dz));
    draggable(box, dz); panes.push(box);
  }
  for (const tr of tbody.rows) tr.classList.toggle('shown', tr.dataset.id === id);
  viewer.hidden = false;
  render();
}

function render() {
  const e = current;
  for (const box of panes)
    for (const img of box.querySelectorAll('img')) {
      const z = Number(img.dataset.zoom);
      img.style.transform = 'translate(' + (-pan[1] * z) + 'px,' + (-pan[0] * z) + 'px)';
    }
  const cmp = $('v-compare').querySelector('.after');
  if (cmp) {
    cmp.style.clipPath = 'inset(0 0 0 ' + split + '%)';
    $('v-compare').querySelector('.divider').style.left = split + '%';
  }
  const y = e.window[0] + pan[0], x = e.window[1] + pan[1], s = e.crop[2];
  const pct = (v, n) => (100 * v / n) + '%';
  Object.assign(thumbCrop.style, {top: pct(y, e.size[0]), left: pct(x, e.size[1]),
                                  height: pct(s, e.size[0]), width: pct(s, e.size[1])});
  $('v-where').textContent = 'Crop ' + s + '\u00d7' + s + ' HR px at y ' + y + ', x ' + x +
      ' of ' + e.size[0] + '\u00d7' + e.size[1] + ' (it starts where bicubic loses most, at y ' +
      e.crop[0] + ', x ' + e.crop[1] + '; it moves within the ' + e.window[2] + '\u00d7' +
      e.window[3] + ' window written).';
}

function step(d) {
  const rows = Array.from(tbody.rows), i = rows.findIndex(r => r.dataset.id === current.id);
  const next = rows[i + d];
  if (next) open(next.dataset.id);
}

tbody.addEventListener('click', ev => {
  const tr = ev.target.closest('tr');
  if (tr) open(tr.dataset.id);
});
tbody.addEventListener('keydown', ev => {
  const tr = ev.target.closest('tr'); if (tr && ev.key === 'Enter') open(tr.dataset.id);
});
$('v-close').addEventListener('click', () => { viewer.hidden = true; });
$('v-prev').addEventListener('click', () => step(-1));
$('v-next').addEventListener('click', () => step(1));
$('v-reset').addEventListener('click', () =>
    setPan(current.crop[0] - current.window[0], current.crop[1] - current.window[1]));
document.addEventListener('keydown', ev => {
  if (viewer.hidden) return;
  if (ev.key === 'Escape') viewer.hidden = true;
  else if (ev.key === 'ArrowLeft') step(-1);
  else if (ev.key === 'ArrowRight') step(1);
});
})();
"""



if __name__ == '__main__':  # `python -m dssr_jax.html_report` is dssr_jax/commands/report_screenshot.py
  runpy.run_module('dssr_jax.commands.report_screenshot', run_name='__main__', alter_sys=True)
