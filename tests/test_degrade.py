"""Kernels, blur and downsampling: definitions checked by hand, numpy and TF agree to 1e-5."""

import numpy as np
import pytest
import tensorflow as tf

from dssr_jax import degrade
from dssr_jax import image_files
from dssr_jax import matlab_bicubic


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
  np.testing.assert_allclose(degrade.blur(np.full((30, 30, 3), 0.3), degrade.isotropic_kernel(2)),
                             0.3, atol=1e-12)


def test_fused_isotropic_degradation_of_a_non_square_image():
  hr = np.random.default_rng(3).random((30, 36, 3))  # one matrix per axis
  np.testing.assert_allclose(degrade.iso_degrade_tf(hr, 1.1, 3).numpy(),
                             degrade.degrade(hr, degrade.isotropic_kernel(1.1), 3), atol=1e-5)


def test_downsample():
  img = np.random.default_rng(1).random((12, 16, 3))
  np.testing.assert_array_equal(degrade.downsample(img, 4, 'aniso'), img[::4, ::4])
  np.testing.assert_allclose(degrade.downsample(img, 2, 'iso'), matlab_bicubic.imresize(img, 0.5),
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
  lr_np = degrade.degrade(hr, k_np, scale, degradation)
  assert lr_np.shape == (48 // scale, 48 // scale, 3)
  # The training path fuses blur and downsampling: the same sums.
  if degradation == 'iso':
    lr_tf = degrade.iso_degrade_tf(hr, sigma, scale).numpy()
  else:
    lr_tf = degrade.aniso_degrade_tf(hr, k_np, scale).numpy()
  np.testing.assert_allclose(lr_tf, lr_np, atol=1e-5)
  np.testing.assert_array_equal(
      np.round(degrade.quantize_tf(lr_tf).numpy() * 255), image_files.to_uint8(lr_tf))


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
  k = degrade.sample_kernel_tf(seed, 2, 'iso', sigma_range=(1.0, 1.0)).numpy()
  np.testing.assert_allclose(k, degrade.isotropic_kernel(1.0), atol=1e-7)


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
  with pytest.raises(ValueError, match='sigma_range'):
    degrade.train_sigma_range(2, (2.0, 1.0))
  with pytest.raises(ValueError, match='sigma_range must satisfy 0 < lo'):
    degrade.train_sigma_range(2, (0.0, 1.0))
  with pytest.raises(ValueError, match='no default sigma range for scale 5'):
    degrade.train_sigma_range(5)
  for sx, sy in ((0.0, 1.0), (1.0, 0.0)):
    with pytest.raises(ValueError, match='sigmas must be > 0'):
      degrade.anisotropic_kernel(sx, sy, 0.3)
  with pytest.raises(ValueError, match='noise must be 11x11'):
    degrade.anisotropic_kernel(1.0, 2.0, 0.3, noise=np.zeros((5, 5)))
  with pytest.raises(ValueError, match='degradation must be one of'):
    degrade.sample_kernel_tf(tf.constant([0, 0], tf.int64), 2, 'box')
  with pytest.raises(ValueError, match="'aniso' is defined for scale 2 or 4, got 3"):
    degrade.sample_kernel_tf(tf.constant([0, 0], tf.int64), 3, 'aniso')
  with pytest.raises(ValueError, match='subsample: scale must be a positive integer'):
    degrade.subsample(np.zeros((4, 4, 3)), 0)


def _fit_log_gaussian(k, radius=4):
  """Fits log k = -v^T A v / 2 + b^T v + c on the kernel's central (2 radius + 1)^2 pixels.

  For a Gaussian times (1 + noise) the fit recovers the Gaussian (a quadratic in log space, exact
  on the grid whatever the truncation) and leaves log(1 + noise) minus its mean as the residual.
  Returns (the two standard deviations, largest first; the orientation of the major axis in
  [0, pi), from the column axis towards the row axis; the residual's standard deviation; the
  centre (x, y) relative to the grid's centre).
  """
  n = k.shape[0]
  r = np.arange(n) - n // 2
  y, x = np.meshgrid(r, r, indexing='ij')
  sel = (np.abs(y) <= radius) & (np.abs(x) <= radius)
  x, y = x[sel].astype(np.float64), y[sel].astype(np.float64)
  design = np.stack([x * x, y * y, x * y, x, y, np.ones_like(x)], 1)
  logk = np.log(np.asarray(k, np.float64)[sel])
  coef, *_ = np.linalg.lstsq(design, logk, rcond=None)
  a = np.array([[-2 * coef[0], -coef[2]], [-coef[2], -2 * coef[1]]])
  evals, evecs = np.linalg.eigh(np.linalg.inv(a))  # ascending
  major = evecs[:, 1]
  angle = np.arctan2(major[1], major[0]) % np.pi
  centre = np.linalg.solve(a, coef[3:5])  # the Gaussian's peak, (x, y)
  return np.sqrt(evals[::-1]), angle, np.std(logk - design @ coef), centre


def _ks_uniform(x, lo, hi):
  """Kolmogorov-Smirnov distance of the sample x to U(lo, hi)."""
  x = np.sort(x)
  cdf = np.clip((x - lo) / (hi - lo), 0, 1)
  n = len(x)
  return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


def _sample_kernels(n, scale, seed):
  return [degrade.sample_kernel_tf(tf.constant([seed, i], tf.int64), scale, 'aniso').numpy()
          for i in range(n)]


def test_anisotropic_parameters_follow_the_design_law():
  """The parameters the DIV2KRK-style test sets draw: sigma_x, sigma_y iid U(0.6, 5), theta
  U(-pi, pi), noise iid U(0, 0.25) per pixel of the 11x11 grid."""
  rng = np.random.default_rng(17)
  draws = [degrade.sample_anisotropic_params(rng) for _ in range(2000)]
  sx, sy, theta = (np.array([d[i] for d in draws]) for i in range(3))
  noise = np.stack([d[3] for d in draws])
  assert noise.shape == (2000, 11, 11)
  crit = 1.95 / np.sqrt(2000)  # Kolmogorov-Smirnov, 0.1%
  assert _ks_uniform(sx, 0.6, 5.0) < crit and _ks_uniform(sy, 0.6, 5.0) < crit
  assert abs(np.corrcoef(sx, sy)[0, 1]) < 0.1
  assert _ks_uniform(theta, -np.pi, np.pi) < crit
  assert _ks_uniform(noise[:, 3, 7], 0.0, 0.25) < crit and _ks_uniform(noise.ravel()[::7], 0, 0.25) < 0.02
  assert abs(np.corrcoef(noise[:, 0, 0], noise[:, 5, 5])[0, 1]) < 0.1


def test_anisotropic_training_kernels_follow_the_design_law():
  """Random x2 training kernels (tf.data's sampler): sigma_x, sigma_y iid U(0.6, 5),
  any orientation, multiplicative noise 1 + U(0, 0.25) (design section 3, setting 2), recovered
  from each kernel by a log-quadratic fit over 600 draws, centred half a pixel below and right of
  the grid's centre (so that keeping img[::2, ::2] samples each 2x2 block's centre)."""
  fits = [_fit_log_gaussian(k) for k in _sample_kernels(600, 2, seed=11)]
  sigmas = np.concatenate([f[0] for f in fits])
  # Pooled, the two sigmas of every kernel are draws of U(0.6, 5): Kolmogorov-Smirnov distance to
  # that law below the 0.1% critical value, and nothing outside it but fit noise.
  assert _ks_uniform(sigmas, 0.6, 5.0) < 1.95 / np.sqrt(len(sigmas))
  assert 0.55 < sigmas.min() < 0.7 and 4.8 < sigmas.max() < 5.35, (sigmas.min(), sigmas.max())
  # Orientations of the elongated kernels: uniform over [0, pi).
  angles = np.array([f[1] for f in fits if f[0][0] > 1.3 * f[0][1]])
  assert _ks_uniform(angles, 0, np.pi) < 1.95 / np.sqrt(len(angles)), len(angles)
  # (A wide kernel's centre is noisy in the fit: compare the mean.)
  np.testing.assert_allclose(np.mean([f[3] for f in fits], axis=0), (0.5, 0.5), atol=0.02)
  # The noise: log(1 + U(0, 0.25)) has standard deviation 0.0631; a 6-parameter fit to 81 pixels
  # leaves sqrt(75 / 81) of it.
  u = np.linspace(0, 0.25, 100001)
  want = np.std(np.log1p(u)) * np.sqrt(75 / 81)
  resid = np.array([f[2] for f in fits])
  assert abs(resid.mean() / want - 1) < 0.05, (resid.mean(), want)
  assert resid.max() < 0.223 / 2  # log(1.25): the noise never exceeds 25%


def test_x4_training_kernels_are_x2_kernels_applied_twice():
  """x4 training kernels: 31x31, sum 1, and on average 5 times the covariance and 3 times the
  centre offset of the x2 kernels (k (*) dilate2(k), k from the x2 law)."""
  def trace(k):
    return np.trace(_cov(k)[0])

  k4 = _sample_kernels(300, 4, seed=13)
  assert all(k.shape == (31, 31) and abs(k.sum() - 1) < 1e-5 for k in k4)
  k2 = _sample_kernels(300, 2, seed=11)
  ratio = np.mean([trace(k) for k in k4]) / np.mean([trace(k) for k in k2])
  assert abs(ratio / 5 - 1) < 0.15, ratio
  # Centres of mass add up under convolution: k's plus twice k's (its dilated copy). The x2 law's
  # half-pixel offset (less where the 11x11 grid cuts a wide kernel) shows three times over.
  com2 = np.mean([_cov(k)[1] for k in k2], axis=0)
  com4 = np.mean([_cov(k)[1] for k in k4], axis=0)
  assert np.all(com2 > 0.3), com2
  np.testing.assert_allclose(com4, 3 * com2, atol=0.1)


@pytest.mark.parametrize('scale,lo,hi', [(2, 0.2, 2.0), (3, 0.2, 3.0), (4, 0.2, 4.0)])
def test_isotropic_training_sigmas_are_uniform_in_the_scale_range(scale, lo, hi):
  """One sigma per patch, U(lo, hi) per scale (design section 3): tf.data's draws and the kernel
  sampler's kernels (sigma read back from the ratio of two neighbouring taps)."""
  tf_sigmas = np.array([degrade.sample_sigma_tf(tf.constant([5, i], tf.int64), scale).numpy()
                        for i in range(400)])
  kernel_sigmas = []
  for i in range(400):
    k = degrade.sample_kernel_tf(tf.constant([scale, i], tf.int64), scale, 'iso').numpy()
    kernel_sigmas.append(np.sqrt(1 / (2 * np.log(k[10, 10] / k[10, 11]))))
  for s in (tf_sigmas, np.array(kernel_sigmas)):
    assert lo - 1e-4 <= s.min() < lo + 0.03 * (hi - lo) and hi - 0.03 * (hi - lo) < s.max() <= hi + 1e-4
    assert abs(s.mean() - (lo + hi) / 2) < 0.05 * (hi - lo)
  # data.sigma_range overrides the scale's range, in the sigma and in the kernel samplers.
  own = [degrade.sample_sigma_tf(tf.constant([6, i], tf.int64), scale, (1.0, 1.2)).numpy()
         for i in range(50)]
  assert 1.0 <= min(own) and max(own) <= 1.2 and max(own) - min(own) > 0.15
  k = degrade.sample_kernel_tf(tf.constant([6, 0], tf.int64), scale, 'iso', (1.0, 1.2)).numpy()
  assert 1.0 - 1e-4 <= np.sqrt(1 / (2 * np.log(k[10, 10] / k[10, 11]))) <= 1.2 + 1e-4


def test_quantize_clips_and_rounds_and_numpy_noise_is_additive_gaussian():
  np.testing.assert_array_equal(image_files.to_uint8(np.array([-0.2, 0.3, 0.5, 1.3])),
                                [0, 76, 128, 255])
  np.testing.assert_allclose(degrade.quantize_tf(np.array([-0.2, 0.5, 1.3], np.float32)).numpy(),
                             [0, 128 / 255, 1], atol=1e-7)
  hr = np.random.default_rng(0).random((64, 64, 3))
  k = degrade.isotropic_kernel(1.0)
  clean = degrade.degrade(hr, k, 2)
  diff = degrade.degrade(hr, k, 2, noise_std=0.05, rng=np.random.default_rng(1)) - clean
  assert abs(diff.mean()) < 0.005 and abs(diff.std() - 0.05) < 0.003
  with pytest.raises(ValueError, match='noise_std > 0 needs an rng'):
    degrade.degrade(hr, k, 2, noise_std=0.05)
