"""PyTorch's bicubic resampling (`F.interpolate(mode='bicubic')`) as static per-axis matrices.

Sizes are static under jit, so each axis is a fixed `out x in` matrix built once in numpy and a
resize is two einsums. The source coordinates are computed in float32 in PyTorch's order: float64
coordinates move the result by up to ~3e-5, enough to miss the authors' outputs (docs/design.md section 1).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

CUBIC_A = -0.75  # PyTorch's cubic convolution constant.


def _cubic_taps(t: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
  """The 4 tap weights for fractional offsets `t` (float32), as PyTorch evaluates them."""
  a = np.float32(a)
  one = np.float32(1)
  two = np.float32(2)

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + one

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + one), near(t), near(one - t), far(two - t)], axis=-1)


@functools.lru_cache(maxsize=None)
def bicubic_matrix(n_in: int, n_out: int, align_corners: bool, scale: int | None = None
                   ) -> np.ndarray:
  """float32 [n_out, n_in] matrix of PyTorch's 1-D bicubic resampling.

  Args:
    n_in: input length.
    n_out: output length.
    align_corners: PyTorch's flag. True: source coordinate `float32(n_in-1)/float32(n_out-1) * o`.
      False: `float32(1/scale) * (o + 0.5) - 0.5` (PyTorch's formula when `scale_factor` is given).
    scale: the integer factor passed as `scale_factor` (only used when align_corners is False;
      None means `n_in / n_out`, PyTorch's formula when only a size is given).
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f'bicubic_matrix: sizes must be >= 1, got n_in={n_in}, n_out={n_out}')
  o = np.arange(n_out, dtype=np.float32)
  if align_corners:
    ratio = (np.float32(n_in - 1) / np.float32(n_out - 1)) if n_out > 1 else np.float32(0)
    src = ratio * o
  else:
    ratio = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
    src = ratio * (o + np.float32(0.5)) - np.float32(0.5)  # not clamped at 0 for cubic
  src = src.astype(np.float32)
  base = np.floor(src)
  taps = _cubic_taps((src - base).astype(np.float32))  # [n_out, 4]
  idx = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
  m = np.zeros((n_out, n_in), np.float32)
  # Clamped taps land on the same border pixel and add up, as edge replication does.
  np.add.at(m, (np.repeat(np.arange(n_out), 4), idx.ravel()), taps.ravel())
  return m


def resize_with(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
  """Applies per-axis matrices to NHWC `x`: out[b,o,p,c] = sum mh[o,h] mw[p,w] x[b,h,w,c]."""
  y = jnp.einsum('oh,bhwc->bowc', jnp.asarray(mh, x.dtype), x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum('pw,bowc->bopc', jnp.asarray(mw, x.dtype), y,
                    precision=jax.lax.Precision.HIGHEST)


def _check(shape, scale, fn):
  if len(shape) != 4:
    raise ValueError(f'{fn}: x must be NHWC (rank 4), got shape {shape}')
  if not isinstance(scale, (int, np.integer)) or scale < 1:
    raise ValueError(f'{fn}: scale must be a positive integer, got {scale!r}')


def up_matrices(shape, scale: int) -> tuple[np.ndarray, np.ndarray]:
  """The (height, width) matrices of `up` for an NHWC input of `shape`."""
  _check(shape, scale, 'torch_bicubic.up')
  _, h, w, _ = shape
  return (bicubic_matrix(h, h * scale, False, int(scale)),
          bicubic_matrix(w, w * scale, False, int(scale)))


def down_matrices(shape, scale: int) -> tuple[np.ndarray, np.ndarray]:
  """The (height, width) matrices of `down` for an NHWC input of `shape`."""
  _check(shape, scale, 'torch_bicubic.down')
  _, h, w, _ = shape
  if h < scale or w < scale:
    raise ValueError(f'torch_bicubic.down: input {h}x{w} is smaller than scale {scale}')
  return bicubic_matrix(h, h // scale, True), bicubic_matrix(w, w // scale, True)


def up(x: jax.Array, scale: int) -> jax.Array:
  """`F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)` on NHWC."""
  return resize_with(x, *up_matrices(x.shape, scale))


def down(x: jax.Array, scale: int) -> jax.Array:
  """`F.interpolate(x, scale_factor=1/scale, mode='bicubic', align_corners=True)` on NHWC.

  The output is `floor(h / scale) x floor(w / scale)`; with align_corners=True PyTorch's source
  coordinate depends only on the two sizes.
  """
  return resize_with(x, *down_matrices(x.shape, scale))
