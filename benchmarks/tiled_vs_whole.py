r"""Time of one photo tiled under a memory budget against the same photo whole, alternating.

  python benchmarks/tiled_vs_whole.py --checkpoint=WORKDIR --image=photo.png --max_memory_gb=2 \
      --pairs=3

Both programs are compiled first (the planner compiles them to measure their memory), then each
pair runs the tiled pass and the whole pass one after the other, so that a machine shared with
other jobs slows both alike; every pair and the ratio of the medians are printed, wall time and
the process's CPU time (all threads; less sensitive to other jobs than the wall time), and the
largest difference of the two outputs in 8-bit levels. Peak memory is not measured here (both passes
share the process): run `python -m dssr_jax.infer` under `/usr/bin/time -v` for that.
"""

import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('checkpoint', None, 'Workdir of a DSSR checkpoint.', required=True)
  flags.DEFINE_string('image', None, 'The photo.', required=True)
  flags.DEFINE_float('max_memory_gb', 2.0, 'Memory budget of the tiled pass.')
  flags.DEFINE_integer('overlap', 32, 'LR pixels shared by neighbouring tiles.', lower_bound=0)
  flags.DEFINE_integer('pairs', 3, 'Tiled/whole pairs to time.', lower_bound=1)


def main(argv) -> None:
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import upscaling  # pylint: disable=g-import-not-at-top
  from dssr_jax import tiling  # pylint: disable=g-import-not-at-top

  loaded = checkpoint.load_model(FLAGS.checkpoint)
  scale = int(loaded.config['scale'])
  fn = upscaling.make_sr_fn(loaded, ('sr',))
  lr = image_files.read_native(FLAGS.image).rgb[None]
  t0 = time.perf_counter()
  plan = upscaling.tile_planner(fn, scale, max_memory_gb=FLAGS.max_memory_gb,
                                overlap=FLAGS.overlap).plan(lr.shape)
  print(f'{lr.shape[1]}x{lr.shape[2]} LR: {plan.describe()} (planned and compiled in '
        f'{time.perf_counter() - t0:.0f} s)', flush=True)
  fn.memory(lr.shape)  # the whole image's program, should the planner have skipped it

  def timed(tile):
    t, c = time.perf_counter(), time.process_time()
    out = tiling.tiled_apply(fn, lr, scale, tile, plan.overlap)['sr']
    times = time.perf_counter() - t, time.process_time() - c
    return times, image_files.to_uint8(out[0]).astype(int)

  tiled_s, whole_s = [], []
  for i in range(FLAGS.pairs):
    t, tiled = timed(plan.tile)
    w, whole = timed(0)
    tiled_s.append(t)
    whole_s.append(w)
    print(f'pair {i + 1}: tiled {t[0]:.1f} s (CPU {t[1]:.0f} s), whole {w[0]:.1f} s (CPU '
          f'{w[1]:.0f} s), ratio {t[0] / w[0]:.2f} (CPU {t[1] / w[1]:.2f}); outputs differ by at '
          f'most {np.abs(tiled - whole).max()} 8-bit levels', flush=True)
  for k, kind in enumerate(('wall', 'CPU')):
    t, w = (statistics.median(x[k] for x in s) for s in (tiled_s, whole_s))
    print(f'median {kind}: tiled {t:.1f} s, whole {w:.1f} s, ratio of medians {t / w:.2f}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
