r"""Exports a checkpoint's forward pass, to run without this library (or flax, or Python's JAX).

  dssr-export --checkpoint=WORKDIR --out=dssr_x2.jaxexport --lr_shape=1,256,256,3 \
      [--dtype=bfloat16] [--format=savedmodel] [--platforms=cpu,cuda] [--step=N] [--overwrite]

(or `python -m dssr_jax.export ...`). The exported function maps LR f32[B, H, W, 3] (RGB, NHWC,
values in [0, 1]) to SR f32[B, sH, sW, 3] (the network's `sr`, not clipped: clip to [0, 1] and
round for 8 bits). H and W are fixed (the network's bicubic matrices depend on them: tile larger
images, see docs/inference.md); a batch written as a name (`--lr_shape=b,256,256,3`) is symbolic,
any size. `--dtype` is the compute dtype; inputs, outputs and weights stay float32.

- `--format=jax` (default): serialized StableHLO (`jax.export`), weights inside. Load it with
  `jax.export.deserialize(open(path, 'rb').read()).call(lr)`.
- `--format=savedmodel`: a TensorFlow SavedModel (jax2tf, native serialization), signature
  `serving_default`: {'lr': f32[B, H, W, 3]} -> {'sr': f32[B, sH, sW, 3]}.

Beside OUT goes OUT.json: scale, shapes, dtypes, value range, layout, platforms, the model config
and checkpoint step. An existing OUT (or OUT.json) is kept unless --overwrite.
"""

import sys

from absl import flags

from dssr_jax import commands
from dssr_jax import export

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', None, 'Workdir, its checkpoints/ folder, or one '
                    'checkpoints/<step> folder.', required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_string('out', None, 'The file (--format=jax) or folder (savedmodel) to write.',
                    required=True)
flags.DEFINE_string('lr_shape', None, 'B,H,W,3 of the LR input; B may be a name (b) for any '
                    'batch size.', required=True)
flags.DEFINE_enum('format', 'jax', export.FORMATS, 'jax: serialized StableHLO (jax.export); '
                  'savedmodel: TensorFlow SavedModel (jax2tf).')
flags.DEFINE_enum('dtype', 'float32', export.DTYPES, 'Compute dtype (inputs, outputs and weights '
                  'stay float32).')
flags.DEFINE_string('platforms', None, f'Comma-separated platforms to run on, of '
                    f'{export.PLATFORMS} (default: the one this process runs on).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --out.')


def main(argv):
  commands.no_arguments(argv)
  lr_shape = export.parse_lr_shape(FLAGS.lr_shape)
  export.check_outputs_free(FLAGS.out, FLAGS.overwrite)
  platforms = export.parse_platforms(FLAGS.platforms)
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step)
  meta = export.write(loaded, FLAGS.out, lr_shape, FLAGS.format, FLAGS.dtype, platforms,
                      FLAGS.overwrite)
  print(f'wrote {FLAGS.out} ({meta["format"]}: lr {meta["input"]["shape"]} -> sr '
        f'{meta["output"]["shape"]}, {FLAGS.dtype}, {",".join(platforms)}) and '
        f'{export.sidecar_path(FLAGS.out)}', file=sys.stderr)


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
