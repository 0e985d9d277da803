"""MATLAB imresize: hand-derived weights, invariants, the published Set5 anchors, numpy vs TF."""

import numpy as np
import pytest

from dssr_jax import image_files
from dssr_jax import matlab_bicubic
from dssr_jax import metrics


def test_upscale_matches_hand_derived_matlab_values():
  # imresize([0 1], 2) in MATLAB: weights of the a=-0.5 cubic at distances 0.25/0.75/1.25/1.75
  # (0.8671875, 0.2265625, -0.0703125, -0.0234375) with mirrored taps, derived by hand.
  out = matlab_bicubic.imresize(np.array([[0.0, 1.0]]).T[:, :, None], (2, 1))[:, 0, 0]
  np.testing.assert_allclose(out, [-0.09375, 0.203125, 0.796875, 1.09375], atol=1e-12)


def test_downscale_weights_are_the_stretched_cubic():
  m = matlab_bicubic.resize_matrix(8, 0.5)
  assert m.shape == (4, 8)
  # Output 1 sits at input position 1.5 (1-based): taps at distances 0.5, 1.5, 2.5, 3.5 carry
  # 0.5 * cubic(0.5 d) = 0.43359375, 0.11328125, -0.03515625, -0.01171875 (mirrored at the edge).
  row = np.zeros(8)
  for d, wgt in ((0.5, 0.43359375), (1.5, 0.11328125), (2.5, -0.03515625), (3.5, -0.01171875)):
    for pos in (1.5 - d, 1.5 + d):
      i = int(pos) - 1
      i = -i - 1 if i < 0 else i  # symmetric mirror: index 0 -> 1, -1 -> 2 (1-based)
      row[i] += wgt
  np.testing.assert_allclose(m[1 - 1], row, atol=1e-12)
  np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize('scale', [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_invariants(scale):
  rng = np.random.default_rng(0)
  img = rng.random((24, 36, 3))
  out = matlab_bicubic.imresize(img, scale)
  assert out.shape == (int(np.ceil(24 * scale - 1e-9)), int(np.ceil(36 * scale - 1e-9)), 3)
  flat = np.full((24, 36, 3), 0.7)
  np.testing.assert_allclose(matlab_bicubic.imresize(flat, scale), 0.7, atol=1e-12)
  # Mirroring the input mirrors the output (sizes divide evenly, so the grids are symmetric).
  np.testing.assert_allclose(matlab_bicubic.imresize(img[::-1, ::-1], scale), out[::-1, ::-1],
                             atol=1e-12)
  # Channels are independent.
  np.testing.assert_allclose(matlab_bicubic.imresize(img[:, :, 1], scale), out[:, :, 1], atol=1e-12)


def test_output_size_and_errors():
  assert matlab_bicubic.imresize(np.zeros((255, 10)), 1 / 3).shape == (85, 4)
  assert matlab_bicubic.imresize(np.zeros((7, 9, 3)), out_shape=(3, 4)).shape == (3, 4, 3)
  with pytest.raises(ValueError, match='float'):
    matlab_bicubic.imresize(np.zeros((4, 4, 3), np.uint8), 2)
  with pytest.raises(ValueError, match='scale'):
    matlab_bicubic.imresize(np.zeros((4, 4, 3)), 0)
  with pytest.raises(ValueError, match='scale or out_shape'):
    matlab_bicubic.imresize(np.zeros((4, 4, 3)), 2, out_shape=(8, 8))


@pytest.mark.parametrize('scale', [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_numpy_and_tf_agree(scale):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  img = np.random.default_rng(1).random((2, 24, 36, 3)).astype(np.float32)
  want = np.stack([matlab_bicubic.imresize(x.astype(np.float64), scale) for x in img])
  got = matlab_bicubic.imresize_tf(tf.constant(img), scale).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5)


def _down_up_psnr(folder, s):
  q = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
  scores = []
  for f in image_files.list_images(folder):
    hr = image_files.read_image(f)
    hr = hr[:hr.shape[0] // s * s, :hr.shape[1] // s * s]
    lr = q(matlab_bicubic.imresize(hr / 255.0, 1 / s))
    assert lr.shape[:2] == (hr.shape[0] // s, hr.shape[1] // s)
    sr = q(matlab_bicubic.imresize(lr / 255.0, s))
    scores.append(metrics.psnr_y(sr, hr, crop=s))
  return float(np.mean(scores))


@pytest.mark.parametrize('scale,published', [(2, 33.66), (4, 28.42)])
def test_set5_bicubic_anchor(benchmark_dir, scale, published):
  # The field's published Set5 bicubic numbers (MATLAB); ours differ only by MATLAB's Y rounding.
  assert abs(_down_up_psnr(benchmark_dir / 'Set5', scale) - published) <= 0.03
