"""PyTorch bicubic resampling against hand-derived weights, a direct per-pixel formula and invariants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dssr_jax import fast
from dssr_jax import torch_bicubic


def _torch_bicubic_1d(v, n_out, align_corners, scale=None):
  """Direct per-output-pixel loop of PyTorch's upsample_bicubic2d formula (float32 coordinates)."""
  a = -0.75
  n_in = len(v)

  def kern(x):
    x = abs(x)
    if x <= 1:
      return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
      return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0

  out = []
  for o in range(n_out):
    if align_corners:
      src = np.float32(np.float32(n_in - 1) / np.float32(n_out - 1)) * np.float32(o)
    else:
      src = np.float32(1.0 / scale) * np.float32(o + 0.5) - np.float32(0.5)
    src = float(np.float32(src))
    f = math.floor(src)
    t = src - f
    acc = 0.0
    for k in range(-1, 3):
      acc += kern(t - k) * v[min(max(f + k, 0), n_in - 1)]
    out.append(acc)
  return np.array(out)


def test_hand_derived_x2_border_rows():
  m = torch_bicubic.bicubic_matrix(5, 10, False, 2)
  # o=0: src=-0.25 -> taps at -2,-1,0,1 with t=0.75; the three clamped to 0 add up.
  np.testing.assert_allclose(m[0, :2], [1.10546875, -0.10546875], atol=1e-7)
  np.testing.assert_allclose(m[0, 2:], 0)
  # o=1: src=0.25 -> taps -1,0,1,2 with t=0.25: -0.10546875, 0.87890625, 0.26171875, -0.03515625.
  np.testing.assert_allclose(m[1, :3], [-0.10546875 + 0.87890625, 0.26171875, -0.03515625],
                             atol=1e-7)


def test_x3_centres_coincide():
  # Output 3k+1 sits exactly on input k (t == 0): a copy.
  m = torch_bicubic.bicubic_matrix(7, 21, False, 3)
  np.testing.assert_allclose(m[1::3], np.eye(7), atol=1e-7)


@pytest.mark.parametrize('n_in,scale', [(5, 2), (7, 3), (6, 4), (1, 2)])
def test_up_matches_direct_formula(n_in, scale):
  rng = np.random.default_rng(0)
  v = rng.random(n_in)
  m = torch_bicubic.bicubic_matrix(n_in, n_in * scale, False, scale)
  np.testing.assert_allclose(m @ v, _torch_bicubic_1d(v, n_in * scale, False, scale), atol=1e-6)


@pytest.mark.parametrize('n_in,scale', [(24, 2), (36, 3), (32, 4), (25, 2)])
def test_down_matches_direct_formula(n_in, scale):
  rng = np.random.default_rng(1)
  v = rng.random(n_in)
  n_out = n_in // scale
  m = torch_bicubic.bicubic_matrix(n_in, n_out, True)
  np.testing.assert_allclose(m @ v, _torch_bicubic_1d(v, n_out, True), atol=1e-6)
  # Corner-aligned: the end pixels are copied.
  np.testing.assert_allclose((m @ v)[[0, -1]], v[[0, -1]], atol=1e-6)


def test_constants_preserved_and_linear_interior():
  x = jnp.full((1, 6, 9, 2), 0.37, jnp.float32)
  np.testing.assert_allclose(torch_bicubic.up(x, 3), 0.37, atol=1e-6)
  np.testing.assert_allclose(torch_bicubic.down(torch_bicubic.up(x, 2), 2), 0.37,
                             atol=1e-6)
  # Every row of both matrices sums to 1 (the kernel is a partition of unity).
  matrix = torch_bicubic.bicubic_matrix
  for m in (matrix(9, 27, False, 3), matrix(27, 9, True)):
    np.testing.assert_allclose(m.sum(1), 1, atol=1e-6)


