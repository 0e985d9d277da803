"""Blind-SR test sets: Gaussian8 from any HR folder, DIV2KRK (loader and generator), paired folders.

Gaussian8 (IKC's protocol, docs/design.md section 4.1): every HR image modcropped to a multiple of s,
eight isotropic 21x21 kernels with sigma = linspace(lo, hi, 8) per scale, MATLAB bicubic
downsampling, LR clipped and rounded to 8 bits. No randomness: the set is a pure function of the HR
files. `export_gaussian8` writes it as a paired set.

Kernel widths (DASR's protocol, the paper's Table VI, docs/design.md section 4.6): every HR image
modcropped, blurred with one isotropic 21x21 Gaussian of a given width (reflect padding),
MATLAB-bicubic downsampled, rounded to 8 bits; width 0 is the downsampling alone. The widths
default to the paper's four per scale.

DIV2KRK (KernelGAN, docs/design.md section 4.2) in its public layout: `gt/img_N_gt.png`,
`lr_x{2,4}/im_N.png`, `gt_k_x{2,4}/kernel_N.mat` (MATLAB key `Kernel`). `make_div2krk` writes a
set of the same kind from any HR folder with a fixed seed; `div2krk_style` gives its records
without writing them (training validation).

Paired sets in the authors' LQGT layout: `ROOT/HR/x{s}/` and `ROOT/LRblur/x{s}/` hold files of the
same names; `paired` scores any LR/HR pairs (the authors' LR files, another paper's set, one's own).

Every path may be local or a URL that etils.epath understands (gs://...). numpy only (no
tensorflow, except what epath uses for URLs). The command that writes the sets is `dssr-testsets`
(dssr_jax/commands/testsets.py).
"""

import dataclasses
import hashlib
import io
import logging
import math
import re
import runpy
from typing import Iterator, Optional, Sequence

from etils import epath
import numpy as np
from scipy import io as sio

from dssr_jax import degrade
from dssr_jax import image_files

PAIRED_HR = 'HR'
PAIRED_LR = 'LRblur'


@dataclasses.dataclass(frozen=True)
class Record:
  """One LR/HR test pair.

  Attributes:
    name: the HR image's file stem (e.g. 'baby', 'img_43'); Gaussian8 has 8 records per name.
    sigma: the Gaussian kernel width (Gaussian8, kernel widths), None for DIV2KRK and paired sets.
    hr: uint8 HxWx3, modcropped so that its size is `scale` times the LR size.
    lr: uint8 (H/s)x(W/s)x3.
    grey: the HR file was greyscale (metrics may then use `grey_as_y`, docs/design.md section 4.4).
    kernel: the blur kernel (float64), for DIV2KRK; None for Gaussian8 (it is `sigma`'s).
    lr_stem: the LR file's stem: `im_N` (DIV2KRK), the LR file's (paired), `<name>_sig<sigma>`
      (Gaussian8, the name `export_gaussian8` writes it under), `<name>_w<width>` (kernel widths).
      Outputs are saved under it.
  """
  name: str
  sigma: Optional[float]
  hr: np.ndarray
  lr: np.ndarray
  grey: bool
  kernel: Optional[np.ndarray] = None
  lr_stem: str = ''


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
  """Drops the last rows/columns so that height and width are multiples of `scale`."""
  h, w = img.shape[:2]
  if h < scale or w < scale:
    raise ValueError(f'modcrop: image {h}x{w} is smaller than the scale {scale}')
  return img[:h - h % scale, :w - w % scale]


def _hr_files(hr_dir) -> list:
  files = image_files.list_images(hr_dir)
  if not files:
    raise ValueError(f'no image files (.png/.jpg/...) in {str(hr_dir)!r}')
  return files


def _stored(hr: np.ndarray, grey: bool) -> np.ndarray:
  """What an exported HR file holds: one channel for a greyscale original, so that it is read
  back as greyscale (and scored the same under `grey_as_y`)."""
  return hr[:, :, 0] if grey else hr


