r"""Exports a checkpoint's forward pass, to run without this library (or flax, or Python's JAX).

  python -m dssr_jax.export --checkpoint=WORKDIR --out=dssr_x2.jaxexport --lr_shape=1,256,256,3 \
      [--dtype=bfloat16] [--format=savedmodel] [--platforms=cpu,cuda] [--step=N] [--overwrite]

The exported function maps LR f32[B, H, W, 3] (RGB, NHWC, values in [0, 1]) to SR
f32[B, sH, sW, 3] (the network's `sr`, not clipped: clip to [0, 1] and round for 8 bits). H and
W are fixed (the network's bicubic matrices depend on them: tile larger images, see
docs/inference.md); a batch written as a name (`--lr_shape=b,256,256,3`) is symbolic, any size.
`--dtype` is the compute dtype; inputs, outputs and weights stay float32.

- `--format=jax` (default): serialized StableHLO (`jax.export`), weights inside. Load it with
  `jax.export.deserialize(open(path, 'rb').read()).call(lr)`.
- `--format=savedmodel`: a TensorFlow SavedModel (jax2tf, native serialization), signature
  `serving_default`: {'lr': f32[B, H, W, 3]} -> {'sr': f32[B, sH, sW, 3]}.

Beside OUT goes OUT.json: scale, shapes, dtypes, value range, layout, platforms, the model config
and checkpoint step. An existing OUT (or OUT.json) is kept unless --overwrite.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any, Sequence

from absl import app
from absl import flags

from dssr_jax import imageio

FORMATS = ('jax', 'savedmodel')
DTYPES = ('float32', 'bfloat16')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
FLAGS = flags.FLAGS


def parse_lr_shape(text: str) -> tuple[int | str, int, int, int]:
  """'1,H,W,3' (or 'b,H,W,3': a symbolic batch) -> (B, H, W, 3).

  Raises:
    ValueError: not four comma-separated sizes, a non-positive size, or not 3 channels.
  """
  parts = [p.strip() for p in str(text).split(',')]
  bad = f'--lr_shape must be B,H,W,3 (e.g. 1,256,256,3, or b,256,256,3 for any batch), got {text!r}'
  if len(parts) != 4:
    raise ValueError(bad)
  batch: int | str = parts[0]
  if not parts[0].isidentifier():
    batch = _positive(parts[0], bad)
  h, w, c = (_positive(p, bad) for p in parts[1:])
  if c != 3:
    raise ValueError(f'--lr_shape: the network takes 3 (RGB) channels, got {c} in {text!r}')
  return batch, h, w, c


def _positive(part: str, message: str) -> int:
  try:
    n = int(part)
  except ValueError:
    raise ValueError(message) from None
  if n < 1:
    raise ValueError(message)
  return n


def parse_platforms(text: str | None) -> tuple[str, ...]:
  """'cpu,cuda' -> ('cpu', 'cuda'); None or '': the default backend's platform."""
  if not text:
    import jax  # pylint: disable=g-import-not-at-top
    return (jax.default_backend(),)
  names = tuple(p.strip().lower() for p in text.split(',') if p.strip())
  unknown = [p for p in names if p not in PLATFORMS]
  if unknown or not names:
    raise ValueError(f'--platforms must be a list of {PLATFORMS}, got {text!r}')
  return names


def sr_function(loaded, dtype: str, platforms: Sequence[str]):
  """(params, lr) -> sr: the network with `dtype` compute, in the fastest form for `platforms`
  (their `fast.Execution`; a CPU + accelerator export gets the accelerator's)."""
  from dssr_jax import fast  # pylint: disable=g-import-not-at-top
  execution = fast.CPU if tuple(platforms) == ('cpu',) else fast.ACCELERATOR
  model = loaded.model.clone(dtype=dtype, execution=execution)
  return lambda params, lr: model.apply({'params': params}, lr)['sr']


def input_spec(lr_shape: Sequence[int | str]):
  """The jax.ShapeDtypeStruct of the LR input (a named batch becomes a symbolic dimension)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  batch = lr_shape[0]
  if isinstance(batch, str):
    (batch,) = jax.export.symbolic_shape(batch)
  return jax.ShapeDtypeStruct((batch,) + tuple(lr_shape[1:]), jnp.float32)


def export_jax(loaded, lr_shape: Sequence[int | str], dtype: str = 'float32',
               platforms: Sequence[str] = ('cpu',)):
  """The `jax.export.Exported` forward pass lr -> sr, with the weights as constants inside."""
  import jax  # pylint: disable=g-import-not-at-top
  fn = sr_function(loaded, dtype, platforms)
  params = jax.tree_util.tree_map(jax.numpy.asarray, loaded.params)
  return jax.export.export(jax.jit(lambda lr: fn(params, lr)), platforms=tuple(platforms))(
      input_spec(lr_shape))


def save_savedmodel(loaded, lr_shape: Sequence[int | str], path: os.PathLike | str,
                    dtype: str = 'float32', platforms: Sequence[str] = ('cpu',)) -> None:
  """Writes a TensorFlow SavedModel of the forward pass (jax2tf) at `path` (must not exist).

  The weights are tf.Variables; the signature `serving_default` maps {'lr'} to {'sr'}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  fn = sr_function(loaded, dtype, platforms)
  batch = lr_shape[0]
  poly = None if isinstance(batch, int) else f'({batch}, {", ".join(map(str, lr_shape[1:]))})'
  tf_fn = jax2tf.convert(fn, polymorphic_shapes=[None, poly], with_gradient=False,
                         native_serialization_platforms=tuple(platforms))
  variables = tf.nest.map_structure(tf.Variable, loaded.params)
  module = tf.Module()
  module.params = variables  # tracked, so that the SavedModel holds them
  spec = tf.TensorSpec([None if isinstance(batch, str) else batch] + list(lr_shape[1:]),
                       tf.float32, name='lr')
  module.serve = tf.function(lambda lr: {'sr': tf_fn(variables, lr)},
                             input_signature=[spec], autograph=False)
  tf.saved_model.save(module, str(path), signatures={'serving_default': module.serve})


