"""Validation during training: Y-PSNR on a few Gaussian8 images (docs/design.md sections 2 and 4)."""

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from dssr_jax import fast
from dssr_jax import imageio
from dssr_jax import metrics as metrics_lib
from dssr_jax import model as model_lib


def detail_image(detail: np.ndarray) -> np.ndarray:
  """A detail map (zero-centred, HxWx3) as a viewable image: 0.5 + d, clipped."""
  return np.clip(0.5 + detail, 0.0, 1.0)


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


class Validator:
  """Runs the network on fixed Gaussian8 LR images and writes PSNR, an SR image and a detail map."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    from dssr_jax import testsets  # pylint: disable=g-import-not-at-top  (may use tf)
    tc = config.train
    if tc.val_images < 1 or tc.val_sigmas < 1:
      raise ValueError('config.train.val_images and val_sigmas must be at least 1, got '
                       f'{tc.val_images} and {tc.val_sigmas}')
    self.scale = config.model.scale
    self.records = pick_records(testsets.gaussian8(tc.val_dir, self.scale), tc.val_images,
                                tc.val_sigmas)
    if not self.records:
      raise FileNotFoundError(f'config.train.val_dir={tc.val_dir!r} holds no images')
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
      sr = imageio.to_uint8(out['sr'][0])
      psnrs.append(metrics_lib.psnr_y(sr, rec.hr, crop=self.scale))
      if i == 0:
        images[f'val/{rec.name}_sr'] = out['sr'][0:1].clip(0, 1)
        images[f'val/{rec.name}_detail'] = detail_image(out['details'][-1, 0])[None]
    scores = {'val/psnr': float(np.mean(psnrs))}
    writer.write_scalars(step, scores)
    writer.write_images(step, images)
    return scores
