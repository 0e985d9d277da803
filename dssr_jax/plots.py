r"""Figures: per-step PSNR (paper Table IV / Fig. 8), detail maps per step (Fig. 4 / 9), crops.

  python -m dssr_jax.plots steps --report=results.json --out=docs/per_step_psnr.png
  python -m dssr_jax.plots details --checkpoint=WORKDIR --hr=img.png [--hr=...] --sigma=1.2 \
      --out=docs/details.png
  python -m dssr_jax.plots crops --checkpoint=WORKDIR --hr=img.png --sigma=1.2 \
      --box=Y,X,SIZE --out=docs/crops.png

`steps` reads an eval.py JSON; `details` and `crops` degrade the HR images with the Gaussian8
blur + MATLAB-bicubic downsampling at the given sigma (docs/design.md section 4) and run the network.
Data and drawing are separate functions, so the numbers behind a figure can be checked alone.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
from etils import epath
import numpy as np

from dssr_jax import checkpoint
from dssr_jax import imageio
from dssr_jax import inference


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, out: os.PathLike | str, dpi: int = 100) -> epath.Path:
  """Saves atomically (`imageio.atomic_write`): an existing figure is never left half-written."""
  out = epath.Path(out)
  imageio.atomic_write(out, lambda f: fig.savefig(f, dpi=dpi, format=out.suffix[1:] or 'png'))
  _pyplot().close(fig)
  return out


# ----------------------------------------------------------------------------------------------
# Per-step PSNR.


def plot_per_step_psnr(report: Mapping[str, Any], out: os.PathLike | str) -> epath.Path:
  """PSNR after each step t for every dataset x scale of an eval report (Table IV / Fig. 8).

  Solid: the step-t output alone; dashed: the mean of steps 1..t (the network run with T = t).
  """
  results = [r for r in report['results'] if r.get('per_step_psnr')]
  if not results:
    raise ValueError('the report has no per-step PSNR (was it a --method=bicubic run?)')
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for i, r in enumerate(results):
    color = f'C{i % 10}'
    t = np.arange(1, len(r['per_step_psnr']) + 1)
    label = f'{r["dataset"]} x{r["scale"]}'
    ax.plot(t, r['per_step_psnr'], 'o-', color=color, label=f'{label}: step t output')
    if r.get('per_step_mean_psnr'):
      ax.plot(t, r['per_step_mean_psnr'], 's--', color=color, alpha=0.7,
              label=f'{label}: mean of steps 1..t')
    ax.set_xticks(t)
  ax.set_xlabel('step t')
  ax.set_ylabel('Y-PSNR (dB)')
  ax.set_title(f'PSNR per step ({results[0]["setting"]}, {results[0]["method"]})')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, out)


# ----------------------------------------------------------------------------------------------
# Detail maps.


def degrade_hr(hr_path: os.PathLike | str, scale: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """(HR uint8 modcropped, its Gaussian8-style LR uint8 at `sigma`)."""
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  hr = testsets.modcrop(imageio.read_image(hr_path), scale)
  return hr, testsets.gaussian8_lr(hr, sigma, scale)


def torch_bicubic_up(lr: np.ndarray, scale: int) -> np.ndarray:
  """PyTorch bicubic x`scale` of [h, w, C] float: the `bic` the network adds to its detail map."""
  from dssr_jax import resize  # pylint: disable=g-import-not-at-top
  h, w = lr.shape[:2]
  mh = resize.bicubic_matrix(h, h * scale, False, scale)
  mw = resize.bicubic_matrix(w, w * scale, False, scale)
  return np.einsum('Hh,hwc,Ww->HWc', mh, lr.astype(np.float32), mw)


def detail_stats(details: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int
                 ) -> dict[str, np.ndarray]:
  """Per-step numbers of the detail maps of one image.

  Args:
    details: [T, H, W, 3] the network's detail maps (HR scale, signed).
    hr: uint8 [H, W, 3].
    lr: uint8 [h, w, 3], the network's input.
    scale: the network's scale.

  Returns:
    'mean_abs': mean |d_t| per step; 'l1_to_true': mean |d_t - (HR - bic(LR))| per step, the
    distance to the detail the training loss pulls each map towards (docs/design.md section 2).
  """
  true = hr.astype(np.float32) / 255 - torch_bicubic_up(lr / np.float32(255), scale)
  d = np.asarray(details, np.float32)
  return {'mean_abs': np.abs(d).mean(axis=(1, 2, 3)),
          'l1_to_true': np.abs(d - true[None]).mean(axis=(1, 2, 3))}


def plot_details(details: np.ndarray, stats: Sequence[Mapping[str, np.ndarray]],
                 names: Sequence[str], out: os.PathLike | str, true: np.ndarray | None = None
                 ) -> epath.Path:
  """Top: the first image's detail maps per step (0.5 + d, as in Fig. 4), and the true detail.

  Bottom: mean |d_t| and L1 to the true detail per step for every image (Fig. 9).
  """
  plt = _pyplot()
  steps = len(details)
  cols = steps + (true is not None)
  fig = plt.figure(figsize=(2.2 * max(cols, 3), 5.2))
  grid = fig.add_gridspec(2, cols, height_ratios=[1, 1.1])
  panels = [(d, f'd_{t + 1}') for t, d in enumerate(details)]
  if true is not None:
    panels.append((true, 'HR - bicubic'))
  for i, (img, title) in enumerate(panels):
    ax = fig.add_subplot(grid[0, i])
    ax.imshow(np.clip(0.5 + img, 0, 1))
    ax.set_title(title, fontsize=9)
    ax.axis('off')
  ax = fig.add_subplot(grid[1, :])
  t = np.arange(1, steps + 1)
  for i, (s, name) in enumerate(zip(stats, names)):
    ax.plot(t, s['l1_to_true'], 'o-', color=f'C{i % 10}', label=f'{name}: L1(d_t, HR - bic)')
    ax.plot(t, s['mean_abs'], 's--', color=f'C{i % 10}', alpha=0.6, label=f'{name}: mean |d_t|')
  ax.set_xticks(t)
  ax.set_xlabel('step t')
  ax.set_ylabel('L1 (intensity in [0, 1])')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  return _save(fig, out, dpi=72)  # photos in PNG are large; 72 dpi keeps the file small


# ----------------------------------------------------------------------------------------------
# Crops.


def plot_crops(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int,
               box: tuple[int, int, int], out: os.PathLike | str,
               labels: Sequence[str] = ('LR', 'bicubic', 'DSSR', 'HR')) -> epath.Path:
  """LR (nearest-neighbour enlarged) / bicubic / DSSR / HR crops of one HR-scale box, with PSNR.

  Args:
    lr: uint8 [h, w, 3]; bicubic, sr, hr: uint8 [h*s, w*s, 3].
    box: (y, x, size) of the square crop in HR pixels.
  """
  from dssr_jax import metrics  # pylint: disable=g-import-not-at-top
  y, x, size = box
  h, w = hr.shape[:2]
  if size < 1 or y < 0 or x < 0 or y + size > h or x + size > w:
    raise ValueError(f'--box {box} does not fit in the {h}x{w} HR image')
  for name, img in (('bicubic', bicubic), ('sr', sr)):
    if img.shape != hr.shape:
      raise ValueError(f'{name} is {img.shape}, HR is {hr.shape}')
  lr_big = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
  plt = _pyplot()
  fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
  for ax, img, label in zip(axes, (lr_big, bicubic, sr, hr), labels):
    ax.imshow(img[y:y + size, x:x + size], interpolation='nearest')
    title = label
    if img is bicubic or img is sr:
      title += f'\n{metrics.psnr_y(img, hr, scale):.2f} dB (whole image)'
    ax.set_title(title, fontsize=9)
    ax.axis('off')
  fig.tight_layout()
  return _save(fig, out)


# ----------------------------------------------------------------------------------------------
# The command.


FLAGS = flags.FLAGS
FIGURES = ('steps', 'details', 'crops')


def _define_flags():
  flags.DEFINE_string('out', None, 'The figure file to write (PNG).', required=True)
  flags.DEFINE_string('report', None, 'steps: an eval.py --output JSON.')
  flags.DEFINE_string('checkpoint', None, 'details, crops: a workdir or checkpoint folder.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_multi_string('hr', [], 'details, crops: HR image (repeat for several).')
  flags.DEFINE_float('sigma', 1.2, 'details, crops: Gaussian blur sigma of the LR.')
  flags.DEFINE_list('box', None, 'crops: Y,X,SIZE of the crop in HR pixels.')


def main(argv):
  if len(argv) != 2 or argv[1] not in FIGURES:
    raise app.UsageError(f'give one figure, one of {FIGURES}; got {argv[1:]}')
  figure = argv[1]
  need = {'steps': ['report'], 'details': ['checkpoint', 'hr'], 'crops': ['checkpoint', 'hr', 'box']}
  missing = [f'--{n}' for n in need[figure] if not FLAGS[n].value]
  if missing:
    raise app.UsageError(f'{figure} needs {", ".join(missing)}')
  if figure == 'steps':
    report = json.loads(epath.Path(FLAGS.report).read_text())
    print(plot_per_step_psnr(report, FLAGS.out))
    return
  box = None
  if figure == 'crops':
    try:
      box = tuple(int(v) for v in FLAGS.box)
      if len(box) != 3:
        raise ValueError
    except ValueError:
      raise app.UsageError(f'--box must be Y,X,SIZE (three integers), got {FLAGS.box!r}') from None
  loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step)
  scale = int(loaded.config['scale'])
  fn = inference.make_sr_fn(loaded)
  if figure == 'details':
    stats, names, first = [], [], None
    for path in FLAGS.hr:
      hr, lr = degrade_hr(path, scale, FLAGS.sigma)
      details = fn(lr[None] / np.float32(255))['details'][:, 0]
      stats.append(detail_stats(details, hr, lr, scale))
      names.append(epath.Path(path).stem)
      if first is None:
        true = hr / np.float32(255) - torch_bicubic_up(lr / np.float32(255), scale)
        first = (details, true)
      for t, (a, l1) in enumerate(zip(stats[-1]['mean_abs'], stats[-1]['l1_to_true']), start=1):
        print(f'{names[-1]} step {t}: mean |d| {a:.5f}, L1 to HR - bic {l1:.5f}')
    print(plot_details(first[0], stats, names, FLAGS.out, true=first[1]))
    return
  from dssr_jax import eval_lib  # pylint: disable=g-import-not-at-top
  hr, lr = degrade_hr(FLAGS.hr[0], scale, FLAGS.sigma)
  y, x, size = box
  if size < 1 or y < 0 or x < 0 or y + size > hr.shape[0] or x + size > hr.shape[1]:
    raise app.UsageError(f'--box {box} does not fit in the {hr.shape[0]}x{hr.shape[1]} HR image')
  sr = imageio.to_uint8(fn(lr[None] / np.float32(255))['sr'][0])
  bic = imageio.to_uint8(eval_lib.bicubic_sr_fn(scale)(lr[None] / 255.0)['sr'][0])
  print(plot_crops(lr, bic, sr, hr, scale, box, FLAGS.out))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