# ----------------------------------------------------------------------------------------------
# Gaussian8.


def gaussian8_lr(hr: np.ndarray, sigma: float, scale: int) -> np.ndarray:
  """The Gaussian8 LR image (uint8) of a modcropped uint8 HR image for one sigma."""
  return image_files.to_uint8(degrade.degrade(hr / 255.0, degrade.isotropic_kernel(sigma), scale))


def gaussian8_stem(name: str, sigma: float) -> str:
  """The file stem of one Gaussian8 LR image: the HR stem and the kernel width, e.g. baby_sig0.80
  (two decimals tell the eight sigmas of every scale apart)."""
  return f'{name}_sig{sigma:.2f}'


def gaussian8_stems(hr_dir, scale: int) -> list[str]:
  """The `lr_stem`s of `gaussian8(hr_dir, scale)`, in its order, without degrading anything."""
  sigmas = degrade.gaussian8_sigmas(scale)
  return [gaussian8_stem(f.stem, s) for f in _hr_files(hr_dir) for s in sigmas]


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
  cache = epath.Path(cache_dir) / f'gaussian8_x{scale}' if cache_dir is not None else None
  for f in files:
    hr, info = image_files.read_image(f, with_info=True)
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
            lr = image_files.read_image(cached)
          except ValueError:
            logging.warning('Gaussian8 cache file %s is unreadable; recomputing it', cached)
          if lr is not None and lr.shape != want_shape:
            lr = None
      if lr is None:
        lr = gaussian8_lr(hr, sigma, scale)
        if cache is not None:
          image_files.write_png(cached, lr)
      yield Record(name=f.stem, sigma=float(sigma), hr=hr, lr=lr, grey=info.grey,
                   lr_stem=gaussian8_stem(f.stem, sigma))


def export_gaussian8(hr_dir, out_dir, scales: Sequence[int] = (2, 3, 4), name: str | None = None,
                     overwrite: bool = False) -> int:
  """Writes Gaussian8 as a paired set: `out_dir/name/LRblur/x{s}/<stem>_sig<sigma>.png` and the
  modcropped HR under the same name in `out_dir/name/HR/x{s}/`, for each image and sigma.

  The LR files are the records `gaussian8(hr_dir, s)` yields, so `paired(out_dir/name, s)` gives
  the same records (and eval.py --setting=paired the same scores). Every target is checked
  before anything is computed or written.

  Args:
    hr_dir: folder of HR images.
    out_dir: the data folder (eval.py's --data_dir).
    scales: a subset of 2, 3, 4.
    name: the dataset's folder name (default: `hr_dir`'s own name, e.g. Set5).
    overwrite: replace existing files.

  Returns:
    The number of LR files written.

  Raises:
    FileExistsError: naming the first target that exists, unless `overwrite`.
    ValueError: a bad scale, no HR images, two HR files with one stem.
  """
  name = name or epath.Path(hr_dir).name
  if not name or '/' in name:
    raise ValueError(f'the dataset name must be one folder name, got {name!r}')
  root = epath.Path(out_dir) / name
  targets = []
  for s in scales:
    stems = gaussian8_stems(hr_dir, s)
    for sub in (PAIRED_LR, PAIRED_HR):
      targets += [root / sub / f'x{s}' / f'{stem}.png' for stem in stems]
  image_files.check_free(targets, overwrite)
  n = 0
  for s in scales:
    hr_png = (None, b'')
    for rec in gaussian8(hr_dir, s):
      if hr_png[0] != rec.name:  # one encoding per image, written under each of its 8 names
        hr_png = (rec.name, image_files.png_bytes(_stored(rec.hr, rec.grey)))
      image_files.write_png(root / PAIRED_LR / f'x{s}' / f'{rec.lr_stem}.png', rec.lr)
      image_files.write_bytes(root / PAIRED_HR / f'x{s}' / f'{rec.lr_stem}.png', hr_png[1])
      n += 1
  return n


