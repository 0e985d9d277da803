"""DSSR's building blocks (docs/design.md section 1), each in its plainest correct form.

Parameters are float32 and named as in the authors' PyTorch code, so converting their weights is
a rename plus a transpose; `dtype` is the compute dtype. Faster ways to compute some of these
layers, with the same parameters, live in `fast.py`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
ModuleDef = Any
_DN = ('NHWC', 'HWIO', 'NHWC')
MODULATIONS = ('affine', 'none', 'add', 'concat', 'channel_attention', 'spatial_attention')
# Kernel, stride and padding of `up` (transposed conv) and `down` (strided conv) per scale.
RESAMPLE = {2: (4, 2, 1), 3: (5, 3, 1), 4: (4, 4, 0)}


def torch_uniform(fan_in: int) -> Callable:
  """PyTorch's default conv init of weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  (kaiming_uniform with a = sqrt(5) has exactly this bound.)
  """
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def lrelu(x):
  """LeakyReLU(0.2), written as the select that XLA's GPU conv rewriter can fuse into a conv."""
  return jnp.where(x > 0, x, 0.2 * x)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
  """PyTorch's PixelShuffle on NHWC: input channel c*r*r + i*r + j -> channel c at (h*r+i, w*r+j)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, c // (r * r), r, r)
  return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c // (r * r))


def conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding=((0, 0), (0, 0)),
         lhs_dilation=None) -> jax.Array:
  """Correlation of NHWC `x` with an HWIO kernel, zero padding ((top, bottom), (left, right))."""
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                      lhs_dilation=lhs_dilation, dimension_numbers=_DN)


def _kernel_and_bias(module: nn.Module, k: int, cin: int, features: int, fan_in: int):
  """`module`'s float32 `kernel` [k, k, cin, features] and `bias`, PyTorch-initialised for fan_in."""
  init = torch_uniform(fan_in)
  return (module.param('kernel', init, (k, k, cin, features)),
          module.param('bias', init, (features,)))


class Conv(nn.Module):
  """k x k convolution with bias and zero padding (k-1)//2 (PyTorch Conv2d, default init)."""
  features: int
  kernel_size: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    w, b = _kernel_and_bias(self, k, cin, self.features, fan_in=cin * k * k)
    return self.convolve(x.astype(self.dtype), w.astype(self.dtype)) + b.astype(self.dtype)

  def convolve(self, x, w):
    p = (self.kernel_size - 1) // 2
    return conv(x, w, padding=((p, p), (p, p)))


class Up(nn.Module):
  """PyTorch ConvTranspose2d C->C with the kernel, stride and padding `RESAMPLE[scale]`.

  `kernel` is the HWIO correlation kernel over the input dilated by s (s - 1 zeros between
  pixels) and zero-padded by k - 1 - p: K[ky, kx, i, o] = W_torch[i, o, k-1-ky, k-1-kx].
  """
  scale: int
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, _, _ = RESAMPLE[self.scale]
    # PyTorch's fan_in for a ConvTranspose2d weight [in, out, k, k] is out * k * k.
    w, b = _kernel_and_bias(self, k, x.shape[-1], self.features, fan_in=self.features * k * k)
    return self.convolve(x.astype(self.dtype), w.astype(self.dtype)) + b.astype(self.dtype)

  def convolve(self, x, w):
    k, s, p = RESAMPLE[self.scale]
    q = k - 1 - p
    return conv(x, w, padding=((q, q), (q, q)), lhs_dilation=(s, s))


class Down(nn.Module):
  """PyTorch Conv2d C->C with the kernel, stride and padding `RESAMPLE[scale]` (HR -> LR)."""
  scale: int
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s, p = RESAMPLE[self.scale]
    cin = x.shape[-1]
    w, b = _kernel_and_bias(self, k, cin, self.features, fan_in=cin * k * k)
    y = conv(x.astype(self.dtype), w.astype(self.dtype), stride=s, padding=((p, p), (p, p)))
    return y + b.astype(self.dtype)


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
  """`num_blocks` ResBlocks in sequence plus one long skip (the authors' CascadeResBlock)."""
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
  """Modulation of structure features `x` by detail features `d` (eq. 11 / 13, Tables II-III).

  A trunk of four 3x3 convs reads `d` (the authors' SpatialTransformation), then `kind` decides
  how it acts on x: affine x * gamma + beta; add x + h; concat conv1x1([x, h]); channel or spatial
  attention x * a. `identity_path` adds x once more for the multiplicative kinds, as the
  authors' HR side does (`up_feat * gama1 + beta1 + up_feat`); on their LR side the caller adds
  `feat` instead. `conv` builds the 1x1 convs (`fast.Conv` computes them as matmuls).
  """
  channels: int
  kind: str = 'affine'
  identity_path: bool = False
  dtype: Dtype = jnp.float32
  conv: ModuleDef = Conv

  @nn.compact
  def __call__(self, x, d):
    c, dt = self.channels, self.dtype
    h = d
    for i in range(1, 5):
      h = lrelu(Conv(c, dtype=dt, name=f'conv{i}')(h))
    x = x.astype(dt)
    multiplicative = self.kind in ('affine', 'channel_attention', 'spatial_attention')
    if self.kind == 'affine':
      gamma = nn.sigmoid(self.conv(c, 1, dt, name='conv_gama')(h))
      y = x * gamma + self.conv(c, 1, dt, name='conv_beta')(h)
    elif self.kind == 'add':
      y = x + h
    elif self.kind == 'concat':
      y = self.conv(c, 1, dt, name='conv_fuse')(jnp.concatenate([x, h], -1))
    elif self.kind == 'channel_attention':  # RCAN's CA layer, reduction 16
      a = jnp.mean(h, axis=(1, 2), keepdims=True)
      a = nn.relu(self.conv(max(c // 16, 1), 1, dt, name='conv_squeeze')(a))
      y = x * nn.sigmoid(self.conv(c, 1, dt, name='conv_excite')(a))
    elif self.kind == 'spatial_attention':
      y = x * nn.sigmoid(Conv(1, 3, dt, name='conv_att')(h))
    else:
      raise ValueError(f'Modulation: kind must be one of {MODULATIONS[:1] + MODULATIONS[2:]}, '
                       f'got {self.kind!r}')
    return y + x if (self.identity_path and multiplicative) else y


class Tail(nn.Module):
  """The authors' UPNet: conv(C -> C*s*s), pixel shuffle, conv(C -> 3); x4 shuffles twice by 2.

  Names conv_0 / conv_2 / conv_4 are the indices in their nn.Sequential (the odd ones are the
  shuffles).
  """
  scale: int
  channels: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c, dt = self.channels, self.dtype
    factors = (2, 2) if self.scale == 4 else (self.scale,)
    for n, r in enumerate(factors):
      x = pixel_shuffle(Conv(c * r * r, dtype=dt, name=f'conv_{2 * n}')(x), r)
    return Conv(3, dtype=dt, name=f'conv_{2 * len(factors)}')(x)
