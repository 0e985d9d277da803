r"""A/B of XLA compiler options for the DSSR train step (or forward pass) in one process: the same
lowered computation compiled once per option set, then timed in alternation, so that this CPU's
drifting speed hits every set alike.

  python benchmarks/compiler_options_ab.py --small --rounds 8 \
      '{"xla_cpu_experimental_ynn_fusion_type": ""}' \
      '{"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}'
  python benchmarks/compiler_options_ab.py --forward --size 128 --rounds 4 \
      '{}' '{"xla_cpu_experimental_ynn_fusion_type": ""}'

Each argument is a JSON object of options; '{}' is XLA's defaults (not `model.compiler_options()`,
which the library's own jits add). Train step: batch 8, LR 64, x2, the paper network or `--small`;
every run starts from the same state and batch. Prints the times and their median per set.
"""

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, __file__.rsplit('/benchmarks/', 1)[0])
from benchmarks import forward  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import train_step as train_step_bench  # pylint: disable=wrong-import-position
from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def lowered_train_step(model_kw: dict):
  # Jitted with XLA's defaults ({}), so that each option set below is all there is.
  _, step, state, batch = train_step_bench.synthetic_step(model_kw, 8, 64, compiler_options={})
  # A copy per run: the step donates its state.
  return step.lower(state, batch), lambda: (jax.tree_util.tree_map(lambda a: a.copy(), state),
                                            batch)


def lowered_forward(model_kw: dict, size: int, rng):
  model = model_lib.DSSR(**model_kw)
  lr = jax.numpy.asarray(rng.random((1, size, size, 3)), jax.numpy.float32)
  params = forward.random_params(model, lr.shape)
  return jax.jit(model.apply).lower({'params': params}, lr), lambda: ({'params': params}, lr)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument('options', nargs='+', help='JSON objects of XLA options')
  ap.add_argument('--small', action='store_true', help=str(train_step_bench.SMALL))
  ap.add_argument('--forward', action='store_true', help='the forward pass of one LR image')
  ap.add_argument('--size', type=int, default=128, help='--forward: LR side')
  ap.add_argument('--scale', type=int, default=2)
  ap.add_argument('--rounds', type=int, default=4)
  args = ap.parse_args(argv)
  try:
    sets = [json.loads(o) for o in args.options]
  except json.JSONDecodeError as e:
    ap.error(f'options must be JSON objects: {e}')
  if not all(isinstance(s, dict) for s in sets) or args.rounds < 1:
    ap.error('options must be JSON objects and --rounds >= 1')
  model_kw = dict(train_step_bench.SMALL if args.small else {}, scale=args.scale)
  rng = np.random.default_rng(0)
  lowered, inputs = (lowered_forward(model_kw, args.size, rng) if args.forward
                     else lowered_train_step(model_kw))
  compiled = [lowered.compile(compiler_options=s or None) for s in sets]
  for c in compiled:
    jax.block_until_ready(c(*inputs()))  # warm-up
  times = [[] for _ in sets]
  for _ in range(args.rounds):
    for c, t in zip(compiled, times):
      a = inputs()
      jax.block_until_ready(a)
      t0 = time.perf_counter()
      jax.block_until_ready(c(*a))
      t.append(time.perf_counter() - t0)
  for s, t in zip(sets, times):
    runs = ' '.join(f'{v:.3f}' for v in t)
    print(f'{json.dumps(s):50s} {runs}  median {statistics.median(t):.3f} s')


if __name__ == '__main__':
  main()
