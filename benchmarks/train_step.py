r"""Times the jitted DSSR train step (real model, loss and Adam) on device-resident synthetic batches.

  python benchmarks/train_step.py                      # paper network, x2 and x4, f32/bf16, remat off/on
  python benchmarks/train_step.py --small --steps 5    # channels 32, struct 4, recon 2, T 4
  python benchmarks/train_step.py --scales 2 --dtypes bfloat16 --remat off --steps 50
  # model-option variants; compile all configurations 4 at a time first (GPU leases are short)
  python benchmarks/train_step.py --scales 2 --remat off --variant '' --variant up_impl=subpixel \
      --compile-jobs 4

Each configuration runs in its own subprocess so that its peak memory is its own: device memory
stats (`peak_bytes_in_use`) on GPU/TPU, peak RSS of the process on CPU. Compilation and warm-up are
excluded; the time is the median of `--steps` steps, each ended with `block_until_ready`. FLOPs are
the model's: XLA's cost analysis of the step without remat and with the recurrent steps unrolled
(remat's recomputation is not counted, so TFLOP/s is useful work per second). Needs only jax,
flax, optax, numpy, ml_collections.
"""

import argparse
import itertools
import json
import os
import pathlib
import re
import resource
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

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
  p.add_argument('--variant', action='append', default=None,
                 help="extra DSSR fields 'key=value,...' (repeat; '' = as configured); "
                      "keys xla_* are XLA flags for that configuration only")
  p.add_argument('--compile-jobs', type=int, default=1,
                 help='> 1: first compile every configuration, this many at a time, into the '
                      'persistent compilation cache; then time them one by one')
  p.add_argument('--cache-dir', help='persistent compilation cache (default with '
                                     '--compile-jobs > 1: a fresh temporary folder)')
  p.add_argument('--json', help='also write the results to this JSON file (after each one)')
  p.add_argument('--profile', help='also trace 3 steps of each configuration with the JAX '
                 'profiler into this folder (one subfolder per configuration)')
  p.add_argument('--compile-only', action='store_true',
                 help='compile and report FLOPs and XLA memory without running (slow CPUs)')
  p.add_argument('--child', help=argparse.SUPPRESS)  # One configuration, JSON on the last line.
  args = p.parse_args(argv)
  if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.patch < 2 or args.compile_jobs < 1:
    p.error('--steps, --batch, --compile-jobs must be >= 1, --warmup >= 0 and --patch >= 2')
  try:
    args.variants = [common.parse_variant(v) for v in (args.variant or [''])]
  except ValueError as e:
    p.error(str(e))
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


def model_flops(config, batch: int, patch: int) -> float:
  """FLOPs of one train step: XLA's cost analysis of the step lowered for the CPU.

  Lowered for the CPU whatever the device: XLA's GPU cost analysis leaves out the cuDNN
  convolutions (nearly all the work). Lowered without remat, with the recurrent steps unrolled
  and XLA's own conv weight gradients: cost analysis counts a rolled loop's body once, and
  remat's recomputation is no useful work. Nothing is compiled or allocated.
  """
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from dssr_jax import layers  # pylint: disable=g-import-not-at-top
  from dssr_jax import optim  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_lib  # pylint: disable=g-import-not-at-top

  mesh = train_lib.create_mesh(jax.devices('cpu')[:1])
  model = train_lib.create_model(
      dict(config.model.to_dict(), remat=False, scan_unroll=True, unroll=False))
  tx = optim.create_optimizer(config.train)
  init = functools.partial(train_lib.init_state, model, tx, lr_patch=16)
  state = jax.eval_shape(init, jax.random.PRNGKey(0))
  step = train_lib.make_train_step(model, tx, mesh, state, config.train.alpha)
  shard = train_lib.batch_sharding(mesh)
  s = config.model.scale
  batch = {k: jax.ShapeDtypeStruct((batch, n, n, 3), 'float32', sharding=shard)
           for k, n in (('lr', patch), ('hr', patch * s))}
  state = jax.tree_util.tree_map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), state,
      train_lib.state_shardings(state, mesh))
  with layers.conv_backward('xla'):  # (the CPU's runs a rolled loop over the images)
    cost = step.lower(state, batch).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  return float(cost.get('flops', 0.0)) if isinstance(cost, dict) else 0.0


def _spec_name(spec: dict) -> str:
  m = spec['model']
  name = f"x{m['scale']}_{m['dtype']}{'_remat' if m['remat'] else ''}"
  return name + (('_' + re.sub('[^A-Za-z0-9]+', '_', spec['variant'])) if spec['variant'] else '')


