"""Gaussian8 and DIV2KRK: counts, sizes, determinism, caching, the shipped DIV2KRK sample."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dssr_jax import degrade
from dssr_jax import image_files
from dssr_jax import matlab_bicubic
from dssr_jax import metrics
from dssr_jax import testsets

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def set5_x2(benchmark_dir):
  return list(testsets.gaussian8(benchmark_dir / 'Set5', 2))


def test_gaussian8_set5_x2(benchmark_dir, set5_x2):
  assert len(set5_x2) == 40
  assert [r.name for r in set5_x2[::8]] == ['baby', 'bird', 'butterfly', 'head', 'woman']
  np.testing.assert_allclose([r.sigma for r in set5_x2[:8]], np.linspace(0.8, 1.6, 8))
  for r in set5_x2:
    assert r.hr.dtype == np.uint8 and r.lr.dtype == np.uint8 and not r.grey
    assert r.hr.shape[0] % 2 == 0 and r.hr.shape[1] % 2 == 0
    assert r.lr.shape == (r.hr.shape[0] // 2, r.hr.shape[1] // 2, 3)
  woman = image_files.read_image(benchmark_dir / 'Set5' / 'woman.png')
  assert set5_x2[32].hr.shape == (woman.shape[0] // 2 * 2, woman.shape[1] // 2 * 2, 3)
  # Wider kernels blur more: the LR gets smoother as sigma grows, for every image.
  for i in range(0, 40, 8):
    tv = [np.abs(np.diff(r.lr.astype(float), axis=1)).mean() for r in set5_x2[i:i + 8]]
    assert all(a > b for a, b in zip(tv, tv[1:]))


def test_gaussian8_is_deterministic_and_cached(tmp_path):
  hr_dir = tmp_path / 'hr'
  rng = np.random.default_rng(0)
  image_files.write_png(hr_dir / 'a.png', rng.integers(0, 256, (37, 42, 3), dtype=np.uint8))
  grey = rng.integers(0, 256, (33, 30), dtype=np.uint8)
  image_files.write_png(hr_dir / 'g.png', grey)
  first = list(testsets.gaussian8(hr_dir, 3, cache_dir=tmp_path / 'cache'))
  assert len(first) == 16 and len(list((tmp_path / 'cache' / 'gaussian8_x3').glob('*.png'))) == 16
  assert [r.grey for r in first[::8]] == [False, True]
  assert first[0].hr.shape == (36, 42, 3) and first[0].lr.shape == (12, 14, 3)
  # The LR is the blur + MATLAB bicubic down of docs/design.md, rounded.
  want = image_files.to_uint8(degrade.bicubic_down(
      degrade.blur(first[3].hr / 255.0, degrade.isotropic_kernel(first[3].sigma)), 3))
  np.testing.assert_array_equal(first[3].lr, want)
  again = list(testsets.gaussian8(hr_dir, 3))
  cached = list(testsets.gaussian8(hr_dir, 3, cache_dir=tmp_path / 'cache'))
  for a, b, c in zip(first, again, cached):
    np.testing.assert_array_equal(a.lr, b.lr)
    np.testing.assert_array_equal(a.lr, c.lr)
  # An edited HR file gets new LR images, not the cached ones.
  image_files.write_png(hr_dir / 'a.png', rng.integers(0, 256, (37, 42, 3), dtype=np.uint8))
  edited = list(testsets.gaussian8(hr_dir, 3, cache_dir=tmp_path / 'cache'))
  assert not np.array_equal(edited[0].lr, first[0].lr)
  np.testing.assert_array_equal(edited[0].lr,
                                testsets.gaussian8_lr(edited[0].hr, edited[0].sigma, 3))


def test_modcrop_keeps_the_top_left():
  img = np.arange(7 * 11).reshape(7, 11)
  np.testing.assert_array_equal(testsets.modcrop(img, 3), img[:6, :9])
  np.testing.assert_array_equal(testsets.modcrop(img, 2), img[:6, :10])
  np.testing.assert_array_equal(testsets.modcrop(img[:6, :9], 3), img[:6, :9])


@pytest.mark.parametrize('scale,lo,hi', [(2, 0.80, 1.60), (3, 1.35, 2.40), (4, 1.80, 3.20)])
def test_gaussian8_sigmas_and_crop_at_every_scale(tmp_path, scale, lo, hi):
  """IKC's eight sigmas per scale (design section 4), the HR modcropped on its top-left, and each
  LR the blur + MATLAB-bicubic down of that HR with its sigma's kernel."""
  rng = np.random.default_rng(scale)
  hr = rng.integers(0, 256, (37, 43, 3), dtype=np.uint8)
  image_files.write_png(tmp_path / 'a.png', hr)
  recs = list(testsets.gaussian8(tmp_path, scale))
  np.testing.assert_allclose([r.sigma for r in recs], np.linspace(lo, hi, 8), rtol=0, atol=1e-12)
  h, w = 37 // scale * scale, 43 // scale * scale
  for r in recs[::7]:
    np.testing.assert_array_equal(r.hr, hr[:h, :w])
    y, x = np.mgrid[-10:11, -10:11]
    k = np.exp(-(x ** 2 + y ** 2) / (2 * r.sigma ** 2))
    want = matlab_bicubic.imresize(degrade.blur(hr[:h, :w] / 255.0, k / k.sum()), 1 / scale)
    np.testing.assert_array_equal(r.lr, np.round(np.clip(want, 0, 1) * 255).astype(np.uint8))


