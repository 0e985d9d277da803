"""DSSR building blocks (DESIGN.md section 1): convs with PyTorch's init, residual cascades,
the modulation branches, the learned up/down resamplers and the pixel-shuffle tail.

Parameters are always float32; `dtype` is the compute dtype. Param names follow the authors'
PyTorch names so that converting their state dict is a rename plus a transpose.
"""

import contextlib
import contextvars
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
_DN = ('NHWC', 'HWIO', 'NHWC')
MODULATIONS = ('affine', 'none', 'add', 'concat', 'channel_attention', 'spatial_attention')
# Kernel, stride and padding of `up` (transposed conv) and `down` (strided conv) per scale.
RESAMPLE = {2: (4, 2, 1), 3: (5, 3, 1), 4: (4, 4, 0)}


def torch_uniform(fan_in: int) -> Callable:
  """PyTorch's default conv init for both weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  (kaiming_uniform with a=sqrt(5) has exactly this bound.)
  """
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def lrelu(x):
  """LeakyReLU(0.2), written as the select(x > 0, x, 0.2 x) that XLA's GPU conv rewriter can fold
  into a cuDNN fused convolution (flax's leaky_relu compares with >=; same values)."""
  return jnp.where(x > 0, x, 0.2 * x)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """PyTorch's PixelShuffle on NHWC: input channel c*r*r + i*r + j -> channel c at (h*r+i, w*r+j)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, c // (r * r), r, r)
  return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c // (r * r))


def depth_to_space(x: jax.Array, r: int) -> jax.Array:
  """Channel (i*r + j)*C + c -> channel c at (h*r+i, w*r+j): moves whole C-vectors (cheap)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, r, r, c // (r * r))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, c // (r * r))


