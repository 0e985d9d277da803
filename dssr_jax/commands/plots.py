r"""Draws the figures: per-step PSNR, the detail maps of every step, crops.

  dssr-plots steps --report=results.json --out=docs/per_step_psnr.png
  dssr-plots detail_l1 --report=results.json --out=fig9.png
  dssr-plots details --checkpoint=WORKDIR --hr=img.png [--hr=...] --sigma=1.2 --out=docs/details.png
  dssr-plots crops --checkpoint=WORKDIR --hr=img.png --sigma=1.2 --box=Y,X,SIZE --out=crops.png

(or `python -m dssr_jax.plots ...`). `steps` and `detail_l1` read an eval.py JSON (the paper's
Table IV / Fig. 8, and Fig. 9: the L1 between each step's detail map and the loss's detail label);
`details` (Fig. 4 / 9) and `crops` degrade the HR images with the Gaussian8 blur + MATLAB-bicubic
downsampling at the given sigma (docs/design.md section 4) and run the network.
"""

import json

from absl import app
from absl import flags
from etils import epath
import numpy as np

from dssr_jax import commands
from dssr_jax import image_files
from dssr_jax import plots

FLAGS = flags.FLAGS
flags.DEFINE_string('out', None, 'The figure file to write (PNG).', required=True)
flags.DEFINE_string('report', None, 'steps, detail_l1: an eval.py --output JSON.')
flags.DEFINE_string('checkpoint', None, 'details, crops: a workdir or checkpoint folder.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_multi_string('hr', [], 'details, crops: HR image (repeat for several).')
flags.DEFINE_float('sigma', 1.2, 'details, crops: Gaussian blur sigma of the LR.')
flags.DEFINE_list('box', None, 'crops: Y,X,SIZE of the crop in HR pixels.')


def _need(figure: str, *names: str) -> None:
  missing = [f'--{n}' for n in names if not FLAGS[n].value]
  if missing:
    raise app.UsageError(f'{figure} needs {", ".join(missing)}')


def _network():
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import upscaling  # pylint: disable=g-import-not-at-top
  loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step)
  return int(loaded.config['scale']), upscaling.make_sr_fn(loaded)


def _report() -> dict:
  return json.loads(epath.Path(FLAGS.report).read_text())


def steps() -> None:
  _need('steps', 'report')
  print(plots.plot_per_step_psnr(_report(), FLAGS.out))


def detail_l1() -> None:
  _need('detail_l1', 'report')
  print(plots.plot_detail_l1(_report(), FLAGS.out))


def details() -> None:
  _need('details', 'checkpoint', 'hr')
  scale, fn = _network()
  stats, names, first = [], [], None
  for path in FLAGS.hr:
    hr, lr = plots.degrade_hr(path, scale, FLAGS.sigma)
    maps = fn(lr[None] / np.float32(255))['details'][:, 0]
    stats.append(plots.detail_stats(maps, hr, lr, scale))
    names.append(epath.Path(path).stem)
    if first is None:
      first = (maps, plots.true_detail(hr, lr, scale))
    for t, (a, l1) in enumerate(zip(stats[-1]['mean_abs'], stats[-1]['l1_to_true']), start=1):
      print(f'{names[-1]} step {t}: mean |d| {a:.5f}, L1 to HR - bic {l1:.5f}')
  print(plots.plot_details(first[0], stats, names, FLAGS.out, true=first[1]))


def crops() -> None:
  _need('crops', 'checkpoint', 'hr', 'box')
  try:
    box = tuple(int(v) for v in FLAGS.box)
  except ValueError:
    box = ()
  if len(box) != 3:
    raise app.UsageError(f'--box must be Y,X,SIZE (three integers), got {",".join(FLAGS.box)}')
  from dssr_jax import eval_lib  # pylint: disable=g-import-not-at-top
  scale, fn = _network()
  hr, lr = plots.degrade_hr(FLAGS.hr[0], scale, FLAGS.sigma)
  plots.check_box(box, hr.shape)  # before the network runs
  sr = image_files.to_uint8(fn(lr[None] / np.float32(255))['sr'][0])
  bic = image_files.to_uint8(eval_lib.bicubic_sr_fn(scale)(lr[None] / 255.0)['sr'][0])
  print(plots.plot_crops(lr, bic, sr, hr, scale, box, FLAGS.out))


def main(argv):
  return commands.dispatch(argv, {'steps': steps, 'detail_l1': detail_l1, 'details': details,
                                  'crops': crops})


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
