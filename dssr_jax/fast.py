"""Faster ways to compute DSSR, and the one switch that picks them: `Execution`.

Every form here computes what its plain counterpart in `layers.py`, `torch_bicubic.py` or `model.py`
computes, with the same parameters (tests/test_fast.py holds each equal to the plain form, values
and gradients). A form stays only while docs/performance.md shows it faster on a real use: CPU
inference, GPU/TPU training or inference, the test suite or `make demo`.

`DSSR(..., execution=None)` uses `best()` for the default backend; pass an `Execution` to choose
(`PLAIN` is the network exactly as layers.py writes it).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dssr_jax import layers
from dssr_jax import torch_bicubic


@dataclasses.dataclass(frozen=True)
class Execution:
  """How DSSR is computed, never what: every combination gives the same function.

  Attributes:
    pointwise_matmul: 1x1 convs as matmuls (XLA:CPU runs its 1x1 convs far below the rate of the
      same dot).
    phase_up: `up` as one small conv per output phase on the LR grid, each with only the taps
      that phase reads: no products with the zeros the transposed conv inserts.
    banded_bicubic: the in-network bicubic resizes as 4 gathers per axis (each row of the matrix
      has at most 4 non-zeros) instead of dense matmuls; its gradient is the same banded sum.
    unrolled_steps: `nn.scan` emits its T steps unrolled (`unroll=T`). The carry, the shared
      params and the stacked outputs stay the scan's; XLA:CPU runs a rolled loop's backward pass
      far slower. Ignored with `remat`, which needs the rolled loop to save memory.
  """
  pointwise_matmul: bool = False
  phase_up: bool = False
  banded_bicubic: bool = False
  unrolled_steps: bool = False

  @property
  def conv(self) -> Any:
    """The `Conv` module to build 1x1 convs with."""
    return Conv if self.pointwise_matmul else layers.Conv

  @property
  def up(self) -> Any:
    """The `Up` module."""
    return Up if self.phase_up else layers.Up

  def bicubic_up(self, x: jax.Array, scale: int) -> jax.Array:
    """`torch_bicubic.up`, banded or dense."""
    resample = banded_resize if self.banded_bicubic else torch_bicubic.resize_with
    return resample(x, *torch_bicubic.up_matrices(x.shape, scale))

  def bicubic_down(self, x: jax.Array, scale: int) -> jax.Array:
    """`torch_bicubic.down`, banded or dense."""
    resample = banded_resize if self.banded_bicubic else torch_bicubic.resize_with
    return resample(x, *torch_bicubic.down_matrices(x.shape, scale))


PLAIN = Execution()
# The best known forms per backend (docs/performance.md has the measurements).
CPU = Execution(pointwise_matmul=True, phase_up=True, banded_bicubic=True, unrolled_steps=True)
ACCELERATOR = Execution(phase_up=True, unrolled_steps=True)


def best(backend: str | None = None) -> Execution:
  """The fastest known `Execution` on `backend` ('cpu', 'gpu', 'tpu'; None: JAX's default)."""
  backend = backend or jax.default_backend()
  return CPU if backend == 'cpu' else ACCELERATOR


# ----------------------------------------------------------------------------------------------
# Layers.


class Conv(layers.Conv):
  """`layers.Conv` with a 1x1 kernel computed as a matmul over the channels."""

  def convolve(self, x, w):
    if self.kernel_size == 1:
      return jnp.einsum('bhwi,io->bhwo', x, w[0, 0])
    return super().convolve(x, w)


def depth_to_space(x: jax.Array, r: int) -> jax.Array:
  """Channel (i*r + j)*C + c -> channel c at (h*r+i, w*r+j): moves whole C-vectors."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, r, r, c // (r * r))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, c // (r * r))


def _phase_taps(k: int, s: int, p: int):
  """The LR offsets and kernel taps of a stride-s transposed conv, phase by phase.

  Output pixel Y = q*s + j (phase j) reads input q + d through tap ky = d*s - j + k-1-p of the
  correlation kernel over the dilated input. Returns (offsets d [D], taps [D, s], valid [D, s]).
  """
  ph = np.arange(s)
  ds = np.arange(-((k - 1 - p) // s), (s - 1 + p) // s + 1)
  taps = np.stack([d * s - ph + k - 1 - p for d in ds])
  valid = (taps >= 0) & (taps < k)
  return ds, np.clip(taps, 0, k - 1), valid


class Up(layers.Up):
  """`layers.Up` computed on the LR grid: each output phase (j_y, j_x) of the stride-s transposed
  conv is a stride-1 conv with only the taps it reads, then the phases are interleaved. When
  k == s (x4) every phase reads one pixel: one 1x1 conv to s*s*C channels, then depth_to_space."""

  def convolve(self, x, w):
    k, s, p = layers.RESAMPLE[self.scale]
    ds, taps, valid = _phase_taps(k, s, p)
    if k == s:
      kp = w[taps[0][:, None], taps[0][None, :]]  # [s(jy), s(jx), I, O] taps of the one offset
      kp = kp.transpose(2, 0, 1, 3).reshape(1, 1, x.shape[-1], s * s * w.shape[-1])
      return depth_to_space(layers.conv(x, kp), s)
    rows = []
    for jy in range(s):
      vy = valid[:, jy]
      cols = []
      for jx in range(s):
        vx = valid[:, jx]
        kj = w[taps[vy, jy][:, None], taps[vx, jx][None, :]]
        pad = [(-ds[v].min(), ds[v].max()) for v in (vy, vx)]
        cols.append(layers.conv(x, kj, padding=pad))
      rows.append(jnp.stack(cols, axis=3))  # [b, h, w, s(jx), O]
    y = jnp.stack(rows, axis=2)  # [b, h, s(jy), w, s(jx), O]
    b, h, _, wd, _, o = y.shape
    return y.reshape(b, h * s, wd * s, o)


# ----------------------------------------------------------------------------------------------
# Bicubic resizing.


def _band(m: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
  """(first column [n_out], weights [n_out, width]) with m[o] zero outside first[o] + 0..width-1."""
  n_in = m.shape[1]
  first = np.clip(np.argmax(m != 0, axis=1), 0, n_in - width)
  cols = first[:, None] + np.arange(width)
  w = np.take_along_axis(m, cols, axis=1)
  rest = m.copy()
  np.put_along_axis(rest, cols, 0, axis=1)
  if rest.any():
    raise ValueError(f'a row of the resize matrix is wider than {width} taps')
  return first, w


def _band_width(m: np.ndarray) -> int:
  nz = m != 0
  last = m.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
  return int(max(1, (last - np.argmax(nz, axis=1) + 1)[nz.any(axis=1)].max(initial=1)))


def _gather_taps(x: jax.Array, m: np.ndarray, axis: int, width: int) -> jax.Array:
  """sum_k w[o, k] x[..., first[o] + k, ...] along `axis`: `width` static gathers."""
  first, w = _band(m, width)
  shape = [1] * x.ndim
  shape[axis] = m.shape[0]
  y = None
  for k in range(width):
    term = jnp.take(x, first + k, axis=axis) * jnp.asarray(w[:, k], x.dtype).reshape(shape)
    y = term if y is None else y + term
  return y


def _banded_axis(x: jax.Array, m: np.ndarray, axis: int) -> jax.Array:
  """out[..., o, ...] = sum_i m[o, i] x[..., i, ...] for a matrix with <= 4 non-zeros per row.

  The gradient is the same kind of banded sum with m's transpose; left to autodiff it would be a
  scatter-add, slower on the CPU than even the dense matmul's gradient.
  """
  if m.shape[1] < 4:  # too short for a 4-wide band: the dense product is tiny anyway
    return jnp.moveaxis(jnp.tensordot(jnp.asarray(m, x.dtype), x, axes=((1,), (axis,)),
                                      precision=jax.lax.Precision.HIGHEST), 0, axis)

  @jax.custom_vjp
  def apply(x):
    return _gather_taps(x, m, axis, 4)

  def bwd(_, ct):
    return (_gather_taps(ct, m.T, axis, _band_width(m.T)),)

  apply.defvjp(lambda x: (apply(x), None), bwd)
  return apply(x)


def banded_resize(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
  """`torch_bicubic.resize_with` for bicubic matrices (<= 4 non-zeros per row), as gathers."""
  return _banded_axis(_banded_axis(x, mh, 1), mw, 2)


# ----------------------------------------------------------------------------------------------
# Compilation.


# XLA:CPU's own convolution and dot emitters instead of its YNNPACK library fusions, which it
# keeps for reductions only (the bias gradients); see docs/performance.md.
_CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}


def compiler_options(backend: str | None = None) -> dict[str, str]:
  """XLA options for compiling DSSR on `backend` (None: JAX's default); {} off the CPU, or with
  an XLA that does not know the option."""
  backend = backend or jax.default_backend()
  return dict(_CPU_OPTIONS) if backend == 'cpu' and _cpu_options_known() else {}


@functools.cache
def _cpu_options_known() -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(jnp.float32(0)).compile()
  except jax.errors.JaxRuntimeError:  # the option is experimental: another XLA may not know it
    return False
  return True


def jit(fun: Callable, **kwargs) -> Callable:
  """`jax.jit` of a function that runs DSSR, with the default backend's `compiler_options()`."""
  return jax.jit(fun, compiler_options=compiler_options(), **kwargs)
