"""Blur kernels, blur, downsampling and noise: the degradations of docs/design.md section 3.

The numpy functions (float64) define each step and make the test sets; the tensorflow ones
(`*_tf`, float32) are what tf.data runs for training: the same kernels, the sampling of them, and
blur + downsampling fused (`iso_degrade_tf`, `aniso_degrade_tf`). tests/test_degrade.py holds each
to 1e-5 of its numpy definition. Images are HxWxC floats in [0, 1].

Setting 'iso' (Gaussian8, paper Tables IV-VI): 21x21 isotropic Gaussian, MATLAB bicubic down.
Setting 'aniso' (DIV2KRK, Table VII): 11x11 anisotropic Gaussian with multiplicative noise (x4:
31x31, k convolved with k dilated by 2), then keep the upper-left pixel of every s x s block.
Kernels are correlated with the image after reflect padding (mirror without repeating the edge).
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from scipy import signal

from dssr_jax import matlab_bicubic

ISO_SIZE = 21
ANISO_SIZE = 11
# Training sigma range of the isotropic kernel per scale (one sigma per patch, uniform).
ISO_TRAIN_SIGMA = {2: (0.2, 2.0), 3: (0.2, 3.0), 4: (0.2, 4.0)}
# Gaussian8 test sigmas: linspace(lo, hi, 8) per scale (IKC's protocol).
GAUSSIAN8_RANGE = {2: (0.80, 1.60), 3: (1.35, 2.40), 4: (1.80, 3.20)}
# Anisotropic (KernelGAN / DIV2KRK) kernel: per-axis sigma range and multiplicative noise level.
ANISO_SIGMA = (0.6, 5.0)
ANISO_NOISE = 0.25
DEGRADATIONS = ('iso', 'aniso')


def _check_scale(scale: int, fn: str) -> int:
  if int(scale) != scale or scale < 1:
    raise ValueError(f'{fn}: scale must be a positive integer, got {scale!r}')
  return int(scale)


def gaussian8_sigmas(scale: int) -> np.ndarray:
  """The 8 Gaussian8 test sigmas for a scale (2, 3 or 4)."""
  if scale not in GAUSSIAN8_RANGE:
    raise ValueError(f'Gaussian8 is defined for scale 2, 3 or 4, got {scale!r}')
  lo, hi = GAUSSIAN8_RANGE[scale]
  return np.linspace(lo, hi, 8)


def train_sigma_range(scale: int, sigma_range: Optional[Sequence[float]] = None
                      ) -> Tuple[float, float]:
  """The isotropic training sigma range: `sigma_range` if given, else the scale's default."""
  if sigma_range is None:
    if scale not in ISO_TRAIN_SIGMA:
      raise ValueError(f'no default sigma range for scale {scale!r}; set data.sigma_range')
    return ISO_TRAIN_SIGMA[scale]
  lo, hi = (float(v) for v in sigma_range)
  if not 0 < lo <= hi:
    raise ValueError(f'sigma_range must satisfy 0 < lo <= hi, got {tuple(sigma_range)}')
  return lo, hi


# ----------------------------------------------------------------------------- kernels (numpy)


def _grid(size: int):
  if size < 1 or size % 2 != 1:
    raise ValueError(f'kernel size must be odd and positive, got {size}')
  r = np.arange(size, dtype=np.float64) - size // 2
  return np.meshgrid(r, r, indexing='ij')  # (rows = y, cols = x)


def isotropic_kernel(sigma: float, size: int = ISO_SIZE) -> np.ndarray:
  """exp(-(x^2 + y^2) / (2 sigma^2)) on the grid -size//2..size//2, normalised to sum 1."""
  if not sigma > 0:
    raise ValueError(f'isotropic_kernel: sigma must be > 0, got {sigma}')
  y, x = _grid(size)
  k = np.exp(-(x ** 2 + y ** 2) / (2.0 * float(sigma) ** 2))
  return k / k.sum()


