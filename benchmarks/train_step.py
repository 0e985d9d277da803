r"""Times the jitted DSSR train step (real model, loss and Adam) on device-resident synthetic batches.

  python benchmarks/train_step.py                      # paper network, x2 and x4, f32/bf16, remat off/on
  python benchmarks/train_step.py --small --steps 5    # channels 32, struct 4, recon 2, T 4
  python benchmarks/train_step.py --scales 2 --dtypes bfloat16 --remat off --steps 50

Each configuration runs in its own subprocess so that its peak memory is its own: device memory
stats (`peak_bytes_in_use`) on GPU/TPU, peak RSS of the process on CPU. Compilation and warm-up are
excluded; the time is the median of `--steps` steps, each ended with `block_until_ready`. FLOPs come
from XLA's cost analysis of the compiled step. Needs only jax, flax, optax, numpy, ml_collections.
"""

import argparse
import itertools
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

SMALL = dict(channels=32, struct_blocks=4, recon_blocks=2, num_steps=4)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--scales', type=int, nargs='+', default=[2, 4])
  p.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'],
                 choices=['float32', 'bfloat16'])
  p.add_argument('--remat', nargs='+', default=['off', 'on'], choices=['off', 'on'])
  p.add_argument('--steps', type=int, default=20, help='timed steps (median); >= 20 on a GPU')
  p.add_argument('--warmup', type=int, default=2, help='untimed steps after compilation')
  p.add_argument('--batch', type=int, default=8, help='global batch')
  p.add_argument('--patch', type=int, default=64, help='LR patch side')
  p.add_argument('--small', action='store_true', help='the small network: ' + str(SMALL))
  p.add_argument('--channels', type=int)
  p.add_argument('--struct-blocks', type=int)
  p.add_argument('--recon-blocks', type=int)
  p.add_argument('--num-steps', type=int, help='T')
  p.add_argument('--json', help='also write the results to this JSON file')
  p.add_argument('--compile-only', action='store_true',
                 help='compile and report FLOPs and XLA memory without running (slow CPUs)')
  p.add_argument('--child', help=argparse.SUPPRESS)  # One configuration, JSON on the last line.
  args = p.parse_args(argv)
  if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.patch < 2:
    p.error('--steps, --batch must be >= 1, --warmup >= 0 and --patch >= 2')
  return args


def model_overrides(args) -> dict:
  out = dict(SMALL) if args.small else {}
  for key in ('channels', 'struct_blocks', 'recon_blocks', 'num_steps'):
    if getattr(args, key) is not None:
      out[key] = getattr(args, key)
  return out


def peak_memory_bytes() -> tuple[int, str]:
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak_bytes_in_use'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'


def run_one(spec: dict) -> dict:
  """Compiles and times one configuration in this process."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_lib  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.model.update(spec['model'])
  config.train.batch_size = spec['batch']
  mesh = train_lib.create_mesh()
  train_lib.check_batch_size(spec['batch'], mesh)
  model, tx, state = train_lib.create_train_state(config, mesh)
  step = train_lib.make_train_step(model, tx, mesh, state, config.train.alpha)
  s, p = config.model.scale, spec['patch']
  rng = np.random.default_rng(0)
  batch = train_lib.global_batch({
      'lr': rng.random((spec['batch'], p, p, 3), np.float32),
      'hr': rng.random((spec['batch'], p * s, p * s, 3), np.float32)}, mesh)

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.0)) if cost else 0.0
  # XLA's own buffer assignment: the device memory the step needs (state, batch, temporaries).
  mem = compiled.memory_analysis()
  compiled_gb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
                 - mem.alias_size_in_bytes) / 1e9 if mem else None
  if spec.get('compile_only'):
    return dict(spec, ms_per_step=None, tflops_per_s=None, tflop_per_step=flops / 1e12,
                peak_gb=None, peak_kind='not run', compiled_gb=compiled_gb, compile_s=compile_s,
                device=str(jax.devices()[0].device_kind), num_devices=jax.device_count(),
                jax_version=jax.__version__)

  for _ in range(spec['warmup']):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(spec['steps']):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  loss = float(metrics['loss'])
  if not np.isfinite(loss):
    raise RuntimeError(f'non-finite loss {loss} in {spec}')
  peak, peak_kind = peak_memory_bytes()
  ms = 1e3 * statistics.median(times)
  return dict(spec, ms_per_step=ms, tflops_per_s=flops / (ms * 1e-3) / 1e12 if flops else None,
              tflop_per_step=flops / 1e12, peak_gb=peak / 1e9, peak_kind=peak_kind,
              compiled_gb=compiled_gb, compile_s=compile_s, loss=loss, device=str(jax.devices()[0].device_kind),
              num_devices=jax.device_count(), jax_version=jax.__version__)


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(run_one(json.loads(args.child))), flush=True)
    return []
  base = model_overrides(args)
  results = []
  header = (f'{"scale":>5} {"dtype":>8} {"remat":>5} {"ms/step":>9} {"GFLOP/step":>10} '
            f'{"TFLOP/s":>8} {"peak GB":>8} {"XLA GB":>7}  compile s')
  print(header, flush=True)
  for scale, dtype, remat in itertools.product(args.scales, args.dtypes, args.remat):
    spec = dict(model=dict(base, scale=scale, dtype=dtype, remat=remat == 'on'),
                batch=args.batch, patch=args.patch, steps=args.steps, warmup=args.warmup,
                compile_only=args.compile_only)
    proc = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
    if proc.returncode:
      tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
      if proc.returncode < 0:  # e.g. SIGKILL from the kernel's out-of-memory killer
        tail = [f'killed by signal {-proc.returncode} (out of memory?)'] + tail
      print(f'{scale:>5} {dtype:>8} {remat:>5}  failed: {tail}', flush=True)
      results.append(dict(spec, error=tail))
      continue
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    results.append(r)
    fmt = lambda v, spec, width: format(v, spec) if v is not None else f'{"n/a":>{width}}'
    print(f'{scale:>5} {dtype:>8} {remat:>5} {fmt(r["ms_per_step"], "9.1f", 9)} '
          f'{1e3 * r["tflop_per_step"]:10.4g} {fmt(r["tflops_per_s"], "8.4g", 8)} '
          f'{fmt(r["peak_gb"], "8.2f", 8)} {fmt(r["compiled_gb"], "7.2f", 7)}  '
          f'{r["compile_s"]:.1f}', flush=True)
  if results and 'device' in results[0]:
    r = results[0]
    print(f'device: {r["device"]} x{r["num_devices"]}, jax {r["jax_version"]}, batch {args.batch}, '
          f'LR patch {args.patch}, model {base or "paper"}, peak = {r["peak_kind"]}')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
  if any('error' in r for r in results):
    sys.exit(1)
  return results


if __name__ == '__main__':
  main()
