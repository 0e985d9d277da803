r"""The paper's bicubic rows (Tables V, VI) against bicubic through other LR pipelines and metrics.

  python benchmarks/bicubic_rows.py --data_dir=DATA --datasets=Set5,Set14 --table=V
  python benchmarks/bicubic_rows.py --data_dir=DATA --datasets=Set5 --table=VI

Bicubic here is MATLAB imresize of the LR back to HR size (eval.py --method=bicubic). The LR is
made two ways: 'ours' (docs/design.md 4.1: 21x21 Gaussian, reflect padding, MATLAB bicubic down,
rounded to 8 bits) and 'pil' (IKC's and the DSSR authors' first-generation scripts: the blurred HR
truncated to 8 bits by torchvision's to_pil_image, then PIL's bicubic down per channel). Each is
scored as Y-PSNR and as RGB PSNR (border crop = scale). Table VI also scans the kernel width our
pipeline would need to give each printed value. Prints a markdown table; a diagnosis, not a test.
"""

import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image

sys.path.insert(0, __file__.rsplit('/benchmarks/', 1)[0])
from dssr_jax import degrade  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import image_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import matlab_bicubic  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import paper  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('data_dir', None, 'One folder of HR images per dataset.', required=True)
flags.DEFINE_list('datasets', ['Set5'], 'Datasets.')
flags.DEFINE_enum('table', 'V', ['V', 'VI'], 'V: Gaussian8 x2/x3/x4; VI: fixed widths x2/x4.')
FLAGS = flags.FLAGS

WIDTHS = {2: (0.0, 0.6, 1.2, 1.8), 4: (0.0, 1.2, 2.4, 3.6)}


def blurred(hr: np.ndarray, sigma: float) -> np.ndarray:
  x = hr / 255.0
  return x if sigma == 0 else degrade.blur(x, degrade.isotropic_kernel(sigma))


def lr_ours(b: np.ndarray, scale: int) -> np.ndarray:
  return image_files.to_uint8(matlab_bicubic.imresize(b, 1.0 / scale))


def lr_pil(b: np.ndarray, scale: int) -> np.ndarray:
  # to_pil_image(float tensor) is tensor.mul(255).byte(): clipped in [0, 1] here, then truncated.
  q = (np.clip(b, 0, 1) * 255).astype(np.uint8)
  h, w = q.shape[0] // scale, q.shape[1] // scale
  return np.stack([np.asarray(Image.fromarray(q[:, :, c]).resize((w, h), Image.BICUBIC))
                   for c in range(3)], axis=2)


def scores(hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[float, float]:
  sr = image_files.to_uint8(matlab_bicubic.imresize(lr / 255.0, scale))
  return metrics.psnr_y(sr, hr, scale), metrics.psnr_rgb(sr, hr, scale)


def images(dataset: str, scale: int):
  for f in image_files.list_images(f'{FLAGS.data_dir}/{dataset}'):
    hr = image_files.read_image(f)
    yield hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]


def table_v():
  print('| dataset | scale | paper | ours Y | ours RGB | PIL-LR Y | PIL-LR RGB |\n'
        '|---|---|---|---|---|---|---|')
  for dataset in FLAGS.datasets:
    for scale in (2, 3, 4):
      rows = []
      for hr in images(dataset, scale):
        for sigma in degrade.gaussian8_sigmas(scale):
          b = blurred(hr, sigma)
          rows.append(scores(hr, lr_ours(b, scale), scale) + scores(hr, lr_pil(b, scale), scale))
      cell = paper.lookup(dataset, scale, 'gaussian8', 'bicubic')
      mean = np.mean(rows, axis=0)
      print(f'| {dataset} | x{scale} | {cell.psnr if cell else "-"} | ' +
            ' | '.join(f'{v:.2f}' for v in mean) + ' |')


def table_vi():
  scan = np.round(np.arange(0.2, 4.01, 0.1), 2)
  print('| dataset | scale | width | paper | ours Y | PIL-LR Y | width giving the paper\'s '
        'value |\n'
        '|---|---|---|---|---|---|---|')
  for dataset in FLAGS.datasets:
    for scale in (2, 4):
      hrs = list(images(dataset, scale))
      curve = {}  # width -> our Y-PSNR, computed once per width
      def ours(w):
        if w not in curve:
          curve[w] = np.mean([scores(hr, lr_ours(blurred(hr, w), scale), scale)[0] for hr in hrs])
        return curve[w]
      for width in WIDTHS[scale]:
        pil = np.mean([scores(hr, lr_pil(blurred(hr, width), scale), scale)[0] for hr in hrs])
        cell = paper.lookup(dataset, scale, 'kernel_width', 'bicubic', width)
        match = '-'
        if cell is not None and width > 0:
          best = min(scan, key=lambda w: abs(ours(float(w)) - cell.psnr))
          match = f'{best:.1f} ({ours(float(best)):.2f})'
        print(f'| {dataset} | x{scale} | {width} | {cell.psnr if cell else "-"} | '
              f'{ours(width):.2f} | {pil:.2f} | {match} |')


def main(argv):
  del argv
  table_v() if FLAGS.table == 'V' else table_vi()


if __name__ == '__main__':
  app.run(main)