def anisotropic_kernel(sigma_x: float, sigma_y: float, theta: float,
                       noise: Optional[np.ndarray] = None, size: int = ANISO_SIZE,
                       offset: float = 0.0) -> np.ndarray:
  """Rotated Gaussian exp(-v^T S^-1 v / 2), S = R diag(sx^2, sy^2) R^T, times (1 + noise), sum 1.

  Args:
    sigma_x, sigma_y: standard deviations along the kernel's own axes (before rotation), > 0.
    theta: rotation angle in radians (counter-clockwise from the x = column axis).
    noise: optional [size, size] array; the kernel is multiplied by (1 + noise) pixel-wise.
    size: odd kernel size.
    offset: the Gaussian's centre sits `offset` pixels below and right of the grid centre. 0.5
      makes `img[::s, ::s]` after the blur sample the centre of each s x s block at x2, and (via
      `x4_kernel`, which triples the offset) at x4, the alignment of DIV2KRK (see `align_kernel`).
  """
  if not (sigma_x > 0 and sigma_y > 0):
    raise ValueError(f'anisotropic_kernel: sigmas must be > 0, got {sigma_x}, {sigma_y}')
  y, x = _grid(size)
  y, x = y - offset, x - offset
  c, s = np.cos(theta), np.sin(theta)
  # Coordinates in the kernel's rotated frame.
  u = c * x + s * y
  v = -s * x + c * y
  k = np.exp(-0.5 * (u ** 2 / sigma_x ** 2 + v ** 2 / sigma_y ** 2))
  if noise is not None:
    noise = np.asarray(noise, np.float64)
    if noise.shape != (size, size):
      raise ValueError(f'anisotropic_kernel: noise must be {size}x{size}, got {noise.shape}')
    k = k * (1.0 + noise)
  return k / k.sum()


def align_kernel(k: np.ndarray, scale: int) -> np.ndarray:
  """Moves k's centre of mass to its centre + (scale - 1) / 2 (cubic-spline sub-pixel shift).

  Blurring with the aligned kernel and keeping `img[::s, ::s]` puts each LR pixel at the centre of
  its s x s HR block, where bicubic upsampling expects it. KernelGAN made DIV2KRK this way: its
  shipped LR images are reproduced from the shipped (unshifted) kernels at 50-54 dB this way, and
  at only 38-46 dB without the shift (tests/test_testsets.py).
  """
  k = _check_kernel(k)
  com = np.array(ndimage.center_of_mass(k))
  want = np.array(k.shape) // 2 + 0.5 * (scale - 1)
  return ndimage.shift(k, want - com)


def dilate2(k: np.ndarray) -> np.ndarray:
  """Spreads k onto every second pixel: [n, n] -> [2n - 1, 2n - 1]."""
  out = np.zeros((2 * k.shape[0] - 1, 2 * k.shape[1] - 1), k.dtype)
  out[::2, ::2] = k
  return out


def x4_kernel(k: np.ndarray) -> np.ndarray:
  """KernelGAN's x4 kernel from an x2-style k: full 2-D convolution k (*) dilate2(k) (11 -> 31)."""
  k4 = signal.convolve2d(k, dilate2(k), mode='full')
  return k4 / k4.sum()


def sample_anisotropic_params(rng: np.random.Generator, size: int = ANISO_SIZE):
  """(sigma_x, sigma_y, theta, noise) drawn as docs/design.md section 3, setting 2 says."""
  sx, sy = rng.uniform(*ANISO_SIGMA, size=2)
  theta = rng.uniform(-np.pi, np.pi)
  noise = rng.uniform(0.0, ANISO_NOISE, size=(size, size))
  return float(sx), float(sy), float(theta), noise


# ----------------------------------------------------------------------------- images (numpy)


