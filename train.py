r"""Trains DSSR: `python train.py --config=configs/iso_x2.py --workdir=DIR`.

DIR may be local or a URL (gs://bucket/run). Resumes from the latest checkpoint in DIR;
SIGTERM/SIGINT saves one and exits. Override any config field on the command line, e.g.
`--config.train.batch_size=16`. Multi-host (one process per host, every process sees the same
DIR): add `--distributed`. A refused run (a config typo, a missing data folder, a checkpoint of
another network) prints one `error:` line and writes nothing.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from configs import default
from dssr_jax import commands
from dssr_jax import train_loop

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Checkpoints and TensorBoard files go here (local or '
                    'gs://...).', required=True)
# A flag, not a config field: how the processes of this launch find each other is no part of the
# experiment (and a resumed run may be launched on other hosts).
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() first (multi-host; '
                  'TPU pods and SLURM are detected, else give the next three flags).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (else auto-detected).')
flags.DEFINE_integer('num_processes', None, 'Process count (else auto-detected).')
flags.DEFINE_integer('process_id', None, 'This process (else auto-detected).')
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.mark_flag_as_required('config')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.distributed:
    train_loop.join_hosts(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  try:
    train_loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, default.get_config())
  except train_loop.BadStepsError as e:  # Not a mistake of the user's, but no bug either.
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  commands.run(main)
