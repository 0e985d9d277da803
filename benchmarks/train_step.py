r"""Times the jitted DSSR train step (real model, loss and Adam) on device-resident synthetic batches.

  python benchmarks/train_step.py                    # paper network, x2 and x4, f32/bf16, remat off/on
  python benchmarks/train_step.py --small --steps=5  # channels 32, struct 4, recon 2, T 4
  python benchmarks/train_step.py --scales=2 --dtypes=bfloat16 --remat=off --steps=50
  # execution strategies (fast.Execution) against the backend's best; compile all configurations
  # 4 at a time first (GPU leases are short)
  python benchmarks/train_step.py --scales=2 --remat=off --variant= --variant=execution=plain \
      --variant=phase_up=0 --compile_jobs=4

`--variant` items: DSSR fields, `execution=plain|cpu|accelerator|best` (the base strategy;
default best for the backend), `fast.Execution` fields such as `phase_up=0` (one strategy switched
off from the base), or `xla_*` XLA flags for that configuration's process only.

Each configuration runs in its own subprocess so that its peak memory is its own: device memory
stats (`peak_bytes_in_use`) on GPU/TPU, peak RSS of the process on CPU. Compilation and warm-up are
excluded; the time is the median of `--steps` steps, each ended with `block_until_ready`. FLOPs are
the useful work of one step, the same for every variant: XLA's cost analysis of the step in
`fast.ACCELERATOR`'s forms (no products with the zeros a transposed conv inserts) with the
recurrent steps unrolled and without remat (remat's recomputation is not counted), so TFLOP/s
compares variants. Needs only jax, flax, optax, numpy, ml_collections: no tensorflow, clu, tfds or
orbax (the GPU machine may lack them).
"""

import dataclasses
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

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
SMALL = dict(channels=32, struct_blocks=4, recon_blocks=2, num_steps=4)


def _define_flags():
  flags.DEFINE_list('scales', ['2', '4'], 'Scales to time.')
  flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes: float32, bfloat16.')
  flags.DEFINE_list('remat', ['off', 'on'], 'remat settings: off, on.')
  flags.DEFINE_integer('steps', 20, 'Timed steps (median); >= 20 on a GPU.', lower_bound=1)
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.', lower_bound=0)
  flags.DEFINE_integer('batch', 8, 'Global batch.', lower_bound=1)
  flags.DEFINE_integer('patch', 64, 'LR patch side.', lower_bound=2)
  flags.DEFINE_bool('small', False, f'The small network: {SMALL}.')
  flags.DEFINE_integer('channels', None, 'Override the feature width C.', lower_bound=1)
  flags.DEFINE_integer('struct_blocks', None, 'Override the structure blocks.', lower_bound=0)
  flags.DEFINE_integer('recon_blocks', None, 'Override the reconstruction blocks.', lower_bound=0)
  flags.DEFINE_integer('num_steps', None, 'Override T, the recurrent steps.', lower_bound=1)
  flags.DEFINE_multi_string('variant', [''], "'key=value,...' (repeat; '' = the backend's best "
                            'as configured): DSSR fields, execution=NAME, Execution fields, '
                            'xla_* XLA flags for that configuration only.')
  flags.DEFINE_integer('compile_jobs', 1, '> 1: first compile every configuration, this many at a '
                       'time, into the persistent compilation cache; then time them one by one.',
                       lower_bound=1)
  flags.DEFINE_string('cache_dir', None, 'Persistent compilation cache (default with '
                      '--compile_jobs > 1: a fresh temporary folder).')
  flags.DEFINE_string('json', None, 'Also write the results to this JSON file (after each one).')
  flags.DEFINE_string('profile', None, 'Also trace 3 steps of each configuration with the JAX '
                      'profiler into this folder (one subfolder per configuration).')
  flags.DEFINE_bool('compile_only', False,
                    'Compile and report FLOPs and XLA memory without running (slow CPUs).')
  flags.DEFINE_string('child', None, 'Internal: one configuration as JSON; its result is the '
                      'last stdout line.')