def _check_image(img, pad: int, fn: str) -> np.ndarray:
  img = np.asarray(img)
  if img.ndim != 3:
    raise ValueError(f'{fn}: expected an HxWxC image, got shape {img.shape}')
  if not np.issubdtype(img.dtype, np.floating):
    raise ValueError(f'{fn}: image must be float in [0, 1], got {img.dtype}')
  if min(img.shape[:2]) <= pad:
    raise ValueError(f'{fn}: image {img.shape[:2]} too small for reflect padding by {pad} '
                     f'(needs more than {pad} pixels per side)')
  return img


def _check_kernel(kernel) -> np.ndarray:
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or kernel.shape[0] % 2 != 1 or kernel.shape[1] % 2 != 1:
    raise ValueError(f'kernel must be 2-D with odd sizes, got shape {kernel.shape}')
  return kernel


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """2-D correlation of every channel with `kernel` after reflect padding (float64)."""
  kernel = _check_kernel(kernel)
  img = _check_image(img, max(kernel.shape) // 2, 'blur')
  x = img.astype(np.float64)
  # scipy's 'mirror' is numpy's 'reflect': the edge pixel is not repeated.
  u, sv, vt = np.linalg.svd(kernel)
  if sv[1:].max(initial=0.0) <= 1e-12 * sv[0]:
    # A separable kernel (every isotropic Gaussian): two 1-D passes, 10x faster, same sums.
    col, row = u[:, 0] * sv[0], vt[0]
    x = ndimage.correlate1d(x, col, axis=0, mode='mirror')
    return ndimage.correlate1d(x, row, axis=1, mode='mirror')
  return np.stack([ndimage.correlate(x[:, :, c], kernel, mode='mirror')
                   for c in range(x.shape[2])], axis=2)


def subsample(img: np.ndarray, scale: int) -> np.ndarray:
  """Keeps the upper-left pixel of every scale x scale block: img[::s, ::s]."""
  scale = _check_scale(scale, 'subsample')
  return np.asarray(img)[::scale, ::scale]


def bicubic_down(img: np.ndarray, scale: int) -> np.ndarray:
  """MATLAB imresize(img, 1/scale, 'bicubic')."""
  scale = _check_scale(scale, 'bicubic_down')
  return matlab_bicubic.imresize(np.asarray(img, np.float64), 1.0 / scale)


def downsample(img: np.ndarray, scale: int, degradation: str) -> np.ndarray:
  if degradation == 'iso':
    return bicubic_down(img, scale)
  if degradation == 'aniso':
    return subsample(img, scale)
  raise ValueError(f'degradation must be one of {DEGRADATIONS}, got {degradation!r}')


def degrade(hr: np.ndarray, kernel: np.ndarray, scale: int, degradation: str = 'iso',
            noise_std: float = 0.0, rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Blur, downsample, optional Gaussian noise (std on the [0, 1] scale). Float, not quantised."""
  lr = downsample(blur(hr, kernel), scale, degradation)
  if noise_std:
    if rng is None:
      raise ValueError('degrade: noise_std > 0 needs an rng')
    lr = lr + rng.normal(0.0, noise_std, lr.shape)
  return lr


# ----------------------------------------------------------------------------- tensorflow


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _grid_tf(size: int):
  tf = _tf()
  r = tf.range(size, dtype=tf.float32) - float(size // 2)
  return tf.meshgrid(r, r, indexing='ij')


def isotropic_kernel_tf(sigma, size: int = ISO_SIZE):
  tf = _tf()
  y, x = _grid_tf(size)
  sigma = tf.cast(sigma, tf.float32)
  k = tf.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
  return k / tf.reduce_sum(k)


def anisotropic_kernel_tf(sigma_x, sigma_y, theta, noise=None, size: int = ANISO_SIZE,
                          offset: float = 0.0):
  tf = _tf()
  y, x = _grid_tf(size)
  y, x = y - offset, x - offset
  sx, sy, theta = (tf.cast(v, tf.float32) for v in (sigma_x, sigma_y, theta))
  c, s = tf.cos(theta), tf.sin(theta)
  u = c * x + s * y
  v = -s * x + c * y
  k = tf.exp(-0.5 * (u * u / (sx * sx) + v * v / (sy * sy)))
  if noise is not None:
    k = k * (1.0 + tf.cast(noise, tf.float32))
  return k / tf.reduce_sum(k)


def x4_kernel_tf(k):
  """k (*) dilate2(k), full convolution, as a correlation of the padded dilated k with flipped k."""
  tf = _tf()
  k = tf.cast(k, tf.float32)
  n = k.shape[0]
  d = tf.reshape(tf.stack([k, tf.zeros_like(k)], axis=-1), [n, 2 * n])[:, :2 * n - 1]
  d = tf.reshape(tf.stack([d, tf.zeros_like(d)], axis=1), [2 * n, 2 * n - 1])[:2 * n - 1]
  d = tf.pad(d, [[n - 1, n - 1], [n - 1, n - 1]])
  k4 = tf.nn.conv2d(d[None, :, :, None], k[::-1, ::-1, None, None], 1, 'VALID')[0, :, :, 0]
  return k4 / tf.reduce_sum(k4)


def sample_sigma_tf(seed, scale: int, sigma_range: Optional[Sequence[float]] = None):
  """The isotropic kernel width for a stateless seed, uniform in the training range."""
  tf = _tf()
  lo, hi = train_sigma_range(scale, sigma_range)
  return tf.random.stateless_uniform([], seed, lo, hi, dtype=tf.float32)


def sample_kernel_tf(seed, scale: int, degradation: str = 'iso',
                     sigma_range: Optional[Sequence[float]] = None, aniso_offset: float = 0.5):
  """A random training kernel for `scale` from a stateless seed (shape [2] int): an isotropic
  Gaussian of sigma U(`train_sigma_range`), or the anisotropic law (`sample_anisotropic_params`,
  centred `aniso_offset` pixels off the grid centre; x4: `x4_kernel`)."""
  tf = _tf()
  if degradation == 'iso':
    return isotropic_kernel_tf(sample_sigma_tf(seed, scale, sigma_range))
  if degradation == 'aniso':
    if scale not in (2, 4):
      raise ValueError(f"degradation 'aniso' is defined for scale 2 or 4, got {scale!r}")
    s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    sxy = tf.random.stateless_uniform([2], s1, *ANISO_SIGMA, dtype=tf.float32)
    theta = tf.random.stateless_uniform([], s2, -np.pi, np.pi, dtype=tf.float32)
    noise = tf.random.stateless_uniform([ANISO_SIZE, ANISO_SIZE], s3, 0.0, ANISO_NOISE,
                                        dtype=tf.float32)
    k = anisotropic_kernel_tf(sxy[0], sxy[1], theta, noise, offset=aniso_offset)
    return x4_kernel_tf(k) if scale == 4 else k
  raise ValueError(f'degradation must be one of {DEGRADATIONS}, got {degradation!r}')


def quantize_tf(img):
  """round(clip(img, 0, 1) * 255) / 255 (float32), what saving an 8-bit image does."""
  tf = _tf()
  return tf.round(tf.clip_by_value(img, 0.0, 1.0) * 255.0) / 255.0


# Fused training-path degradations: the same sums as blur + downsample, with less work.


def _reflect_taps(n: int, size: int) -> np.ndarray:
  """[n * size, 2] (row, column) pairs: tap t of row i reads column reflect(i + t - size // 2)."""
  r = size // 2
  idx = np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :]
  idx = np.where(idx < 0, -idx, idx)
  idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
  return np.stack([np.repeat(np.arange(n), size), idx.ravel()], axis=1)


def iso_degrade_tf(hr, sigma, scale: int, size: int = ISO_SIZE):
  """MATLAB-bicubic down of the isotropic blur of hr [H, W, C], as two matmuls (float32).

  The Gaussian is separable (its 2-D normalisation factorises), so blur + imresize along each axis
  is one [H/s, H] matrix: imresize's matrix times the reflect-padded 1-D blur matrix. Equal to
  `degrade(hr, isotropic_kernel(sigma), scale, 'iso')` up to float32 rounding, at about a tenth
  of the work of blurring every pixel first.
  """
  tf = _tf()
  scale = _check_scale(scale, 'iso_degrade_tf')
  hr = tf.cast(tf.convert_to_tensor(hr), tf.float32)
  h, w = hr.shape[0], hr.shape[1]
  if h is None or w is None:
    raise ValueError(f'iso_degrade_tf: H and W must be static, got shape {hr.shape}')
  r = tf.range(size, dtype=tf.float32) - float(size // 2)
  sigma = tf.cast(sigma, tf.float32)
  g = tf.exp(-r * r / (2.0 * sigma * sigma))
  g = g / tf.reduce_sum(g)

  def axis_matrix(n):
    if n <= size // 2:
      raise ValueError(f'iso_degrade_tf: size {n} too small for reflect padding by {size // 2}')
    # scatter_nd sums the taps that reflection sends to the same column.
    blur_m = tf.scatter_nd(tf.constant(_reflect_taps(n, size)), tf.tile(g, [n]), [n, n])
    down = tf.constant(matlab_bicubic.resize_matrix(n, 1.0 / scale), tf.float32)
    return down @ blur_m

  mh = axis_matrix(h)
  mw = mh if w == h else axis_matrix(w)
  return tf.einsum('ow,hwc->hoc', mw, tf.einsum('oh,hwc->owc', mh, hr))


def aniso_degrade_tf(hr, kernel, scale: int):
  """`blur` then [::s, ::s] (`degrade(hr, kernel, scale, 'aniso')`), computing only the kept pixels.

  The s x s phases of the padded image become channels (space_to_depth) and the kernel is cut the
  same way, so one dense stride-1 convolution computes the strided correlation: the same sums,
  many times faster on CPU than a strided depthwise convolution with a 31x31 kernel.
  """
  tf = _tf()
  scale = _check_scale(scale, 'aniso_degrade_tf')
  hr = tf.cast(tf.convert_to_tensor(hr), tf.float32)
  kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
  kh, kw = kernel.shape
  h, w = hr.shape[0], hr.shape[1]
  if h is None or w is None:
    raise ValueError(f'aniso_degrade_tf: H and W must be static, got shape {hr.shape}')
  if min(h, w) <= max(kh, kw) // 2:
    raise ValueError(f'aniso_degrade_tf: image {h}x{w} too small for reflect padding by '
                     f'{max(kh, kw) // 2}')
  s = scale
  m, n = -(-h // s), -(-w // s)  # output size, as img[::s, ::s]
  bh, bw = -(-kh // s), -(-kw // s)  # kernel size in s x s blocks
  # Padded rows and columns read by the outputs (the last kernel taps of a block are zeros).
  ph, pw = s * (m + bh - 1), s * (n + bw - 1)
  x = tf.pad(hr, [[kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]], mode='REFLECT')[:ph, :pw]
  x = tf.pad(x, [[0, ph - min(ph, h + kh - 1)], [0, pw - min(pw, w + kw - 1)], [0, 0]])
  c = x.shape[2]
  # [C, ph/s, pw/s, s s], phase (a, b) at a s + b; tf.nn.space_to_depth is 3x slower here.
  x = tf.reshape(tf.transpose(tf.reshape(x, [ph // s, s, pw // s, s, c]), [4, 0, 2, 1, 3]),
                 [c, ph // s, pw // s, s * s])
  k = tf.pad(kernel, [[0, s * bh - kh], [0, s * bw - kw]])
  k = tf.reshape(tf.transpose(tf.reshape(k, [bh, s, bw, s]), [0, 2, 1, 3]), [bh, bw, s * s, 1])
  y = tf.nn.conv2d(x, k, 1, 'VALID')  # [C, m, n, 1]
  return tf.transpose(y[:, :, :, 0], [1, 2, 0])
