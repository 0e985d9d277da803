r"""Scores a DSSR checkpoint, bicubic or others' SR images on the benchmark protocols; prints
tables like the paper's (Tables IV-VII) with the paper's numbers beside ours.

  python eval.py --checkpoint=DIR [--step=N] --data_dir=DATA --datasets=Set5,Set14 --scales=2 \
      --setting=gaussian8 [--config=configs/default.py] [--output=results.json] \
      [--save_images=SR_DIR] [--html=REPORT_DIR] [--self_ensemble] [--grey_as_y]
  python eval.py --method=bicubic --data_dir=DATA --datasets=Set5 --scales=2,3,4
  python eval.py --checkpoint=DIR --setting=kernel_width [--kernel_widths=0,1.2] --data_dir=DATA \
      --datasets=Set5,Set14,BSD100,Urban100
  python eval.py --checkpoint=CKPT --setting=paired --data_dir=ROOT --datasets=NAME --scales=4
  python eval.py --method=images --sr_dir=ROOT --data_dir=DATA --datasets=Set5 --scales=4

`--checkpoint` is a training workdir, its checkpoints/ folder or one checkpoint (e.g. converted
authors' weights). `--setting=paired` scores the LR files of ROOT/NAME/LRblur/xS against
ROOT/NAME/HR/xS (same file names). `--method=images` scores SR images made elsewhere, read from
ROOT/<dataset>/x<scale>/<LR stem>.png (the layout --save_images writes). Every path may be local or
a URL (gs://...). See dssr_jax/eval_lib.py for the protocol and the JSON layout,
docs/evaluation.md for examples.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from dssr_jax import commands
from dssr_jax import eval_lib
from dssr_jax import html_report

config_flags.DEFINE_config_file(
    'config', None, 'Optional model config; its options must match the checkpoint\'s '
    '(dtype and remat may differ).', lock_config=True)
flags.DEFINE_string('checkpoint', None, 'What to score: a training workdir (its latest '
                    'checkpoint, or --step), its checkpoints/ folder or one checkpoint folder.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_string('data_dir', None, 'Folder with one folder per dataset: HR images (gaussian8, '
                    'kernel_width), the DIV2KRK layout (div2krk), HR/xS and LRblur/xS (paired).',
                    required=True)
flags.DEFINE_list('datasets', ['Set5'], 'Dataset folder names under --data_dir.')
flags.DEFINE_list('scales', None, 'Scales (default: the checkpoint\'s).')
flags.DEFINE_enum('setting', 'gaussian8', list(eval_lib.SETTINGS), 'Degradation protocol.')
flags.DEFINE_list('kernel_widths', None, 'kernel_width: the Gaussian widths, one row each '
                  '(default: the paper\'s, x2: 0,0.6,1.2,1.8; x4: 0,1.2,2.4,3.6).')
flags.DEFINE_enum('method', 'dssr', eval_lib.METHODS, 'What to score: the network, MATLAB '
                  'bicubic, or the SR images in --sr_dir.')
flags.DEFINE_string('sr_dir', None, '--method=images: SR images made elsewhere, as '
                    'DIR/<dataset>/x<scale>/<LR file stem>.png.')
flags.DEFINE_string('output', None, 'Write the report here (.json) and a .csv beside it.')
flags.DEFINE_string('save_images', None, 'Write every SR output as PNG to '
                    'DIR/<dataset>/x<scale>/<LR file stem>.png.')
flags.DEFINE_string('html', None, 'Write a visual report to this folder: index.html (scores, '
                    'a sortable row per image, zoomed crops, a before/after slider, the detail '
                    'maps) and the crops beside it.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output, --html report and existing '
                  'images in --save_images.')
flags.DEFINE_bool('self_ensemble', False, 'x8 flip/transpose self-ensemble.')
flags.DEFINE_bool('grey_as_y', False, 'Score greyscale HR files with Y = grey value (MATLAB).')
flags.DEFINE_integer('tile', 0, 'LR tile size (0: full images, as the protocol does; eval stops '
                     'before it starts when they do not fit --max_memory_gb).')
flags.DEFINE_float('max_memory_gb', None, 'Memory budget of one pass in GB (default: half the '
                   'available RAM on CPU, 80% of the device memory on GPU/TPU).')
flags.DEFINE_integer('overlap', 32, 'LR overlap between tiles.')
flags.DEFINE_string('cache_dir', None, 'Where degraded LR test images may be cached.')
flags.DEFINE_string('jax_cache_dir', commands.CACHE_DIR,
                    'JAX persistent compilation cache ("" to disable).')

FLAGS = flags.FLAGS


def _numbers(name: str, values, kind):
  try:
    return [kind(v) for v in values] if values else None
  except ValueError:
    raise ValueError(f'--{name} must be a list of numbers, got {",".join(values)}') from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  commands.use_compilation_cache(FLAGS.jax_cache_dir)
  scales = _numbers('scales', FLAGS.scales, int)
  widths = _numbers('kernel_widths', FLAGS.kernel_widths, float)
  if FLAGS.output:
    eval_lib.check_outputs_free(FLAGS.output, FLAGS.overwrite)
  page = None
  if FLAGS.html:
    html_report.check_free(FLAGS.html, FLAGS.overwrite)
    page = html_report.Collector(FLAGS.html)
  config = FLAGS.config
  report = eval_lib.evaluate(
      data_dir=FLAGS.data_dir, datasets=FLAGS.datasets, scales=scales,
      options=eval_lib.EvalOptions(setting=FLAGS.setting, grey_as_y=FLAGS.grey_as_y,
                                   self_ensemble=FLAGS.self_ensemble, tile=FLAGS.tile,
                                   overlap=FLAGS.overlap, max_memory_gb=FLAGS.max_memory_gb,
                                   kernel_widths=None if widths is None else tuple(widths)),
      method=FLAGS.method, checkpoint=FLAGS.checkpoint, step=FLAGS.step,
      model_config=None if config is None else config.model.to_dict(),
      cache_dir=FLAGS.cache_dir, save_images=FLAGS.save_images, overwrite=FLAGS.overwrite,
      sr_dir=FLAGS.sr_dir, on_image=page.add if page else None)
  print(eval_lib.describe(report))
  print(eval_lib.markdown_table(report))
  steps = eval_lib.per_step_table(report)
  if steps:
    print('\nPer step (Table IV, Fig. 9):')
    print(steps)
  if FLAGS.output:
    paths = eval_lib.write_report(report, FLAGS.output, FLAGS.overwrite)
    print(f'wrote {paths[0]} and {paths[1]}', file=sys.stderr)
  if page:
    print(f'wrote {page.write(report)}', file=sys.stderr)


if __name__ == '__main__':
  commands.run(main)
