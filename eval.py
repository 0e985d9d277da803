r"""Scores a DSSR checkpoint (or bicubic) on the benchmark protocols; prints a Table V-style table.

  python eval.py --workdir=DIR [--step=N] --data_dir=DATA --datasets=Set5,Set14 --scales=2 \
      --setting=gaussian8 [--config=configs/default.py] [--output=results.json] \
      [--save_images=SR_DIR] [--self_ensemble] [--grey_as_y]
  python eval.py --method=bicubic --data_dir=DATA --datasets=Set5 --scales=2,3,4
  python eval.py --checkpoint=CKPT --setting=paired --data_dir=ROOT --datasets=NAME --scales=4

`--checkpoint=PATH` scores a converted authors' checkpoint instead of a workdir's.
`--setting=paired` scores the LR files of ROOT/NAME/LRblur/xS against ROOT/NAME/HR/xS (same file
names). Every path may be local or a URL (gs://...). See dssr_jax/eval_lib.py for the protocol and
the JSON layout, docs/evaluation.md for examples.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from dssr_jax import cli
from dssr_jax import eval_lib

config_flags.DEFINE_config_file(
    'config', None, 'Optional model config; its options must match the checkpoint\'s '
    '(dtype and remat may differ).', lock_config=True)
flags.DEFINE_string('workdir', None, 'Training workdir whose checkpoint to score.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_string('checkpoint', None, 'A checkpoint path instead of --workdir (e.g. converted '
                    'authors\' weights).')
flags.DEFINE_string('data_dir', None, 'Folder with one folder per dataset: HR images (gaussian8), '
                    'the DIV2KRK layout (div2krk), HR/xS and LRblur/xS (paired).', required=True)
flags.DEFINE_list('datasets', ['Set5'], 'Dataset folder names under --data_dir.')
flags.DEFINE_list('scales', None, 'Scales (default: the checkpoint\'s).')
flags.DEFINE_enum('setting', 'gaussian8', eval_lib.SETTINGS, 'Degradation protocol.')
flags.DEFINE_enum('method', 'dssr', eval_lib.METHODS, 'What to score.')
flags.DEFINE_string('output', None, 'Write the report here (.json) and a .csv beside it.')
flags.DEFINE_string('save_images', None, 'Write every SR output as PNG to '
                    'DIR/<dataset>/x<scale>/<LR file stem>.png.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output and existing images in '
                  '--save_images.')
flags.DEFINE_bool('self_ensemble', False, 'x8 flip/transpose self-ensemble.')
flags.DEFINE_bool('grey_as_y', False, 'Score greyscale HR files with Y = grey value (MATLAB).')
flags.DEFINE_integer('tile', 0, 'LR tile size (0: full images, as the protocol does; eval stops '
                     'before it starts when they do not fit --max_memory_gb).')
flags.DEFINE_float('max_memory_gb', None, 'Memory budget of one pass in GB (default: half the '
                   'available RAM on CPU, 80% of the device memory on GPU/TPU).')
flags.DEFINE_integer('overlap', 32, 'LR overlap between tiles.')
flags.DEFINE_string('cache_dir', None, 'Where degraded LR test images may be cached.')
flags.DEFINE_string('jax_cache_dir', cli.CACHE_DIR,
                    'JAX persistent compilation cache ("" to disable).')

FLAGS = flags.FLAGS


def _run(scales):
  config = FLAGS.config
  return eval_lib.evaluate(
      data_dir=FLAGS.data_dir, datasets=FLAGS.datasets, scales=scales,
      options=eval_lib.EvalOptions(setting=FLAGS.setting, grey_as_y=FLAGS.grey_as_y,
                                   self_ensemble=FLAGS.self_ensemble, tile=FLAGS.tile,
                                   overlap=FLAGS.overlap, max_memory_gb=FLAGS.max_memory_gb),
      method=FLAGS.method, checkpoint=FLAGS.checkpoint or FLAGS.workdir, step=FLAGS.step,
      model_config=None if config is None else config.model.to_dict(),
      cache_dir=FLAGS.cache_dir, save_images=FLAGS.save_images, overwrite=FLAGS.overwrite)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cli.use_compilation_cache(FLAGS.jax_cache_dir)
  if FLAGS.workdir and FLAGS.checkpoint:
    raise app.UsageError('pass --workdir or --checkpoint, not both')
  try:
    scales = [int(s) for s in FLAGS.scales] if FLAGS.scales else None
  except ValueError as e:
    raise app.UsageError(f'--scales must be integers: {FLAGS.scales}') from e
  try:
    if FLAGS.output:
      eval_lib.check_outputs_free(FLAGS.output, FLAGS.overwrite)
    report = _run(scales)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    # A wrong flag, folder or checkpoint: one clear line, not a traceback.
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(eval_lib.describe(report))
  print(eval_lib.markdown_table(report))
  steps = eval_lib.per_step_table(report)
  if steps:
    print('\nPer-step PSNR (Table IV):')
    print(steps)
  if FLAGS.output:
    paths = eval_lib.write_report(report, FLAGS.output, FLAGS.overwrite)
    print(f'wrote {paths[0]} and {paths[1]}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