def space_to_depth(x: jax.Array, r: int) -> jax.Array:
  """Inverse of `depth_to_space`."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // r, r, w // r, r, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // r, w // r, r * r * c)


def _conv(x, kernel, stride=1, padding=((0, 0), (0, 0)), lhs_dilation=None):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), padding, lhs_dilation=lhs_dilation, dimension_numbers=_DN)


def _weight_grad(x: jax.Array, dy: jax.Array, kernel_shape, padding) -> jax.Array:
  """Weight gradient of a stride-1 convolution as matmuls, one image at a time (CPU).

  dW[ky, kx, i, o] = sum_{b,h,w} xpad[b, h+ky, w+kx, i] dy[b, h, w, o]. Per image, over the rows
  (h', w) of the padded height, `xc` holds the kw horizontal shifts of x side by side and `d` the
  kh vertical shifts of dy: entry ((kx, i), (ky, o)) of xc^T d is that image's dW[ky, kx, i, o].
  The images go through a rolled loop: its temporaries (a few times one image's activations)
  exist once; the whole batch at once, or the loop unrolled, doubled the train step's memory.
  """
  kh, kw, c, o = kernel_shape
  w_out = dy.shape[2]

  def one_image(acc, xy):
    xi, dyi = xy
    xp = jax.lax.pad(xi, jnp.zeros((), xi.dtype), [(lo, hi, 0) for lo, hi in padding] + [(0, 0, 0)])
    xc = jnp.concatenate([xp[:, k:k + w_out] for k in range(kw)], -1).reshape(-1, kw * c)
    d = jnp.concatenate([jnp.pad(dyi, ((k, kh - 1 - k), (0, 0), (0, 0))) for k in range(kh)], -1)
    return acc + jnp.dot(xc.T, d.reshape(-1, kh * o), preferred_element_type=jnp.float32,
                         precision=jax.lax.Precision.HIGHEST), None

  g, _ = jax.lax.scan(one_image, jnp.zeros((kw * c, kh * o), jnp.float32), (x, dy))
  return g.reshape(kw, c, kh, o).transpose(2, 0, 1, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_explicit_bwd(x, kernel, padding):
  return _conv(x, kernel, padding=padding)


def _conv_explicit_fwd(x, kernel, padding):
  return _conv(x, kernel, padding=padding), (x, kernel)


def _conv_explicit_bwd_rule(padding, res, dy):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  # The input gradient is the conv of dy with the flipped, in/out-swapped kernel. Left to XLA, the
  # flip and swap fold into the conv's dimension labels, which XLA:CPU runs on a slow generic path
  # inside loops (a rolled 4-step scan's backward: 0.93 s vs 0.06 s); the barrier keeps them a
  # separate (tiny) array and the conv an ordinary one.
  flipped = jax.lax.optimization_barrier(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
  (ph0, ph1), (pw0, pw1) = padding
  dx = _conv(dy, flipped, padding=((kh - 1 - ph0, kh - 1 - ph1), (kw - 1 - pw0, kw - 1 - pw1)))
  return dx, _weight_grad(x, dy, kernel.shape, padding).astype(kernel.dtype)


_conv_explicit_bwd.defvjp(_conv_explicit_fwd, _conv_explicit_bwd_rule)

BACKWARD_IMPLS = ('xla', 'cpu', 'explicit')
_BACKWARD = contextvars.ContextVar('dssr_jax_conv_backward', default=None)
_ROLLED = contextvars.ContextVar('dssr_jax_rolled_loop', default=False)


@contextlib.contextmanager
def _set_within(var: contextvars.ContextVar, value):
  token = var.set(value)
  try:
    yield
  finally:
    var.reset(token)


def conv_backward(impl: str | None):
  """Within the block, `conv_s1` and `Down` trace with this backward pass (None: by backend).

  'xla': XLA's convolutions and their gradients (off the CPU). 'cpu': 1x1 convs as matmuls,
  `Down`'s gradients through its space-to-depth form, XLA's own 3x3 conv gradients (the CPU
  default). 'explicit': as 'cpu', with the 3x3 conv gradients of `_conv_explicit_bwd_rule` (the
  CPU default inside a rolled loop, see `rolled_loop`). It applies when a function is traced, so
  use it around a fresh `jax.jit`.
  """
  if impl is not None and impl not in BACKWARD_IMPLS:
    raise ValueError(f'conv_backward: impl must be one of {BACKWARD_IMPLS} or None, got {impl!r}')
  return _set_within(_BACKWARD, impl)


def rolled_loop():
  """Marks what is traced within as the body of a rolled loop (a while loop after compilation).

  Inside while loops XLA:CPU runs convolution gradients on a slow generic path (a small-network
  remat train step: 5 s with the explicit gradients, still running after 20 minutes with XLA's),
  so there the CPU default is 'explicit'.
  """
  return _set_within(_ROLLED, True)


def _backward_impl() -> str:
  if impl := _BACKWARD.get():
    return impl
  if jax.default_backend() != 'cpu':
    return 'xla'
  return 'explicit' if _ROLLED.get() else 'cpu'


def conv_s1(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """Stride-1 convolution (NHWC x HWIO) with zero padding ((top, bottom), (left, right)).

  The forward pass is XLA's everywhere, except that on the CPU a 1x1 conv is a matmul (forward
  and backward): XLA:CPU ran 1x1 convs at 30-80 GFLOP/s against 100-190 for the same dot, and
  the x2 / x4 forward passes got 10% / 17% faster. The 3x3 gradients are XLA's, except in a
  rolled loop on the CPU (`rolled_loop`), where they are `_conv_explicit_bwd_rule`'s.
  `conv_backward` overrides the choice.
  """
  padding = tuple(tuple(int(v) for v in p) for p in padding)
  if any(v > k - 1 for p, k in zip(padding, kernel.shape[:2]) for v in p):
    raise ValueError(f'conv_s1: padding {padding} wider than kernel - 1 ({kernel.shape[:2]})')
  impl = _backward_impl()
  if impl != 'xla' and kernel.shape[:2] == (1, 1):
    return jnp.einsum('bhwi,io->bhwo', x, kernel[0, 0])
  if impl == 'explicit':
    return _conv_explicit_bwd(x, kernel, padding)
  return _conv(x, kernel, padding=padding)


def _kernel_and_bias(module: nn.Module, k: int, cin: int, features: int, fan_in: int):
  """`module`'s float32 `kernel` [k, k, cin, features] and `bias`, PyTorch-initialised for fan_in."""
  init = torch_uniform(fan_in)
  return (module.param('kernel', init, (k, k, cin, features)),
          module.param('bias', init, (features,)))


def conv_of_conv(x0, w0, b0, y0, w1, b1):
  """conv(y0; w1) + b1 where y0 = conv(x0; w0) + b0, both 3x3 with zero padding 1.

  For a narrow x0 (the 3-channel detail map) this is one 5x5 conv of x0 with the composed kernel
  K[u + v] = sum w0[u] w1[v] (bias b1 + sum_v w1[v] b0) instead of a conv of the wide y0: exact
  wherever conv(.; w1) reads no padding of y0. On the 1-pixel border ring it does (y0's padding is
  zero, not conv(x0) there), so the ring is recomputed from y0 itself, strips 2 pixels deep.
  """
  h, w = y0.shape[1:3]
  k = sum(jnp.pad(jnp.einsum('abim,mo->abio', w0, w1[v, u]), ((v, 2 - v), (u, 2 - u), (0, 0), (0, 0)))
          for v, u in np.ndindex(3, 3))
  bias = b1 + jnp.einsum('abmo,m->o', w1, b0)
  out = conv_s1(x0, k, ((2, 2), (2, 2))) + bias
  ring = {'top': conv_s1(y0[:, :2], w1, ((1, 0), (1, 1))),
          'bottom': conv_s1(y0[:, h - 2:], w1, ((0, 1), (1, 1))),
          'left': conv_s1(y0[:, :, :2], w1, ((1, 1), (1, 0))),
          'right': conv_s1(y0[:, :, w - 2:], w1, ((1, 1), (0, 1)))}
  out = out.at[:, :, :1].set(ring['left'] + b1).at[:, :, w - 1:].set(ring['right'] + b1)
  return out.at[:, :1].set(ring['top'] + b1).at[:, h - 1:].set(ring['bottom'] + b1)


class Conv(nn.Module):
  """k x k convolution with bias and zero padding (k-1)//2 (PyTorch Conv2d, default init).

  `after=(x0, w0, b0)` says that x = conv(x0; w0) + b0 (3x3, 'same'); the layer then reads x0
  through `conv_of_conv` where that is cheaper (x0 narrow): same values, fewer FLOPs.
  """
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, after=None):
    k, cin = self.kernel_size, x.shape[-1]
    w, b = _kernel_and_bias(self, k, cin, self.features, fan_in=cin * k * k)
    x, w, b = x.astype(self.dtype), w.astype(self.dtype), b.astype(self.dtype)
    # Only where it removes >= 8x the multiplies: XLA:CPU runs the narrow 5x5 conv far below
    # its 128-channel rate (at 32 channels the train step got slower, at 128 faster).
    if (after is not None and k == 3 and min(x.shape[1:3]) >= 4
        and 8 * 25 * after[0].shape[-1] <= 9 * cin):
      x0, w0, b0 = (a.astype(self.dtype) for a in after)
      return conv_of_conv(x0, w0, b0, x, w, b)
    p = (k - 1) // 2
    return conv_s1(x, w, ((p, p), (p, p))) + b


def _phase_taps(k: int, s: int, p: int, transposed: bool):
  """Static index tables that split a stride-s (transposed) conv into s*s phases on the LR grid.

  Returns (offsets, idx, mask): LR offsets d = dmin..dmax, and for every (d, phase) the kernel tap
  `idx[d, phase]` it uses (`mask` False where the phase has no tap at that offset).
  - transposed (correlation kernel K over the input dilated by s and padded by k-1-p): output pixel
    Y = q*s + j reads input q + d through tap ky = d*s - j + k-1-p.
  - strided (ordinary kernel W, padding p): output q reads input (q+d)*s + r through ky = d*s + r + p.
  """
  ph = np.arange(s)
  if transposed:
    dmin, dmax = -((k - 1 - p) // s), (s - 1 + p) // s
    tap = lambda d: d * s - ph + k - 1 - p
  else:
    dmin, dmax = -((s - 1 + p) // s), (k - 1 - p) // s
    tap = lambda d: d * s + ph + p
  ds = np.arange(dmin, dmax + 1)
  idx = np.stack([tap(d) for d in ds])  # [D, s]
  mask = (idx >= 0) & (idx < k)
  return (dmin, dmax), np.clip(idx, 0, k - 1), mask


def _phase_kernel(kernel, idx, mask):
  """Kernel [k, k, I, O] -> [D, D, s, s, I, O] gathered per (offset, phase) on both axes."""
  m = jnp.asarray(mask, kernel.dtype)
  kk = jnp.take(kernel, idx, axis=0) * m[:, :, None, None, None]  # [D, s, k, I, O]
  kk = jnp.take(kk, idx, axis=2) * m[None, None, :, :, None, None]  # [D, s, D, s, I, O]
  return kk.transpose(0, 2, 1, 3, 4, 5)


class Up(nn.Module):
  """PyTorch ConvTranspose2d C->C with the kernel/stride/padding of `RESAMPLE[scale]`.

  `kernel` is stored as the HWIO correlation kernel over the dilated input,
  K[ky, kx, i, o] = W_torch[i, o, k-1-ky, k-1-kx]. `impl='subpixel'` evaluates it as one conv on the
  LR grid producing s*s phases, then depth-to-space: no multiplications by inserted zeros, but
  the shared (dmax-dmin+1)^2 window still holds zero taps for most phases (x2: 16 of 36).
  `impl='phases'` (default) runs one conv per phase with only that phase's taps: no zero taps
  at all; measured 1.7x (x2) and 2.2x (x3) less CPU time than 'subpixel'.
  `impl='dilated'` is the textbook form (zeros inserted, padded, correlated), kept as a reference.
  """
  scale: int
  features: int
  dtype: Dtype = jnp.float32
  impl: str = 'phases'

  @nn.compact
  def __call__(self, x):
    k, s, p = RESAMPLE[self.scale]
    cin = x.shape[-1]
    # PyTorch's fan_in for a ConvTranspose2d weight [in, out, k, k] is out*k*k.
    w, b = _kernel_and_bias(self, k, cin, self.features, fan_in=self.features * k * k)
    w, b = w.astype(self.dtype), b.astype(self.dtype)
    x = x.astype(self.dtype)
    if self.impl == 'dilated':
      q = k - 1 - p
      return _conv(x, w, padding=((q, q), (q, q)), lhs_dilation=(s, s)) + b
    if self.impl not in ('subpixel', 'phases'):
      raise ValueError(f"Up: impl must be 'subpixel', 'phases' or 'dilated', got {self.impl!r}")
    (dmin, dmax), idx, mask = _phase_taps(k, s, p, transposed=True)
    if self.impl == 'phases' and k != s:  # one small conv per phase, only that phase's taps
      # (k == s, i.e. x4: the sub-pixel conv is a 1x1 conv without zero taps; one big conv wins)
      ds = np.arange(dmin, dmax + 1)
      rows = []
      for jy in range(s):
        vy = mask[:, jy]
        cols = []
        for jx in range(s):
          vx = mask[:, jx]
          kj = jnp.take(jnp.take(w, idx[vy, jy], axis=0), idx[vx, jx], axis=1)
          pad = [(-ds[v].min(), ds[v].max()) for v in (vy, vx)]
          cols.append(conv_s1(x, kj, pad))
        rows.append(jnp.stack(cols, axis=3))  # [b, h, w, s(jx), O]
      y = jnp.stack(rows, axis=2)  # [b, h, s(jy), w, s(jx), O]
      bh, hh, _, ww, _, o = y.shape
      return y.reshape(bh, hh * s, ww * s, o) + b
    kp = _phase_kernel(w, idx, mask)  # [D, D, s, s, I, O]
    n = dmax - dmin + 1
    kp = kp.transpose(0, 1, 4, 2, 3, 5).reshape(n, n, cin, s * s * self.features)
    y = conv_s1(x, kp, ((-dmin, dmax), (-dmin, dmax)))
    return depth_to_space(y, s) + b


def _down_space_to_depth(x, kernel, scale: int):
  """`Down`'s strided conv as a stride-1 conv of the space-to-depth input with phase kernels."""
  k, s, p = RESAMPLE[scale]
  (dmin, dmax), idx, mask = _phase_taps(k, s, p, transposed=False)
  kp = _phase_kernel(kernel, idx, mask)  # [D, D, s, s, I, O]
  n = dmax - dmin + 1
  kp = kp.reshape(n, n, s * s * kernel.shape[2], kernel.shape[3])
  return conv_s1(space_to_depth(x, s), kp, ((-dmin, dmax), (-dmin, dmax)))


def _down_strided(x, kernel, scale: int):
  k, s, p = RESAMPLE[scale]
  return _conv(x, kernel, stride=s, padding=((p, p), (p, p)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _down_strided_s2d_bwd(x, kernel, scale, impl):
  del impl
  return _down_strided(x, kernel, scale)


def _down_fwd(x, kernel, scale, impl):
  del impl
  return _down_strided(x, kernel, scale), (x, kernel)


def _down_bwd(scale, impl, res, dy):
  # The same function's space-to-depth form, whose convs have the CPU's backward: XLA:CPU ran the
  # strided conv's own gradients 3x slower inside a rolled loop (remat). This rule is traced after
  # the forward pass has left any `rolled_loop` block, so the forward's choice travels as `impl`.
  with conv_backward(impl):
    _, vjp = jax.vjp(lambda x, w: _down_space_to_depth(x, w, scale), *res)
  return vjp(dy)


_down_strided_s2d_bwd.defvjp(_down_fwd, _down_bwd)


class Down(nn.Module):
  """PyTorch Conv2d C->C with the kernel/stride/padding of `RESAMPLE[scale]` (HR -> LR).

  `impl='space_to_depth'` folds each s x s block into channels and runs a stride-1 conv on the LR
  grid; `impl='strided'` is the direct strided conv (2.5x faster on CPU), whose backward pass on
  the CPU is that of the space-to-depth form. Same `kernel` [k, k, I, O] either way.
  """
  scale: int
  features: int
  dtype: Dtype = jnp.float32
  impl: str = 'strided'

  @nn.compact
  def __call__(self, x):
    k, s, _ = RESAMPLE[self.scale]
    cin = x.shape[-1]
    w, b = _kernel_and_bias(self, k, cin, self.features, fan_in=cin * k * k)
    w, b = w.astype(self.dtype), b.astype(self.dtype)
    x = x.astype(self.dtype)
    if self.impl not in ('strided', 'space_to_depth'):
      raise ValueError(f"Down: impl must be 'strided' or 'space_to_depth', got {self.impl!r}")
    divisible = x.shape[1] % s == 0 and x.shape[2] % s == 0
    if self.impl == 'strided':
      impl = _backward_impl()
      if divisible and impl != 'xla':
        return _down_strided_s2d_bwd(x, w, self.scale, impl) + b
      return _down_strided(x, w, self.scale) + b
    if not divisible:
      raise ValueError(f'Down: input {x.shape[1]}x{x.shape[2]} is not divisible by scale {s}')
    return _down_space_to_depth(x, w, self.scale) + b


class ResBlock(nn.Module):
  """x + 0.2 * conv(lrelu(conv(x)))."""
  channels: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = Conv(self.channels, dtype=self.dtype, name='conv1')(x)
    y = Conv(self.channels, dtype=self.dtype, name='conv2')(lrelu(y))
    return x + 0.2 * y


class Cascade(nn.Module):
  """`num_blocks` ResBlocks in sequence plus one long skip (authors' CascadeResBlock)."""
  channels: int
  num_blocks: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(self.num_blocks):
      y = ResBlock(self.channels, self.dtype, name=f'block_{i}')(y)
    return x + y


class Modulation(nn.Module):
  """Structure modulation of features `x` by detail features `d` (paper eq. 11/13, Tables II-III).

  A 4-conv trunk reads `d` (the authors' SpatialTransformation), then `kind` decides how it acts:
  affine x*gamma + beta; add x + h; concat conv1x1([x, h]); channel/spatial attention x*a.
  `identity_path` adds x once more for the multiplicative kinds (affine, attention), as the
  authors' HR side does (`up_feat * gama1 + beta1 + up_feat`); their LR side adds `feat` instead,
  which the caller does.
  """
  channels: int
  kind: str = 'affine'
  identity_path: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, d, after=None):
    """`after`: optional (x0, w0, b0) with d = conv(x0; w0) + b0, passed to the first conv."""
    c, dt = self.channels, self.dtype
    h = d
    for i in range(1, 5):
      h = lrelu(Conv(c, dtype=dt, name=f'conv{i}')(h, after if i == 1 else None))
    x = x.astype(dt)
    multiplicative = True
    if self.kind == 'affine':
      gamma = nn.sigmoid(Conv(c, 1, dt, name='conv_gama')(h))
      y = x * gamma + Conv(c, 1, dt, name='conv_beta')(h)
    elif self.kind == 'add':
      y, multiplicative = x + h, False
    elif self.kind == 'concat':
      y, multiplicative = Conv(c, 1, dt, name='conv_fuse')(jnp.concatenate([x, h], -1)), False
    elif self.kind == 'channel_attention':  # RCAN's CA layer, reduction 16
      a = jnp.mean(h, axis=(1, 2), keepdims=True)
      a = nn.relu(Conv(max(c // 16, 1), 1, dt, name='conv_squeeze')(a))
      y = x * nn.sigmoid(Conv(c, 1, dt, name='conv_excite')(a))
    elif self.kind == 'spatial_attention':
      y = x * nn.sigmoid(Conv(1, 3, dt, name='conv_att')(h))
    else:
      raise ValueError(f'modulation must be one of {MODULATIONS[:1] + MODULATIONS[2:]}, '
                       f'got {self.kind!r}')
    return y + x if (self.identity_path and multiplicative) else y


class ShuffleConv(nn.Module):
  """3x3 conv(C -> C*r*r) followed by PyTorch's PixelShuffle(r).

  Its params are exactly a `Conv`'s, in PyTorch's channel order (c, i, j); the layer permutes them
  to (i, j, c) so the shuffle after the conv moves whole C-vectors (depth_to_space) instead of
  single elements.
  """
  features: int  # C, channels after the shuffle
  r: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    cin, c, r = x.shape[-1], self.features, self.r
    init = torch_uniform(cin * 9)
    w = self.param('kernel', init, (3, 3, cin, c * r * r)).astype(self.dtype)
    b = self.param('bias', init, (c * r * r,)).astype(self.dtype)
    w = w.reshape(3, 3, cin, c, r * r).transpose(0, 1, 2, 4, 3).reshape(3, 3, cin, r * r * c)
    b = b.reshape(c, r * r).T.reshape(r * r * c)
    y = conv_s1(x.astype(self.dtype), w, ((1, 1), (1, 1))) + b
    return depth_to_space(y, r)


class Tail(nn.Module):
  """The authors' UPNet: conv(C -> C*s*s), pixel shuffle, conv(C -> 3); x4 shuffles twice by 2.

  Names conv_0/conv_2/conv_4 are the indices in their nn.Sequential (odd ones are the shuffles).
  """
  scale: int
  channels: int
  dtype: Dtype = jnp.float32
  fast_shuffle: bool = True

  @nn.compact
  def __call__(self, x):
    c, dt = self.channels, self.dtype
    factors = (2, 2) if self.scale == 4 else (self.scale,)
    for n, r in enumerate(factors):
      if self.fast_shuffle:
        x = ShuffleConv(c, r, dt, name=f'conv_{2 * n}')(x)
      else:
        x = pixel_shuffle(Conv(c * r * r, dtype=dt, name=f'conv_{2 * n}')(x), r)
    return Conv(3, dtype=dt, name=f'conv_{2 * len(factors)}')(x)