def test_gaussian8_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere'):
    list(testsets.gaussian8(tmp_path / 'nowhere', 2))
  with pytest.raises(ValueError, match='no image files'):
    list(testsets.gaussian8(tmp_path, 2))
  with pytest.raises(ValueError, match='scale'):
    list(testsets.gaussian8(tmp_path, 5))


def test_div2krk_sample_loader(benchmark_dir):
  root = benchmark_dir / 'DIV2KRK_sample'
  for scale, ksize in ((2, 11), (4, 31)):
    recs = list(testsets.div2krk(root, scale))
    assert [r.name for r in recs] == ['img_43', 'img_44', 'img_68', 'img_77']
    for r in recs:
      assert r.sigma is None and r.lr.shape[2] == 3  # the shipped RGBA lost its alpha
      assert r.hr.shape == (r.lr.shape[0] * scale, r.lr.shape[1] * scale, 3)
      assert r.kernel.shape == (ksize, ksize) and r.kernel.sum() == pytest.approx(1.0, abs=1e-6)


# The most textured 48x48 LR window (top-left corner, LR pixels) of each sample image on a 16-pixel
# grid: flat windows cannot tell kernels apart (a constant patch scores the same with any kernel).
DIV2KRK_WINDOWS = {
    2: {'img_43': (185, 649), 'img_44': (665, 425), 'img_68': (553, 649), 'img_77': (41, 121)},
    4: {'img_43': (53, 261), 'img_44': (325, 197), 'img_68': (245, 309), 'img_77': (101, 197)},
}
# Per scale, the image whose kernel is furthest from its own transpose and rotations: there a wrong
# orientation shows. Measured (dB, right kernel / best wrong one): x2 img_68 51.62 / 45.29
# (transposed), x4 img_44 53.87 / 42.07 (transposed).
DIV2KRK_MARGIN_IMAGE = {2: 'img_68', 4: 'img_44'}


def _window_psnr(rec, scale, make_lr):
  """Y-PSNR against the shipped LR of `make_lr(hr window)` on the record's textured window; the HR
  window carries a margin of LR pixels so the compared ones see no reflect padding."""
  n, m = 48, 16 // scale + 1
  y, x = DIV2KRK_WINDOWS[scale][rec.name]
  hr = rec.hr[(y - m) * scale:(y + n + m) * scale, (x - m) * scale:(x + n + m) * scale]
  shipped = rec.lr[y:y + n, x:x + n]
  assert shipped.astype(np.float64).std() > 60  # textured
  return metrics.psnr_y(make_lr(hr)[m:-m, m:-m], shipped, 0)


