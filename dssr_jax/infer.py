r"""Super-resolves your own images with a DSSR checkpoint.

  python -m dssr_jax.infer photo.png more_photos/ list.txt --checkpoint=WORKDIR --out=OUT \
      [--max_memory_gb=4 | --tile=256] [--overlap=32] [--self_ensemble] [--save_details] \
      [--overwrite]

Inputs are image files (PNG, JPEG, TIFF, WebP, BMP, GIF), folders (their image files) and .txt/.lst
lists of paths (one a line, relative to the list, '#' comments); inputs, lists, --checkpoint and
--out may be local or URLs (gs://...). Each output is OUT/<name>_x<scale>.png (.tif for TIFF
inputs): greyscale stays greyscale, alpha is kept (upscaled with bicubic), 16-bit input gives 16-bit
output. Existing outputs are kept unless --overwrite.
Images whose compiled program fits --max_memory_gb run whole, larger ones in the largest tiles
that fit (XLA's memory analysis; see docs/inference.md); --tile forces a size.
The library behind it is `dssr_jax.inference`.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Sequence

from absl import app
from absl import flags
from etils import epath

from dssr_jax import cli

LIST_EXTENSIONS = ('.txt', '.lst')
FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('checkpoint', None, 'Workdir, its checkpoints/ folder, or one '
                      'checkpoints/<step> folder.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_string('out', None, 'Output folder.', required=True)
  flags.DEFINE_integer('tile', 0, 'LR tile size; 0: the whole image when it fits '
                       '--max_memory_gb, else the largest tiles that do.', lower_bound=0)
  flags.DEFINE_float('max_memory_gb', None, 'Memory budget of one pass in GB (10^9 bytes); '
                     'default: half the available RAM on CPU, 80% of the device memory on '
                     'GPU/TPU.')
  flags.DEFINE_integer('overlap', 32, 'LR pixels shared by neighbouring tiles.', lower_bound=0)
  flags.DEFINE_bool('self_ensemble', False, 'Average the x8 flips/transposes.')
  flags.DEFINE_bool('save_details', False, 'Also write the per-step detail maps (.npy and '
                    '0.5 + d PNGs).')
  flags.DEFINE_bool('overwrite', False, 'Replace existing outputs.')
  flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], 'Compute dtype (default: the '
                    "checkpoint's).")
  flags.DEFINE_string('jax_cache_dir', cli.CACHE_DIR, 'JAX persistent compilation cache '
                      '("" to disable).')


def collect_inputs(inputs: Sequence[str]) -> tuple[list[epath.Path], list[str]]:
  """Expands files, folders (their image files) and lists (.txt/.lst, one path a line).

  Returns (image paths in order, without repeats; error messages for inputs that do not exist).
  """
  from dssr_jax import imageio  # pylint: disable=g-import-not-at-top
  files, errors = [], []
  for item in inputs:
    p = epath.Path(item)
    if p.is_dir():
      found = imageio.list_images(p)
      if not found:
        errors.append(f'{item}: folder holds no image files')
      files += found
    elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
      for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
          q = epath.Path(line)
          files.append(q if q.is_absolute() else p.parent / q)
    elif p.exists():
      files.append(p)
    else:
      errors.append(f'{item}: no such file or folder')
  seen, unique = set(), []
  for f in files:
    key = str(f) if imageio.is_url(f) else pathlib.Path(f).resolve()
    if key not in seen:
      seen.add(key)
      unique.append(f)
  return unique, errors


def output_path(out_dir: epath.Path, src: epath.Path, scale: int) -> epath.Path:
  from dssr_jax import imageio  # pylint: disable=g-import-not-at-top
  tiff = src.suffix.lower() in imageio.TIFF_EXTENSIONS
  return out_dir / f'{src.stem}_x{scale}{".tif" if tiff else ".png"}'


def main(argv: Sequence[str]) -> int:
  if FLAGS.tile and FLAGS.overlap >= FLAGS.tile:
    raise app.UsageError(f'--overlap ({FLAGS.overlap}) must be smaller than --tile ({FLAGS.tile})')
  files, errors = collect_inputs(argv[1:])
  if not argv[1:]:
    raise app.UsageError('give one or more input images, folders or lists')
  for e in errors:
    print(f'error: {e}', file=sys.stderr)
  if not files:
    print('error: no input images', file=sys.stderr)
    return 1
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import inference  # pylint: disable=g-import-not-at-top
  cli.use_compilation_cache(FLAGS.jax_cache_dir)
  requested = {'dtype': FLAGS.dtype} if FLAGS.dtype else None
  try:
    loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step, requested)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  scale = int(loaded.config['scale'])
  sr_fn = inference.make_sr_fn(loaded, ('sr', 'details') if FLAGS.save_details else ('sr',))
  planner = None
  if not FLAGS.tile:
    try:  # before any work: can the budget hold the smallest tile?
      planner = inference.tile_planner(sr_fn, scale, max_memory_gb=FLAGS.max_memory_gb,
                                       overlap=FLAGS.overlap)
      planner.check_smallest()
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
  if FLAGS.self_ensemble:
    sr_fn = inference.self_ensemble(sr_fn)
  out_dir = epath.Path(FLAGS.out)
  targets: dict[epath.Path, epath.Path] = {}
  failed = len(errors)
  for i, src in enumerate(files, start=1):
    dst = output_path(out_dir, src, scale)
    if dst in targets:
      print(f'error: {src}: its output {dst} would replace that of {targets[dst]}; rename one '
            'of them', file=sys.stderr)
      failed += 1
      continue
    targets[dst] = src
    if dst.exists() and not FLAGS.overwrite:
      print(f'[{i}/{len(files)}] {src}: skipped, {dst} exists (pass --overwrite to replace it)',
            file=sys.stderr)
      continue
    try:
      inference.upscale_file(
          sr_fn, src, dst, scale, tile=FLAGS.tile, overlap=FLAGS.overlap, planner=planner,
          save_details=FLAGS.save_details,
          on_plan=lambda p, i=i, src=src: print(f'[{i}/{len(files)}] {src}: {p.describe()}',
                                                file=sys.stderr))
      print(f'[{i}/{len(files)}] {src} -> {dst}', file=sys.stderr)
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
  total = len(files) + len(errors)
  print(f'{total - failed} of {total} inputs done, {failed} failed; outputs in {out_dir}',
        file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
