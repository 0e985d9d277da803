"""Y-PSNR / SSIM: hand-computed values and SSIM against a direct implementation of its formula."""

import numpy as np
import pytest

from dssr_jax import metrics


def test_y_is_bt601_studio_range():
  px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
  np.testing.assert_allclose(metrics.rgb_to_y(px)[0], [16.0, 235.0, 16 + 65.481], atol=1e-9)
  grey = np.array([[0, 128, 255]], np.uint8)
  np.testing.assert_allclose(metrics.rgb_to_y(grey, grey_as_y=True)[0], [0, 128, 255], atol=1e-9)
  np.testing.assert_allclose(metrics.rgb_to_y(grey)[0], np.array([0, 128, 255]) * 219 / 255 + 16,
                             atol=1e-9)


def test_psnr_hand_computed():
  a = np.full((10, 12, 3), 100, np.uint8)
  b = a.copy()
  b[5, 6, 0] = 110  # inside the crop: Y moves by 65.481 * 10 / 255
  dy = 65.481 * 10 / 255
  want = 10 * np.log10(255.0 ** 2 / (dy ** 2 / (6 * 8)))
  assert metrics.psnr_y(a, b, crop=2) == pytest.approx(want, abs=1e-9)
  b[0, 0] = 0  # in the cropped border: no effect
  assert metrics.psnr_y(a, b, crop=2) == pytest.approx(want, abs=1e-9)
  assert metrics.psnr_y(a, a, crop=2) == float('inf')


def _ssim_direct(x, y):
  """SSIM from its definition: Gaussian 11x11 (sigma 1.5) windows, valid positions, mean."""
  g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5 ** 2))
  w = np.outer(g, g)
  w /= w.sum()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  vals = []
  for i in range(x.shape[0] - 10):
    for j in range(x.shape[1] - 10):
      px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
      mx, my = (w * px).sum(), (w * py).sum()
      vx = (w * (px - mx) ** 2).sum()
      vy = (w * (py - my) ** 2).sum()
      cxy = (w * (px - mx) * (py - my)).sum()
      vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
  return float(np.mean(vals))


def test_ssim_matches_direct_formula():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (28, 30, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
  want = _ssim_direct(*(metrics.rgb_to_y(x)[3:-3, 3:-3] for x in (a, b)))
  assert metrics.ssim_y(a, b, crop=3) == pytest.approx(want, abs=1e-10)
  assert 0.2 < want < 0.95
  assert metrics.ssim_y(a, a, crop=3) == pytest.approx(1.0, abs=1e-12)
  grey = rng.integers(0, 256, (24, 24), dtype=np.uint8)
  other = np.clip(grey.astype(int) + 9, 0, 255).astype(np.uint8)
  want_grey = _ssim_direct(grey[2:-2, 2:-2].astype(float), other[2:-2, 2:-2].astype(float))
  assert metrics.ssim_y(grey, other, crop=2, grey_as_y=True) == pytest.approx(want_grey, abs=1e-10)


def test_bad_inputs():
  a = np.zeros((16, 16, 3), np.uint8)
  with pytest.raises(ValueError, match='uint8'):
    metrics.psnr_y(a.astype(np.float32), a, 2)
  with pytest.raises(ValueError, match='differ in size'):
    metrics.psnr_y(a, a[:8], 2)
  with pytest.raises(ValueError, match='crop'):
    metrics.psnr_y(a, a, 8)
  with pytest.raises(ValueError, match='window'):
    metrics.ssim_y(a, a, 4)
  with pytest.raises(ValueError, match='HxWx3'):
    metrics.ssim_y(np.zeros((16, 16, 4), np.uint8), a, 2)