@pytest.mark.parametrize('scale', [2, 4])
def test_div2krk_right_kernel_beats_wrong_kernels_by_a_margin(benchmark_dir, scale):
  """The DIV2KRK degradation (aligned kernel, reflect blur, keep img[::s, ::s]) reproduces the
  shipped LR images on textured windows (above 50 dB, measured 51.6-53.9), and the image's own
  kernel beats its transpose, a rotation, every other image's kernel, the unaligned kernel and
  (x4) the x4 kernel derived from the image's x2 kernel by at least 5 dB."""
  recs = {r.name: r for r in testsets.div2krk(benchmark_dir / 'DIV2KRK_sample', scale)}
  for r in recs.values():
    right = _window_psnr(r, scale, lambda hr, r=r: testsets.div2krk_lr(hr, r.kernel, scale))
    assert right > 50.0, (r.name, right)
  r = recs[DIV2KRK_MARGIN_IMAGE[scale]]
  right = _window_psnr(r, scale, lambda hr: testsets.div2krk_lr(hr, r.kernel, scale))
  wrong = {'transposed': r.kernel.T, 'rotated': np.rot90(r.kernel)}
  wrong.update({f'kernel of {o.name}': o.kernel for o in recs.values() if o is not r})
  if scale == 4:
    k2 = next(o for o in testsets.div2krk(benchmark_dir / 'DIV2KRK_sample', 2) if o.name == r.name)
    wrong['x4 kernel of the x2 kernel'] = degrade.x4_kernel(k2.kernel)
  scores = {name: _window_psnr(r, scale, lambda hr, k=k: testsets.div2krk_lr(hr, k, scale))
            for name, k in wrong.items()}
  unaligned = lambda hr: image_files.to_uint8(degrade.degrade(hr / 255.0, r.kernel, scale, 'aniso'))
  scores['unaligned'] = _window_psnr(r, scale, unaligned)
  for name, score in scores.items():
    assert right - score > 5.0, (name, right, score)


