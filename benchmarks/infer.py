r"""Inference time and peak memory of the paper network (random weights; the values do not matter).

  python benchmarks/infer.py                        # x2, x4, x2_256, full2k, tiled2k; best forms
  python benchmarks/infer.py --cases=x2,x4 --repeats=5
  python benchmarks/infer.py --cases=x2_256,x4_256 --variant=execution=plain
  python benchmarks/infer.py --cases=tiled2k --tile=256 --overlap=32
  python benchmarks/infer.py --cases=tiled2k --max_tiles=2   # a quick memory check, not a timing
  python benchmarks/infer.py --cases=x2_256,full2k,tiled2k --dtype=bfloat16 --tile=512 \
      --compile_jobs=3 --repeats=20                   # GPU: compile the cases in parallel first

Each case runs in its own subprocess so that its peak memory is its own: device memory stats
(`peak_bytes_in_use`) on GPU/TPU; on CPU the process's peak RSS (VmHWM), reset after compilation
and warm-up so the number is that of inference itself (the peak including compilation is printed
too). Time per image is the median of `--repeats` runs of the whole inference path
(`upscaling.make_sr_fn`: host image in, SR image back on the host), compilation and one warm-up
run excluded. The tiled case is what `python -m dssr_jax.infer --tile=N` runs: 1020x678 LR at x2
(a 2K-class 2040x1356 output); `full2k` is the same image in one piece; `x2_256` and `x4_256` a
256x256 LR image (a small photo). `--variant` items: DSSR fields, `execution=plain|cpu|
accelerator|best` (the base; default best for the backend), `fast.Execution` fields such as
`phase_up=0` (one strategy switched off), `xla_*` XLA flags. Needs only jax, flax, numpy,
ml_collections: no tensorflow.
"""

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

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
CASES = {'x2': dict(scale=2, h=128, w=128), 'x4': dict(scale=4, h=64, w=64),
         'x2_256': dict(scale=2, h=256, w=256), 'x4_256': dict(scale=4, h=256, w=256),
         'full2k': dict(scale=2, h=678, w=1020), 'tiled2k': dict(scale=2, h=678, w=1020)}


