"""Training pipeline: determinism, resume position, multi-process slices, degradation, odd files."""

import io
import logging
import pathlib
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf  # a broken install fails the file instead of skipping it
import tensorflow_datasets as tfds

from configs import default
from dssr_jax import degrade
from dssr_jax import image_files
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
    image_files.write_png(d / 'sub' / f'rgb{i}.png',
                          rng.integers(0, 256, (40, 44, 3), dtype=np.uint8))
  return d


def _config(folder, **kw):
  c = default.get_data_config()
  c.source = 'folders'
  c.folders = (str(folder),)
  c.patch_size = 8
  c.prefetch = 0
  c.update(kw)
  return c


def _batches(config, n, patches_per_image=None, image_window=None, **kw):
  if patches_per_image:
    config = config.copy_and_resolve_references()
    config.patches_per_image, config.image_window = patches_per_image, image_window
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
  images = [image_files.read_image(p) for p in image_files.list_images(folder, recursive=True)]
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
    lr_float = degrade.degrade(hr.astype(np.float64), degrade.isotropic_kernel(1.3), scale)
    want = image_files.to_uint8(lr_float) / 255.0
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
  # 3 crops per visit, blocks of 8 visits (24 examples): step 5 starts in round 2 of the first
  # block, at its second batch.
  c = _config(folder, num_parallel_calls=3, patches_per_image=3, image_window=8)
  run = _batches(c, 7)
  again = _batches(_config(folder, num_parallel_calls=1, patches_per_image=3, image_window=8), 7)
  other = _batches(c, 2, seed=1)
  resumed = _batches(c, 2, start_step=5)
  for a, b in zip(run, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(run[0]['hr'], other[0]['hr'])
  assert not np.array_equal(run[0]['hr'], run[1]['hr'])
  for a, b in zip(run[5:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_processes_slice_the_global_batch(folder):
  c = _config(folder, patches_per_image=3, image_window=12)  # blocks of 12 visits, 36 examples
  whole = _batches(c, 3, batch_size=6)
  parts = [_batches(c, 3, batch_size=6, process_index=p, process_count=3) for p in range(3)]
  late = _batches(c, 1, batch_size=6, process_index=1, process_count=3, start_step=2)[0]
  for step in range(3):
    for k in ('lr', 'hr'):
      assert parts[0][step][k].shape[0] == 2
      np.testing.assert_array_equal(np.concatenate([p[step][k] for p in parts]), whole[step][k])
  np.testing.assert_array_equal(late['lr'], whole[2]['lr'][2:4])


def test_odd_inputs_are_converted_or_skipped(tmp_path, caplog, capfd):
  rng = np.random.default_rng(3)
  good = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  image_files.write_png(tmp_path / 'good.png', good)
  grey16 = rng.integers(0, 65536, (24, 26), dtype=np.uint16)
  (tmp_path / 'grey16.png').write_bytes(_png(grey16, 16))
  rgb16 = rng.integers(0, 65536, (26, 24, 3), dtype=np.uint16)
  (tmp_path / 'rgb16.png').write_bytes(_png(rgb16, 16))
  rgba = rng.integers(0, 256, (25, 25, 4), dtype=np.uint8)
  image_files.write_png(tmp_path / 'rgba.png', rgba)
  grey = rng.integers(0, 256, (30, 30), dtype=np.uint8)
  image_files.write_png(tmp_path / 'grey.png', grey)
  image_files.write_png(tmp_path / 'tiny.png', np.zeros((1, 1, 3), np.uint8))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(good).quantize(16).save(tmp_path / 'palette.png', transparency=3)
  Image.fromarray(good).save(tmp_path / 'photo.jpg', quality=90)
  Image.fromarray(good).save(tmp_path / 'scan.tif')
  data = io.BytesIO()
  Image.fromarray(good).save(data, format='PNG')
  (tmp_path / 'corrupt.png').write_bytes(data.getvalue()[:len(data.getvalue()) // 2])
  (tmp_path / 'garbage.png').write_bytes(b'not an image at all')
  # Damaged inside its pixel data, intact header and end: only decoding finds it.
  noisy = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(noisy, format='PNG')
  damaged = bytearray(noisy.getvalue())
  damaged[len(damaged) // 2:len(damaged) // 2 + 64] = bytes(64)
  (tmp_path / 'damaged.png').write_bytes(bytes(damaged))

  # image_files: each odd kind becomes uint8 RGB and says what it was.
  arr, info = image_files.read_image(tmp_path / 'grey16.png', with_info=True)
  assert info.grey and info.high_bit_depth and arr.shape == (24, 26, 3)
  np.testing.assert_array_equal(arr[:, :, 2], np.round(grey16 / 257.0).astype(np.uint8))
  arr = image_files.read_image(tmp_path / 'rgb16.png')
  assert np.abs(arr.astype(int) - np.round(rgb16 / 257.0)).max() <= 1
  arr, info = image_files.read_image(tmp_path / 'rgba.png', with_info=True)
  assert info.had_alpha and not info.grey
  np.testing.assert_array_equal(arr, rgba[:, :, :3])
  arr, info = image_files.read_image(tmp_path / 'grey.png', with_info=True)
  assert info.grey and np.array_equal(arr, np.repeat(grey[:, :, None], 3, axis=2))
  for bad in ('corrupt.png', 'garbage.png'):
    with pytest.raises(ValueError, match=bad):
      image_files.read_image(tmp_path / bad)
  with pytest.raises(FileNotFoundError, match='missing.png'):
    image_files.read_image(tmp_path / 'missing.png')

  # The pipeline's tf.io decoding gives image_files's pixels (16-bit: the nearest 8-bit level).
  caplog.set_level(logging.WARNING)
  config = _config(tmp_path, patch_size=10)
  source = input_pipeline.make_source(config)
  for i, name in enumerate(source.names):
    name = pathlib.Path(name).name
    if name == 'damaged.png':
      with pytest.raises(tf.errors.InvalidArgumentError):
        source.load(i)
      continue
    got = np.asarray(source.load(i))
    if name == 'grey16.png':
      np.testing.assert_array_equal(got, np.repeat(np.round(grey16[:, :, None] / 257.0), 3, 2))
    elif name == 'rgb16.png':
      np.testing.assert_array_equal(got, np.round(rgb16 / 257.0))
    else:
      np.testing.assert_array_equal(got, image_files.read_image(tmp_path / name), err_msg=name)
  # Skipped at the scan, each named: unreadable header, truncated file, a format tf.io lacks.
  assert sorted(pathlib.Path(n).name for n in source.names) == [
      'damaged.png', 'good.png', 'grey.png', 'grey16.png', 'palette.png', 'photo.jpg',
      'rgb16.png', 'rgba.png', 'tiny.png']
  for name, why in (('garbage.png', 'cannot read'), ('corrupt.png', 'truncated'),
                    ('scan.tif', 'TIFF')):
    assert any(name in r.getMessage() and why in r.getMessage() for r in caplog.records), name

  # Too small: counted; damaged: replaced when decoding fails, named on stderr.
  batches = _batches(config, 10, batch_size=4, patches_per_image=1, image_window=4)
  assert all(np.isfinite(b['lr']).all() for b in batches)
  assert 'skipping 1 of 9 training images smaller than the 20x20 HR crop' in caplog.text
  err = capfd.readouterr().err
  assert 'skipping unreadable training image' in err and 'damaged.png' in err
  # Replacement is deterministic: a second run gives the same batches.
  again = _batches(config, 10, batch_size=4, patches_per_image=1, image_window=4)
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
    image_files.write_png(tmp_path / 'x.png', np.zeros((4, 4, 3), np.float32))


class _FieldsOnly:
  """A config block that lets its fields be read as they are and nothing else: no `.get` with a
  fallback, no `in` test, no field configs/default.py does not set (records what was read)."""

  def __init__(self, block, known):
    object.__setattr__(self, '_block', block)
    object.__setattr__(self, '_known', set(known))
    object.__setattr__(self, 'read', set())

  def __getattr__(self, name):
    assert name in self._known, f'the library reads data.{name}, which configs/default.py lacks'
    self.read.add(name)
    return getattr(self._block, name)

  __getitem__ = __getattr__

  def get(self, name, *fallback):
    raise AssertionError(f'the library reads data.{name} with .get: a default of its own')

  def __contains__(self, name):
    raise AssertionError(f'the library asks whether data.{name} is set: a default of its own')


@pytest.mark.parametrize('overrides', [{}, {'degradation': 'aniso', 'noise_std': 0.01},
                                       {'source': 'embedded'}])
def test_the_pipeline_has_no_defaults_of_its_own(folder, overrides):
  """Every default lives in configs/default.py (train_loop.check_config requires every field):
  the pipeline reads the fields as given, with no fallback that could disagree with it."""
  defaults = default.get_data_config()
  block = _FieldsOnly(_config(folder, **overrides), defaults.keys())
  input_pipeline.create_train_dataset(block, scale=2, batch_size=4, seed=0)
  assert {'source', 'patch_size', 'patches_per_image', 'image_window'} <= block.read


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
  np.testing.assert_array_equal(image_files.read_image(paths[0]), images[paths[0].stem])
  b = _batches(default.get_data_config(), 1, batch_size=2, scale=4)[0]
  assert b['lr'].shape == (2, 64, 64, 3) and b['hr'].shape == (2, 256, 256, 3)


def test_k_crops_per_visit_in_rounds(tmp_path):
  # Eight images, each marked by a constant blue channel (flips and transposes keep it).
  rng = np.random.default_rng(4)
  for i in range(8):
    img = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    img[:, :, 2] = 10 + 20 * i
    image_files.write_png(tmp_path / f'{i}.png', img)
  k, w, batch = 3, 8, 4
  c = _config(tmp_path, patches_per_image=k, image_window=w, num_parallel_calls=3)
  hr = np.concatenate([b['hr'] for b in _batches(c, 12, batch_size=batch)])  # two blocks
  ids = np.round((hr[:, 0, 0, 2] * 255 - 10) / 20).astype(int)
  assert np.abs(hr[:, :, :, 2] * 255 - (10 + 20 * ids)[:, None, None]).max() < 1e-3
  # Example g = b w k + r w + j is round r's crop of visit b w + j.
  visits = np.full(2 * w, -1)
  for g, image in enumerate(ids):
    b, r, j = g // (w * k), g % (w * k) // w, g % w
    if r == 0:
      visits[b * w + j] = image
    assert visits[b * w + j] == image, g
  # Visits run through a fresh permutation of the images per epoch.
  assert sorted(visits[:8]) == list(range(8)) and sorted(visits[8:]) == list(range(8))
  assert list(visits[:8]) != list(visits[8:])
  # The k crops of a visit are different crops of its image.
  first = hr[:w * k].reshape(k, w, -1)
  assert all(len({first[r, j].tobytes() for r in range(k)}) == k for j in range(w))


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


def test_tfds_source_decodes_each_visit_once():
  rng = np.random.default_rng(5)

  class Counting(list):
    loads = 0

    def __getitem__(self, i):
      Counting.loads += 1
      return list.__getitem__(self, i)

  examples = Counting({'hr': rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)} for _ in range(5))
  with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
    c = _config('.', source='tfds', tfds_name='div2k/bicubic_x2')
    _batches(c, 8, patches_per_image=16, image_window=4)
  # 32 examples are half a block of 4 visits (64 examples); read-ahead opens a few more visits
  # (one read per example would be 32 or more).
  assert 4 <= Counting.loads <= 16


# A script that leaves its iterators alive at exit: a folders pipeline, and a Python (tfds)
# source whose reads are slow, so that reads are in flight when the interpreter exits.
EXIT_SCRIPT = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow_datasets as tfds
from configs import default
from dssr_jax import input_pipeline
c = default.get_data_config()
c.source, c.folders, c.patch_size = 'folders', (sys.argv[2],), 8
folders = iter(input_pipeline.create_train_dataset(c, scale=2, batch_size=4, seed=0))
class Slow(list):
  def __getitem__(self, i):
    time.sleep(0.2)
    return list.__getitem__(self, i)
examples = Slow({'hr': np.zeros((32, 32, 3), np.uint8)} for _ in range(4))
with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: examples):
  c.source, c.tfds_name = 'tfds', 'div2k/bicubic_x2'
  python = iter(input_pipeline.create_train_dataset(c, scale=2, batch_size=4, seed=0))
for _ in range(3):
  next(folders), next(python)
print('drew batches', flush=True)
"""


def test_script_exits_with_live_iterators(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(6)
  for i in range(4):  # Large enough that decodes are in flight when the script ends.
    image_files.write_png(tmp_path / f'{i}.png',
                          rng.integers(0, 256, (800, 800, 3), dtype=np.uint8))
  repo = pathlib.Path(__file__).resolve().parent.parent
  try:
    done = subprocess.run([sys.executable, '-c', EXIT_SCRIPT, str(repo), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
  except subprocess.TimeoutExpired as e:
    pytest.fail(f'the script hung at exit: {e.stdout}')
  assert done.returncode == 0 and 'drew batches' in done.stdout, done.stderr[-2000:]


def test_benchmark_runs_from_the_repo_root(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = pathlib.Path(__file__).resolve().parent.parent
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  run = lambda *args: subprocess.run([sys.executable, 'benchmarks/pipeline.py', *args], cwd=repo,
                                     env=env, capture_output=True, text=True, timeout=300)
  done = run('--help')  # absl prints the usage and exits with 1
  assert '--patches_per_image' in done.stdout and 'Traceback' not in done.stderr, done.stderr
  done = run(f'--make_folder={tmp_path}', '--num_images=1')
  assert done.returncode == 0, done.stderr[-2000:]
  img = image_files.read_image(tmp_path / 'div2k_like_0000.png')
  assert img.shape == (1356, 2040, 3) and (tmp_path / 'div2k_like_0000.png').stat().st_size > 2e6
  done = run(f'--folders={tmp_path}', '--settings=iso:2', '--steps=2', '--warmup=1')
  assert done.returncode == 0, done.stderr[-2000:]
  row = [line.split() for line in done.stdout.splitlines() if line.startswith('iso')][0]
  assert row[:3] == ['iso', '2', '16'] and row[5] == '250', done.stdout  # k, need
  assert float(row[4]) > 0 and float(row[6]) == pytest.approx(float(row[4]) / 250, abs=0.01)


def test_augmentation_draws_all_eight_dihedral_transforms_evenly():
  """Each HR crop is one of the 8 flips/transposes of a window of its image, all 8 about equally
  often (three independent coin flips, design section 2), at crop positions spread over the image."""
  h, w, p = 40, 44, 16
  yy, xx = np.mgrid[:h, :w]
  img = np.stack([yy * 6, xx * 5, (yy * 7 + xx * 3) % 256], -1).astype(np.uint8)  # coded pixels
  counts, corners = np.zeros(8, int), set()
  patches = np.concatenate([input_pipeline.random_crops(tf.constant(img), tf.constant([3, g]), 16, p)
                            for g in range(50)])
  for patch in patches:
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
