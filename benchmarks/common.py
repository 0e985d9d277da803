"""What the benchmark scripts share: variants (model fields and `fast.Execution` strategies),
random weights, and one subprocess per measurement with an optional parallel compilation pass in
front.

Compiling the paper network's train step takes minutes, and a GPU lease is short. With
`compile_jobs > 1` every configuration is first compiled in its own process, that many at a
time, into JAX's persistent compilation cache; the timed processes then run one after the other
and load their executables from the cache. Only jax is imported by the children this starts;
this module imports nothing beyond the standard library at import time (jax and dssr_jax only
inside the functions that need them).
"""

import ast
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

REPO = pathlib.Path(__file__).resolve().parent.parent


# `execution=NAME` picks the base strategy of a variant; None: `fast.best(backend)`.
EXECUTIONS = {'plain': 'PLAIN', 'cpu': 'CPU', 'accelerator': 'ACCELERATOR', 'best': None}


def parse_variant(text: str) -> dict[str, Any]:
  """'key=value,key2=value2' -> {key: literal value} (strings that are no literal stay strings).

  Keys are DSSR fields (e.g. 'channels=8'), 'execution' (one of `EXECUTIONS`), `fast.Execution`
  fields (e.g. 'phase_up=0': that strategy off, the others as the base has them), or 'xla_*':
  XLA flags for that configuration's process (`split_variant`).
  """
  kw = {}
  for item in filter(None, text.split(',')):
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise ValueError(f"variant item {item!r} is not 'key=value'")
    try:
      kw[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      kw[key] = value
  return kw


def split_variant(kw: dict[str, Any]) -> tuple[dict[str, Any], str]:
  """A parsed variant -> (model and execution fields, XLA_FLAGS text of its 'xla_*' items)."""
  flags = ' '.join(f'--{k}={v}' for k, v in kw.items() if k.startswith('xla_'))
  return {k: v for k, v in kw.items() if not k.startswith('xla_')}, flags


def model_kwargs(fields: dict[str, Any], backend: str | None = None) -> dict[str, Any]:
  """DSSR keyword arguments from a variant's fields, its execution items made one `Execution`.

  The base is `execution=NAME` (default 'best': `fast.best(backend)`; backend None is JAX's
  default, which starts JAX's backend: the parent of the measuring processes passes 'cpu' to
  check a variant without touching the device). `Execution` fields given override the base's.
  Raises ValueError naming an unknown field, execution name or a non-boolean strategy value.
  """
  from dssr_jax import fast  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  strategies = {f.name for f in dataclasses.fields(fast.Execution)}
  known = {f.name for f in dataclasses.fields(model_lib.DSSR)} - {'parent', 'name'}
  kw = {k: v for k, v in fields.items() if k not in strategies}
  name = kw.pop('execution', 'best')
  if name not in EXECUTIONS:
    raise ValueError(f'execution={name!r} is not one of {", ".join(EXECUTIONS)}')
  unknown = sorted(set(kw) - known)
  if unknown:
    raise ValueError(f'unknown variant field(s) {unknown}: neither DSSR fields '
                     f'({", ".join(sorted(known))}) nor Execution fields '
                     f'({", ".join(sorted(strategies))})')
  switches = {k: v for k, v in fields.items() if k in strategies}
  for k, v in switches.items():
    if v not in (0, 1):  # (True and False included)
      raise ValueError(f'{k}={v!r}: an Execution field is 0/1 or False/True')
  base = getattr(fast, EXECUTIONS[name]) if EXECUTIONS[name] else fast.best(backend)
  return dict(kw, execution=dataclasses.replace(
      base, **{k: bool(v) for k, v in switches.items()}))


def random_params(model, lr_shape: tuple[int, ...], seed: int = 0):
  """Weights of PyTorch's default-init size for `model`, drawn in numpy: skips compiling `init`
  (minutes for the paper network on a small CPU); the timing does not depend on the values."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct(lr_shape, np.float32))['params']
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda x: (rng.uniform(-1, 1, x.shape) /
                 np.sqrt(max(1, int(np.prod(x.shape[:-1]))))).astype(np.float32), shapes)


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as JSON to `path` atomically (a reader sees the old or the new file whole)."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path), suffix='.tmp')
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(obj, f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def enable_compilation_cache(cache_dir: str | None) -> None:
  """In a child: JAX's persistent compilation cache in `cache_dir`, every executable stored."""
  if not cache_dir:
    return
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)


def run_child(script: str, spec: dict, env: dict | None = None) -> dict:
  """Runs `script --child=SPEC_JSON` and returns the JSON of its last stdout line, or
  spec + {'error': ...} when it failed. `spec['xla_flags']` is added to the child's XLA_FLAGS
  (JAX's persistent cache keys include them)."""
  env = dict(env or os.environ)
  if spec.get('xla_flags'):
    env['XLA_FLAGS'] = f"{env.get('XLA_FLAGS', '')} {spec['xla_flags']}".strip()
  proc = subprocess.run([sys.executable, script, '--child=' + json.dumps(spec)], capture_output=True,
                        text=True, cwd=REPO, env=env, check=False)
  if proc.returncode:
    # (the last line, unless it is JAX's note on filtered traceback frames, printed after the
    # error when a compiled computation raises)
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines()
             if ln.strip() and not ln.startswith(('For simplicity, JAX has removed', '-----'))]
    tail = lines[-1:]
    if proc.returncode < 0:  # e.g. SIGKILL from the kernel's out-of-memory killer
      tail = [f'killed by signal {-proc.returncode} (out of memory?)'] + tail
    return dict(spec, error=tail)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def precompile(script: str, specs: list[dict], jobs: int, cache_dir: str | None, noun: str,
               label: Callable[[dict], str]) -> list[dict]:
  """Compiles every spec (`compile_only`) in `jobs` parallel children into one persistent cache;
  sets each spec's 'cache_dir' to it, prints one summary line and returns the children's results.

  `cache_dir` None: a fresh temporary folder. The children share the device: each allocates only
  what it uses (no preallocation), so several fit beside each other.
  """
  cache = cache_dir or tempfile.mkdtemp(prefix='dssr_jax_cache_')
  for spec in specs:
    spec['cache_dir'] = cache
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false')
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
    results = list(pool.map(lambda s: run_child(script, dict(s, compile_only=True), env), specs))
  failed = [f'{label(r)} {r["error"]}' for r in results if 'error' in r]
  print(f'compiled {len(specs)} {noun}, {jobs} at a time, in {time.perf_counter() - t0:.0f} s '
        f'(cache {cache}){"; failed: " if failed else ""}' + ', '.join(failed), flush=True)
  return results