def synthetic_step(model_kw: dict, batch: int, patch: int, compiler_options=None):
  """The default config with `model_kw`: its jitted train step (`compiler_options` as in
  `train_lib.make_train_step`), initial state and one synthetic batch (uniform, seed 0) of
  `batch` LR patches `patch` x `patch` with their HR targets, over all local devices."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_lib  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.model.update(model_kw)
  config.train.batch_size = batch
  mesh = train_lib.create_mesh()
  train_lib.check_batch_size(batch, mesh)
  model, tx, state = train_lib.create_train_state(config, mesh)
  step = train_lib.make_train_step(model, tx, mesh, state, config.train.alpha, compiler_options)
  s = config.model.scale
  rng = np.random.default_rng(0)
  arrays = train_lib.global_batch({
      'lr': rng.random((batch, patch, patch, 3), np.float32),
      'hr': rng.random((batch, patch * s, patch * s, 3), np.float32)}, mesh)
  return config, step, state, arrays


def run_one(spec: dict) -> dict:
  """Compiles and times one configuration in this process."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  common.enable_compilation_cache(spec.get('cache_dir'))
  p = spec['patch']
  config, step, state, batch = synthetic_step(spec['model'], spec['batch'], p)

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  flops = model_flops(config, spec['batch'], p)
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
  if spec.get('profile'):  # a few more steps under the profiler (benchmarks/xplane_summary.py)
    folder = os.path.join(spec['profile'], _spec_name(spec))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'optimized_hlo.txt'), 'w') as f:  # fusion names -> jax ops
      f.write(compiled.as_text())
    jax.profiler.start_trace(folder)
    for _ in range(3):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    jax.profiler.stop_trace()
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
  specs = []
  for scale, dtype, remat, variant in itertools.product(args.scales, args.dtypes, args.remat,
                                                        args.variants):
    fields, xla_flags = common.split_variant(variant)
    specs.append(dict(model=dict(base, scale=scale, dtype=dtype, remat=remat == 'on', **fields),
                      variant=','.join(f'{k}={v}' for k, v in variant.items()), xla_flags=xla_flags,
                      batch=args.batch, patch=args.patch, steps=args.steps, warmup=args.warmup,
                      compile_only=args.compile_only, cache_dir=args.cache_dir,
                      profile=args.profile))
  compiled = {}
  if args.compile_jobs > 1:
    compiled = dict(enumerate(common.precompile(__file__, specs, args.compile_jobs, args.cache_dir,
                                                'configurations', lambda r: r['variant'])))
  results = []
  header = (f'{"scale":>5} {"dtype":>8} {"remat":>5} {"ms/step":>9} {"GFLOP/step":>10} '
            f'{"TFLOP/s":>8} {"peak GB":>8} {"XLA GB":>7}  compile s  variant')
  print(header, flush=True)
  for i, spec in enumerate(specs):
    m = spec['model']
    label = f'{m["scale"]:>5} {m["dtype"]:>8} {"on" if m["remat"] else "off":>5}'
    # (--compile-only: the parallel pass already gave everything there is to report)
    r = compiled[i] if args.compile_only and i in compiled else common.run_child(__file__, spec)
    if not args.compile_only and 'error' not in r and 'error' not in compiled.get(i, {'error': 0}):
      r['load_s'], r['compile_s'] = r['compile_s'], compiled[i]['compile_s']
    results.append(r)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    if 'error' in r:
      print(f'{label}  failed: {r["error"]}  {spec["variant"]}', flush=True)
      continue
    fmt = lambda v, spec, width: format(v, spec) if v is not None else f'{"n/a":>{width}}'
    print(f'{label} {fmt(r["ms_per_step"], "9.1f", 9)} '
          f'{1e3 * r["tflop_per_step"]:10.4g} {fmt(r["tflops_per_s"], "8.4g", 8)} '
          f'{fmt(r["peak_gb"], "8.2f", 8)} {fmt(r["compiled_gb"], "7.2f", 7)}  '
          f'{r["compile_s"]:9.1f}  {spec["variant"]}', flush=True)
  ok = [r for r in results if 'error' not in r]
  if ok:
    r = ok[0]
    print(f'device: {r["device"]} x{r["num_devices"]}, jax {r["jax_version"]}, batch {args.batch}, '
          f'LR patch {args.patch}, model {base or "paper"}, peak = {r["peak_kind"]}')
  if any('error' in r for r in results):
    sys.exit(1)
  return results


if __name__ == '__main__':
  main()