# ----------------------------------------------------------------------------------------------
# Fixed kernel widths (DASR's test protocol).

# The widths of the paper's Table VI, per scale (DASR's).
KERNEL_WIDTHS = {2: (0.0, 0.6, 1.2, 1.8), 4: (0.0, 1.2, 2.4, 3.6)}


def kernel_widths(scale: int, widths: Sequence[float] | None = None) -> tuple[float, ...]:
  """`widths`, or the paper's four at `scale`; every width checked (>= 0)."""
  if widths is None:
    if scale not in KERNEL_WIDTHS:
      raise ValueError(f'the paper has kernel widths at x2 and x4 only; pass --kernel_widths for '
                       f'x{scale}')
    return KERNEL_WIDTHS[scale]
  widths = tuple(float(w) for w in widths)
  if not widths or any(not math.isfinite(w) or w < 0 for w in widths):
    raise ValueError(f'kernel widths must be finite and >= 0, got {list(widths)}')
  return widths


def kernel_width_lr(hr: np.ndarray, width: float, scale: int) -> np.ndarray:
  """DASR's test LR (uint8) of a modcropped uint8 HR image: the Gaussian8 degradation at sigma =
  `width`; width 0 is MATLAB-bicubic downsampling alone (DASR skips the blur)."""
  if width == 0:
    return image_files.to_uint8(degrade.bicubic_down(hr / 255.0, scale))
  return gaussian8_lr(hr, width, scale)


def kernel_width_stem(name: str, width: float) -> str:
  """The stem of one kernel-width LR image: the HR stem and the width, e.g. baby_w1.2, baby_w0."""
  return f'{name}_w{width:g}'


def kernel_width(hr_dir, scale: int, width: float) -> Iterator[Record]:
  """Yields the records of every image in `hr_dir` (sorted by file name) at one kernel width."""
  for f in _hr_files(hr_dir):
    hr, info = image_files.read_image(f, with_info=True)
    hr = modcrop(hr, scale)
    yield Record(name=f.stem, sigma=float(width), hr=hr, lr=kernel_width_lr(hr, width, scale),
                 grey=info.grey, lr_stem=kernel_width_stem(f.stem, width))


# ----------------------------------------------------------------------------------------------
# DIV2KRK.

_GT_RE = re.compile(r'^img_(\d+)_gt$')


def _div2krk_gts(root) -> list:
  root = epath.Path(root)
  gts = [p for p in image_files.list_images(root / 'gt') if _GT_RE.match(p.stem)]
  if not gts:
    raise ValueError(f'no img_N_gt.png files in {str(root / "gt")!r}')
  return sorted(gts, key=lambda p: int(_GT_RE.match(p.stem).group(1)))


def div2krk_stems(root) -> list[str]:
  """The `lr_stem`s (im_N) of `div2krk(root, s)`, in its order."""
  return [f'im_{_GT_RE.match(p.stem).group(1)}' for p in _div2krk_gts(root)]


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
  root = epath.Path(root)
  for gt_path in _div2krk_gts(root):
    n = _GT_RE.match(gt_path.stem).group(1)
    lr_path = root / f'lr_x{scale}' / f'im_{n}.png'
    k_path = root / f'gt_k_x{scale}' / f'kernel_{n}.mat'
    for p in (lr_path, k_path):
      if not p.is_file():
        raise FileNotFoundError(f'DIV2KRK: {str(p)!r} (for {gt_path.name}) does not exist')
    hr, info = image_files.read_image(gt_path, with_info=True)
    lr = image_files.read_image(lr_path)
    mat = sio.loadmat(io.BytesIO(k_path.read_bytes()))
    if 'Kernel' not in mat:
      raise ValueError(f'DIV2KRK: {str(k_path)!r} has no key "Kernel" (keys: {sorted(mat)})')
    kernel = np.asarray(mat['Kernel'], np.float64)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w:
      raise ValueError(f'DIV2KRK: {gt_path.name} {hr.shape[:2]} is smaller than x{scale} its LR '
                       f'{lr.shape[:2]}')
    yield Record(name=gt_path.stem[:-len('_gt')], sigma=None, hr=hr[:h, :w], lr=lr,
                 grey=info.grey, kernel=kernel, lr_stem=f'im_{n}')