def _define_flags():
  flags.DEFINE_list('cases', ['x2', 'x4', 'x2_256', 'full2k', 'tiled2k'],
                    f'Cases to run, of {", ".join(CASES)}.')
  flags.DEFINE_integer('repeats', 3, 'Timed runs per case (median).', lower_bound=1)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
  flags.DEFINE_integer('tile', 256, 'LR tile side for the tiled case.', lower_bound=1)
  flags.DEFINE_integer('overlap', 32, 'LR overlap for the tiled case (< --tile).', lower_bound=0)
  flags.DEFINE_integer('max_tiles', 0, 'Tiled case: stop after this many tiles (memory check '
                       'only; 0 = all).', lower_bound=0)
  flags.DEFINE_string('variant', '', "'key=value,...': DSSR fields, execution=NAME, Execution "
                      'fields, xla_* XLA flags.')
  flags.DEFINE_integer('compile_jobs', 1, '> 1: compile the cases this many at a time into the '
                       'persistent compilation cache first, then time them one by one.',
                       lower_bound=1)
  flags.DEFINE_string('cache_dir', None, 'Persistent compilation cache folder.')
  flags.DEFINE_bool('compile_only', False, 'Only compile the cases (into --cache_dir), in '
                    '--compile_jobs processes.')
  flags.DEFINE_string('json', None, 'Also write the results to this JSON file (after each case).')
  flags.DEFINE_string('child', None, 'Internal: one case as JSON; its result is the last stdout '
                      'line.')


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
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import upscaling  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from dssr_jax import tiling  # pylint: disable=g-import-not-at-top

  assert 'tensorflow' not in sys.modules
  common.enable_compilation_cache(spec.get('cache_dir'))
  cfg = default.get_model_config().to_dict()
  cfg.update(scale=spec['scale'], dtype=spec['dtype'])
  kw = dict(cfg, **common.model_kwargs(spec.get('model', {})))
  model = model_lib.DSSR(**kw)
  params = common.random_params(model, (1, 16, 16, 3))
  kw.pop('execution')
  loaded = checkpoint.LoadedModel(model=model, params=params, config=kw, step=0, path='random')
  fn = upscaling.make_sr_fn(loaded, ('sr',))
  lr = np.random.default_rng(0).random((1, spec['h'], spec['w'], 3), np.float32)
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
      return tiling.tiled_apply(limited, lr, spec['scale'], spec['tile'], spec['overlap'])
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
              tiles_run=done[0] if tiled else None, execution=str(model.execution),
              device=str(dev.device_kind),
              cpu_count=os.cpu_count(), jax_version=jax.__version__)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]} (lists are comma-separated: '
                         '--cases=x2,x4)')
  if FLAGS.child:
    print(json.dumps(run_one(json.loads(FLAGS.child))), flush=True)
    return
  bad = [c for c in FLAGS.cases if c not in CASES]
  if bad or not FLAGS.cases:
    raise app.UsageError(f'--cases: unknown {bad}; choose from {", ".join(CASES)}')
  if FLAGS.overlap >= FLAGS.tile:
    raise app.UsageError(f'--overlap={FLAGS.overlap} must be < --tile={FLAGS.tile}')
  if FLAGS.json and os.path.exists(FLAGS.json):
    raise app.UsageError(f'--json={FLAGS.json} exists; name a new file')
  try:
    fields, xla_flags = common.split_variant(common.parse_variant(FLAGS.variant))
    common.model_kwargs(fields, backend='cpu')  # (checks the names without starting the device)
  except ValueError as e:
    raise app.UsageError(f'--variant={FLAGS.variant}: {e}') from e
  specs = [dict(CASES[case], case=case, dtype=FLAGS.dtype, repeats=FLAGS.repeats, tile=FLAGS.tile,
                overlap=FLAGS.overlap, max_tiles=FLAGS.max_tiles if case == 'tiled2k' else 0,
                model=fields, xla_flags=xla_flags, cache_dir=FLAGS.cache_dir)
           for case in FLAGS.cases]
  if FLAGS.compile_jobs > 1 or FLAGS.compile_only:
    failed = [r for r in common.precompile(__file__, specs, FLAGS.compile_jobs, FLAGS.cache_dir,
                                           'cases', lambda r: r['case']) if 'error' in r]
    if FLAGS.compile_only:
      sys.exit(1 if failed else 0)
  print(f'{"case":>8} {"LR":>9} {"s/image":>8} {"peak GB":>8} {"incl. compile GB":>16} '
        f'{"first run s":>11}', flush=True)
  results = []
  for spec in specs:
    case = spec['case']
    r = common.run_child(__file__, spec)
    results.append(r)
    if FLAGS.json:
      common.write_json(FLAGS.json, results)
    if 'error' in r:
      print(f'{case:>8}  failed: {r["error"]}', flush=True)
      continue
    note = ''
    if case == 'tiled2k':
      note = f'  tile {FLAGS.tile}, overlap {FLAGS.overlap}'
      if FLAGS.max_tiles:
        note += f', only {r["tiles_run"]} tiles run (memory check, time not comparable)'
    print(f'{case:>8} {spec["w"]:>4}x{spec["h"]:<4} {r["s_per_image"]:8.3f} {r["peak_gb"]:8.2f} '
          f'{r["peak_with_compile_gb"]:16.2f} {r["first_run_s"]:11.1f}{note}', flush=True)
  ok = [r for r in results if 'error' not in r]
  if ok:
    r = ok[0]
    net = 'paper network (C=128, 15+5 blocks, T=4)'
    print(f'device: {r["device"]} ({r["cpu_count"]} CPUs visible), jax {r["jax_version"]}, '
          f'dtype {FLAGS.dtype}, {r["execution"]}, '
          f'{"variant " + FLAGS.variant if FLAGS.variant else net}, peak = {r["peak_kind"]}')
  if len(ok) < len(results):
    sys.exit(1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
