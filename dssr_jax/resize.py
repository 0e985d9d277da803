"""PyTorch's bicubic resampling (`F.interpolate(mode='bicubic')`) as static per-axis matrices.

Sizes are static under jit, so each axis is a fixed `out x in` matrix built once in numpy and a
resize is two einsums. The source coordinates are computed in float32 in PyTorch's order: float64
coordinates move the result by up to ~3e-5, enough to miss the authors' outputs (DESIGN.md sec. 1).
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


def _band(m: np.ndarray, width: int):
  """Row-wise band of a matrix: (first column [n_out], weights [n_out, width]) such that m[o] is
  zero outside columns first[o] .. first[o] + width - 1."""
  n_out, n_in = m.shape
  first = np.clip(np.argmax(m != 0, axis=1), 0, n_in - width)
  cols = first[:, None] + np.arange(width)
  w = np.take_along_axis(m, cols, axis=1)
  rest = m.copy()
  np.put_along_axis(rest, cols, 0, axis=1)
  if rest.any():
    raise AssertionError(f'row support is wider than {width} taps')
  return first, w


def _band_width(m: np.ndarray) -> int:
  nz = m != 0
  last = m.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
  return int(max(1, (last - np.argmax(nz, axis=1) + 1)[nz.any(axis=1)].max(initial=1)))


def _gather_taps(x: jax.Array, m: np.ndarray, axis: int, width: int) -> jax.Array:
  """sum_k w[o, k] x[..., first[o] + k, ...]: `width` static gathers, taps left to right."""
  first, w = _band(m, width)
  shape = [1] * x.ndim
  shape[axis] = m.shape[0]
  y = None
  for k in range(width):
    term = jnp.take(x, first + k, axis=axis) * jnp.asarray(w[:, k], x.dtype).reshape(shape)
    y = term if y is None else y + term
  return y


def _apply_axis(x: jax.Array, m: np.ndarray, axis: int, dense: bool) -> jax.Array:
  """out[..., o, ...] = sum_i m[o, i] x[..., i, ...] along `axis`.

  `dense=False`: each row has at most 4 non-zeros, so the sum is taken over 4 static gathers (one
  fused elementwise pass, in PyTorch's summation order) rather than a dense matmul that is >98%
  multiplications by zero; the fastest form on CPU. Its gradient is the same kind of banded
  sum with m's transpose (an input pixel feeds a few outputs): left to autodiff it would be a
  scatter-add, 2x slower than even the dense matmul's gradient on CPU (8x128x128x128 -> x1/2:
  207 vs 105 ms). `dense=True`: one matmul, whose gradient is a matmul too; on GPU the gathers'
  gradient is a scatter-add, which costs more than the wasted multiplications.
  """
  if dense or m.shape[1] < 4:  # (too short for a 4-wide band: the dense product is tiny anyway)
    y = jnp.tensordot(jnp.asarray(m, x.dtype), x, axes=((1,), (axis,)),
                      precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(y, 0, axis)

  @jax.custom_vjp
  def apply(x):
    return _gather_taps(x, m, axis, 4)

  def bwd(_, ct):
    return (_gather_taps(ct, m.T, axis, _band_width(m.T)),)

  apply.defvjp(lambda x: (apply(x), None), bwd)
  return apply(x)


def resize_with(x: jax.Array, mh: np.ndarray, mw: np.ndarray, dense: bool | None = None
                ) -> jax.Array:
  """Applies per-axis matrices to NHWC `x`: out[b,o,p,c] = sum mh[o,h] mw[p,w] x[b,h,w,c].

  `dense=None` picks the faster form for the default backend: banded gathers on CPU, matmuls
  elsewhere (see `_apply_axis`).
  """
  if dense is None:
    dense = jax.default_backend() != 'cpu'
  return _apply_axis(_apply_axis(x, mh, 1, dense), mw, 2, dense)


def _check(x, scale, fn):
  if x.ndim != 4:
    raise ValueError(f'{fn}: x must be NHWC (rank 4), got shape {x.shape}')
  if not isinstance(scale, (int, np.integer)) or scale < 1:
    raise ValueError(f'{fn}: scale must be a positive integer, got {scale!r}')


def torch_bicubic_up(x: jax.Array, scale: int, dense: bool | None = None) -> jax.Array:
  """`F.interpolate(x, scale_factor=scale, mode='bicubic', align_corners=False)` on NHWC."""
  _check(x, scale, 'torch_bicubic_up')
  _, h, w, _ = x.shape
  return resize_with(x, bicubic_matrix(h, h * scale, False, int(scale)),
                     bicubic_matrix(w, w * scale, False, int(scale)), dense)


def torch_bicubic_down(x: jax.Array, scale: int, dense: bool | None = None) -> jax.Array:
  """`F.interpolate(x, scale_factor=1/scale, mode='bicubic', align_corners=True)` on NHWC.

  The output is `floor(h / scale) x floor(w / scale)`; with align_corners=True PyTorch's source
  coordinate depends only on the two sizes.
  """
  _check(x, scale, 'torch_bicubic_down')
  _, h, w, _ = x.shape
  if h < scale or w < scale:
    raise ValueError(f'torch_bicubic_down: input {h}x{w} is smaller than scale {scale}')
  return resize_with(x, bicubic_matrix(h, h // scale, True), bicubic_matrix(w, w // scale, True),
                     dense)
