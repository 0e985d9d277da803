r"""One 3x3 'same' convolution, forward and forward + backward, as this project runs it on the CPU
(`layers.conv_s1`: XLA's forward, the CPU's two backward passes) or as PyTorch runs it (oneDNN).

Where the CPU train step's time goes is mostly convolutions; this isolates the engine. Run the
same shapes under both interpreters, one after the other (this CPU's speed drifts):

  python benchmarks/conv_engines.py --engine xla --channels 32 --sizes 64 128
  /tmp/torch-venv/bin/python benchmarks/conv_engines.py --engine torch --channels 32 --sizes 64 128

The torch engine needs only torch and numpy (the venv of `torch_reference.py`); it times both
memory formats, NCHW (the authors' code) and channels_last. Prints ms per call (median).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_ms(fn, repeats: int) -> float:
  fn()  # warm-up (and compilation)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return 1e3 * statistics.median(times)


def xla_cases(batch, size, channels):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from dssr_jax import layers  # pylint: disable=g-import-not-at-top
  from dssr_jax import model  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, channels)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, channels, channels)), jnp.float32)
  conv = lambda x, w: layers.conv_s1(x, w, ((1, 1), (1, 1)))
  opts = model.compiler_options()  # as the library compiles the network
  fwd = jax.jit(conv, compiler_options=opts)
  for impl in ('cpu', 'explicit'):  # the CPU's backward passes: unrolled, in rolled loops
    with layers.conv_backward(impl):
      both = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w)), (0, 1)),
                     compiler_options=opts).lower(x, w).compile()
    yield f'xla ({impl})', lambda: jax.block_until_ready(fwd(x, w)), \
        lambda both=both: jax.block_until_ready(both(x, w))


def torch_cases(batch, size, channels):
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  w = torch.randn(channels, channels, 3, 3, requires_grad=True)
  for fmt in (torch.contiguous_format, torch.channels_last):
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt).requires_grad_()

    def fwd(x=x):
      with torch.no_grad():
        torch.nn.functional.conv2d(x, w, padding=1)

    def both(x=x):
      y = torch.nn.functional.conv2d(x, w, padding=1)
      y.backward(torch.ones_like(y))

    yield f'torch {"NCHW" if fmt == torch.contiguous_format else "channels_last"}', fwd, both


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument('--engine', required=True, choices=('xla', 'torch'))
  ap.add_argument('--channels', type=int, default=32)
  ap.add_argument('--sizes', type=int, nargs='+', default=[64, 128], help='height = width')
  ap.add_argument('--batch', type=int, default=8)
  ap.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
  ap.add_argument('--repeats', type=int, default=10)
  args = ap.parse_args(argv)
  if min(args.sizes + [args.channels, args.batch, args.repeats, args.threads]) < 1:
    ap.error('--channels, --sizes, --batch, --threads and --repeats must be >= 1')
  if args.engine == 'torch':
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(args.threads)
  cases = xla_cases if args.engine == 'xla' else torch_cases
  for size in args.sizes:
    for name, fwd, both in cases(args.batch, size, args.channels):
      gflop = 2 * 9 * args.channels**2 * size * size * args.batch / 1e9
      f, b = median_ms(fwd, args.repeats), median_ms(both, args.repeats)
      print(f'{name:>19} {args.batch}x{size}x{size}x{args.channels}: forward {f:7.2f} ms '
            f'({gflop / f * 1e3:5.0f} GFLOP/s), forward + backward {b:7.2f} ms', flush=True)


if __name__ == '__main__':
  main()
