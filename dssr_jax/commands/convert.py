r"""Converts the authors' released PyTorch weights into a dssr_jax checkpoint.

  dssr-convert --pth=AUTHORS.pth --out=WORKDIR --scale=N [--num_steps=4]

(or `python -m dssr_jax.convert ...`) writes WORKDIR/checkpoints/0 (params and the model config,
`dssr_jax.checkpoint.save_params`; WORKDIR may be a URL, gs://...), which eval.py, dssr-upscale and
`config.train.init_from` load. It never replaces an existing checkpoint. Reading a .pth file needs
PyTorch (`pip install torch`), which nothing else in dssr_jax does.
"""

from absl import flags

from dssr_jax import commands
from dssr_jax import convert

FLAGS = flags.FLAGS
flags.DEFINE_string('pth', None, "The authors' released .pth file.", required=True)
flags.DEFINE_string('out', None, 'Workdir to write checkpoints/0 into.', required=True)
flags.DEFINE_enum('scale', None, ['2', '3', '4'], 'The scale the weights were trained for.',
                  required=True)
flags.DEFINE_integer('num_steps', 4, 'T, the recurrent steps (not stored in the weights).',
                     lower_bound=1)


def main(argv):
  commands.no_arguments(argv)
  try:
    state_dict = convert.read_pth(FLAGS.pth)
  except ImportError as e:
    commands.fail(str(e))
  cfg = convert.convert_state_dict(state_dict, FLAGS.out, int(FLAGS.scale), FLAGS.num_steps)
  print(f'wrote {FLAGS.out}/checkpoints/0 ({cfg})')


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
