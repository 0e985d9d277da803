r"""Writes the blind-SR test sets as files, from any folder of HR images.

  dssr-testsets gaussian8 --hr_dir=HR --out_dir=OUT [--name=NAME] [--scales=2,3,4]
  dssr-testsets div2krk --hr_dir=HR --out_dir=OUT [--seed=0] [--scales=2,4]

(or `python -m dssr_jax.testsets ...`). gaussian8: the eight Gaussian kernels of every scale
(docs/design.md section 4.1) as a paired set, OUT/NAME/LRblur/xS and OUT/NAME/HR/xS, which
`eval.py --setting=paired` scores. div2krk: a DIV2KRK-style anisotropic set (section 4.2) in
DIV2KRK's layout, OUT/gt, OUT/lr_xS, OUT/gt_k_xS, which `eval.py --setting=div2krk` scores.
Existing files are kept unless --overwrite.
"""

from absl import flags
from etils import epath

from dssr_jax import commands
from dssr_jax import testsets

DEFAULT_SCALES = {'gaussian8': (2, 3, 4), 'div2krk': (2, 4)}

FLAGS = flags.FLAGS
flags.DEFINE_string('hr_dir', None, 'Folder of HR images.', required=True)
flags.DEFINE_string('out_dir', None, 'gaussian8: the data folder, written as OUT/NAME/HR/xS and '
                    "OUT/NAME/LRblur/xS; div2krk: the set's own folder (OUT/gt, OUT/lr_xS, "
                    'OUT/gt_k_xS).', required=True)
flags.DEFINE_string('name', None, 'gaussian8: the dataset folder name (default: the name of '
                    '--hr_dir).')
flags.DEFINE_list('scales', None, 'Scales to write (default: gaussian8 2,3,4; div2krk 2,4).')
flags.DEFINE_integer('seed', 0, 'div2krk: the seed of the kernels.')
flags.DEFINE_bool('overwrite', False, 'Replace existing files.')


def _scales(command: str) -> list[int]:
  try:
    return [int(s) for s in FLAGS.scales] if FLAGS.scales else list(DEFAULT_SCALES[command])
  except ValueError:
    raise ValueError(f'--scales must be integers, got {",".join(FLAGS.scales)}') from None


def gaussian8() -> None:
  n = testsets.export_gaussian8(FLAGS.hr_dir, FLAGS.out_dir, scales=_scales('gaussian8'),
                                name=FLAGS.name, overwrite=FLAGS.overwrite)
  name = FLAGS.name or epath.Path(FLAGS.hr_dir).name
  print(f'wrote {n} LR/HR pairs to {epath.Path(FLAGS.out_dir) / name}')


def div2krk() -> None:
  if FLAGS.name:
    raise ValueError('--name is for gaussian8; div2krk writes into --out_dir itself')
  n = testsets.make_div2krk(FLAGS.hr_dir, FLAGS.out_dir, seed=FLAGS.seed,
                            scales=_scales('div2krk'), overwrite=FLAGS.overwrite)
  print(f'wrote {n} images to {FLAGS.out_dir}')


def main(argv):
  return commands.dispatch(argv, {'gaussian8': gaussian8, 'div2krk': div2krk})


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