def _choices(name: str, values: list[str], allowed: tuple[str, ...]) -> list[str]:
  bad = [v for v in values if v not in allowed]
  if bad or not values:
    raise app.UsageError(f'--{name} takes a comma-separated list of {", ".join(allowed)}; '
                         f'got {",".join(values)!r}')
  return values


def _variants() -> list[dict]:
  """The parsed --variant values; a UsageError names a bad one (checked without the device)."""
  out = []
  for text in FLAGS.variant:
    try:
      kw = common.parse_variant(text)
      common.model_kwargs(common.split_variant(kw)[0], backend='cpu')
    except ValueError as e:
      raise app.UsageError(f'--variant={text}: {e}') from e
    out.append(kw)
  return out


def model_overrides() -> dict:
  out = dict(SMALL) if FLAGS.small else {}
  for key in ('channels', 'struct_blocks', 'recon_blocks', 'num_steps'):
    if FLAGS[key].value is not None:
      out[key] = FLAGS[key].value
  return out


def peak_memory_bytes() -> tuple[int, str]:
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.local_devices()[0]
  stats = dev.memory_stats() if dev.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak_bytes_in_use'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'


def model_flops(model_kw: dict, train_config, batch: int, patch: int) -> float:
  """FLOPs of one train step: XLA's cost analysis of the step lowered for the CPU.

  Lowered for the CPU whatever the device: XLA's GPU cost analysis leaves out the cuDNN
  convolutions (nearly all the work). Lowered in `fast.ACCELERATOR`'s forms whatever the variant
  (the same count for all), with the recurrent steps unrolled and without remat: cost analysis
  counts a rolled loop's body once, and remat's recomputation is no useful work. Nothing is
  compiled or allocated.
  """
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from dssr_jax import fast  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from dssr_jax import optim  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_lib  # pylint: disable=g-import-not-at-top

  mesh = train_lib.create_mesh(jax.devices('cpu')[:1])
  model = model_lib.DSSR(**dict(model_kw, remat=False, execution=dataclasses.replace(
      fast.ACCELERATOR, unrolled_steps=True)))
  tx = optim.create_optimizer(train_config)
  init = functools.partial(train_lib.init_state, model, tx, lr_patch=16)
  state = jax.eval_shape(init, jax.random.PRNGKey(0))
  step = train_lib.make_train_step(model, tx, mesh, state, train_config.alpha)
  shard = train_lib.batch_sharding(mesh)
  s = model.scale
  batch = {k: jax.ShapeDtypeStruct((batch, n, n, 3), 'float32', sharding=shard)
           for k, n in (('lr', patch), ('hr', patch * s))}
  state = jax.tree_util.tree_map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), state,
      train_lib.state_shardings(state, mesh))
  cost = step.lower(state, batch).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  return float(cost.get('flops', 0.0)) if isinstance(cost, dict) else 0.0


def _spec_name(spec: dict) -> str:
  m = spec['model']
  name = f"x{m['scale']}_{m['dtype']}{'_remat' if m['remat'] else ''}"
  return name + (('_' + re.sub('[^A-Za-z0-9]+', '_', spec['variant'])) if spec['variant'] else '')


