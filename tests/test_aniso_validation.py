"""Setting-2 (aniso) training validates on the DIV2KRK-style set of val_dir that the CLI writes."""

import numpy as np

from configs import aniso_x2
from configs import aniso_x4
from dssr_jax import image_files
from dssr_jax import testsets
from dssr_jax import validation


def _val_dir(path, n=3):
  rng = np.random.default_rng(0)
  for i in range(n):
    image_files.write_png(path / f'p{i}.png', rng.integers(0, 256, (18 + i, 21, 3), dtype=np.uint8))
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
