"""Blind-SR test sets: Gaussian8 from any HR folder, DIV2KRK (loader and generator).

Gaussian8 (IKC's protocol, docs/design.md section 4): every HR image modcropped to a multiple of s, eight
isotropic 21x21 kernels with sigma = linspace(lo, hi, 8) per scale, MATLAB bicubic downsampling,
LR clipped and rounded to 8 bits. No randomness: the set is a pure function of the HR files.

DIV2KRK (KernelGAN, docs/design.md section 3 setting 2) in its public layout: `gt/img_N_gt.png`,
`lr_x{2,4}/im_N.png`, `gt_k_x{2,4}/kernel_N.mat` (MATLAB key `Kernel`). `make_div2krk` writes a
set of the same kind from any HR folder with a fixed seed.

numpy only (no tensorflow).
"""

import dataclasses
import hashlib
import logging
import math
import pathlib
import re
import sys
from typing import Iterator, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
from scipy import io as sio

from dssr_jax import degrade
from dssr_jax import imageio


@dataclasses.dataclass(frozen=True)
class Record:
  """One LR/HR test pair.

  Attributes:
    name: the HR image's file stem (e.g. 'baby', 'img_43'); Gaussian8 has 8 records per name.
    sigma: the Gaussian8 kernel width, None for DIV2KRK.
    hr: uint8 HxWx3, modcropped so that its size is `scale` times the LR size.
    lr: uint8 (H/s)x(W/s)x3.
    grey: the HR file was greyscale (metrics may then use `grey_as_y`, docs/design.md section 4).
    kernel: the blur kernel (float64), for DIV2KRK; None for Gaussian8 (it is `sigma`'s).
  """
  name: str
  sigma: Optional[float]
  hr: np.ndarray
  lr: np.ndarray
  grey: bool
  kernel: Optional[np.ndarray] = None


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
  """Drops the last rows/columns so that height and width are multiples of `scale`."""
  h, w = img.shape[:2]
  if h < scale or w < scale:
    raise ValueError(f'modcrop: image {h}x{w} is smaller than the scale {scale}')
  return img[:h - h % scale, :w - w % scale]


def _hr_files(hr_dir) -> list:
  files = imageio.list_images(hr_dir)
  if not files:
    raise ValueError(f'no image files (.png/.jpg/...) in {str(hr_dir)!r}')
  return files


def gaussian8_lr(hr: np.ndarray, sigma: float, scale: int) -> np.ndarray:
  """The Gaussian8 LR image (uint8) of a modcropped uint8 HR image for one sigma."""
  return degrade.quantize(degrade.degrade(hr / 255.0, degrade.isotropic_kernel(sigma), scale))


def gaussian8(hr_dir, scale: int, cache_dir=None) -> Iterator[Record]:
  """Yields the Gaussian8 records of every image in `hr_dir` (sorted by file name), 8 per image.

  Args:
    hr_dir: folder of HR images (not recursive).
    scale: 2, 3 or 4.
    cache_dir: optional folder; LR images are stored there as PNG (`gaussian8_x{s}/`, named by the
      HR file's stem, a hash of its pixels and sigma) and read back on later calls instead of
      being recomputed. Writes are atomic.

  Raises:
    FileNotFoundError: `hr_dir` does not exist (named in the message).
    ValueError: bad scale, or no images in the folder.
  """
  sigmas = degrade.gaussian8_sigmas(scale)
  files = _hr_files(hr_dir)
  cache = pathlib.Path(cache_dir) / f'gaussian8_x{scale}' if cache_dir is not None else None
  for f in files:
    hr, info = imageio.read_image(f, with_info=True)
    hr = modcrop(hr, scale)
    want_shape = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    # The cache key includes the pixels, so an edited HR file never meets a stale LR.
    digest = hashlib.sha1(hr.tobytes()).hexdigest()[:12] if cache is not None else ''
    for sigma in sigmas:
      lr = None
      if cache is not None:
        cached = cache / f'{f.stem}_{digest}_sigma{sigma:.4f}.png'
        if cached.is_file():
          try:
            lr = imageio.read_image(cached)
          except ValueError:
            logging.warning('Gaussian8 cache file %s is unreadable; recomputing it', cached)
          if lr is not None and lr.shape != want_shape:
            lr = None
      if lr is None:
        lr = gaussian8_lr(hr, sigma, scale)
        if cache is not None:
          imageio.write_png(cached, lr)
      yield Record(name=f.stem, sigma=float(sigma), hr=hr, lr=lr, grey=info.grey)


_GT_RE = re.compile(r'^img_(\d+)_gt$')