def synthetic_step(fields: dict, batch: int, patch: int):
  """The default config's network with a variant's `fields` (`common.model_kwargs`), its jitted
  train step (`train_lib.make_train_step`), initial state and one synthetic batch (uniform,
  seed 0) of `batch` LR patches `patch` x `patch` with their HR targets, over all local devices.

  Returns (DSSR keyword arguments without the execution, train config, step, state, batch).
  """
  import functools  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from dssr_jax import optim  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_lib  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.train.batch_size = batch
  kw = dict(config.model.to_dict(), **common.model_kwargs(fields))
  model = model_lib.DSSR(**kw)
  mesh = train_lib.create_mesh()
  train_lib.check_batch_size(batch, mesh)
  # train_lib.create_train_state with the variant's execution, which no config holds.
  tx = optim.create_optimizer(config.train)
  rng = jax.random.PRNGKey(config.train.seed)
  init = functools.partial(train_lib.init_state, model, tx, lr_patch=16)
  state = jax.jit(init, out_shardings=train_lib.state_shardings(jax.eval_shape(init, rng), mesh))(
      rng)
  step = train_lib.make_train_step(model, tx, mesh, state, config.train.alpha)
  s = model.scale
  data = np.random.default_rng(0)
  arrays = train_lib.global_batch({
      'lr': data.random((batch, patch, patch, 3), np.float32),
      'hr': data.random((batch, patch * s, patch * s, 3), np.float32)}, mesh)
  kw.pop('execution')
  return kw, config.train, step, state, arrays


def run_one(spec: dict) -> dict:
  """Compiles and times one configuration in this process."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  common.enable_compilation_cache(spec.get('cache_dir'))
  p = spec['patch']
  model_kw, train_config, step, state, batch = synthetic_step(spec['model'], spec['batch'], p)

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  flops = model_flops(model_kw, train_config, spec['batch'], p)
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


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]} (lists are comma-separated: '
                         '--scales=2,4)')
  if FLAGS.child:
    print(json.dumps(run_one(json.loads(FLAGS.child))), flush=True)
    return
  scales = [int(v) for v in _choices('scales', FLAGS.scales, ('2', '3', '4'))]
  dtypes = _choices('dtypes', FLAGS.dtypes, ('float32', 'bfloat16'))
  remats = _choices('remat', FLAGS.remat, ('off', 'on'))
  variants = _variants()
  if FLAGS.json and os.path.exists(FLAGS.json):
    raise app.UsageError(f'--json={FLAGS.json} exists; name a new file')
  base = model_overrides()
  specs = []
  for scale, dtype, remat, variant in itertools.product(scales, dtypes, remats, variants):
    fields, xla_flags = common.split_variant(variant)
    specs.append(dict(model=dict(base, scale=scale, dtype=dtype, remat=remat == 'on', **fields),
                      variant=','.join(f'{k}={v}' for k, v in variant.items()), xla_flags=xla_flags,
                      batch=FLAGS.batch, patch=FLAGS.patch, steps=FLAGS.steps,
                      warmup=FLAGS.warmup, compile_only=FLAGS.compile_only,
                      cache_dir=FLAGS.cache_dir, profile=FLAGS.profile))
  compiled = {}
  if FLAGS.compile_jobs > 1:
    compiled = dict(enumerate(common.precompile(__file__, specs, FLAGS.compile_jobs,
                                                FLAGS.cache_dir, 'configurations',
                                                lambda r: r['variant'])))
  results = []
  header = (f'{"scale":>5} {"dtype":>8} {"remat":>5} {"ms/step":>9} {"GFLOP/step":>10} '
            f'{"TFLOP/s":>8} {"peak GB":>8} {"XLA GB":>7}  compile s  variant')
  print(header, flush=True)
  for i, spec in enumerate(specs):
    m = spec['model']
    label = f'{m["scale"]:>5} {m["dtype"]:>8} {"on" if m["remat"] else "off":>5}'
    # (--compile_only: the parallel pass already gave everything there is to report)
    r = compiled[i] if FLAGS.compile_only and i in compiled else common.run_child(__file__, spec)
    if not FLAGS.compile_only and 'error' not in r and 'error' not in compiled.get(i, {'error': 0}):
      r['load_s'], r['compile_s'] = r['compile_s'], compiled[i]['compile_s']
    results.append(r)
    if FLAGS.json:
      common.write_json(FLAGS.json, results)
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
    print(f'device: {r["device"]} x{r["num_devices"]}, jax {r["jax_version"]}, batch '
          f'{FLAGS.batch}, LR patch {FLAGS.patch}, model {base or "paper"}, '
          f'peak = {r["peak_kind"]}')
  if len(ok) < len(results):
    sys.exit(1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