def test_make_div2krk_roundtrip(tmp_path):
  hr_dir = tmp_path / 'hr'
  rng = np.random.default_rng(1)
  for name in ('x.png', 'y.png'):
    image_files.write_png(hr_dir / name, rng.integers(0, 256, (42, 50, 3), dtype=np.uint8))
  assert testsets.make_div2krk(hr_dir, tmp_path / 'a', seed=3) == 2
  testsets.make_div2krk(hr_dir, tmp_path / 'b', seed=3)
  testsets.make_div2krk(hr_dir, tmp_path / 'c', seed=4)
  cli = lambda *a: subprocess.run([sys.executable, '-m', 'dssr_jax.testsets', 'div2krk', *a],
                                  cwd=REPO, capture_output=True, text=True, timeout=300)
  done = cli(f'--hr_dir={hr_dir}', f'--out_dir={tmp_path / "a"}', '--seed=3')
  assert done.returncode != 0 and 'overwrite' in done.stderr and 'Traceback' not in done.stderr
  done = cli(f'--hr_dir={hr_dir}', f'--out_dir={tmp_path / "d"}', '--seed=3', '--scales=2')
  assert done.returncode == 0, done.stderr[-2000:]
  # Kernels depend on (seed, image, scale) only; HR is modcropped to 2 instead of lcm(2, 4) = 4.
  d, a = next(testsets.div2krk(tmp_path / 'd', 2)), next(testsets.div2krk(tmp_path / 'a', 2))
  np.testing.assert_array_equal(d.kernel, a.kernel)
  assert d.hr.shape == (42, 50, 3) and not (tmp_path / 'd' / 'lr_x4').exists()
  for scale, ksize in ((2, 11), (4, 31)):
    a, b, c = (list(testsets.div2krk(tmp_path / d, scale)) for d in 'abc')
    assert len(a) == 2 and a[0].hr.shape == (40, 48, 3)
    assert a[0].lr.shape == (40 // scale, 48 // scale, 3) and a[0].kernel.shape == (ksize, ksize)
    for ra, rb, rc in zip(a, b, c):
      np.testing.assert_array_equal(ra.lr, rb.lr)
      np.testing.assert_array_equal(ra.kernel, rb.kernel)
      assert np.abs(ra.kernel - rc.kernel).max() > 1e-4
      np.testing.assert_array_equal(ra.lr, testsets.div2krk_lr(ra.hr, ra.kernel, scale))
  # A fresh x2-style kernel for x4, not the stored x2 kernel spread out.
  k2 = list(testsets.div2krk(tmp_path / 'a', 2))[0].kernel
  k4 = list(testsets.div2krk(tmp_path / 'a', 4))[0].kernel
  assert np.abs(degrade.x4_kernel(k2) - k4).max() > 1e-4


def test_div2krk_missing_files(tmp_path):
  image_files.write_png(tmp_path / 'gt' / 'img_5_gt.png', np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(FileNotFoundError, match='im_5.png'):
    list(testsets.div2krk(tmp_path, 2))
  with pytest.raises(ValueError, match='scales 2 and 4'):
    list(testsets.div2krk(tmp_path, 3))


def _dasr_lr(hr, width, scale):
  """DASR's test degradation written from its definition: a 21x21 isotropic Gaussian of `width`
  (exp(-(x^2 + y^2) / (2 width^2)), normalised), correlated after reflect padding by 10 (the edge
  pixel not repeated), MATLAB-bicubic downsampling, rounding to 8 bits; width 0: no blur."""
  x = hr / 255.0
  if width:
    ax = np.arange(21) - 10
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * width ** 2))
    k /= k.sum()
    pad = np.pad(x, ((10, 10), (10, 10), (0, 0)), mode='reflect')
    h, w = x.shape[:2]
    x = sum(k[i, j] * pad[i:i + h, j:j + w] for i in range(21) for j in range(21))
  return np.round(np.clip(matlab_bicubic.imresize(x, 1 / scale), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize('scale,width', [(2, 0.0), (2, 1.8), (4, 3.6)])
def test_kernel_width_lr_is_dasrs_degradation(scale, width):
  hr = (np.random.default_rng(3).random((36, 44, 3)) * 255).astype(np.uint8)
  lr = testsets.kernel_width_lr(hr, width, scale)
  want = _dasr_lr(hr, width, scale)
  assert lr.shape == want.shape == (36 // scale, 44 // scale, 3)
  # Sums in another order: a value on a rounding boundary may move by one level, rarely.
  assert np.abs(lr.astype(int) - want).max() <= 1 and np.mean(lr != want) < 0.002


def test_kernel_width_records_and_names(tmp_path):
  rng = np.random.default_rng(4)
  image_files.write_png(tmp_path / 'a.png', rng.integers(0, 256, (27, 30, 3), dtype=np.uint8))
  (rec,) = testsets.kernel_width(tmp_path, 4, 1.2)
  assert (rec.name, rec.sigma, rec.lr_stem) == ('a', 1.2, 'a_w1.2')
  assert rec.hr.shape == (24, 28, 3) and rec.lr.shape == (6, 7, 3)
  assert testsets.kernel_width_stem('a', 0.0) == 'a_w0'
  assert testsets.kernel_widths(2) == (0.0, 0.6, 1.2, 1.8)
  assert testsets.kernel_widths(4) == (0.0, 1.2, 2.4, 3.6)
  with pytest.raises(ValueError, match='x2 and x4 only'):
    testsets.kernel_widths(3)
  with pytest.raises(ValueError, match='>= 0'):
    testsets.kernel_widths(2, [1.0, -0.5])
