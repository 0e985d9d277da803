"""MATLAB `imresize(img, scale, 'bicubic')`: one weight definition, numpy and TF appliers.

MATLAB resizes each axis separately with a dense weight matrix: output pixel u (1-based) sits at
input position x = u / scale + (1 - 1 / scale) / 2; when shrinking (scale < 1) the cubic kernel is
stretched by 1 / scale (antialiasing), so it spans 4 / scale input pixels; taps outside the image
are mirrored with the edge pixel repeated ("symmetric"); each row of weights is normalised to sum
1. `resize_matrix` builds that matrix; applying it is a matmul per axis, which numpy (test sets,
metrics) and tensorflow (the training pipeline, `imresize_tf`) both do with the same matrices.
The axis with the smaller scale goes first, as in MATLAB (height first when they are equal).
"""

import functools
import math
from typing import Optional, Sequence, Tuple

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0) +
          (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0)))


def output_size(in_size: int, scale: float) -> int:
  """ceil(in_size * scale), forgiving the float error of scales like 1/3 (255 * (1/3) -> 85)."""
  return int(math.ceil(in_size * scale - 1e-9))


@functools.lru_cache(maxsize=64)
def _resize_matrix(in_size: int, out_size: int, scale: float, antialias: bool) -> np.ndarray:
  kernel_width = 4.0
  if scale < 1 and antialias:
    kernel = lambda x: scale * cubic(scale * x)
    kernel_width = kernel_width / scale
  else:
    kernel = cubic
  u = np.arange(1, out_size + 1, dtype=np.float64)
  x = u / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(x - kernel_width / 2.0)
  taps = int(math.ceil(kernel_width)) + 2
  idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
  weights = kernel(x[:, None] - idx)
  weights = weights / weights.sum(axis=1, keepdims=True)
  # Symmetric padding: index sequence 1..n, n..1 repeated.
  mirror = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
  idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_size)]
  mat = np.zeros((out_size, in_size), dtype=np.float64)
  rows = np.repeat(np.arange(out_size), taps)
  np.add.at(mat, (rows, idx0.ravel()), weights.ravel())
  mat.setflags(write=False)
  return mat


def resize_matrix(in_size: int, scale: float, out_size: Optional[int] = None,
                  antialias: bool = True) -> np.ndarray:
  """The [out_size, in_size] float64 matrix that resizes one axis as MATLAB does.

  Args:
    in_size: input length along the axis (>= 1).
    scale: output / input ratio (e.g. 0.5 to halve, 4 to quadruple), > 0.
    out_size: output length; default ceil(in_size * scale).
    antialias: stretch the kernel when shrinking (MATLAB's default, True).

  Raises:
    ValueError: on a non-positive size or scale.
  """
  if in_size < 1:
    raise ValueError(f'resize_matrix: in_size must be >= 1, got {in_size}')
  if not scale > 0:
    raise ValueError(f'resize_matrix: scale must be > 0, got {scale}')
  if out_size is None:
    out_size = output_size(in_size, scale)
  if out_size < 1:
    raise ValueError(f'resize_matrix: out_size must be >= 1, got {out_size}')
  return _resize_matrix(int(in_size), int(out_size), float(scale), bool(antialias))


def _scales(shape: Sequence[int], scale, out_shape) -> Tuple[Tuple[float, float],
                                                              Tuple[int, int]]:
  h, w = int(shape[0]), int(shape[1])
  if out_shape is not None:
    if scale is not None:
      raise ValueError('imresize: give either scale or out_shape, not both')
    oh, ow = int(out_shape[0]), int(out_shape[1])
    return (oh / h, ow / w), (oh, ow)
  if scale is None:
    raise ValueError('imresize: one of scale or out_shape is required')
  if np.ndim(scale) == 0:
    scale = (float(scale), float(scale))
  sh, sw = float(scale[0]), float(scale[1])
  if not (sh > 0 and sw > 0):
    raise ValueError(f'imresize: scale must be > 0, got {scale}')
  return (sh, sw), (output_size(h, sh), output_size(w, sw))


def _plan(shape, scale, out_shape, antialias):
  if len(shape) < 2:
    raise ValueError(f'imresize: expected an HxW or HxWxC image, got shape {tuple(shape)}')
  (sh, sw), (oh, ow) = _scales(shape, scale, out_shape)
  mh = resize_matrix(int(shape[0]), sh, oh, antialias)
  mw = resize_matrix(int(shape[1]), sw, ow, antialias)
  height_first = sh <= sw
  return mh, mw, height_first


def imresize(img: np.ndarray, scale=None, out_shape=None, antialias: bool = True) -> np.ndarray:
  """MATLAB bicubic `imresize` of a float HxW or HxWxC image (numpy, float64 arithmetic).

  Args:
    img: float array HxW or HxWxC (any range; no clipping or rounding is done).
    scale: a number (both axes) or (scale_h, scale_w); output size ceil(size * scale).
    out_shape: (H, W) instead of `scale` (scales become out / in, as MATLAB computes them).
    antialias: MATLAB's 'Antialiasing' option (default True).

  Returns:
    The resized image, float64 (float32 input gives float32 output).

  Raises:
    ValueError: on a bad shape, scale or integer input (convert uint8 to float first).
  """
  img = np.asarray(img)
  if not np.issubdtype(img.dtype, np.floating):
    raise ValueError(f'imresize: img must be a float array, got {img.dtype} '
                     '(convert uint8 with img / 255.)')
  mh, mw, height_first = _plan(img.shape, scale, out_shape, antialias)
  x = img.astype(np.float64)
  if height_first:
    x = np.tensordot(mh, x, axes=(1, 0))
    x = np.moveaxis(np.tensordot(mw, x, axes=(1, 1)), 0, 1)
  else:
    x = np.moveaxis(np.tensordot(mw, x, axes=(1, 1)), 0, 1)
    x = np.tensordot(mh, x, axes=(1, 0))
  return x.astype(img.dtype if img.dtype == np.float32 else np.float64)


def imresize_tf(img, scale=None, out_shape=None, antialias: bool = True):
  """`imresize` on a tf.Tensor [..., H, W, C] (static H, W) with the same matrices, float32.

  Leading batch dimensions are allowed. Imports tensorflow lazily so that this module stays usable
  without it.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  img = tf.convert_to_tensor(img)
  if img.shape.rank is None or img.shape.rank < 3:
    raise ValueError(f'imresize_tf: expected [..., H, W, C], got shape {img.shape}')
  h, w = img.shape[-3], img.shape[-2]
  if h is None or w is None:
    raise ValueError(f'imresize_tf: H and W must be static, got shape {img.shape}')
  mh, mw, height_first = _plan((h, w), scale, out_shape, antialias)
  mh = tf.constant(mh, tf.float32)
  mw = tf.constant(mw, tf.float32)
  x = tf.cast(img, tf.float32)
  along_h = lambda t: tf.einsum('oh,...hwc->...owc', mh, t)
  along_w = lambda t: tf.einsum('ow,...hwc->...hoc', mw, t)
  return along_w(along_h(x)) if height_first else along_h(along_w(x))
