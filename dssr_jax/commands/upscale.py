r"""Super-resolves your own images with a DSSR checkpoint.

  dssr-upscale photo.png more_photos/ list.txt --checkpoint=WORKDIR --out=OUT \
      [--max_memory_gb=4 | --tile=256] [--overlap=32] [--self_ensemble] [--save_details] \
      [--overwrite]

(or `python -m dssr_jax.infer ...`). Inputs are image files (PNG, JPEG, TIFF, WebP, BMP, GIF),
folders (their image files) and .txt/.lst lists of paths (one a line, relative to the list, '#'
comments); inputs, lists, --checkpoint and --out may be local or URLs (gs://...). Each output is
OUT/<name>_x<scale>.png (.tif for TIFF inputs): greyscale stays greyscale, alpha is kept (upscaled
with bicubic), 16-bit input gives 16-bit output. Existing outputs are kept unless --overwrite.
Images whose compiled program fits --max_memory_gb run whole, larger ones in the grid of equal
rectangular tiles that computes the fewest pixels within it (XLA's memory analysis; see
docs/inference.md); --tile forces a square size.
Exit status: 0 when every input was upscaled or skipped, 1 when some failed, 2 when none could run.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Sequence

from absl import app
from absl import flags
from etils import epath

from dssr_jax import commands

LIST_EXTENSIONS = ('.txt', '.lst')

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', None, 'Workdir, its checkpoints/ folder, or one '
                    'checkpoints/<step> folder.', required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_string('out', None, 'Output folder.', required=True)
flags.DEFINE_integer('tile', 0, 'LR tile size; 0: the whole image when it fits --max_memory_gb, '
                     'else the tile grid that computes the fewest pixels within it.', lower_bound=0)
flags.DEFINE_float('max_memory_gb', None, 'Memory budget of one pass in GB (10^9 bytes); '
                   'default: half the available RAM on CPU, 80% of the device memory on GPU/TPU.')
flags.DEFINE_integer('overlap', 32, 'LR pixels shared by neighbouring tiles.', lower_bound=0)
flags.DEFINE_bool('self_ensemble', False, 'Average the x8 flips/transposes.')
flags.DEFINE_bool('save_details', False, 'Also write the per-step detail maps (.npy and 0.5 + d '
                  'PNGs).')
flags.DEFINE_bool('overwrite', False, 'Replace existing outputs.')
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], "Compute dtype (default: the "
                  "checkpoint's).")
flags.DEFINE_string('jax_cache_dir', commands.CACHE_DIR, 'JAX persistent compilation cache ("" '
                    'to disable).')


def collect_inputs(inputs: Sequence[str]) -> tuple[list[epath.Path], list[str]]:
  """Expands files, folders (their image files) and lists (.txt/.lst, one path a line).

  Returns (image paths in order, without repeats; error messages for inputs that do not exist).
  """
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  files, errors = [], []
  for item in inputs:
    p = epath.Path(item)
    if p.is_dir():
      found = image_files.list_images(p)
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
    key = str(f) if image_files.is_url(f) else pathlib.Path(f).resolve()
    if key not in seen:
      seen.add(key)
      unique.append(f)
  return unique, errors


def summary(upscaled: int, skipped: int, failed: int, out_dir: epath.Path) -> str:
  """The closing line: what was written where, what was left alone, what failed."""
  total = upscaled + skipped + failed
  parts = [f'{upscaled} of {total} inputs upscaled' + (f' into {out_dir}' if upscaled else '')]
  if skipped:
    parts.append(f'{skipped} skipped (their outputs exist; --overwrite replaces them)')
  if failed:
    parts.append(f'{failed} failed')
  return '; '.join(parts)


def main(argv: Sequence[str]) -> int:
  if FLAGS.tile and FLAGS.overlap >= FLAGS.tile:
    raise app.UsageError(f'--overlap ({FLAGS.overlap}) must be smaller than --tile '
                         f'({FLAGS.tile})')
  if not argv[1:]:
    raise app.UsageError('give one or more input images, folders or lists')
  files, errors = collect_inputs(argv[1:])
  for e in errors:
    commands.error(e)
  if not files:
    commands.fail('no input images')
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import upscaling  # pylint: disable=g-import-not-at-top
  commands.use_compilation_cache(FLAGS.jax_cache_dir)
  requested = {'dtype': FLAGS.dtype} if FLAGS.dtype else None
  loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step, requested)
  scale = int(loaded.config['scale'])
  sr_fn = upscaling.make_sr_fn(loaded, ('sr', 'details') if FLAGS.save_details else ('sr',))
  planner = None
  if not FLAGS.tile:  # before any work: can the budget hold the smallest tile?
    planner = upscaling.tile_planner(sr_fn, scale, max_memory_gb=FLAGS.max_memory_gb,
                                     overlap=FLAGS.overlap)
    planner.check_smallest()
  if FLAGS.self_ensemble:
    sr_fn = upscaling.self_ensemble(sr_fn)
  out_dir = epath.Path(FLAGS.out)
  targets: dict[epath.Path, epath.Path] = {}
  upscaled = skipped = 0
  failed = len(errors)
  for i, src in enumerate(files, start=1):
    dst = upscaling.output_path(out_dir, src, scale)
    if dst in targets:
      commands.error(f'{src}: its output {dst} would replace that of {targets[dst]}; rename one '
                     'of them')
      failed += 1
      continue
    targets[dst] = src
    step = f'[{i}/{len(files)}] {src}'
    if dst.exists() and not FLAGS.overwrite:
      print(f'{step}: skipped, {dst} exists', file=sys.stderr)
      skipped += 1
      continue
    try:
      upscaling.upscale_file(
          sr_fn, src, dst, scale, tile=FLAGS.tile, overlap=FLAGS.overlap, planner=planner,
          save_details=FLAGS.save_details,
          on_plan=lambda p, step=step: print(f'{step}: {p.describe()}', file=sys.stderr))
      print(f'{step} -> {dst}', file=sys.stderr)
      upscaled += 1
    except ValueError as e:
      commands.error(str(e))
      failed += 1
  print(summary(upscaled, skipped, failed, out_dir), file=sys.stderr)
  return 1 if failed else 0


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