def div2krk_lr(hr: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
  """DIV2KRK's LR of a uint8 HR image: blur with the kernel aligned to the block centre, keep
  `img[::s, ::s]`, round to 8 bits (reproduces the shipped LR images at 50-54 dB)."""
  aligned = degrade.align_kernel(kernel, scale)
  return image_files.to_uint8(degrade.degrade(hr / 255.0, aligned, scale, 'aniso'))


def div2krk_kernel(seed: int, index: int, scale: int) -> np.ndarray:
  """The centred kernel of image `index` (1-based) at `scale` in a DIV2KRK-style set: drawn from
  numpy's default_rng([seed, index, scale]) (x2: 11x11; x4: 31x31 from a fresh 11x11 k)."""
  rng = np.random.default_rng([seed, index, scale])
  k = degrade.anisotropic_kernel(*degrade.sample_anisotropic_params(rng))
  return degrade.x4_kernel(k) if scale == 4 else k


def _check_div2krk_scales(scales: Sequence[int]) -> None:
  for s in scales:
    if s not in (2, 4):
      raise ValueError(f'DIV2KRK-style sets have scales 2 and 4, got {s!r}')


def div2krk_style(hr_dir, scale: int, seed: int = 0, scales: Sequence[int] = (2, 4)
                  ) -> Iterator[Record]:
  """The records that `make_div2krk(hr_dir, out, seed, scales)` then `div2krk(out, scale)` give,
  computed in memory, image by image (nothing is written; later images are never read if the
  caller stops early).
  """
  _check_div2krk_scales(scales)
  if scale not in scales:
    raise ValueError(f'scale {scale} is not one of the set\'s scales {tuple(scales)}')
  m = math.lcm(*scales)
  for i, f in enumerate(_hr_files(hr_dir), start=1):
    hr, info = image_files.read_image(f, with_info=True)
    hr = modcrop(hr, m)
    k = div2krk_kernel(seed, i, scale)
    yield Record(name=f'img_{i}', sigma=None, hr=hr, lr=div2krk_lr(hr, k, scale), grey=info.grey,
                 kernel=k, lr_stem=f'im_{i}')


def make_div2krk(hr_dir, out_dir, seed: int = 0, scales: Sequence[int] = (2, 4),
                 overwrite: bool = False) -> int:
  """Writes a DIV2KRK-style anisotropic test set for every image in `hr_dir`.

  Image i (sorted by file name, numbered from 1) gets, per scale, a fresh kernel
  (`div2krk_kernel(seed, i, scale)`); the stored kernels are the centred ones, the LR is made with
  them aligned (`div2krk_lr`). HR is modcropped to a multiple of every scale (a greyscale file
  stays greyscale). `gt/names.txt` maps numbers to the source files.

  Returns:
    The number of images written.

  Raises:
    FileExistsError: `out_dir/gt` already holds images and `overwrite` is False.
  """
  _check_div2krk_scales(scales)
  files = _hr_files(hr_dir)
  out = epath.Path(out_dir)
  if not overwrite and (out / 'gt').is_dir() and image_files.list_images(out / 'gt'):
    raise FileExistsError(f'{str(out / "gt")!r} already holds images; pass --overwrite to '
                          'replace them')
  m = math.lcm(*scales)
  names = []
  for i, f in enumerate(files, start=1):
    hr, info = image_files.read_image(f, with_info=True)
    hr = modcrop(hr, m)
    image_files.write_png(out / 'gt' / f'img_{i}_gt.png', _stored(hr, info.grey))
    for s in scales:
      k = div2krk_kernel(seed, i, s)
      buf = io.BytesIO()
      sio.savemat(buf, {'Kernel': k})
      image_files.write_bytes(out / f'gt_k_x{s}' / f'kernel_{i}.mat', buf.getvalue())
      image_files.write_png(out / f'lr_x{s}' / f'im_{i}.png', div2krk_lr(hr, k, s))
    names.append(f'{i}\t{f.name}')
  image_files.write_bytes(out / 'gt' / 'names.txt', ('\n'.join(names) + '\n').encode())
  return len(files)


# ----------------------------------------------------------------------------------------------
# Paired folders (LQGT layout).


def paired_files(root, scale: int) -> list[tuple]:
  """(HR, LR, LR (height, width)) of `root/HR/x{s}` and `root/LRblur/x{s}`, paired by sorted name.

  Everything a scorer needs is checked here, before any image is decoded (sizes from the file
  headers): the same number of files, the same stems in sorted order, no stem twice, and every HR
  image s x its LR's size, or up to s - 1 rows/columns more (modcrop removes them).

  Raises:
    FileNotFoundError: a folder is missing (named).
    ValueError: naming the files that do not pair or fit.
  """
  root = epath.Path(root)
  hr_dir, lr_dir = root / PAIRED_HR / f'x{scale}', root / PAIRED_LR / f'x{scale}'
  hrs, lrs = image_files.list_images(hr_dir), image_files.list_images(lr_dir)
  if not lrs:
    raise ValueError(f'no image files in {str(lr_dir)!r}')
  if len(hrs) != len(lrs):
    hr_stems, lr_stems = {p.stem for p in hrs}, {p.stem for p in lrs}
    alone = ([p.name for p in hrs if p.stem not in lr_stems][:3] +
             [p.name for p in lrs if p.stem not in hr_stems][:3])
    raise ValueError(f'{str(hr_dir)!r} holds {len(hrs)} images but {str(lr_dir)!r} holds '
                     f'{len(lrs)}; without a partner: {", ".join(alone) or "(same names)"}')
  stems = set()
  for h, l in zip(hrs, lrs):
    if h.stem != l.stem:
      raise ValueError(f'unpaired names: {str(h)!r} and {str(l)!r} (paired by sorted name, an HR '
                       'file and its LR file must have the same name)')
    if l.stem in stems:
      raise ValueError(f'two files named {l.stem!r} (different extensions) in {str(lr_dir)!r}')
    stems.add(l.stem)
  out = []
  for h, l in zip(hrs, lrs):
    (hh, hw), (lh, lw) = image_files.image_size(h), image_files.image_size(l)
    if not (lh * scale <= hh < (lh + 1) * scale and lw * scale <= hw < (lw + 1) * scale):
      raise ValueError(f'{str(h)!r} ({hh}x{hw}) does not fit x{scale} its LR {str(l)!r} '
                       f'({lh}x{lw}): HR must be {lh * scale}x{lw * scale} (modcrop drops up '
                       f'to {scale - 1} more rows and columns)')
    out.append((h, l, (lh, lw)))
  return out


def paired(root, scale: int, files: Sequence[tuple] | None = None) -> Iterator[Record]:
  """Yields the records of a paired set (see `paired_files`, which checks it all first): HR
  modcropped to `scale` x the LR size, named by the LR file's stem. `files`: `paired_files`'s
  listing when the caller has it already (no header is then read twice)."""
  for h, l, _ in paired_files(root, scale) if files is None else files:
    hr, info = image_files.read_image(h, with_info=True)
    lr = image_files.read_image(l)
    hr = modcrop(hr, scale)
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):  # a file changed meanwhile
      raise ValueError(f'{str(h)!r} does not fit x{scale} its LR {str(l)!r}')
    yield Record(name=l.stem, sigma=None, hr=hr, lr=lr, grey=info.grey, lr_stem=l.stem)


if __name__ == '__main__':  # `python -m dssr_jax.testsets` is the command dssr_jax/commands/testsets.py
  runpy.run_module('dssr_jax.commands.testsets', run_name='__main__', alter_sys=True)
