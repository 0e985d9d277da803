"""Setting-2 (aniso) training validates on a DIV2KRK-style set of val_dir and keeps its best
checkpoint."""

import numpy as np

import helpers

from configs import aniso_x2
from configs import aniso_x4
from dssr_jax import imageio
from dssr_jax import testsets
from dssr_jax import validation


def _val_dir(path, n=3):
  rng = np.random.default_rng(0)
  for i in range(n):
    imageio.write_png(path / f'p{i}.png', rng.integers(0, 256, (18 + i, 21, 3), dtype=np.uint8))
  return path


def test_aniso_configs_validate_on_the_div2krk_set_that_the_cli_writes(tmp_path):
  val_dir = _val_dir(tmp_path / 'val')
  # What `python -m dssr_jax.testsets div2krk --hr_dir=VAL --seed=0` writes, read back.
  testsets.make_div2krk(val_dir, tmp_path / 'kr', seed=0)
  for module, scale in ((aniso_x2, 2), (aniso_x4, 4)):
    config = module.get_config()
    assert config.data.degradation == 'aniso' and config.model.scale == scale
    assert config.train.val_dir == 'data/benchmark/Set5' and config.train.val_images == 2
    config.train.val_dir = str(val_dir)
    got = validation.validation_records(config)
    want = list(testsets.div2krk(tmp_path / 'kr', scale))[:2]
    assert [r.name for r in got] == ['img_1', 'img_2']
    for a, b in zip(got, want):
      assert a.name == b.name and a.lr.shape == (a.hr.shape[0] // scale, a.hr.shape[1] // scale, 3)
      np.testing.assert_array_equal(a.hr, b.hr)
      np.testing.assert_array_equal(a.lr, b.lr)
      np.testing.assert_allclose(a.kernel, b.kernel, rtol=0, atol=1e-15)


def test_aniso_smoke_run_keeps_the_best_checkpoint(tmp_path, monkeypatch):
  """A tiny aniso run scored at steps 1 and 2 keeps the latest checkpoint and the best one.

  Two steps barely move the network, so the scores are handed to the checkpoint manager lowered
  by 10 dB per step: step 1 is then the best, whatever the real PSNRs (which are checked to be
  the validator's, finite, one per checkpoint).
  """
  from dssr_jax import train_loop  # pylint: disable=g-import-not-at-top
  real = {}
  real_run = validation.Validator.run

  def run(self, params, writer, step):
    scores = real_run(self, params, writer, step)
    real[step] = (scores['val/psnr'], [r.name for r in self.records])
    return {'val/psnr': scores['val/psnr'] - 10.0 * step}

  monkeypatch.setattr(validation.Validator, 'run', run)
  config = aniso_x2.get_config()
  config.model.update(helpers.TINY)
  config.data.update(dict(source='embedded', folders=(), patch_size=8, num_parallel_calls=2,
                          patches_per_image=1, image_window=8))
  config.train.update(dict(num_steps=2, checkpoint_every=1, keep_checkpoints=1, log_every=1,
                           val_dir=str(_val_dir(tmp_path / 'val', 1))))
  train_loop.train_and_evaluate(config, tmp_path / 'work')
  assert sorted(real) == [1, 2]
  assert all(np.isfinite(p) and names == ['img_1'] for p, names in real.values()), real
  kept = sorted(int(p.name) for p in (tmp_path / 'work' / 'checkpoints').iterdir()
                if p.name.isdigit())
  assert kept == [1, 2]  # keep_checkpoints=1 keeps the latest (2); the best (1) is kept too
