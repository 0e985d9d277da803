"""Training pipeline: determinism, resume position, multi-process slices, degradation, odd files."""

import io
import logging
import struct
import types
import zlib

import numpy as np
import pytest
import tensorflow as tf  # pylint: disable=unused-import  (a broken install fails the file)
import tensorflow_datasets as tfds

from configs import default
from dssr_jax import degrade
from dssr_jax import imageio
from dssr_jax import input_pipeline


def _png(arr: np.ndarray, bitdepth: int) -> bytes:
  """A minimal PNG encoder (no filters), so 16-bit files do not depend on the reader's library."""
  h, w = arr.shape[:2]
  ctype = 0 if arr.ndim == 2 else {3: 2, 4: 6}[arr.shape[2]]  # grey, RGB, RGBA
  dtype = '>u2' if bitdepth == 16 else 'u1'
  raw = b''.join(b'\x00' + arr[i].astype(dtype).tobytes() for i in range(h))
  chunk = lambda t, d: (struct.pack('>I', len(d)) + t + d +
                        struct.pack('>I', zlib.crc32(t + d) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n' +
          chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, bitdepth, ctype, 0, 0, 0)) +
          chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  d = tmp_path_factory.mktemp('hr')
  rng = np.random.default_rng(0)
  for i in range(3):
    imageio.write_png(d / 'sub' / f'rgb{i}.png', rng.integers(0, 256, (40, 44, 3), dtype=np.uint8))
  return d


def _config(folder, **kw):
  c = default.get_data_config()
  c.source = 'folders'
  c.folders = (str(folder),)
  c.patch_size = 8
  c.prefetch = 0
  c.update(kw)
  return c


def _batches(config, n, **kw):
  kw = dict(dict(scale=2, batch_size=4, seed=0), **kw)
  it = input_pipeline.create_train_dataset(config, **kw).as_numpy_iterator()
  return [next(it) for _ in range(n)]


def test_shapes_and_quantisation(folder):
  b = _batches(_config(folder), 1)[0]
  assert b['lr'].shape == (4, 8, 8, 3) and b['hr'].shape == (4, 16, 16, 3)
  assert b['lr'].dtype == np.float32 and b['hr'].dtype == np.float32
  for x in (b['lr'], b['hr']):
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)


def test_hr_is_a_dihedral_crop_of_a_source_image(folder):
  images = [imageio.read_image(p) for p in imageio.list_images(folder, recursive=True)]
  for hr in _batches(_config(folder), 2)[1]['hr']:
    patch = np.round(hr * 255).astype(np.uint8)
    variants = [v for t in (patch, patch.transpose(1, 0, 2)) for v in
                (t, t[::-1], t[:, ::-1], t[::-1, ::-1])]
    found = any(np.array_equal(img[y:y + 16, x:x + 16], v) for img in images
                for y in range(40 - 15) for x in range(44 - 15) for v in variants)
    assert found


@pytest.mark.parametrize('scale', [2, 3])
def test_lr_is_the_numpy_degradation_of_hr(folder, scale):
  b = _batches(_config(folder, sigma_range=(1.3, 1.3)), 1, scale=scale)[0]
  for hr, lr in zip(b['hr'], b['lr']):
    want = degrade.quantize(degrade.degrade(hr.astype(np.float64), degrade.isotropic_kernel(1.3),
                                            scale)) / 255.0
    diff = np.abs(lr - want)
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).mean() < 0.02  # rounding ties only


def test_aniso_and_noise(folder):
  b = _batches(_config(folder, degradation='aniso', noise_std=0.05), 1, scale=4)[0]
  assert b['lr'].shape == (4, 8, 8, 3) and b['hr'].shape == (4, 32, 32, 3)
  clean = _batches(_config(folder, degradation='aniso'), 1, scale=4)[0]
  np.testing.assert_array_equal(b['hr'], clean['hr'])
  resid = (b['lr'] - clean['lr'])[(clean['lr'] > 0.2) & (clean['lr'] < 0.8)]
  assert 0.04 < resid.std() < 0.06


