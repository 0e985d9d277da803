"""The demo's ending: bicubic vs DSSR on the held-out embedded photos under Gaussian8 blur.

`report(workdir)` scores the latest checkpoint in WORKDIR on the photos that demo training leaves
out (`input_pipeline.EMBEDDED_HOLDOUT`), degraded with the eight Gaussian8 kernels at the network's
scale (docs/design.md section 4): MATLAB-bicubic upscaling against DSSR, Y-PSNR with the scale
cropped from each border. Writes into WORKDIR/demo:
  results.json    per image and sigma, and the means;
  comparison.png  one held-out photo, zoomed in on a crop: LR (nearest) | bicubic | DSSR | HR, and
                  below it the detail map of each of the T recurrent steps beside the detail
                  they learn to restore (HR - PyTorch bicubic, `losses.detail_target`).
Prints the table, then a line `Held-out gain over bicubic: +G.GG dB (...)` and the figure's path.
The command is `dssr-demo-report` (dssr_jax/commands/demo_report.py).
"""

import json
import runpy
import sys

from etils import epath
import numpy as np

from dssr_jax import checkpoint
from dssr_jax import degrade
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import input_pipeline
from dssr_jax import metrics
from dssr_jax import plots
from dssr_jax import progress
from dssr_jax import testsets
from dssr_jax import upscaling

# The figure's photo and Gaussian8 sigma (index into the eight): the photo with the more
# texture at a mid-range blur, chosen before looking at any network's output.
FIGURE_IMAGE = 'coffee'
FIGURE_SIGMA = 3
CROP = 144  # HR pixels per side of the figure's crop.
ZOOM = 2  # Each crop pixel drawn as ZOOM x ZOOM screen pixels, so that the detail is visible.
GAP = 6  # White pixels between panels.


def evaluate(loaded: checkpoint.LoadedModel, hr_dir, figure=(FIGURE_IMAGE, FIGURE_SIGMA)
             ) -> tuple[list[dict], dict | None]:
  """PSNR-Y of MATLAB bicubic and of DSSR for every Gaussian8 LR image of the photos in hr_dir,
  scored by `eval_lib.score_records` (the protocol of eval.py).

  Returns the rows (one per image and sigma) and, for the record `figure` = (name, sigma index),
  its images and the network's per-step outputs (None when hr_dir has no such image).
  """
  scale = loaded.config['scale']
  options = eval_lib.EvalOptions()
  records = list(testsets.gaussian8(hr_dir, scale))  # a few photos: degraded once, scored twice
  sigma = float(degrade.gaussian8_sigmas(scale)[figure[1]])
  kept = {}

  def keep(key):
    def on_image(rec, lr, out, row):
      if (rec.name, rec.sigma) == (figure[0], sigma):
        kept.update({key: out['sr'], 'lr': lr, 'hr': rec.hr, **(
            {'details': out['details']} if key == 'sr' else {})})
    return on_image

  bic = eval_lib.score_records(
      records, eval_lib.network_outputs(eval_lib.bicubic_sr_fn(scale), scale, options), scale,
      options, keep('bicubic'))
  dssr = eval_lib.score_records(
      progress.progress(records, total=len(records), desc='held-out', unit='image'),
      eval_lib.network_outputs(upscaling.make_sr_fn(loaded), scale, options), scale, options,
      keep('sr'))
  rows = [{'name': b['name'], 'sigma': b['sigma'], 'psnr_bicubic': b['psnr'],
           'psnr_dssr': d['psnr'], 'psnr_steps': d['per_step_psnr']}
          for b, d in zip(bic['images'], dssr['images'])]
  if not kept:
    return rows, None
  kept['row'] = next(r for r in rows if (r['name'], r['sigma']) == (figure[0], sigma))
  return rows, kept


def crops(lr, bic, sr, hr, scale: int, top: int, left: int, size: int) -> list[np.ndarray]:
  """The size x size HR-grid crop at (top, left) of LR (nearest-upscaled), bicubic, DSSR, HR."""
  lr_up = np.repeat(np.repeat(lr, scale, 0), scale, 1)
  return [x[top:top + size, left:left + size] for x in (lr_up, bic, sr, hr)]


