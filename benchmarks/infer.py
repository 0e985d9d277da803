r"""Inference time and peak memory of the paper network (random weights; the values do not matter).

  python benchmarks/infer.py                       # x2 (LR 128x128), x4 (LR 64x64), tiled 2K x2
  python benchmarks/infer.py --cases x2 x4 --repeats 5
  python benchmarks/infer.py --cases tiled2k --tile 256 --overlap 32
  python benchmarks/infer.py --cases tiled2k --max-tiles 2   # a quick memory check, not a timing
  python benchmarks/infer.py --cases x2_256 full2k tiled2k --dtype bfloat16 --tile 512 \
      --compile-jobs 3 --repeats 20                  # GPU: compile the cases in parallel first

Each case runs in its own subprocess so that its peak memory is its own: device memory stats
(`peak_bytes_in_use`) on GPU/TPU; on CPU the process's peak RSS (VmHWM), reset after compilation
and warm-up so the number is that of inference itself (the peak including compilation is printed
too). Time per image is the median of `--repeats` runs of the whole `infer` path (host image in,
SR image back on the host), compilation and one warm-up run excluded. The tiled case is what
`python -m dssr_jax.infer --tile=N` runs: 1020x678 LR at x2 (a 2K-class 2040x1356 output);
`full2k` is the same image in one piece, `x2_256` a 256x256 LR image.
Needs only jax, flax, numpy, orbax, ml_collections: no tensorflow.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

CASES = {'x2': dict(scale=2, h=128, w=128), 'x4': dict(scale=4, h=64, w=64),
         'x2_256': dict(scale=2, h=256, w=256), 'full2k': dict(scale=2, h=678, w=1020),
         'tiled2k': dict(scale=2, h=678, w=1020)}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
  p.add_argument('--repeats', type=int, default=3, help='timed runs per case (median)')
  p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  p.add_argument('--tile', type=int, default=256, help='LR tile side for the tiled case')
  p.add_argument('--overlap', type=int, default=32, help='LR overlap for the tiled case')
  p.add_argument('--max-tiles', type=int, default=0,
                 help='tiled case: stop after this many tiles (memory check only; 0 = all)')
  p.add_argument('--variant', default='',
                 help="extra DSSR fields 'key=value,...'; keys xla_* are XLA flags")
  p.add_argument('--compile-jobs', type=int, default=1,
                 help='> 1: compile the cases this many at a time into the persistent '
                      'compilation cache first, then time them one by one')
  p.add_argument('--cache-dir', help='persistent compilation cache folder')
  p.add_argument('--compile-only', action='store_true',
                 help='only compile the cases (into --cache-dir), in --compile-jobs processes')
  p.add_argument('--json', help='also write the results to this JSON file (after each case)')
  p.add_argument('--child', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if (args.repeats < 1 or args.tile < 1 or not 0 <= args.overlap < args.tile
      or args.compile_jobs < 1):
    p.error('--repeats, --tile, --compile-jobs must be >= 1 and 0 <= --overlap < --tile')
  try:
    args.variant_kw, args.xla_flags = common.split_variant(common.parse_variant(args.variant))
  except ValueError as e:
    p.error(str(e))
  return args


def _vm_hwm_bytes() -> int:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) * 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
  """Resets the kernel's peak-RSS counter of this process (Linux); False where it cannot."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def run_one(spec: dict) -> dict:
  """Builds, compiles and times one case in this process."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dssr_jax import infer  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top

  assert 'tensorflow' not in sys.modules
  common.enable_compilation_cache(spec.get('cache_dir'))
  cfg = default.get_model_config().to_dict()
  cfg.update(scale=spec['scale'], dtype=spec['dtype'], **spec.get('model', {}))
  model = model_lib.DSSR(**cfg)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 16, 16, 3), np.float32))['params']
  rng = np.random.default_rng(0)
  # PyTorch's default init range, drawn in numpy: cheaper than tracing the init.
  params = jax.tree_util.tree_map(
      lambda x: rng.uniform(-1, 1, x.shape).astype(np.float32) /
      np.sqrt(max(1, int(np.prod(x.shape[:-1])))), shapes)
  loaded = infer.LoadedModel(model=model, params=params, config=cfg, step=0, path='random')
  fn = infer.make_sr_fn(loaded, ('sr',))
  lr = rng.random((1, spec['h'], spec['w'], 3), np.float32)
  tiled = spec['case'] == 'tiled2k'
  dev = jax.local_devices()[0]

  done = [0]

  def limited(x):
    if spec['max_tiles'] and done[0] >= spec['max_tiles']:
      return {'sr': np.zeros((1, x.shape[1] * spec['scale'], x.shape[2] * spec['scale'], 3),
                             np.float32)}
    done[0] += 1
    return fn(x)

  def run():
    done[0] = 0
    if tiled:
      return infer.tiled_apply(limited, lr, spec['scale'], spec['tile'], spec['overlap'])
    return fn(lr)

  t0 = time.perf_counter()
  if spec.get('compile_only'):  # every tile has one shape: one tile compiles the case
    spec_tiles, spec['max_tiles'] = spec['max_tiles'], 1
    run()
    return dict(spec, max_tiles=spec_tiles, first_run_s=time.perf_counter() - t0)
  out = run()  # compiles, then runs once
  first_s = time.perf_counter() - t0
  peak_with_compile = _vm_hwm_bytes()
  reset = _reset_peak()
  times = []
  for _ in range(spec['repeats']):
    t0 = time.perf_counter()
    out = run()
    times.append(time.perf_counter() - t0)
  sr = out['sr']
  if not np.all(np.isfinite(sr)) or sr.shape != (1, spec['h'] * spec['scale'],
                                                  spec['w'] * spec['scale'], 3):
    raise RuntimeError(f'bad output {sr.shape} in {spec}')
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    peak, kind = int(stats['peak_bytes_in_use']), 'device peak_bytes_in_use'
  else:
    peak = _vm_hwm_bytes()
    kind = 'process peak RSS during inference' if reset else 'process peak RSS incl. compilation'
  return dict(spec, s_per_image=statistics.median(times), first_run_s=first_s, peak_gb=peak / 1e9,
              peak_kind=kind, peak_with_compile_gb=peak_with_compile / 1e9,
              tiles_run=done[0] if tiled else None, device=str(dev.device_kind),
              cpu_count=os.cpu_count(), jax_version=jax.__version__)


def main(argv=None) -> list:
  args = parse_args(argv)
  if args.child:
    print(json.dumps(run_one(json.loads(args.child))), flush=True)
    return []
  specs = [dict(CASES[case], case=case, dtype=args.dtype, repeats=args.repeats, tile=args.tile,
                overlap=args.overlap, max_tiles=args.max_tiles if case == 'tiled2k' else 0,
                model=args.variant_kw, xla_flags=args.xla_flags, cache_dir=args.cache_dir)
           for case in args.cases]
  if args.compile_jobs > 1 or args.compile_only:
    failed = [r for r in common.precompile(__file__, specs, args.compile_jobs, args.cache_dir,
                                           'cases', lambda r: r['case']) if 'error' in r]
    if args.compile_only:
      sys.exit(1 if failed else 0)
  print(f'{"case":>8} {"LR":>9} {"s/image":>8} {"peak GB":>8} {"incl. compile GB":>16} '
        f'{"first run s":>11}', flush=True)
  results = []
  for spec in specs:
    case = spec['case']
    r = common.run_child(__file__, spec)
    results.append(r)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    if 'error' in r:
      print(f'{case:>8}  failed: {r["error"]}', flush=True)
      continue
    note = ''
    if case == 'tiled2k':
      note = f'  tile {args.tile}, overlap {args.overlap}'
      if args.max_tiles:
        note += f', only {r["tiles_run"]} tiles run (memory check, time not comparable)'
    print(f'{case:>8} {spec["w"]:>4}x{spec["h"]:<4} {r["s_per_image"]:8.3f} {r["peak_gb"]:8.2f} '
          f'{r["peak_with_compile_gb"]:16.2f} {r["first_run_s"]:11.1f}{note}', flush=True)
  ok = [r for r in results if 'error' not in r]
  if ok:
    r = ok[0]
    print(f'device: {r["device"]} ({r["cpu_count"]} CPUs visible), jax {r["jax_version"]}, '
          f'dtype {args.dtype}, '
          f'{"model overrides " + args.variant if args.variant else "paper network (C=128, 15+5 blocks, T=4)"}, '
          f'peak = {r["peak_kind"]}')
  if len(ok) < len(results):
    sys.exit(1)
  return results


if __name__ == '__main__':
  main()
