r"""Trains DSSR: `python train.py --config=configs/iso_x2.py --workdir=DIR`.

DIR may be local or a URL (gs://bucket/run). Resumes from the latest checkpoint in DIR;
SIGTERM/SIGINT saves one and exits. Override any config field on the command line, e.g.
`--config.train.batch_size=16`. Multi-host (one process per host, TPU/SLURM settings
auto-detected by JAX; every process must see the same DIR): add `--distributed` or
`--config.train.distributed=True`.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from configs import default
from dssr_jax import train_loop

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Checkpoints and TensorBoard files go here (local or '
                    'gs://...).', required=True)
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first (multi-host).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (else auto-detected).')
flags.DEFINE_integer('num_processes', None, 'Process count (else auto-detected).')
flags.DEFINE_integer('process_id', None, 'This process (else auto-detected).')
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)


class _QuietOrbax:
  """Drops orbax's per-save INFO chatter from the console; its warnings still show."""

  def filter(self, record):
    return record.levelno >= 30 or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_QuietOrbax())
  config = FLAGS.config
  if config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/iso_x2.py')
  if FLAGS.distributed or config.train.get('distributed', False):
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')  # tf.data must not take accelerator memory.
  except ImportError:
    pass
  logging.info('JAX process %d of %d, local devices %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train_loop.check_config(config, default.get_config())
    train_loop.train_and_evaluate(config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, train_loop.BadStepsError) as e:
    logging.error('%s', e)
    sys.exit(f'train.py: {e}')


if __name__ == '__main__':
  app.run(main)
