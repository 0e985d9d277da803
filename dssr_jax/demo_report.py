r"""The demo's ending: bicubic vs DSSR on the held-out embedded photos under Gaussian8 blur.

  python -m dssr_jax.demo_report --workdir=workdirs/demo

Writes `WORKDIR/demo/results.json` (per image and sigma), `WORKDIR/demo/comparison.png`
(LR nearest-upscaled | MATLAB bicubic | DSSR | HR, on one crop) and prints the table.
"""

import json

from absl import app
from absl import flags
from etils import epath
import numpy as np

from dssr_jax import imageio
from dssr_jax import imresize
from dssr_jax import inference
from dssr_jax import input_pipeline
from dssr_jax import metrics
from dssr_jax import testsets


def evaluate(loaded: inference.LoadedModel, hr_dir) -> list[dict]:
  """PSNR-Y of MATLAB bicubic and of DSSR for every Gaussian8 LR image of the photos in hr_dir."""
  scale = loaded.config['scale']
  fn = inference.make_sr_fn(loaded, ('sr',))
  rows = []
  for rec in testsets.gaussian8(hr_dir, scale):
    lr = np.asarray(rec.lr, np.float32) / 255.0
    bic = imageio.to_uint8(imresize.imresize(lr, scale))
    sr = imageio.to_uint8(fn(lr[None])['sr'][0])
    rows.append({'name': rec.name, 'sigma': float(rec.sigma),
                 'psnr_bicubic': metrics.psnr_y(bic, rec.hr, crop=scale),
                 'psnr_dssr': metrics.psnr_y(sr, rec.hr, crop=scale),
                 'images': (rec.lr, bic, sr, rec.hr)})
  return rows


def comparison_image(lr, bic, sr, hr, scale: int, size: int = 192) -> np.ndarray:
  """One centre crop side by side: LR (nearest) | bicubic | DSSR | HR, 4 px white gaps."""
  h, w = hr.shape[:2]
  size = min(size, h, w) // scale * scale
  top, left = (h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale
  crop = lambda x: x[top:top + size, left:left + size]
  lr_up = np.repeat(np.repeat(lr, scale, 0), scale, 1)
  gap = np.full((size, 4, 3), 255, np.uint8)
  panels = [crop(lr_up), gap, crop(bic), gap, crop(sr), gap, crop(hr)]
  return np.concatenate(panels, axis=1)


def table(rows: list[dict]) -> str:
  names = list(dict.fromkeys(r['name'] for r in rows))
  lines = [f'{"image":<12} {"bicubic dB":>10} {"DSSR dB":>8} {"gain":>6}']
  for name in names + ['mean']:
    sel = rows if name == 'mean' else [r for r in rows if r['name'] == name]
    b = float(np.mean([r['psnr_bicubic'] for r in sel]))
    d = float(np.mean([r['psnr_dssr'] for r in sel]))
    lines.append(f'{name:<12} {b:10.2f} {d:8.2f} {d - b:+6.2f}')
  return '\n'.join(lines)


def report(workdir) -> dict:
  loaded = inference.load_model(workdir)
  scale = loaded.config['scale']
  out = epath.Path(workdir) / 'demo'
  hr_dir = out / 'holdout_hr'
  input_pipeline.write_embedded_holdout(hr_dir)
  rows = evaluate(loaded, hr_dir)
  mid = [r for r in rows if r['name'] == rows[0]['name']]
  mid = mid[len(mid) // 2]
  imageio.write_png(out / 'comparison.png', comparison_image(*mid['images'], scale))
  summary = {
      'scale': scale,
      'held_out': sorted({r['name'] for r in rows}),
      'psnr_bicubic': float(np.mean([r['psnr_bicubic'] for r in rows])),
      'psnr_dssr': float(np.mean([r['psnr_dssr'] for r in rows])),
      'rows': [{k: v for k, v in r.items() if k != 'images'} for r in rows],
      'comparison': f'{mid["name"]} at sigma {mid["sigma"]:.2f}: LR | bicubic | DSSR | HR',
  }
  imageio.write_text(out / 'results.json', json.dumps(summary, indent=1))
  text = table(rows)
  print(f'Held-out embedded photos, Gaussian8 x{scale} (Y-PSNR, crop {scale}):')
  print(text)
  print(f'Comparison image ({summary["comparison"]}): {out / "comparison.png"}')
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  report(flags.FLAGS.workdir)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The demo\'s training workdir.', required=True)
  app.run(main)
