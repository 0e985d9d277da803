r"""A/B of execution strategies (`fast.Execution`) on the DSSR forward pass: CPU inference.

  python benchmarks/forward.py --scale=2 --size=256   # paper network, x2, LR 256x256: the
      # backend's best, each of its strategies switched off alone, and execution=plain
  python benchmarks/forward.py --scale=4 --size=64 --runs=5 --variant= --variant=phase_up=0
  python benchmarks/forward.py --scale=2 --size=128 --variant=   # the default alone (its own
      # peak RSS; one process per variant for paired whole-process timings)

Every variant is compiled in this one process (`fast.jit`, as inference does), then the timed
runs go round the variants in turn, so that load from other jobs hits them all alike. `--variant`
items: `execution=plain|cpu|accelerator|best` (the base; default best for the backend), Execution
fields such as `phase_up=0` (one strategy switched off from the base), or DSSR fields. Prints, per
variant, the median wall and CPU seconds per image and their ratio to the first variant (> 1: the
variant is slower), the per-round ratios, and the process's peak RSS (all variants together: run
one variant alone for its own). Imports only jax, flax, numpy.
"""

import dataclasses
import os
import pathlib
import resource
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_enum('scale', '2', ['2', '3', '4'], 'Upscaling factor.')
  flags.DEFINE_integer('size', 128, 'LR height = width.', lower_bound=4)
  flags.DEFINE_integer('batch', 1, 'Images per call.', lower_bound=1)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
  flags.DEFINE_integer('channels', 128, 'Feature width C.', lower_bound=1)
  flags.DEFINE_integer('struct_blocks', 15, 'Structure blocks.', lower_bound=0)
  flags.DEFINE_integer('recon_blocks', 5, 'Reconstruction blocks.', lower_bound=0)
  flags.DEFINE_integer('num_steps', 4, 'T, the recurrent steps.', lower_bound=1)
  flags.DEFINE_integer('runs', 3, 'Timed rounds (each runs every variant once), after one '
                       'warm-up run per variant.', lower_bound=1)
  flags.DEFINE_multi_string('variant', None, "'key=value,...' (repeat; '' = the backend's best). "
                            'Default: the best, each of its strategies off alone, and '
                            'execution=plain.')


def default_variants(backend: str) -> list[str]:
  """'' (the best for `backend`), each strategy it uses switched off alone, then 'execution=plain'."""
  from dssr_jax import fast  # pylint: disable=g-import-not-at-top
  best = fast.best(backend)
  return [''] + [f'{f.name}=0' for f in dataclasses.fields(best) if getattr(best, f.name)] + [
      'execution=plain']


def cores_free(seconds: float = 1.0) -> float:
  """CPU/wall ratio of a multithreaded numpy matmul: ~ the cores this process really gets.

  Wall times are only comparable with other machines' numbers when this is ~ the core count.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  a = np.random.default_rng(0).random((1024, 1024), np.float32)
  t0, c0, end = time.perf_counter(), time.process_time(), time.perf_counter() + seconds
  while time.perf_counter() < end:
    a @ a  # pylint: disable=pointless-statement
  return (time.process_time() - c0) / (time.perf_counter() - t0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dssr_jax import fast  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top

  variants = FLAGS.variant if FLAGS.variant is not None else default_variants(
      jax.default_backend())
  base = dict(scale=int(FLAGS.scale), channels=FLAGS.channels, struct_blocks=FLAGS.struct_blocks,
              recon_blocks=FLAGS.recon_blocks, num_steps=FLAGS.num_steps, dtype=FLAGS.dtype)
  models = {}
  for v in variants:
    try:
      fields, xla_flags = common.split_variant(common.parse_variant(v))
      if xla_flags:
        raise ValueError('xla_* items need a process of their own (XLA_FLAGS)')
      models[v] = model_lib.DSSR(**{**base, **common.model_kwargs(fields)})
    except (ValueError, TypeError) as e:
      raise app.UsageError(f'--variant={v}: {e}') from e
  lr_shape = (FLAGS.batch, FLAGS.size, FLAGS.size, 3)
  lr = jnp.asarray(np.random.default_rng(1).random(lr_shape), jnp.float32)
  params = common.random_params(model_lib.DSSR(**base), lr_shape)
  fns, ref = [], None
  for v, model in models.items():
    t0 = time.perf_counter()
    fn = fast.jit(model.apply).lower({'params': params}, lr).compile()
    out = jax.block_until_ready(fn({'params': params}, lr))  # warm-up
    diff = '' if ref is None else f', max |sr - first| {float(jnp.abs(out["sr"] - ref).max()):.1e}'
    ref = out['sr'] if ref is None else ref
    print(f'{v or "(best)"}: {model.execution}; compile + first run '
          f'{time.perf_counter() - t0:.1f} s{diff}', flush=True)
    fns.append((v, fn))
  free = [cores_free()]
  wall, cpu = {v: [] for v in models}, {v: [] for v in models}
  for _ in range(FLAGS.runs):
    for v, fn in fns:
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn({'params': params}, lr))
      wall[v].append((time.perf_counter() - t0) / FLAGS.batch)
      cpu[v].append((time.process_time() - c0) / FLAGS.batch)
  free.append(cores_free())
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}, x{FLAGS.scale}, LR {FLAGS.size}x'
        f'{FLAGS.size}, batch {FLAGS.batch}, {FLAGS.dtype}, C={FLAGS.channels} '
        f'blocks {FLAGS.struct_blocks}/{FLAGS.recon_blocks}, T={FLAGS.num_steps}, '
        f'{FLAGS.runs} rounds')
  # CPU seconds (all threads) are less disturbed by other jobs than wall time: both are printed.
  first = variants[0]
  print(f'{"variant":24s} {"s/image":>8} {"ratio":>6} {"CPU-s/image":>11} {"ratio":>6}  '
        f'per-round wall ratios')
  for v in models:
    rounds = ', '.join(f'{a / b:.2f}' for a, b in zip(wall[v], wall[first]))
    print(f'{v or "(best)":24s} {statistics.median(wall[v]):8.3f} '
          f'{statistics.median(wall[v]) / statistics.median(wall[first]):6.2f} '
          f'{statistics.median(cpu[v]):11.3f} '
          f'{statistics.median(cpu[v]) / statistics.median(cpu[first]):6.2f}  {rounds}')
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f'peak RSS {peak:.2f} GB; cores free before/after (numpy CPU/wall): '
        f'{free[0]:.2f}/{free[1]:.2f} of {os.cpu_count()}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