def comparison_image(lr, bic, sr, hr, scale: int, size: int = 192) -> np.ndarray:
  """The centre crop side by side: LR (nearest) | bicubic | DSSR | HR, 4 px white gaps."""
  h, w = hr.shape[:2]
  size = min(size, h, w) // scale * scale
  top, left = (h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale
  gap = np.full((size, 4, 3), 255, np.uint8)
  panels = crops(lr, bic, sr, hr, scale, top, left, size)
  return np.concatenate([panels[0], gap, panels[1], gap, panels[2], gap, panels[3]], axis=1)


def detail_box(hr: np.ndarray, bic: np.ndarray, size: int, scale: int) -> tuple[int, int]:
  """(top, left) of the size x size window (on a grid of `scale`) where bicubic loses the most:
  the largest sum of |Y(HR) - Y(bicubic)|. It depends on the photo and the blur, not on the
  network, so the crop is not picked to flatter it."""
  h, w = hr.shape[:2]
  if size > h or size > w:
    raise ValueError(f'detail_box: a {size}x{size} crop does not fit a {h}x{w} image')
  err = np.abs(metrics.rgb_to_y(hr) - metrics.rgb_to_y(bic))
  sat = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table
  tops = np.arange(0, h - size + 1, scale)
  lefts = np.arange(0, w - size + 1, scale)
  t, l = tops[:, None], lefts[None, :]
  sums = sat[t + size, l + size] - sat[t, l + size] - sat[t + size, l] + sat[t, l]
  i, j = np.unravel_index(np.argmax(sums), sums.shape)
  return int(tops[i]), int(lefts[j])


def detail_gain(maps) -> float:
  """One gain for every detail map of a figure, so that they compare: the largest map's 99.5th
  percentile of |d| is drawn 0.45 from grey (a few outliers may clip, the texture stays visible)."""
  spread = max(float(np.percentile(np.abs(d), 99.5)) for d in maps)
  return 0.45 / max(spread, 1e-6)


def detail_panel(d: np.ndarray, gain: float) -> np.ndarray:
  """A signed detail map (float, around 0) as grey-centred uint8: 0.5 + gain * d."""
  return image_files.to_uint8(image_files.detail_image(d, gain))


def _font(size: int):
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font.
    return ImageFont.load_default()


def _labelled(panel: np.ndarray, label: str, height: int = 22) -> np.ndarray:
  """The panel with a white strip above it holding `label`."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  strip = Image.new('RGB', (panel.shape[1], height), 'white')
  ImageDraw.Draw(strip).text((2, 3), label, fill='black', font=_font(15))
  return np.concatenate([np.asarray(strip), panel], axis=0)


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
  """Panels of one size in rows, GAP white pixels apart; short rows padded with white."""
  ph, pw = rows[0][0].shape[:2]
  cols = max(len(r) for r in rows)
  out = np.full((len(rows) * (ph + GAP) - GAP, cols * (pw + GAP) - GAP, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, p in enumerate(row):
      out[i * (ph + GAP):i * (ph + GAP) + ph, j * (pw + GAP):j * (pw + GAP) + pw] = p
  return out


def figure(kept: dict, scale: int, size: int = CROP, zoom: int = ZOOM) -> tuple[np.ndarray, dict]:
  """The comparison figure of one evaluated record (`evaluate`'s second result) and its caption.

  Top row: the crop of LR (nearest) | bicubic | DSSR | HR. Bottom row: step t's detail map
  (t = 1..T) and HR - bic (the target each map is trained towards: the network's own PyTorch
  bicubic, not the MATLAB bicubic of the top row), all drawn as 0.5 + g d with one gain g. Every
  pixel is shown as a zoom x zoom block.
  """
  hr, bic, sr, lr, row = kept['hr'], kept['bicubic'], kept['sr'], kept['lr'], kept['row']
  size = min(size, *hr.shape[:2]) // scale * scale
  top, left = detail_box(hr, bic, size, scale)
  crop = lambda x: x[top:top + size, left:left + size]
  big = lambda x: np.repeat(np.repeat(x, zoom, 0), zoom, 1)
  images = crops(lr, bic, sr, hr, scale, top, left, size)
  labels = [f'LR (nearest x{scale})', f'bicubic {row["psnr_bicubic"]:.2f} dB',
            f'DSSR {row["psnr_dssr"]:.2f} dB', 'HR']
  top_row = [_labelled(big(p), t) for p, t in zip(images, labels)]

  target = plots.true_detail(hr, lr, scale)
  details = [crop(d) for d in kept['details']] + [crop(target)]
  gain = detail_gain(details)
  labels = [f'step {t} detail, SR_{t} {p:.2f} dB'
            for t, p in enumerate(row['psnr_steps'], start=1)] + ['target: HR - bic']
  bottom_row = [_labelled(big(detail_panel(d, gain)), t) for d, t in zip(details, labels)]
  caption = (f'{row["name"]}, Gaussian8 sigma {row["sigma"]:.2f} x{scale} (held out): '
             f'{size}x{size} HR crop at (y={top}, x={left}) shown {zoom}x; detail maps as '
             f'0.5 + {gain:.1f} d; dB are Y-PSNR of the whole image')
  return _grid([top_row, bottom_row]), {'caption': caption, 'box': [top, left, size],
                                        'detail_gain': gain}


def table(rows: list[dict]) -> str:
  names = list(dict.fromkeys(r['name'] for r in rows))
  lines = [f'{"image":<12} {"bicubic dB":>10} {"DSSR dB":>8} {"gain":>6}']
  for name in names + ['mean']:
    sel = rows if name == 'mean' else [r for r in rows if r['name'] == name]
    b, d = (eval_lib.mean([r[k] for r in sel]) for k in ('psnr_bicubic', 'psnr_dssr'))
    lines.append(f'{name:<12} {b:10.2f} {d:8.2f} {d - b:+6.2f}')
  return '\n'.join(lines)


def summary_line(bicubic: float, dssr: float, scale: int) -> str:
  """The line `make demo` ends on (tests parse it)."""
  return (f'Held-out gain over bicubic: {dssr - bicubic:+.2f} dB (DSSR {dssr:.2f} dB vs bicubic '
          f'{bicubic:.2f} dB, mean Y-PSNR, Gaussian8 x{scale})')


def report(workdir) -> dict:
  """Evaluates, writes results.json and comparison.png into WORKDIR/demo, prints the summary."""
  loaded = checkpoint.load_model(workdir)
  scale = loaded.config['scale']
  out = epath.Path(workdir) / 'demo'
  hr_dir = out / 'holdout_hr'
  input_pipeline.write_embedded_holdout(hr_dir)
  rows, kept = evaluate(loaded, hr_dir)
  summary = {
      'checkpoint_step': loaded.step,
      'scale': scale,
      'held_out': sorted({r['name'] for r in rows}),
      'psnr_bicubic': eval_lib.mean([r['psnr_bicubic'] for r in rows]),
      'psnr_dssr': eval_lib.mean([r['psnr_dssr'] for r in rows]),
      'rows': rows,
  }
  summary['gain'] = summary['psnr_dssr'] - summary['psnr_bicubic']
  fig_path = out / 'comparison.png'
  if kept is not None:
    img, info = figure(kept, scale)
    image_files.write_png(fig_path, img)
    summary['comparison'] = info
  image_files.write_text(out / 'results.json', json.dumps(summary, indent=1))
  print(f'Held-out photos {", ".join(summary["held_out"])} (not trained on), Gaussian8 x{scale}, '
        f'Y-PSNR (checkpoint step {loaded.step}):')
  print(table(rows))
  print(summary_line(summary['psnr_bicubic'], summary['psnr_dssr'], scale))
  if kept is not None:
    print(f'Comparison image: {fig_path}\n  ({summary["comparison"]["caption"]})')
  print(f'Per-image numbers: {out / "results.json"}')
  sys.stdout.flush()
  return summary



if __name__ == '__main__':  # `python -m dssr_jax.demo_report` is the command dssr_jax/commands/demo_report.py
  runpy.run_module('dssr_jax.commands.demo_report', run_name='__main__', alter_sys=True)
