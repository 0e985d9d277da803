r"""Where a profiled step's time goes: GPU kernel (or XLA:CPU thunk) time by kind and by part.

  python benchmarks/train_step.py --scales=2 --dtypes=bfloat16 --remat=off --profile=PROF
  python benchmarks/xplane_summary.py PROF/x2_bfloat16/plugins/profile/*/*.xplane.pb[.gz] \
      --hlo=PROF/x2_bfloat16/optimized_hlo.txt

Reads the profiler's XSpace protobuf (tensorflow's copy of its schema, so this runs where
tensorflow is installed, not on the GPU machine). On the CPU the same is done for XLA's thunks
(their times add up over threads, so they can exceed the span). Kernel time is the sum of the GPU kernels'
durations; `busy` is that over the span from the first kernel's start to the last one's end, so
1 - busy is the time the GPU sat idle between kernels (launch gaps).
"""

import collections
import gzip
import re

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_integer('steps', 3, 'Steps in the trace.', lower_bound=1)
  flags.DEFINE_integer('top', 15, 'Largest single kernels to list.', lower_bound=0)
  flags.DEFINE_integer('depth', 1, 'Network part: 1 = layer, 2 = sublayer.', lower_bound=1)
  flags.DEFINE_string('hlo', None, "The step's optimized HLO text (train_step.py --profile "
                      'writes it), to split the time by network part.')


def load(path: str):
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
    space = xplane_pb2.XSpace()
    space.ParseFromString(f.read())
  return space


def kernels(space):
  """(start_ps, duration_ps, kernel name, hlo op) of every GPU kernel event; without a GPU plane,
  of every XLA:CPU thunk (named after its HLO instruction)."""
  out = []
  for plane in space.planes:
    if plane.name == '/host:CPU':
      for line in plane.lines:
        if not line.name.startswith('tf_XLA'):
          continue
        for e in line.events:
          name = plane.event_metadata[e.metadata_id].name
          # Wrappers and markers, and control flow, whose events enclose their bodies' thunks.
          if not name.startswith(('ThunkExecutor', 'end: ', 'SlinkyThreadPool', 'while',
                                  'conditional', 'call')):
            out.append((line.timestamp_ns * 1000 + e.offset_ps, e.duration_ps, name, name))
    if not plane.name.startswith('/device:GPU'):
      continue
    names = {k: v.name for k, v in plane.stat_metadata.items()}
    for line in plane.lines:
      for e in line.events:
        hlo = next((names.get(s.ref_value, '') for s in e.stats
                    if names[s.metadata_id] == 'hlo_op'), '')
        out.append((line.timestamp_ns * 1000 + e.offset_ps, e.duration_ps,
                    plane.event_metadata[e.metadata_id].name, hlo))
  return sorted(out)


def op_kind(hlo_op: str, kernel: str) -> str:
  if hlo_op.startswith('cudnn-conv-bw-filter') or 'wgrad' in kernel:
    return 'conv weight gradient'
  if hlo_op.startswith('cudnn-conv-bw-input') or 'dgrad' in kernel:
    return 'conv input gradient'
  if hlo_op.startswith('cudnn-conv'):
    return 'conv forward'
  if 'gemm' in hlo_op or hlo_op.startswith('dot') or 'cublas' in hlo_op:
    return 'matmul'
  if 'memcpy' in kernel or 'memset' in kernel.lower():
    return 'copy/memset'
  # (XLA:CPU names a conv thunk after its library fusion, or after the jax op when it runs the
  # conv itself, as DSSR's `model.compiler_options()` has it do)
  if hlo_op.startswith(('ynn_fusion', 'convolution', 'conv_general_dilated', 'onednn')):
    return 'conv (XLA:CPU)'
  return 'fusion (elementwise, reductions, layout)'


def op_names(hlo_text: str) -> dict[str, str]:
  """Instruction name -> the jax op path in its metadata (from `compiled.as_text()`)."""
  return dict(re.findall(r'^\s*%?([\w.\-]+) = [^\n]*?op_name="([^"]*)"', hlo_text, re.M))


def part(op_name: str, depth: int = 1) -> str:
  """'forward feat_ext', 'backward up', 'optimizer/loss/other', ... from a jax op path (with
  depth 2: 'forward feat_ext/block_0', ...)."""
  if not op_name:
    return 'unknown'
  if 'DSSR' not in op_name:
    return 'optimizer/loss/other'
  direction = 'backward' if 'transpose(' in op_name else 'forward'
  path = op_name.split('DSSR', 1)[1].split('/')
  names = [p for p in path[1:] if re.fullmatch(r'[A-Za-z_]+[0-9]*', p)
           and p not in ('eval_jaxpr', 'closed_call', 'step', 'while', 'body')]
  return f"{direction} {'/'.join(names[:depth]) or 'DSSR'}"


def table(title, totals, counts, denom_ps, steps):
  print(f'\n{title:<42} {"ms/step":>8} {"share":>6} {"kernels/step":>12}')
  for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f'{k:<42} {v / 1e9 / steps:8.2f} {v / denom_ps:6.1%} {counts[k] / steps:12.0f}')


def summarize(xplane: str, hlo_path: str | None = None, steps: int = 3, depth: int = 1,
              top: int = 15) -> None:
  """Prints the kernel (or thunk) time of the trace `xplane` by kind, by network part (with the
  optimized HLO text in `hlo_path`) and the `top` largest kernels, per step of `steps`."""
  ev = kernels(load(xplane))
  names = {}
  if hlo_path:
    with (gzip.open if hlo_path.endswith('.gz') else open)(hlo_path, 'rt') as f:
      names = op_names(f.read())
  if not ev:
    raise SystemExit(f'{xplane}: no GPU kernel or XLA:CPU thunk events')
  total = sum(e[1] for e in ev)
  span = max(s + d for s, d, *_ in ev) - ev[0][0]
  print(f'{len(ev) / steps:.0f} kernels/step, kernel time {total / 1e9 / steps:.2f} '
        f'ms/step, span {span / 1e9 / steps:.2f} ms/step, busy {total / span:.1%}')
  by_kind, n_kind = collections.Counter(), collections.Counter()
  by_part, n_part = collections.Counter(), collections.Counter()
  by_kernel, n_kernel = collections.Counter(), collections.Counter()
  for _, d, kernel, hlo in ev:
    k = op_kind(hlo, kernel)
    by_kind[k] += d
    n_kind[k] += 1
    # Inside a command buffer (CUDA graph) the op is the buffer; the kernel is named after it.
    where = part(names.get(hlo) or names.get(re.sub(r'_(\d+)$', r'.\1', kernel), ''), depth)
    by_part[where] += d
    n_part[where] += 1
    name = f'{k[:12]}: {kernel[:60]}'
    by_kernel[name] += d
    n_kernel[name] += 1
  table('by kind', by_kind, n_kind, total, steps)
  if names:
    table('by network part', by_part, n_part, total, steps)
  top = dict(sorted(by_kernel.items(), key=lambda kv: -kv[1])[:top])
  table('largest kernels (summed by name)', top, n_kernel, total, steps)


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('give one trace file (.xplane.pb or .xplane.pb.gz)')
  summarize(argv[1], FLAGS.hlo, FLAGS.steps, FLAGS.depth, FLAGS.top)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
