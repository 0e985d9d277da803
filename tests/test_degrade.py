"""Kernels, blur and downsampling: definitions checked by hand, numpy and TF agree to 1e-5."""

import numpy as np
import pytest

from dssr_jax import degrade
from dssr_jax import imresize

tf = pytest.importorskip('tensorflow')


def _cov(k):
  y, x = np.meshgrid(*(np.arange(n) - n // 2 for n in k.shape), indexing='ij')
  my, mx = (k * y).sum(), (k * x).sum()
  return np.array([[(k * (x - mx) ** 2).sum(), (k * (x - mx) * (y - my)).sum()],
                   [(k * (x - mx) * (y - my)).sum(), (k * (y - my) ** 2).sum()]]), (mx, my)


def test_isotropic_kernel():
  k = degrade.isotropic_kernel(1.3)
  assert k.shape == (21, 21)
  assert k.sum() == pytest.approx(1.0, abs=1e-12)
  assert k[10, 10] / k[10, 11] == pytest.approx(np.exp(1 / (2 * 1.3 ** 2)), rel=1e-12)
  assert k[10, 10] / k[11, 11] == pytest.approx(np.exp(2 / (2 * 1.3 ** 2)), rel=1e-12)
  np.testing.assert_allclose(k, k.T, atol=0)
  with pytest.raises(ValueError, match='sigma'):
    degrade.isotropic_kernel(0.0)


def test_anisotropic_kernel_covariance_rotation_and_x4():
  sx, sy, th = 2.0, 1.2, 0.4  # sigmas >= 1: the sampled Gaussian keeps its covariance
  k = degrade.anisotropic_kernel(sx, sy, th, size=31)  # a wide grid: truncation negligible
  rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
  want = rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T
  cov, _ = _cov(k)
  np.testing.assert_allclose(cov, want, atol=1e-6)
  # x4: k (*) dilate2(k) has covariance cov(k) + 4 cov(k) = 5 cov(k), and 31x31 from 11x11.
  k11 = degrade.anisotropic_kernel(sx, sy, th)
  k4 = degrade.x4_kernel(k11)
  assert k4.shape == (31, 31)
  np.testing.assert_allclose(_cov(k4)[0], 5 * _cov(k11)[0], atol=1e-9)
  # The offset moves the centre by 0.5 px at x2 and by 3 x 0.5 = 1.5 px after x4_kernel.
  ko = degrade.anisotropic_kernel(sx, sy, th, size=31, offset=0.5)
  np.testing.assert_allclose(_cov(ko)[1], (0.5, 0.5), atol=1e-6)
  k4o = degrade.x4_kernel(degrade.anisotropic_kernel(0.8, 0.6, th, offset=0.5))
  np.testing.assert_allclose(_cov(k4o)[1], (1.5, 1.5), atol=1e-4)
  # align_kernel (spline shift) puts the centre of mass at centre + (s - 1) / 2.
  np.testing.assert_allclose(_cov(degrade.align_kernel(k4, 4))[1], (1.5, 1.5), atol=2e-3)


def test_blur_matches_explicit_reflect_correlation():
  rng = np.random.default_rng(0)
  img = rng.random((9, 7, 2))
  k = rng.random((5, 3))
  pad = np.pad(img, ((2, 2), (1, 1), (0, 0)), mode='reflect')  # mirror, edge not repeated
  want = np.zeros_like(img)
  for i in range(9):
    for j in range(7):
      want[i, j] = np.einsum('ab,abc->c', k, pad[i:i + 5, j:j + 3])
  np.testing.assert_allclose(degrade.blur(img, k), want, atol=1e-12)
  np.testing.assert_allclose(degrade.blur_tf(img, k).numpy(), want, atol=1e-5)
  np.testing.assert_allclose(degrade.blur(np.full((30, 30, 3), 0.3), degrade.isotropic_kernel(2)),
                             0.3, atol=1e-12)


def test_blur_matrix_is_reflect_correlation():
  g = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
  x = np.random.default_rng(2).random(7)
  want = [np.dot(g, np.pad(x, 2, mode='reflect')[i:i + 5]) for i in range(7)]
  np.testing.assert_allclose(degrade.blur_matrix(g, 7) @ x, want, atol=1e-12)
  hr = np.random.default_rng(3).random((30, 36, 3))  # non-square: one matrix per axis
  np.testing.assert_allclose(degrade.iso_degrade_tf(hr, 1.1, 3).numpy(),
                             degrade.degrade(hr, degrade.isotropic_kernel(1.1), 3), atol=1e-5)


def test_downsample():
  img = np.random.default_rng(1).random((12, 16, 3))
  np.testing.assert_array_equal(degrade.downsample(img, 4, 'aniso'), img[::4, ::4])
  np.testing.assert_allclose(degrade.downsample(img, 2, 'iso'), imresize.imresize(img, 0.5),
                             atol=0)


@pytest.mark.parametrize('scale,degradation', [(2, 'iso'), (3, 'iso'), (4, 'iso'), (2, 'aniso'),
                                               (4, 'aniso')])
def test_numpy_and_tf_agree(scale, degradation):
  rng = np.random.default_rng(scale)
  hr = rng.random((48, 48, 3))
  if degradation == 'iso':
    sigma = 1.7
    k_np = degrade.isotropic_kernel(sigma)
    k_tf = degrade.isotropic_kernel_tf(sigma).numpy()
  else:
    sx, sy, th, noise = degrade.sample_anisotropic_params(rng)
    k_np = degrade.anisotropic_kernel(sx, sy, th, noise, offset=0.5)
    k_tf = degrade.anisotropic_kernel_tf(sx, sy, th, noise, offset=0.5)
    if scale == 4:
      k_np, k_tf = degrade.x4_kernel(k_np), degrade.x4_kernel_tf(k_tf)
    k_tf = k_tf.numpy()
  np.testing.assert_allclose(k_tf, k_np, atol=1e-7)
  np.testing.assert_allclose(degrade.blur_tf(hr, k_np).numpy(), degrade.blur(hr, k_np), atol=1e-5)
  lr_np = degrade.degrade(hr, k_np, scale, degradation)
  lr_tf = degrade.downsample_tf(degrade.blur_tf(hr[None], k_np), scale, degradation)[0].numpy()
  assert lr_np.shape == (48 // scale, 48 // scale, 3)
  np.testing.assert_allclose(lr_tf, lr_np, atol=1e-5)
  np.testing.assert_array_equal(
      np.round(degrade.quantize_tf(lr_tf).numpy() * 255), degrade.quantize(lr_tf))
  # The fused training-path versions compute the same sums.
  if degradation == 'iso':
    fused = degrade.iso_degrade_tf(hr, sigma, scale)
  else:
    fused = degrade.aniso_degrade_tf(hr, k_np, scale)
  np.testing.assert_allclose(fused.numpy(), lr_np, atol=1e-5)


def test_sampling_laws_and_determinism():
  seed = tf.constant([7, 3], tf.int64)
  peaks = []
  for i in range(20):
    k = degrade.sample_kernel_tf(tf.constant([7, i], tf.int64), 4, 'iso').numpy()
    peaks.append(k.max())
  lo, hi = degrade.ISO_TRAIN_SIGMA[4]
  assert all(degrade.isotropic_kernel(hi).max() <= p <= degrade.isotropic_kernel(lo).max()
             for p in peaks)
  assert len(set(peaks)) == 20
  a = degrade.sample_kernel_tf(seed, 4, 'aniso').numpy()
  np.testing.assert_array_equal(a, degrade.sample_kernel_tf(seed, 4, 'aniso').numpy())
  assert a.shape == (31, 31) and a.sum() == pytest.approx(1.0, abs=1e-5)
  assert degrade.sample_kernel_tf(seed, 2, 'aniso').shape == (11, 11)
  k = degrade.sample_kernel(np.random.default_rng(0), 2, 'iso', sigma_range=(1.0, 1.0))
  np.testing.assert_allclose(k, degrade.isotropic_kernel(1.0), atol=1e-15)


def test_gaussian8_sigmas():
  np.testing.assert_allclose(degrade.gaussian8_sigmas(2), np.linspace(0.8, 1.6, 8))
  assert degrade.gaussian8_sigmas(4)[[0, -1]].tolist() == [1.8, 3.2]
  with pytest.raises(ValueError, match='scale'):
    degrade.gaussian8_sigmas(5)


def test_bad_inputs():
  k = degrade.isotropic_kernel(1.0)
  with pytest.raises(ValueError, match='too small'):
    degrade.blur(np.zeros((8, 40, 3)), k)
  with pytest.raises(ValueError, match='odd'):
    degrade.blur(np.zeros((30, 30, 3)), np.ones((4, 4)))
  with pytest.raises(ValueError, match='float'):
    degrade.blur(np.zeros((30, 30, 3), np.uint8), k)
  with pytest.raises(ValueError, match='degradation'):
    degrade.downsample(np.zeros((8, 8, 3)), 2, 'box')
  with pytest.raises(ValueError, match='scale 2 or 4'):
    degrade.sample_kernel(np.random.default_rng(0), 3, 'aniso')
  with pytest.raises(ValueError, match='sigma_range'):
    degrade.train_sigma_range(2, (2.0, 1.0))
