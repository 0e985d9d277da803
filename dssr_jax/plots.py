"""Figures: per-step PSNR (paper Table IV / Fig. 8), per-step detail L1 (Fig. 9), detail maps per
step (Fig. 4), crops.

Data and drawing are separate functions, so the numbers behind a figure can be checked alone. The
command that draws them is `dssr-plots` (dssr_jax/commands/plots.py).
"""

from __future__ import annotations

import os
import runpy
from typing import Any, Mapping, Sequence

from etils import epath
import numpy as np

from dssr_jax import image_files
from dssr_jax import losses


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, out: os.PathLike | str, dpi: int = 100) -> epath.Path:
  """Saves atomically (`image_files.atomic_write`): a figure is never left half-written."""
  out = epath.Path(out)
  image_files.atomic_write(out, lambda f: fig.savefig(f, dpi=dpi, format=out.suffix[1:] or 'png'))
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


def plot_detail_l1(report: Mapping[str, Any], out: os.PathLike | str) -> epath.Path:
  """Fig. 9: per step t, the mean L1 between the detail map and HR - bic(LR), one line per kernel
  width (a report's kernel-width rows, or the sigmas inside a Gaussian8 row) and dataset x scale.
  """
  lines = []
  for r in report['results']:
    label = f'{r["dataset"]} x{r["scale"]}'
    if r.get('kernel_width') is not None:
      lines.append((f'{label} width {r["kernel_width"]:g}', r.get('per_step_detail_l1')))
    elif r.get('per_sigma_detail_l1'):
      lines += [(f'{label} sigma {s}', v) for s, v in r['per_sigma_detail_l1'].items()]
    else:
      lines.append((label, r.get('per_step_detail_l1')))
  lines = [(label, v) for label, v in lines if v]
  if not lines:
    raise ValueError('the report has no per-step detail L1 (was it a --method=bicubic run?)')
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for i, (label, values) in enumerate(lines):
    t = np.arange(1, len(values) + 1)
    ax.plot(t, values, 'o-', color=f'C{i % 10}', label=label)
    ax.set_xticks(t)
  ax.set_xlabel('step t')
  ax.set_ylabel('mean |d_t - (HR - bic(LR))|')
  ax.set_title('Detail map error per step (Fig. 9)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, out)


# ----------------------------------------------------------------------------------------------
# Detail maps.


def degrade_hr(hr_path: os.PathLike | str, scale: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
  """(HR uint8 modcropped, its Gaussian8-style LR uint8 at `sigma`)."""
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  hr = testsets.modcrop(image_files.read_image(hr_path), scale)
  return hr, testsets.gaussian8_lr(hr, sigma, scale)


def true_detail(hr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
  """HR - bic(LR) of one uint8 image pair, float32 [H, W, 3]: `losses.detail_label`."""
  target = losses.detail_label(lr[None] / np.float32(255), hr[None] / np.float32(255), scale)
  return np.asarray(target[0])


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
  true = true_detail(hr, lr, scale)
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
    panels.append((true, 'target: HR - bic'))
  for i, (img, title) in enumerate(panels):
    ax = fig.add_subplot(grid[0, i])
    ax.imshow(image_files.detail_image(img))
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


def check_box(box: tuple[int, int, int], shape: Sequence[int]) -> None:
  """Raises ValueError unless the crop box (y, x, size) lies inside an image of `shape`."""
  y, x, size = box
  h, w = shape[:2]
  if size < 1 or y < 0 or x < 0 or y + size > h or x + size > w:
    raise ValueError(f'--box {box} does not fit in the {h}x{w} HR image')


def plot_crops(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int,
               box: tuple[int, int, int], out: os.PathLike | str,
               labels: Sequence[str] = ('LR', 'bicubic', 'DSSR', 'HR')) -> epath.Path:
  """LR (nearest-neighbour enlarged) / bicubic / DSSR / HR crops of one HR-scale box, with PSNR.

  Args:
    lr: uint8 [h, w, 3]; bicubic, sr, hr: uint8 [h*s, w*s, 3].
    box: (y, x, size) of the square crop in HR pixels.
  """
  from dssr_jax import metrics  # pylint: disable=g-import-not-at-top
  check_box(box, hr.shape)
  y, x, size = box
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



if __name__ == '__main__':  # `python -m dssr_jax.plots` is the command dssr_jax/commands/plots.py
  runpy.run_module('dssr_jax.commands.plots', run_name='__main__', alter_sys=True)
