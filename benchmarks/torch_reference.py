r"""Times the authors' own PyTorch DSSR on this machine, for same-machine comparisons.

A shared CPU's speed can drift by 20-30% between runs (the same train step has measured 72 s
and 54 s), so a ratio against PyTorch is only meaningful when both run on the
same machine, one after the other. This script runs the authors' code from a checkout you supply;
nothing of theirs is in this repository.

  git clone https://github.com/Arcananana/DSSR /tmp/authors-dssr
  python -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
  /tmp/torch-venv/bin/python benchmarks/torch_reference.py --authors_dir=/tmp/authors-dssr \
      --mode=infer --scale=2 --size=128                     # x2, one LR 128x128 image
  ... --mode=train --scale=2                                # paper network, batch 8, LR 64
  ... --mode=train --scale=2 --small                        # channels 32, struct 4, recon 2, T 4

- Network: their `DSSR` class (models/modules/dssr_arch.py), default init, random weights.
  Their forward allocates its first hidden state with `.cuda()`; on the CPU that call is made a
  no-op (the state is overwritten by a copy of the head features right after).
- Train step: their `B_Model.optimize_parameters` (models/dssr_model.py), read from their source
  and run on an object holding what it reads: L1 loss, alpha 1, Adam(2e-4, betas (0.9, 0.99)).
- `--small`: their class hard-codes 128 channels in `DSSR.__init__`; for this option only, that
  body is re-read with 128 replaced by `inChannels` (checked on every run: at 128 channels it
  builds the original's exact state-dict names and shapes).
Prints one result line per run, with the peak RSS of the process (one configuration per process).

Its flags are argparse's, not absl's like the other commands': it runs in a PyTorch environment
that needs nothing but torch and numpy, and imports nothing of this repository.
"""

import argparse
import ast
import importlib.util
import pathlib
import resource
import statistics
import time


def _load_arch(authors_dir: pathlib.Path, small: bool, scale: int):
  import torch  # pylint: disable=g-import-not-at-top
  torch.Tensor.cuda = lambda self, *a, **k: self  # see the module docstring
  path = authors_dir / 'models' / 'modules' / 'dssr_arch.py'
  spec = importlib.util.spec_from_file_location('authors_dssr_arch', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  if not small:
    return mod.DSSR
  src = path.read_text()
  start = src.index('super(DSSR, self).__init__()', src.index('class DSSR(nn.Module):'))
  end = src.index('    def forward(self, x):', start)
  ns = {'__name__': 'authors_dssr_arch_any_width'}
  exec(compile(src[:start] + src[start:end].replace('128', 'inChannels') + src[end:],  # pylint: disable=exec-used
               str(path), 'exec'), ns)
  # The re-read class must be theirs exactly at their width: same state-dict names and shapes.
  layout = lambda cls: [(k, tuple(v.shape)) for k, v in cls(
      color_channels=3, inChannels=128, scale=scale, num_steps=4, feat_blocks=15,
      refine_blocks=5).state_dict().items()]
  if layout(ns['DSSR']) != layout(mod.DSSR):
    raise SystemExit(f'torch_reference: --small cannot widen-parametrise {path}: at 128 channels '
                     'the re-read class differs from the original')
  return ns['DSSR']


def _load_optimize_parameters(authors_dir: pathlib.Path):
  import torch  # pylint: disable=g-import-not-at-top
  path = authors_dir / 'models' / 'dssr_model.py'
  tree = ast.parse(path.read_text())
  cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == 'B_Model')
  fn = next(n for n in cls.body
            if isinstance(n, ast.FunctionDef) and n.name == 'optimize_parameters')
  ns = {'torch': torch, 'F': torch.nn.functional, 'nn': torch.nn}
  exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), 'exec'), ns)  # pylint: disable=exec-used
  return ns['optimize_parameters']


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--authors_dir', required=True, type=pathlib.Path)
  p.add_argument('--mode', choices=['infer', 'train'], required=True)
  p.add_argument('--scale', type=int, choices=[2, 3, 4], required=True)
  p.add_argument('--size', type=int, help='LR side (infer: 128, train: 64)')
  p.add_argument('--small', action='store_true', help='channels 32, struct 4, recon 2, T 4')
  p.add_argument('--batch', type=int, default=8, help='train batch')
  p.add_argument('--repeats', type=int, default=3, help='timed runs (median), after one warm-up')
  p.add_argument('--warmup', type=int, default=1, help='train: untimed steps first')
  p.add_argument('--threads', type=int, default=2)
  args = p.parse_args(argv)
  for rel in ('models/modules/dssr_arch.py', 'models/dssr_model.py'):
    if not (args.authors_dir / rel).is_file():
      raise SystemExit(f'torch_reference: {args.authors_dir / rel} not found: --authors_dir must '
                       'be a checkout of github.com/Arcananana/DSSR')
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  width = dict(inChannels=32, feat_blocks=4, refine_blocks=2) if args.small else dict(
      inChannels=128, feat_blocks=15, refine_blocks=5)
  net = _load_arch(args.authors_dir, args.small, args.scale)(
      color_channels=3, scale=args.scale, num_steps=4, **width)
  s, name = args.scale, 'small' if args.small else 'paper'
  times = []
  if args.mode == 'infer':
    size = args.size or 128
    x = torch.round(torch.rand(1, 3, size, size) * 255) / 255
    net.eval()
    with torch.no_grad():
      for i in range(1 + args.repeats):
        t0 = time.perf_counter()
        net(x)
        if i:
          times.append(time.perf_counter() - t0)
    what = f'infer {name} x{s} LR {size}x{size}: {statistics.median(times):.3f} s/image'
  else:
    size = args.size or 64
    step = _load_optimize_parameters(args.authors_dir)
    holder = type('Holder', (), {})()
    holder.netG, holder.scale, holder.alpha = net, s, 1
    holder.cri_pix, holder.log_dict = torch.nn.L1Loss(), {}
    holder.optimizer_G = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.9, 0.99))
    net.train()
    for i in range(args.warmup + args.repeats):
      holder.var_L = torch.round(torch.rand(args.batch, 3, size, size) * 255) / 255
      holder.real_H = torch.rand(args.batch, 3, s * size, s * size)
      t0 = time.perf_counter()
      step(holder, i)
      if i >= args.warmup:
        times.append(time.perf_counter() - t0)
    what = (f'train {name} x{s} batch {args.batch} LR {size}: '
            f'{statistics.median(times):.2f} s/step')
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
  print(f'torch {torch.__version__} ({args.threads} threads), authors\' code, {what} '
        f'(median of {len(times)}), peak RSS {peak:.2f} GB')


if __name__ == '__main__':
  main()
