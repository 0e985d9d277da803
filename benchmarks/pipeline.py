r"""Training-pipeline throughput: degraded patches per second, iso/aniso at x2/x4.

  python benchmarks/pipeline.py [--source=embedded | --source=folders --folders=DIR1,DIR2] \
      [--batch_size=8] [--patch_size=64] [--steps=100] [--settings=iso:2,iso:4,aniso:2,aniso:4] \
      [--patches_per_image=8]

Times `create_train_dataset` from the first batch on (construction and tracing excluded), so the
number is the steady-state rate a training loop can pull. With --source=embedded the photos are
in memory: it measures crop + kernel + blur + downsample + quantise. With --source=folders every
patch also decodes its image file (as training on DIV2K does).
"""

import time

from absl import app
from absl import flags

from configs import default
from dssr_jax import input_pipeline

flags.DEFINE_enum('source', 'embedded', input_pipeline.SOURCES, 'HR source.')
flags.DEFINE_list('folders', [], 'Image folders for --source=folders.')
flags.DEFINE_integer('patches_per_image', 1, 'data.patches_per_image.')
flags.DEFINE_integer('image_window', 32, 'data.image_window.')
flags.DEFINE_integer('batch_size', 8, 'Global batch size.')
flags.DEFINE_integer('patch_size', 64, 'LR patch size.')
flags.DEFINE_integer('steps', 100, 'Batches timed per setting.')
flags.DEFINE_integer('warmup', 5, 'Batches drawn before timing.')
flags.DEFINE_list('settings', ['iso:2', 'iso:4', 'aniso:2', 'aniso:4'],
                  'degradation:scale pairs to time.')
FLAGS = flags.FLAGS


def measure(degradation: str, scale: int) -> float:
  config = default.get_data_config()
  config.source = FLAGS.source
  config.folders = tuple(FLAGS.folders)
  config.patch_size = FLAGS.patch_size
  config.patches_per_image = FLAGS.patches_per_image
  config.image_window = FLAGS.image_window
  config.degradation = degradation
  ds = input_pipeline.create_train_dataset(config, scale=scale, batch_size=FLAGS.batch_size,
                                           seed=0)
  it = iter(ds.as_numpy_iterator())
  for _ in range(FLAGS.warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    next(it)
  elapsed = time.perf_counter() - start
  return FLAGS.steps * FLAGS.batch_size / elapsed


def main(argv):
  del argv
  print(f'source={FLAGS.source} batch={FLAGS.batch_size} LR patch={FLAGS.patch_size} '
        f'patches_per_image={FLAGS.patches_per_image}')
  print(f'{"setting":<10}{"scale":>6}{"patches/s":>12}{"batches/s":>12}')
  for item in FLAGS.settings:
    degradation, scale = item.split(':')
    rate = measure(degradation, int(scale))
    print(f'{degradation:<10}{scale:>6}{rate:>12.1f}{rate / FLAGS.batch_size:>12.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