def div2krk(root, scale: int) -> Iterator[Record]:
  """Yields DIV2KRK records (sorted by image number) from the public layout under `root`.

  HR is cropped to `scale` x the LR size (the shipped LR is `gt[::s, ::s]`-sized); an alpha channel
  of the LR PNGs is dropped.

  Raises:
    FileNotFoundError: `root/gt` or a matching LR/kernel file is missing (named in the message).
    ValueError: scale not 2 or 4; an HR image smaller than scale x its LR.
  """
  if scale not in (2, 4):
    raise ValueError(f'DIV2KRK has scales 2 and 4, got {scale!r}')
  root = pathlib.Path(root)
  gts = [p for p in imageio.list_images(root / 'gt') if _GT_RE.match(p.stem)]
  if not gts:
    raise ValueError(f'no img_N_gt.png files in {str(root / "gt")!r}')
  gts.sort(key=lambda p: int(_GT_RE.match(p.stem).group(1)))
  for gt_path in gts:
    n = _GT_RE.match(gt_path.stem).group(1)
    lr_path = root / f'lr_x{scale}' / f'im_{n}.png'
    k_path = root / f'gt_k_x{scale}' / f'kernel_{n}.mat'
    for p in (lr_path, k_path):
      if not p.is_file():
        raise FileNotFoundError(f'DIV2KRK: {str(p)!r} (for {gt_path.name}) does not exist')
    hr, info = imageio.read_image(gt_path, with_info=True)
    lr = imageio.read_image(lr_path)
    mat = sio.loadmat(str(k_path))
    if 'Kernel' not in mat:
      raise ValueError(f'DIV2KRK: {str(k_path)!r} has no key "Kernel" (keys: {sorted(mat)})')
    kernel = np.asarray(mat['Kernel'], np.float64)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w:
      raise ValueError(f'DIV2KRK: {gt_path.name} {hr.shape[:2]} is smaller than x{scale} its LR '
                       f'{lr.shape[:2]}')
    yield Record(name=gt_path.stem[:-len('_gt')], sigma=None, hr=hr[:h, :w], lr=lr,
                 grey=info.grey, kernel=kernel)


def div2krk_lr(hr: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
  """DIV2KRK's LR of a uint8 HR image: blur with the kernel aligned to the block centre, keep
  `img[::s, ::s]`, round to 8 bits (reproduces the shipped LR images at 50-54 dB)."""
  aligned = degrade.align_kernel(kernel, scale)
  return degrade.quantize(degrade.degrade(hr / 255.0, aligned, scale, 'aniso'))


def make_div2krk(hr_dir, out_dir, seed: int = 0, scales: Sequence[int] = (2, 4),
                 overwrite: bool = False) -> int:
  """Writes a DIV2KRK-style anisotropic test set for every image in `hr_dir`.

  Image i (sorted by file name, numbered from 1) gets, per scale, a fresh kernel drawn from
  numpy's default_rng([seed, i, scale]) (x2: 11x11; x4: 31x31 from a fresh 11x11 k); the stored
  kernels are the centred ones, the LR is made with them aligned (`div2krk_lr`). HR is modcropped
  to a multiple of every scale. `gt/names.txt` maps numbers to the source files.

  Returns:
    The number of images written.

  Raises:
    FileExistsError: `out_dir/gt` already holds images and `overwrite` is False.
  """
  for s in scales:
    if s not in (2, 4):
      raise ValueError(f'DIV2KRK-style sets have scales 2 and 4, got {s!r}')
  files = _hr_files(hr_dir)
  out = pathlib.Path(out_dir)
  if not overwrite and (out / 'gt').is_dir() and imageio.list_images(out / 'gt'):
    raise FileExistsError(f'{str(out / "gt")!r} already holds images; pass overwrite=True')
  m = math.lcm(*scales)
  names = []
  for i, f in enumerate(files, start=1):
    hr = modcrop(imageio.read_image(f), m)
    imageio.write_png(out / 'gt' / f'img_{i}_gt.png', hr)
    for s in scales:
      rng = np.random.default_rng([seed, i, s])
      k = degrade.anisotropic_kernel(*degrade.sample_anisotropic_params(rng))
      if s == 4:
        k = degrade.x4_kernel(k)
      (out / f'gt_k_x{s}').mkdir(parents=True, exist_ok=True)
      sio.savemat(str(out / f'gt_k_x{s}' / f'kernel_{i}.mat'), {'Kernel': k})
      imageio.write_png(out / f'lr_x{s}' / f'im_{i}.png', div2krk_lr(hr, k, s))
    names.append(f'{i}\t{f.name}')
  (out / 'gt' / 'names.txt').write_text('\n'.join(names) + '\n')
  return len(files)


FLAGS = flags.FLAGS
COMMANDS = ('div2krk',)


def _define_flags():
  flags.DEFINE_string('hr_dir', None, 'Folder of HR images.', required=True)
  flags.DEFINE_string('out_dir', None, 'Where the test set goes.', required=True)
  flags.DEFINE_list('scales', ['2', '4'], 'Scales to write.')
  flags.DEFINE_integer('seed', 0, 'div2krk: the seed of the kernels.')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing set.')


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'give one command, one of {COMMANDS}; got {argv[1:]}')
  try:
    scales = [int(s) for s in FLAGS.scales]
    n = make_div2krk(FLAGS.hr_dir, FLAGS.out_dir, seed=FLAGS.seed, scales=scales,
                     overwrite=FLAGS.overwrite)
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    sys.exit(f'error: {e}')
  print(f'wrote {n} images to {FLAGS.out_dir}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
