r"""Inference time and peak memory of the DSSR forward pass (jit once, median of a few runs).

  python benchmarks/forward.py --scale 2 --size 128             # paper network, x2, LR 128x128
  python benchmarks/forward.py --scale 4 --size 64 --dtype bfloat16
  # A/B of model options in one process, runs interleaved so that load from other jobs hits all:
  python benchmarks/forward.py --scale 2 --size 64 --variant '' --variant up_impl=dilated

Imports only jax, flax, numpy (no tensorflow). Prints s/image per variant and the process's peak
RSS (covering every variant run in it: run one variant alone for its own peak).
"""

import argparse
import os
import resource
import statistics
import sys
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit('/benchmarks/', 1)[0])
from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def random_params(model, lr_shape, seed=0):
  """PyTorch-init-sized params drawn in numpy (skips compiling `init`; timing is the same)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(lr_shape, jnp.float32))
  flat = flax.traverse_util.flatten_dict(shapes['params'])
  out = {}
  for path, v in flat.items():
    fan_in = int(np.prod(v.shape[:-1])) if len(v.shape) == 4 else v.shape[0]
    out[path] = jnp.asarray(rng.uniform(-1, 1, v.shape) / np.sqrt(fan_in), jnp.float32)
  return flax.traverse_util.unflatten_dict(out)


def cores_free(seconds: float = 1.0) -> float:
  """CPU/wall ratio of a multithreaded numpy matmul: ~ the cores this process really gets.

  Wall times are only comparable with other machines' numbers when this is ~ the core count.
  """
  a = np.random.default_rng(0).random((1024, 1024), np.float32)
  t0, c0, end = time.perf_counter(), time.process_time(), time.perf_counter() + seconds
  while time.perf_counter() < end:
    a @ a
  return (time.process_time() - c0) / (time.perf_counter() - t0)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument('--scale', type=int, default=2)
  ap.add_argument('--size', type=int, default=128, help='LR height = width')
  ap.add_argument('--batch', type=int, default=1)
  ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  ap.add_argument('--channels', type=int, default=128)
  ap.add_argument('--struct_blocks', type=int, default=15)
  ap.add_argument('--recon_blocks', type=int, default=5)
  ap.add_argument('--num_steps', type=int, default=4)
  ap.add_argument('--runs', type=int, default=3, help='timed runs per variant (after one warm-up)')
  ap.add_argument('--variant', action='append', default=None,
                  help="extra DSSR fields, 'key=value,...'; repeat for an interleaved A/B ('' = as is)")
  args = ap.parse_args(argv)

  variants = args.variant or ['']
  lr_shape = (args.batch, args.size, args.size, 3)
  lr = jnp.asarray(np.random.default_rng(1).random(lr_shape), jnp.float32)
  base = dict(scale=args.scale, channels=args.channels, struct_blocks=args.struct_blocks,
              recon_blocks=args.recon_blocks, num_steps=args.num_steps, dtype=args.dtype)
  params = random_params(model_lib.DSSR(**base), lr_shape)
  fns, ref = [], None
  times, cpu = {v: [] for v in variants}, {v: [] for v in variants}
  for v in variants:
    model = model_lib.DSSR(**{**base, **common.parse_variant(v)})
    t0 = time.perf_counter()
    fn = jax.jit(model.apply, compiler_options=model_lib.compiler_options()).lower(
        {'params': params}, lr).compile()
    out = jax.block_until_ready(fn({'params': params}, lr))  # warm-up
    print(f'variant {v!r}: compile+first run {time.perf_counter() - t0:.1f} s', flush=True)
    if ref is None:
      ref = out['sr']
    else:
      print(f'  max |sr - first variant| = {float(jnp.abs(out["sr"] - ref).max()):.2e}')
    fns.append((v, fn))
  free = [cores_free()]
  for _ in range(args.runs):
    for v, fn in fns:
      t0, c0 = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn({'params': params}, lr))
      times[v].append(time.perf_counter() - t0)
      cpu[v].append(time.process_time() - c0)
  print(f'jax {jax.__version__}, {jax.devices()[0].device_kind}, x{args.scale}, LR {args.size}x'
        f'{args.size}, batch {args.batch}, {args.dtype}, C={args.channels} '
        f'blocks {args.struct_blocks}/{args.recon_blocks}, T={args.num_steps}')
  # CPU seconds (all threads) are less disturbed by other jobs than wall time: compare both.
  first, first_cpu = statistics.median(times[variants[0]]), statistics.median(cpu[variants[0]])
  for v in variants:
    med, med_cpu = statistics.median(times[v]), statistics.median(cpu[v])
    print(f'{v or "(default)":36s} {med / args.batch:7.3f} s/image wall ({first / med:.2f}x vs first), '
          f'{med_cpu / args.batch:7.3f} CPU-s/image ({first_cpu / med_cpu:.2f}x); '
          f'wall runs {", ".join(f"{t:.2f}" for t in times[v])}')
  free.append(cores_free())
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f'peak RSS {peak:.2f} GB; cores free before/after (numpy CPU/wall): '
        f'{free[0]:.2f}/{free[1]:.2f} of {os.cpu_count()}')


if __name__ == '__main__':
  main()