def metadata(loaded, lr_shape: Sequence[int | str], fmt: str, dtype: str,
             platforms: Sequence[str]) -> dict[str, Any]:
  """What a consumer needs to feed the artifact and read its output."""
  import jax  # pylint: disable=g-import-not-at-top
  scale = int(loaded.config['scale'])
  sr_shape = [lr_shape[0], lr_shape[1] * scale, lr_shape[2] * scale, 3]
  image = {'dtype': 'float32', 'layout': 'NHWC', 'channels': 'RGB'}
  return {
      'format': {'jax': 'jax.export (serialized StableHLO)',
                 'savedmodel': 'TensorFlow SavedModel (jax2tf)'}[fmt],
      'network': 'DSSR', 'scale': scale,
      'input': {'name': 'lr', 'shape': list(lr_shape), 'range': [0.0, 1.0], **image},
      'output': {'name': 'sr', 'shape': sr_shape, 'range': 'about [0, 1], not clipped', **image},
      'compute_dtype': dtype,
      'platforms': list(platforms),
      'model': dict(loaded.config, dtype=dtype),
      'checkpoint_step': loaded.step,
      'jax_version': jax.__version__,
  }


def sidecar_path(out: os.PathLike | str) -> pathlib.Path:
  out = pathlib.Path(out)
  return out.with_name(out.name + '.json')


def check_outputs_free(out: os.PathLike | str, overwrite: bool) -> None:
  """Refuses (before any work) to replace an existing artifact or sidecar unless `overwrite`."""
  imageio.check_free([pathlib.Path(out), sidecar_path(out)], overwrite)


def write(loaded, out: os.PathLike | str, lr_shape: Sequence[int | str], fmt: str = 'jax',
          dtype: str = 'float32', platforms: Sequence[str] = ('cpu',),
          overwrite: bool = False) -> dict[str, Any]:
  """Writes the artifact at `out` and its metadata at OUT.json, each atomically; returns the
  metadata. Nothing is replaced without `overwrite`."""
  if fmt not in FORMATS:
    raise ValueError(f'--format must be one of {FORMATS}, got {fmt!r}')
  if dtype not in DTYPES:
    raise ValueError(f'--dtype must be one of {DTYPES}, got {dtype!r}')
  check_outputs_free(out, overwrite)
  out = pathlib.Path(out)
  if fmt == 'jax' and out.is_dir():
    raise ValueError(f'{out} is a folder; --format=jax writes a file')
  if fmt == 'jax':
    blob = export_jax(loaded, lr_shape, dtype, platforms).serialize()
    imageio.write_bytes(out, bytes(blob))
  else:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
      save_savedmodel(loaded, lr_shape, tmp / 'model', dtype, platforms)
      if out.exists():  # --overwrite: move the old one aside first, so a crash loses neither
        os.replace(out, tmp / 'old')
      os.replace(tmp / 'model', out)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  meta = metadata(loaded, lr_shape, fmt, dtype, platforms)
  imageio.write_text(sidecar_path(out), json.dumps(meta, indent=1) + '\n')
  return meta


def _define_flags():
  flags.DEFINE_string('checkpoint', None, 'Workdir, its checkpoints/ folder, or one '
                      'checkpoints/<step> folder.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_string('out', None, 'The file (--format=jax) or folder (savedmodel) to write.',
                      required=True)
  flags.DEFINE_string('lr_shape', None, 'B,H,W,3 of the LR input; B may be a name (b) for any '
                      'batch size.', required=True)
  flags.DEFINE_enum('format', 'jax', FORMATS, 'jax: serialized StableHLO (jax.export); '
                    'savedmodel: TensorFlow SavedModel (jax2tf).')
  flags.DEFINE_enum('dtype', 'float32', DTYPES, 'Compute dtype (inputs, outputs and weights '
                    'stay float32).')
  flags.DEFINE_string('platforms', None, f'Comma-separated platforms to run on, of {PLATFORMS} '
                      '(default: the one this process runs on).')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing --out.')


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    lr_shape = parse_lr_shape(FLAGS.lr_shape)
    check_outputs_free(FLAGS.out, FLAGS.overwrite)
    platforms = parse_platforms(FLAGS.platforms)
    from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
    loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step)
    meta = write(loaded, FLAGS.out, lr_shape, FLAGS.format, FLAGS.dtype, platforms,
                 FLAGS.overwrite)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'wrote {FLAGS.out} ({meta["format"]}: lr {meta["input"]["shape"]} -> sr '
        f'{meta["output"]["shape"]}, {FLAGS.dtype}, {",".join(platforms)}) and '
        f'{sidecar_path(FLAGS.out)}', file=sys.stderr)
  return 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
