"""Validation during training (Gaussian8 subset, PSNR, images) and the demo's report pieces."""

import types

import jax
import numpy as np
import pytest

from configs import smoke
from dssr_jax import degrade
from dssr_jax import demo_report
from dssr_jax import image_files
from dssr_jax import matlab_bicubic
from dssr_jax import metrics
from dssr_jax import model as model_lib
from dssr_jax import train_lib
from dssr_jax import validation


class FakeWriter:

  def __init__(self):
    self.scalars, self.images = {}, {}

  def write_scalars(self, step, scalars):
    self.scalars[step] = dict(scalars)

  def write_images(self, step, images):
    self.images[step] = dict(images)


def test_pick_records_spreads_sigmas_and_stops_early():
  seen = []

  def records():
    for name in ('a', 'b', 'c'):
      for sigma in np.linspace(0.8, 1.6, 8):
        seen.append(name)
        yield types.SimpleNamespace(name=name, sigma=float(sigma))

  picked = validation.pick_records(records(), num_images=2, num_sigmas=3)
  assert [(r.name, round(r.sigma, 3)) for r in picked] == [
      ('a', 0.8), ('a', 1.257), ('a', 1.6), ('b', 0.8), ('b', 1.257), ('b', 1.6)]
  assert 'c' in seen and seen.count('c') == 1  # the third image is never degraded in full


def test_validator_scores_the_network_on_each_images_gaussian8_lr(benchmark_dir, tmp_path):
  """val/psnr is the mean Y-PSNR of the network run on the Gaussian8 LR of each chosen (image,
  sigma), the LR rebuilt here from the design (21x21 Gaussian, MATLAB bicubic down, 8 bits)."""
  # One Set5 photo, cropped to 64x64 to keep the CPU forward pass short.
  first = sorted(image_files.list_images(benchmark_dir / 'Set5'))[0]
  hr = image_files.read_image(first)[100:164, 100:164]
  image_files.write_png(tmp_path / 'crop.png', hr)
  config = smoke.get_config()
  config.train.update(dict(val_dir=str(tmp_path), val_images=1, val_sigmas=2))
  mesh = train_lib.create_mesh()
  _, _, state = train_lib.create_train_state(config, mesh)
  val = validation.Validator(config, mesh)
  assert [r.sigma for r in val.records] == [0.8, 1.6]  # the ends of the x2 Gaussian8 range
  writer = FakeWriter()
  scores = val.run(state.params, writer, 7)
  model = model_lib.DSSR(**config.model)
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x))
  psnrs, srs = [], []
  y, x = np.mgrid[-10:11, -10:11]
  for sigma in (0.8, 1.6):
    k = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    lr = matlab_bicubic.imresize(degrade.blur(hr / 255.0, k / k.sum()), 0.5)
    lr = np.round(np.clip(lr, 0, 1) * 255) / np.float32(255)
    sr = np.asarray(apply(state.params, lr[None].astype(np.float32))['sr'][0])
    srs.append(sr)
    psnrs.append(metrics.psnr_y(image_files.to_uint8(sr), hr, crop=2))
  assert scores['val/psnr'] == pytest.approx(np.mean(psnrs), abs=1e-6)
  # A freshly initialised network adds random detail to bicubic (about 15 dB on this crop), but the
  # two sigmas' LR images still score apart.
  assert abs(psnrs[0] - psnrs[1]) > 0.02
  assert writer.scalars[7] == scores
  rec = val.records[0]
  names = sorted(writer.images[7])
  assert names == [f'val/{rec.name}_detail', f'val/{rec.name}_sr']
  sr = writer.images[7][f'val/{rec.name}_sr']
  assert sr.shape == (1,) + hr.shape
  np.testing.assert_allclose(sr[0], np.clip(srs[0], 0, 1), atol=1e-5)


def test_comparison_image_and_table():
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  lr = hr[::2, ::2]
  img = demo_report.comparison_image(lr, hr, hr, hr, scale=2, size=32)
  assert img.shape == (32, 4 * 32 + 3 * 4, 3) and img.dtype == np.uint8
  np.testing.assert_array_equal(img[:, -32:], hr[4:36, 8:40])
  rows = [{'name': 'x', 'psnr_bicubic': 30.0, 'psnr_dssr': 31.5},
          {'name': 'x', 'psnr_bicubic': 32.0, 'psnr_dssr': 32.5},
          {'name': 'y', 'psnr_bicubic': 20.0, 'psnr_dssr': 21.0}]
  text = demo_report.table(rows).splitlines()
  assert text[1].split() == ['x', '31.00', '32.00', '+1.00']
  assert text[-1].split() == ['mean', '27.33', '28.33', '+1.00']
