"""Validation during training: Y-PSNR on a few test images of the training's own setting.

Setting 1 ('iso'): Gaussian8 LR images (docs/design.md sections 2.4 and 4.1). Setting 2 ('aniso'):
a DIV2KRK-style set (section 4.2) made from the same folder with seed `DIV2KRK_SEED`, the images
`python -m dssr_jax.testsets div2krk --hr_dir=VAL_DIR --seed=0` writes.
"""

import itertools

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from dssr_jax import fast
from dssr_jax import image_files
from dssr_jax import metrics as metrics_lib
from dssr_jax import model as model_lib

DIV2KRK_SEED = 0


def pick_records(records, num_images: int, num_sigmas: int) -> list:
  """The first `num_images` images, each at `num_sigmas` kernel widths spread over Gaussian8's.

  `records` is consumed lazily (image by image, 8 sigmas each): later images are never degraded.
  """
  chosen, names = [], []
  for r in records:
    if r.name not in names:
      if len(names) == num_images:
        break
      names.append(r.name)
    chosen.append(r)
  out = []
  for name in names:
    recs = sorted((r for r in chosen if r.name == name), key=lambda r: r.sigma)
    idx = np.unique(np.round(np.linspace(0, len(recs) - 1, num_sigmas)).astype(int))
    out.extend(recs[i] for i in idx)
  return out


def validation_records(config: ml_collections.ConfigDict) -> list:
  """The fixed LR/HR pairs validation scores (nothing beyond them is read or degraded).

  'iso': the first `val_images` images of `val_dir`, each at `val_sigmas` Gaussian8 widths.
  'aniso': the first `val_images` images of the DIV2KRK-style set of `val_dir` (one kernel each;
  `val_sigmas` does not apply).
  """
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  tc, scale = config.train, config.model.scale
  if tc.val_images < 1 or tc.val_sigmas < 1:
    raise ValueError('config.train.val_images and val_sigmas must be at least 1, got '
                     f'{tc.val_images} and {tc.val_sigmas}')
  if config.data.degradation == 'aniso':
    records = testsets.div2krk_style(tc.val_dir, scale, seed=DIV2KRK_SEED)
    return list(itertools.islice(records, tc.val_images))
  return pick_records(testsets.gaussian8(tc.val_dir, scale), tc.val_images, tc.val_sigmas)


class Validator:
  """Runs the network on fixed LR images of the training's setting and writes PSNR, an SR image
  and a detail map."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.scale = config.model.scale
    self.records = validation_records(config)
    if not self.records:
      raise FileNotFoundError(f'config.train.val_dir={config.train.val_dir!r} holds no images')
    self._replicated = NamedSharding(mesh, P())
    model = model_lib.DSSR(**config.model)
    self._apply = fast.jit(lambda p, x: model.apply({'params': p}, x),
                           out_shardings=self._replicated)

  def run(self, params, writer, step: int) -> dict[str, float]:
    psnrs, images = [], {}
    for i, rec in enumerate(self.records):
      lr = (np.asarray(rec.lr, np.float32) / 255.0)[None]
      lr = jax.make_array_from_process_local_data(self._replicated, lr)
      out = jax.device_get(self._apply(params, lr))
      sr = image_files.to_uint8(out['sr'][0])
      psnrs.append(metrics_lib.psnr_y(sr, rec.hr, crop=self.scale))
      if i == 0:
        images[f'val/{rec.name}_sr'] = out['sr'][0:1].clip(0, 1)
        images[f'val/{rec.name}_detail'] = image_files.detail_image(out['details'][-1, 0])[None]
    scores = {'val/psnr': float(np.mean(psnrs))}
    writer.write_scalars(step, scores)
    writer.write_images(step, images)
    return scores
