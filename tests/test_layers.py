"""Layers against direct loop implementations of the PyTorch definitions (fixtures README)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dssr_jax import fast
from dssr_jax import layers


def _conv_transpose_loop(x, w, b, stride, pad):
  """PyTorch ConvTranspose2d from its definition, NCHW x, W [in, out, k, k]:
  y[n, o, y*stride - pad + ky, x*stride - pad + kx] += x[n, i, y, x] * W[i, o, ky, kx]."""
  n, cin, h, wd = x.shape
  _, cout, k, _ = w.shape
  ho, wo = (h - 1) * stride - 2 * pad + k, (wd - 1) * stride - 2 * pad + k
  y = np.zeros((n, cout, ho, wo)) + b[None, :, None, None]
  for yy in range(h):
    for xx in range(wd):
      for ky in range(k):
        for kx in range(k):
          oy, ox = yy * stride - pad + ky, xx * stride - pad + kx
          if 0 <= oy < ho and 0 <= ox < wo:
            y[:, :, oy, ox] += x[:, :, yy, xx] @ w[:, :, ky, kx]
  return y


def _conv_loop(x, w, b, stride, pad):
  """PyTorch Conv2d from its definition, NCHW x, W [out, in, k, k], zero padding."""
  n, cin, h, wd = x.shape
  cout, _, k, _ = w.shape
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
  y = np.zeros((n, cout, ho, wo)) + b[None, :, None, None]
  for oy in range(ho):
    for ox in range(wo):
      patch = xp[:, :, oy * stride:oy * stride + k, ox * stride:ox * stride + k]
      y[:, :, oy, ox] += np.einsum('nikl,oikl->no', patch, w)
  return y


def _nhwc(a):
  return jnp.asarray(a.transpose(0, 2, 3, 1), jnp.float32)


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('up', [layers.Up, fast.Up])
def test_up_is_pytorch_conv_transpose(scale, up):
  k, s, p = layers.RESAMPLE[scale]
  rng = np.random.default_rng(scale)
  cin, cout = 5, 6  # in != out, so a swapped pair of weight axes cannot pass
  x = rng.standard_normal((2, cin, 3, 4))
  w = rng.standard_normal((cin, cout, k, k))
  b = rng.standard_normal(cout)
  # The stored kernel: K[ky, kx, i, o] = W[i, o, k-1-ky, k-1-kx].
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 0, 1)[::-1, ::-1], jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(up(scale, cout).apply)({'params': params}, _nhwc(x))
  assert y.shape == (2, 3 * s, 4 * s, cout)
  ref = _conv_transpose_loop(x, w, b, s, p).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_down_is_pytorch_strided_conv(scale):
  k, s, p = layers.RESAMPLE[scale]
  rng = np.random.default_rng(10 + scale)
  cin, cout = 4, 5
  x = rng.standard_normal((2, cin, 3 * s, 2 * s))
  w = rng.standard_normal((cout, cin, k, k))
  b = rng.standard_normal(cout)
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(layers.Down(scale, cout).apply)({'params': params}, _nhwc(x))
  assert y.shape == (2, 3, 2, cout)
  np.testing.assert_allclose(y, _conv_loop(x, w, b, s, p).transpose(0, 2, 3, 1), atol=1e-4,
                             rtol=1e-5)


@pytest.mark.parametrize('conv', [layers.Conv, fast.Conv])
def test_conv_is_pytorch_conv(conv):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 3, 5, 6))
  w = rng.standard_normal((4, 3, 3, 3))
  b = rng.standard_normal(4)
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(conv(4).apply)({'params': params}, _nhwc(x))
  np.testing.assert_allclose(y, _conv_loop(x, w, b, 1, 1).transpose(0, 2, 3, 1), atol=1e-4)


@pytest.mark.parametrize('r', [2, 3])
def test_pixel_shuffle_is_pytorch_order(r):
  rng = np.random.default_rng(r)
  c = 2
  x = rng.standard_normal((1, 3, 4, c * r * r)).astype(np.float32)  # NHWC
  expected = np.zeros((1, 3 * r, 4 * r, c))
  for h in range(3):
    for w in range(4):
      for ch in range(c):
        for i in range(r):
          for j in range(r):
            expected[0, h * r + i, w * r + j, ch] = x[0, h, w, ch * r * r + i * r + j]
  np.testing.assert_array_equal(layers.pixel_shuffle(jnp.asarray(x), r), expected)


def test_pytorch_default_init_bounds():
  x = jnp.zeros((1, 4, 4, 16))

  @jax.jit
  def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return (layers.Conv(32).init(k1, x)['params'], layers.Up(2, 8).init(k2, x)['params'],
            layers.Down(3, 8).init(k3, jnp.zeros((1, 6, 6, 16)))['params'])

  # fan_in: Conv2d in*k*k; ConvTranspose2d out*k*k (PyTorch reads weight.size(1) = out).
  for p, fan_in in zip(init(jax.random.key(0)), (16 * 9, 8 * 16, 16 * 25)):
    bound = 1 / np.sqrt(fan_in)
    for v in (p['kernel'], p['bias']):
      assert v.dtype == jnp.float32
      assert float(jnp.abs(v).max()) <= bound
      assert float(jnp.abs(v).max()) > 0.8 * bound  # spread over the whole range
    assert abs(float(jnp.std(p['kernel'])) - bound / np.sqrt(3)) < 0.1 * bound


def _rand_params(rng, shapes):
  return {n: {'kernel': jnp.asarray(rng.standard_normal((3, 3, c, c)) * 0.2, jnp.float32),
              'bias': jnp.asarray(rng.standard_normal(c), jnp.float32)} for n, c in shapes}


def test_resblock_and_cascade_definition():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((1, 4, 4, 8)), jnp.float32)
  blk = jax.jit(layers.ResBlock(8).apply)
  p = _rand_params(rng, [('conv1', 8), ('conv2', 8)])
  w1, w2 = (np.asarray(p[n]['kernel']).transpose(3, 2, 0, 1) for n in ('conv1', 'conv2'))
  xn = np.asarray(x).transpose(0, 3, 1, 2)
  h = _conv_loop(xn, w1, np.asarray(p['conv1']['bias']), 1, 1)
  h = np.where(h > 0, h, 0.2 * h)
  expected = xn + 0.2 * _conv_loop(h, w2, np.asarray(p['conv2']['bias']), 1, 1)
  np.testing.assert_allclose(blk({'params': p}, x), expected.transpose(0, 2, 3, 1), atol=1e-5)
  pc = {f'block_{i}': _rand_params(rng, [('conv1', 8), ('conv2', 8)]) for i in range(2)}
  inner = blk({'params': pc['block_1']}, blk({'params': pc['block_0']}, x))
  y = jax.jit(layers.Cascade(8, 2).apply)({'params': pc}, x)
  np.testing.assert_allclose(y, x + inner, atol=1e-5)


def _shuffle_loop(x, r):
  """PyTorch PixelShuffle, NCHW: out[n, c, h*r+i, w*r+j] = in[n, c*r*r + i*r + j, h, w]."""
  n, cr, h, w = x.shape
  c = cr // (r * r)
  y = np.zeros((n, c, h * r, w * r))
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        y[:, ch, i::r, j::r] = x[:, ch * r * r + i * r + j]
  return y


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_tail_is_authors_upnet(scale):
  """UPNet = conv, shuffle(s), conv (x4: conv, shuffle(2), conv, shuffle(2), conv), by loops."""
  rng = np.random.default_rng(20 + scale)
  c = 4
  x = rng.standard_normal((1, c, 3, 2))
  factors = (2, 2) if scale == 4 else (scale,)
  torch_w, params = [], {}
  for n, r in enumerate(factors + (None,)):
    cout = 3 if r is None else c * r * r
    w = rng.standard_normal((cout, c, 3, 3)) * 0.3
    b = rng.standard_normal(cout)
    torch_w.append((w, b, r))
    params[f'conv_{2 * n}'] = {'kernel': jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
                               'bias': jnp.asarray(b, jnp.float32)}
  ref = x
  for w, b, r in torch_w:
    ref = _conv_loop(ref, w, b, 1, 1)
    if r is not None:
      ref = _shuffle_loop(ref, r)
  y = jax.jit(layers.Tail(scale, c).apply)({'params': params}, _nhwc(x))
  assert y.shape == (1, 3 * scale, 2 * scale, 3)
  np.testing.assert_allclose(y, ref.transpose(0, 2, 3, 1), atol=1e-4, rtol=1e-5)
