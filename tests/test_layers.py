"""Layers against direct loop implementations of the PyTorch definitions (fixtures README)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
@pytest.mark.parametrize('impl', ['subpixel', 'phases', 'dilated'])
def test_up_is_pytorch_conv_transpose(scale, impl):
  k, s, p = layers.RESAMPLE[scale]
  rng = np.random.default_rng(scale)
  cin, cout = 5, 6  # in != out, so a swapped pair of weight axes cannot pass
  x = rng.standard_normal((2, cin, 3, 4))
  w = rng.standard_normal((cin, cout, k, k))
  b = rng.standard_normal(cout)
  # The stored kernel: K[ky, kx, i, o] = W[i, o, k-1-ky, k-1-kx].
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 0, 1)[::-1, ::-1], jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(layers.Up(scale, cout, impl=impl).apply)({'params': params}, _nhwc(x))
  assert y.shape == (2, 3 * s, 4 * s, cout)
  ref = _conv_transpose_loop(x, w, b, s, p).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('impl', ['strided', 'space_to_depth'])
def test_down_is_pytorch_strided_conv(scale, impl):
  k, s, p = layers.RESAMPLE[scale]
  rng = np.random.default_rng(10 + scale)
  cin, cout = 4, 5
  x = rng.standard_normal((2, cin, 3 * s, 2 * s))
  w = rng.standard_normal((cout, cin, k, k))
  b = rng.standard_normal(cout)
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(layers.Down(scale, cout, impl=impl).apply)({'params': params}, _nhwc(x))
  assert y.shape == (2, 3, 2, cout)
  np.testing.assert_allclose(y, _conv_loop(x, w, b, s, p).transpose(0, 2, 3, 1), atol=1e-4,
                             rtol=1e-5)


def test_conv_is_pytorch_conv():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 3, 5, 6))
  w = rng.standard_normal((4, 3, 3, 3))
  b = rng.standard_normal(4)
  params = {'kernel': jnp.asarray(w.transpose(2, 3, 1, 0), jnp.float32),
            'bias': jnp.asarray(b, jnp.float32)}
  y = jax.jit(layers.Conv(4).apply)({'params': params}, _nhwc(x))
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


def test_space_to_depth_inverts_depth_to_space():
  x = jnp.arange(2 * 3 * 4 * 18, dtype=jnp.float32).reshape(2, 3, 4, 18)
  np.testing.assert_array_equal(layers.space_to_depth(layers.depth_to_space(x, 3), 3), x)


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
@pytest.mark.parametrize('fast_shuffle', [True, False])
def test_tail_is_authors_upnet(scale, fast_shuffle):
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
  y = jax.jit(layers.Tail(scale, c, fast_shuffle=fast_shuffle).apply)({'params': params}, _nhwc(x))
  assert y.shape == (1, 3 * scale, 2 * scale, 3)
  np.testing.assert_allclose(y, ref.transpose(0, 2, 3, 1), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('k', [1, 3])
@pytest.mark.parametrize('shape,cout', [((2, 7, 9, 5), 6), ((1, 4, 3, 8), 8)])
def test_conv_explicit_backward(shape, cout, k):
  """The CPU forms (a 1x1 conv as a matmul; XLA's 3x3 gradients, or the explicit input gradient and
  weight gradient as matmuls) equal XLA's conv and a direct sum of the definition, also inside a
  rolled loop."""
  rng = np.random.default_rng(sum(shape) + k)
  x = rng.standard_normal(shape).astype(np.float32)
  w = rng.standard_normal((k, k, shape[-1], cout)).astype(np.float32)
  dy = rng.standard_normal(shape[:3] + (cout,)).astype(np.float32)
  grads = {}
  for impl in layers.BACKWARD_IMPLS:
    with layers.conv_backward(impl):
      y, vjp = jax.vjp(lambda x, w: layers.conv_s1(x, w, ((k // 2,) * 2,) * 2), jnp.asarray(x),
                       jnp.asarray(w))
    grads[impl] = (y,) + vjp(jnp.asarray(dy))
  p = k // 2
  xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  h, wd = shape[1:3]
  direct = np.stack([np.stack([np.einsum('bhwi,bhwo->io', xp[:, ky:ky + h, kx:kx + wd], dy)
                               for kx in range(k)]) for ky in range(k)])
  for impl in ('cpu', 'explicit'):
    np.testing.assert_allclose(grads[impl][2], direct, rtol=1e-5, atol=1e-4)
    for a, b in zip(grads['xla'], grads[impl]):  # output, input gradient, weight gradient
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  if k == 3 and cout == shape[-1]:  # a rolled scan of the conv: same gradients both ways

    def rolled(x, w):
      return jax.lax.scan(lambda c, _: (jnp.tanh(layers.conv_s1(c, w, ((1, 1), (1, 1)))), None),
                          x, None, length=2)[0].sum()

    for impl in ('xla', 'explicit'):
      with layers.conv_backward(impl):
        grads[impl] = jax.grad(rolled, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(w))
    for a, b in zip(grads['xla'], grads['explicit']):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match='impl must be one of'):
    with layers.conv_backward('fast'):
      pass


@pytest.mark.parametrize('shape', [(2, 9, 7, 3), (1, 4, 5, 3)])
def test_conv_of_conv_equals_the_two_convs(shape):
  """A 3x3 conv of y0 = conv(x0) + b0 read from x0 through the composed 5x5 kernel (and y0 on the
  border ring) equals the two convs one after the other, values and gradients, and `Conv(after=)`
  takes that path with the same result as reading y0."""
  rng = np.random.default_rng(sum(shape))
  f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  x0, w0, b0, w1, b1 = f32(*shape), f32(3, 3, 3, 72) / 5, f32(72), f32(3, 3, 72, 72) / 25, f32(72)
  same = ((1, 1), (1, 1))

  def two_convs(x0, w0, b0, w1, b1):
    return layers._conv(layers._conv(x0, w0, padding=same) + b0, w1, padding=same) + b1

  def folded(x0, w0, b0, w1, b1):
    return layers.conv_of_conv(x0, w0, b0, layers._conv(x0, w0, padding=same) + b0, w1, b1)

  ref, vjp_ref = jax.vjp(two_convs, x0, w0, b0, w1, b1)
  out, vjp_out = jax.vjp(folded, x0, w0, b0, w1, b1)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
  ct = f32(*ref.shape)
  for a, b in zip(vjp_ref(ct), vjp_out(ct)):
    assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)) < 1e-5
  conv = layers.Conv(72)  # 72 channels: wide enough for the layer to take the folded path
  y0 = layers._conv(x0, w0, padding=same) + b0
  params = conv.init(jax.random.key(0), y0)
  via_x0 = conv.apply(params, y0, (x0, w0, b0))
  np.testing.assert_allclose(via_x0, conv.apply(params, y0), atol=1e-5, rtol=1e-5)
  moved = conv.apply(params, y0 + 1.0, (x0, w0, b0))  # the interior from x0, the ring from y0
  np.testing.assert_array_equal(moved[:, 1:-1, 1:-1], via_x0[:, 1:-1, 1:-1])
  assert not np.allclose(moved[:, 0], via_x0[:, 0], atol=1e-3)


def test_cpu_compiler_options_keep_ynnpack_for_reductions_only_and_keep_values():
  """On the CPU, DSSR compiles with XLA's own convolutions and YNNPACK's reductions only (faster
  here, see `model.compiler_options`); a conv's gradients are those of the default compile."""
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  opts = model_lib.compiler_options()
  # The pinned jax knows the option.
  assert opts == {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((2, 16, 12, 32)), jnp.float32)  # big enough for YNNPACK
  w = jnp.asarray(rng.standard_normal((3, 3, 32, 32)), jnp.float32)
  b = jnp.asarray(rng.standard_normal((32,)), jnp.float32)
  ct = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
  f = lambda x, w, b, ct: jax.vjp(lambda x, w, b: layers.conv_s1(x, w, ((1, 1), (1, 1))) + b,
                                  x, w, b)[1](ct)
  default = jax.jit(f).lower(x, w, b, ct).compile()
  ours = jax.jit(f, compiler_options=opts).lower(x, w, b, ct).compile()

  def ynn_ops(compiled):  # the ops that YNNPACK fusions were made of (None: no metadata)
    ops = set()
    for line in compiled.as_text().splitlines():
      if re.search(r'%ynn_fusion\S* = ', line):
        op = re.search(r'op_name="[^"]*/([a-z_]+)"', line)
        ops.add(op.group(1) if op else None)
    return ops

  assert 'conv_general_dilated' in ynn_ops(default)
  assert ynn_ops(ours) == {'reduce_sum'}  # the bias gradient
  for u, v in zip(jax.tree_util.tree_leaves(default(x, w, b, ct)),
                  jax.tree_util.tree_leaves(ours(x, w, b, ct))):
    np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-4)
