"""Validation during training (Gaussian8 subset, PSNR, images) and the demo's report pieces."""

import types

import jax
import numpy as np
import pytest

from configs import smoke
from dssr_jax import demo_report
from dssr_jax import imageio
from dssr_jax import metrics
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


def test_validator_on_set5(benchmark_dir, tmp_path):
  # One Set5 photo, cropped to 64x64 to keep the CPU forward pass short.
  first = sorted(imageio.list_images(benchmark_dir / 'Set5'))[0]
  imageio.write_png(tmp_path / 'crop.png', imageio.read_image(first)[100:164, 100:164])
  config = smoke.get_config()
  config.train.update(dict(val_dir=str(tmp_path), val_images=1, val_sigmas=1))
  mesh = train_lib.create_mesh()
  _, _, state = train_lib.create_train_state(config, mesh)
  val = validation.Validator(config, mesh)
  assert len(val.records) == 1
  writer = FakeWriter()
  scores = val.run(state.params, writer, 7)
  rec = val.records[0]
  # A freshly initialised network adds random detail to bicubic (about 15 dB on this crop).
  assert 5 < scores['val/psnr'] < 60
  assert writer.scalars[7] == scores
  names = sorted(writer.images[7])
  assert names == [f'val/{rec.name}_detail', f'val/{rec.name}_sr']
  sr = writer.images[7][f'val/{rec.name}_sr']
  assert sr.shape == (1,) + rec.hr.shape and 0 <= sr.min() and sr.max() <= 1
  np.testing.assert_allclose(
      metrics.psnr_y(validation.to_uint8(sr[0]), rec.hr, crop=2), scores['val/psnr'])


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