def test_symmetry_and_separability():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.random((2, 5, 7, 3)), jnp.float32)
  y = torch_bicubic.up(x, 2)
  assert y.shape == (2, 10, 14, 3)
  # Mirroring the input mirrors the output (both coordinate conventions are centred).
  np.testing.assert_allclose(torch_bicubic.up(x[:, ::-1, ::-1], 2), y[:, ::-1, ::-1],
                             atol=1e-6)
  yd = torch_bicubic.down(y, 2)
  np.testing.assert_allclose(torch_bicubic.down(y[:, :, ::-1], 2), yd[:, :, ::-1], atol=1e-6)
  # The 2-D result equals the per-axis 1-D formula applied twice (rows, then columns).
  xn = np.asarray(x[0, :, :, 1], np.float64)
  rows = np.stack([_torch_bicubic_1d(r, 14, False, 2) for r in xn])
  full = np.stack([_torch_bicubic_1d(c, 10, False, 2) for c in rows.T], axis=1)
  np.testing.assert_allclose(y[0, :, :, 1], full, atol=1e-5)


@pytest.mark.parametrize('h,w', [(1, 3), (2, 5), (9, 4)])
def test_dense_and_banded_application_equal_the_matrix_product(h, w):
  """`resize_with` (the plain form) and `fast.banded_resize` (4-tap gathers) are the matrix product
  in float64, inputs shorter than the 4 taps included."""
  rng = np.random.default_rng(h * w)
  x = rng.random((1, h, w, 2)).astype(np.float32)
  xd = rng.random((1, 4 * h, 3 * w, 2)).astype(np.float32)
  matrix = torch_bicubic.bicubic_matrix
  cases = [(x, matrix(h, h * s, False, s), matrix(w, w * s, False, s)) for s in (2, 3)]
  cases.append((xd, matrix(4 * h, 2 * h, True), matrix(3 * w, w, True)))
  for inp, mh, mw in cases:
    dense = np.einsum('ph,qw,bhwc->bpqc', mh, mw, inp.astype(np.float64))
    for form in (torch_bicubic.resize_with, fast.banded_resize):
      np.testing.assert_allclose(form(jnp.asarray(inp), mh, mw), dense, atol=1e-6)
  np.testing.assert_allclose(torch_bicubic.up(jnp.asarray(x), 2),
                             np.einsum('ph,qw,bhwc->bpqc', *cases[0][1:], x), atol=1e-6)


def test_bad_inputs():
  with pytest.raises(ValueError, match='rank 4'):
    torch_bicubic.up(jnp.zeros((4, 4, 3)), 2)
  with pytest.raises(ValueError, match='scale'):
    torch_bicubic.up(jnp.zeros((1, 4, 4, 3)), 0)
  with pytest.raises(ValueError, match='smaller than scale'):
    torch_bicubic.down(jnp.zeros((1, 2, 8, 3)), 3)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_banded_gradient_is_the_transposed_matrix(scale):
  """The gathers' custom gradient (a band of m^T) is exactly m^T applied to the cotangent."""
  rng = np.random.default_rng(scale)
  for up, (h, w) in ((True, (7, 9)), (False, (25, 19))):
    x = jnp.asarray(rng.random((2, h, w, 3), np.float32))
    if up:
      mh = torch_bicubic.bicubic_matrix(h, h * scale, False, scale)
      mw = torch_bicubic.bicubic_matrix(w, w * scale, False, scale)
    else:
      mh = torch_bicubic.bicubic_matrix(h, h // scale, True)
      mw = torch_bicubic.bicubic_matrix(w, w // scale, True)
    y, vjp = jax.vjp(lambda x: fast.banded_resize(x, mh, mw), x)
    ct = rng.standard_normal(y.shape)
    want = np.einsum('ph,qw,bpqc->bhwc', mh, mw, ct)
    np.testing.assert_allclose(vjp(jnp.asarray(ct, jnp.float32))[0], want, atol=1e-5)