def test_determinism_and_resume(folder):
  c = _config(folder, num_parallel_calls=3)
  run = _batches(c, 6)
  again = _batches(_config(folder, num_parallel_calls=1), 6)
  other = _batches(c, 2, seed=1)
  resumed = _batches(c, 2, start_step=4)
  for a, b in zip(run, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(run[0]['hr'], other[0]['hr'])
  assert not np.array_equal(run[0]['hr'], run[1]['hr'])
  for a, b in zip(run[4:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_processes_slice_the_global_batch(folder):
  c = _config(folder)
  whole = _batches(c, 3, batch_size=6)
  parts = [_batches(c, 3, batch_size=6, process_index=p, process_count=3) for p in range(3)]
  late = _batches(c, 1, batch_size=6, process_index=1, process_count=3, start_step=2)[0]
  for step in range(3):
    for k in ('lr', 'hr'):
      assert parts[0][step][k].shape[0] == 2
      np.testing.assert_array_equal(np.concatenate([p[step][k] for p in parts]), whole[step][k])
  np.testing.assert_array_equal(late['lr'], whole[2]['lr'][2:4])


def test_odd_inputs_are_converted_or_skipped(tmp_path, caplog):
  rng = np.random.default_rng(3)
  good = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  imageio.write_png(tmp_path / 'good.png', good)
  grey16 = rng.integers(0, 65536, (24, 26), dtype=np.uint16)
  (tmp_path / 'grey16.png').write_bytes(_png(grey16, 16))
  rgb16 = rng.integers(0, 65536, (26, 24, 3), dtype=np.uint16)
  (tmp_path / 'rgb16.png').write_bytes(_png(rgb16, 16))
  rgba = rng.integers(0, 256, (25, 25, 4), dtype=np.uint8)
  imageio.write_png(tmp_path / 'rgba.png', rgba)
  grey = rng.integers(0, 256, (30, 30), dtype=np.uint8)
  imageio.write_png(tmp_path / 'grey.png', grey)
  imageio.write_png(tmp_path / 'tiny.png', np.zeros((1, 1, 3), np.uint8))
  data = io.BytesIO()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(good).save(data, format='PNG')
  (tmp_path / 'corrupt.png').write_bytes(data.getvalue()[:len(data.getvalue()) // 2])
  (tmp_path / 'garbage.png').write_bytes(b'not an image at all')

  # imageio: each odd kind becomes uint8 RGB and says what it was.
  arr, info = imageio.read_image(tmp_path / 'grey16.png', with_info=True)
  assert info.grey and info.high_bit_depth and arr.shape == (24, 26, 3)
  np.testing.assert_array_equal(arr[:, :, 2], np.round(grey16 / 257.0).astype(np.uint8))
  arr = imageio.read_image(tmp_path / 'rgb16.png')
  assert np.abs(arr.astype(int) - np.round(rgb16 / 257.0)).max() <= 1
  arr, info = imageio.read_image(tmp_path / 'rgba.png', with_info=True)
  assert info.had_alpha and not info.grey
  np.testing.assert_array_equal(arr, rgba[:, :, :3])
  arr, info = imageio.read_image(tmp_path / 'grey.png', with_info=True)
  assert info.grey and np.array_equal(arr, np.repeat(grey[:, :, None], 3, axis=2))
  for bad in ('corrupt.png', 'garbage.png'):
    with pytest.raises(ValueError, match=bad):
      imageio.read_image(tmp_path / bad)
  with pytest.raises(FileNotFoundError, match='missing.png'):
    imageio.read_image(tmp_path / 'missing.png')

  # The pipeline: tiny skipped (counted), garbage skipped at the scan, corrupt at decode time.
  caplog.set_level(logging.WARNING)
  config = _config(tmp_path, patch_size=10)
  batches = _batches(config, 10, batch_size=4)
  assert all(np.isfinite(b['lr']).all() for b in batches)
  text = caplog.text
  assert 'garbage.png' in text and 'corrupt.png' in text
  assert 'skipping 1 of 7 training images smaller than the 20x20 HR crop' in text
  # Skipping is deterministic: a second run gives the same batches.
  again = _batches(config, 10, batch_size=4)
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a['lr'], b['lr'])


def test_bad_arguments(tmp_path, folder):
  with pytest.raises(FileNotFoundError, match='no_such_dir'):
    _batches(_config(tmp_path / 'no_such_dir'), 1)
  with pytest.raises(ValueError, match='data.source'):
    _batches(_config(folder, source='web'), 1)
  with pytest.raises(ValueError, match='data.degradation'):
    _batches(_config(folder, degradation='motion'), 1)
  with pytest.raises(ValueError, match='process_count'):
    _batches(_config(folder), 1, batch_size=5, process_count=2)
  with pytest.raises(ValueError, match='seed'):
    _batches(_config(folder), 1, seed=-1)
  with pytest.raises(ValueError, match='no training image'):
    _batches(_config(folder, patch_size=32), 1)
  with pytest.raises(ValueError, match='data.folders'):
    _batches(_config(folder, folders=()), 1)
  with pytest.raises(ValueError, match='write_png'):
    imageio.write_png(tmp_path / 'x.png', np.zeros((4, 4, 3), np.float32))


def test_embedded_images_and_holdout(tmp_path):
  images = input_pipeline.embedded_images()
  assert set(input_pipeline.EMBEDDED_HOLDOUT) <= set(images) and len(images) >= 12
  for img in images.values():
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert min(img.shape[:2]) >= 256
  source = input_pipeline.make_source(default.get_data_config())
  assert not set(source.names) & set(input_pipeline.EMBEDDED_HOLDOUT)
  assert len(source.names) == len(images) - len(input_pipeline.EMBEDDED_HOLDOUT)
  paths = input_pipeline.write_embedded_holdout(tmp_path)
  np.testing.assert_array_equal(imageio.read_image(paths[0]), images[paths[0].stem])
  b = _batches(default.get_data_config(), 1, batch_size=2, scale=4)[0]
  assert b['lr'].shape == (2, 64, 64, 3) and b['hr'].shape == (2, 256, 256, 3)


def test_several_patches_per_decoded_image(folder):
  source = input_pipeline.make_source(_config(folder))
  calls = []
  load = source.load
  source.load = lambda i: calls.append(i) or load(i)
  k, w = 4, 2
  patches = input_pipeline.HRPatches(source, 16, seed=5, patches_per_image=k, image_window=w)
  order = [patches.image_index(g) for g in range(3 * w * k)]
  # Each block of w * k examples: k rounds over w different images.
  for b in range(3):
    block = order[b * w * k:(b + 1) * w * k]
    assert block[:w] * k == block and len(set(block[:w])) == w
  outs = [patches(g) for g in range(w * k)]
  assert sorted(calls) == sorted(set(order[:w * k]))  # one decode per image
  # The cache is invisible: a fresh instance, queried out of order, gives the same patches.
  fresh = input_pipeline.HRPatches(source, 16, seed=5, patches_per_image=k, image_window=w)
  for g in reversed(range(w * k)):
    np.testing.assert_array_equal(fresh(g), outs[g])
  c = _config(folder, patches_per_image=k, image_window=w, num_parallel_calls=4)
  run, resumed = _batches(c, 4), _batches(c, 2, start_step=2)
  for a, b in zip(run[2:], resumed):
    np.testing.assert_array_equal(a['lr'], b['lr'])


def test_tfds_source_random_access(folder):
  rng = np.random.default_rng(9)
  examples = [{'hr': rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)} for _ in range(2)]
  examples.append({'hr': rng.integers(0, 256, (38, 38, 1), dtype=np.uint8)})  # grey, HxWx1
  with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
    c = _config(folder, source='tfds', tfds_name='div2k/bicubic_x2')
    source = input_pipeline.make_source(c)
    assert len(source.names) == 3
    np.testing.assert_array_equal(source.load(0), examples[0]['hr'])
    assert source.load(2).shape == (38, 38, 3)
    b = _batches(c, 2)
  assert b[1]['lr'].shape == (4, 8, 8, 3)
  # The patch holds the pixels of a 16x16 window of one example (flips aside: compare as sets).
  patch = np.sort(np.round(b[0]['hr'][0] * 255).astype(np.uint8).ravel())
  windows = (np.repeat(e['hr'], 3 // e['hr'].shape[2], axis=2)[y:y + 16, x:x + 16]
             for e in examples for y in range(e['hr'].shape[0] - 15)
             for x in range(e['hr'].shape[1] - 15))
  assert any(np.array_equal(patch, np.sort(w.ravel())) for w in windows)


def test_augmentation_draws_all_eight_dihedral_transforms_evenly():
  """Each HR crop is one of the 8 flips/transposes of a window of its image, all 8 about equally
  often (three independent coin flips, design section 2), at crop positions spread over the image."""
  h, w, p = 40, 44, 16
  yy, xx = np.mgrid[:h, :w]
  img = np.stack([yy * 6, xx * 5, (yy * 7 + xx * 3) % 256], -1).astype(np.uint8)  # coded pixels
  source = types.SimpleNamespace(names=['coded'], sizes=[(h, w)], load=lambda i: img)
  patches = input_pipeline.HRPatches(source, p, seed=3)
  counts, corners = np.zeros(8, int), set()
  for g in range(800):
    patch = patches(g)
    y0, x0 = patch[:, :, 0].min() // 6, patch[:, :, 1].min() // 5
    win = img[y0:y0 + p, x0:x0 + p]
    variants = [v for t in (win, win.transpose(1, 0, 2))
                for v in (t, t[::-1], t[:, ::-1], t[::-1, ::-1])]
    (which,) = [i for i, v in enumerate(variants) if np.array_equal(v, patch)]
    counts[which] += 1
    corners.add((y0, x0))
  assert counts.min() > 70 and counts.max() < 130, counts  # 100 each expected, sd 9.4
  ys, xs = zip(*corners)
  assert (min(ys), max(ys), min(xs), max(xs)) == (0, h - p, 0, w - p)
  assert len(corners) > 400  # of 25 x 29 positions


def _fit_sigma(hr, lr, scale):
  """The isotropic sigma whose Gaussian8-style degradation of hr best matches lr (golden section)."""
  def err(sigma):
    k = degrade.isotropic_kernel(sigma)
    return np.mean((degrade.degrade(hr.astype(np.float64), k, scale) - lr) ** 2)

  a, b = 0.1, 5.0
  g = (np.sqrt(5) - 1) / 2
  for _ in range(40):
    c, d = b - g * (b - a), a + g * (b - a)
    if err(c) < err(d):
      b = d
    else:
      a = c
  return (a + b) / 2


def test_training_blur_at_x3_draws_sigmas_over_its_range(folder):
  """The x3 training LR is blurred with sigmas spread over [0.2, 3.0] (design section 3): the
  sigma of each of 32 examples, recovered from its HR/LR pair, lies in that range and the draws
  reach both ends (a narrower or wider law would show)."""
  b = _batches(_config(folder), 8, scale=3)
  sigmas = np.array([_fit_sigma(hr, lr, 3) for batch in b for hr, lr in zip(batch['hr'], batch['lr'])])
  assert sigmas.max() <= 3.05 and sigmas.max() > 2.5, np.sort(sigmas)
  assert sigmas.min() < 0.6, np.sort(sigmas)
