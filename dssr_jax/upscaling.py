"""Upscaling (inference): a checkpoint becomes a numpy-in, numpy-out SR function; self-ensemble; image files.

`checkpoint.load_model` -> `make_sr_fn` -> (optionally `self_ensemble`) -> `tiling.tiled_apply`
is what eval, the figures, the demo and `python -m dssr_jax.infer` run; `tile_planner` picks the
tile from a memory budget (`default_memory_budget`). jax, flax, numpy and orbax only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from dssr_jax import checkpoint as checkpoint_lib
from dssr_jax import fast
from dssr_jax import image_files
from dssr_jax import tiling
from dssr_jax import torch_bicubic

SRFn = tiling.SRFn


class CompiledSR:
  """A numpy-in, numpy-out forward pass; one compiled program per input shape, reused after that.

  `memory(shape)` is XLA's memory analysis of the program for that shape: the program that then
  runs, so asking costs no extra compilation. The weights are an argument of the program, not a
  closure constant, so compiling does not fold millions of parameters into it.
  """

  def __init__(self, loaded: checkpoint_lib.LoadedModel, outputs: Sequence[str],
               cache_size: int = 32):
    outputs = tuple(outputs)
    model = loaded.model
    self._apply = fast.jit(lambda p, x: {k: v for k, v in model.apply({'params': p}, x).items()
                                         if k in outputs})
    self._params = jax.device_put(loaded.params)
    self.compiled = functools.lru_cache(maxsize=cache_size)(self._compile)

  def _compile(self, shape: tuple[int, ...]) -> jax.stages.Compiled:
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return self._apply.lower(self._params, x).compile()

  def memory(self, shape: Sequence[int]) -> tiling.ProgramMemory:
    """XLA's memory analysis (temp, argument, output bytes) of the program for `shape`."""
    m = self.compiled(tuple(int(s) for s in shape)).memory_analysis()
    return tiling.ProgramMemory(temp=int(m.temp_size_in_bytes),
                                argument=int(m.argument_size_in_bytes),
                                output=int(m.output_size_in_bytes))

  def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
    lr = jnp.asarray(lr, jnp.float32)
    out = self.compiled(tuple(lr.shape))(self._params, lr)
    return jax.tree_util.tree_map(np.asarray, out)


def make_sr_fn(loaded: checkpoint_lib.LoadedModel,
               outputs: Sequence[str] = ('sr', 'steps', 'details')) -> CompiledSR:
  """The network as a numpy-in, numpy-out function (`CompiledSR`).

  Args:
    loaded: the network and its weights.
    outputs: which of DSSR's outputs to bring back to the host ('sr' alone saves the transfer
      and the host memory of the T step images when they are not needed).
  """
  return CompiledSR(loaded, outputs)


# ----------------------------------------------------------------------------------------------
# Memory budget.

# Shares of the memory a pass may plan for: on CPU of the RAM available when it starts (the rest
# is the runtime, the compiler and everything else on the machine), on an accelerator of what
# its allocator may hand out (fragmentation).
HOST_FRACTION = 0.5
DEVICE_FRACTION = 0.8


def available_host_memory() -> int:
  """Bytes of RAM available now: /proc/meminfo's MemAvailable, capped by a cgroup v2 limit."""
  avail = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          avail = int(line.split()[1]) * 1024
  except OSError:
    pass
  try:  # a container's limit, less what it already uses
    with open('/sys/fs/cgroup/memory.max') as f:
      limit = f.read().strip()
    with open('/sys/fs/cgroup/memory.current') as f:
      used = int(f.read())
    if limit != 'max':
      avail = min(avail, int(limit) - used)
  except (OSError, ValueError):
    pass
  return avail


def default_memory_budget(device: jax.Device | None = None) -> int:
  """Bytes a pass may use: HOST_FRACTION of the available RAM on CPU, DEVICE_FRACTION of the
  device allocator's limit on GPU/TPU."""
  device = device or jax.local_devices()[0]
  if device.platform != 'cpu':
    limit = (device.memory_stats() or {}).get('bytes_limit')
    if limit:
      return int(DEVICE_FRACTION * limit)
  return int(HOST_FRACTION * available_host_memory())


def tile_planner(sr_fn: CompiledSR, scale: int, *, max_memory_gb: float | None = None,
                 overlap: int = 32) -> tiling.TilePlanner:
  """A `tiling.TilePlanner` for `sr_fn` under `max_memory_gb` (None: `default_memory_budget()`).

  Raises:
    ValueError: max_memory_gb is not positive.
  """
  if max_memory_gb is not None and not max_memory_gb > 0:
    raise ValueError(f'--max_memory_gb must be positive, got {max_memory_gb}')
  budget = (default_memory_budget() if max_memory_gb is None
            else int(max_memory_gb * tiling.GB))
  return tiling.TilePlanner(sr_fn.memory, budget, scale=scale, overlap=overlap,
                            host_shares_budget=jax.default_backend() == 'cpu')


# ----------------------------------------------------------------------------------------------
# x8 self-ensemble.


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
  """The k-th (0..7) of the 8 flips/transposes of the image axes (-3, -2)."""
  if k & 1:
    x = np.flip(x, axis=-3)
  if k & 2:
    x = np.flip(x, axis=-2)
  if k & 4:
    x = np.swapaxes(x, -3, -2)
  return x


def dihedral_inverse(x: np.ndarray, k: int) -> np.ndarray:
  """Undoes `dihedral(., k)`."""
  if k & 4:
    x = np.swapaxes(x, -3, -2)
  if k & 2:
    x = np.flip(x, axis=-2)
  if k & 1:
    x = np.flip(x, axis=-3)
  return x


def self_ensemble(fn: SRFn) -> SRFn:
  """EDSR's x8 geometric self-ensemble: the mean of fn over the 8 transforms, each undone.

  Runs the 8 passes one after another, so memory stays that of one pass; a non-square input
  compiles twice (h x w and w x h).
  """

  def ensembled(lr: np.ndarray) -> Any:
    total = None
    for k in range(8):
      out = jax.tree_util.tree_map(lambda y, k=k: dihedral_inverse(np.asarray(y), k),
                                   fn(np.ascontiguousarray(dihedral(lr, k))))
      total = out if total is None else jax.tree_util.tree_map(np.add, total, out)
    return jax.tree_util.tree_map(lambda t: (t / 8).astype(np.float32), total)

  return ensembled


# ----------------------------------------------------------------------------------------------
# Image files.


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
  """Alpha channel [h, w] upscaled with PyTorch's bicubic (the network only sees colour)."""
  up = torch_bicubic.up(alpha.astype(np.float32)[None, :, :, None], scale)
  return np.clip(np.asarray(up)[0, :, :, 0], 0, 1)


@dataclasses.dataclass(frozen=True)
class Upscaled:
  """One image super-resolved: what is written, and the float outputs behind it."""
  samples: np.ndarray  # uint8/uint16 [H, W, c] in the input's mode: what `write_native` writes.
  out: dict[str, np.ndarray]  # sr_fn's outputs for the whole image, batch axis kept.
  plan: tiling.TilePlan | None


def upscale_image(sr_fn: SRFn, img: image_files.NativeImage, scale: int, *, tile: int = 0,
                  overlap: int = 32, planner: tiling.TilePlanner | None = None,
                  progress: Callable[[int], Any] | None = None,
                  on_plan: Callable[[tiling.TilePlan], Any] | None = None) -> Upscaled:
  """Super-resolves a decoded image, keeping its greyscale, alpha and bit depth.

  The one computation behind `upscale_file` and the web page (`dssr_jax.app`), so that both give
  the same samples. With a `planner` (and tile 0) the tile comes from its memory budget (the
  planner's overlap then applies) and is passed to `on_plan` before the work starts; otherwise
  `tile` (0: the whole image) and `overlap`.

  Raises:
    tiling.MemoryBudgetError: the image cannot fit the budget.
  """
  plan = None
  if planner is not None and not tile:
    plan = planner.plan(img.rgb[None].shape)
    tile, overlap = plan.tile, plan.overlap
    if on_plan is not None:
      on_plan(plan)
  out = tiling.tiled_apply(sr_fn, img.rgb[None], scale, tile, overlap, progress)
  alpha = None if img.alpha is None else upscale_alpha(img.alpha, scale)
  return Upscaled(samples=image_files.to_samples(out['sr'][0], alpha, img.grey, img.bits), out=out,
                  plan=plan)


def output_path(out_dir: os.PathLike | str, src: os.PathLike | str, scale: int) -> epath.Path:
  """Where an upscaled `src` goes: OUT/<stem>_x<scale>.png (.tif for a TIFF, to keep its bits)."""
  src = epath.Path(src)
  tiff = src.suffix.lower() in image_files.TIFF_EXTENSIONS
  return epath.Path(out_dir) / f'{src.stem}_x{scale}{".tif" if tiff else ".png"}'


def upscale_file(sr_fn: SRFn, src: os.PathLike | str, dst: os.PathLike | str, scale: int, *,
                 tile: int = 0, overlap: int = 32, planner: tiling.TilePlanner | None = None,
                 save_details: bool = False, progress: Callable[[int], Any] | None = None,
                 on_plan: Callable[[tiling.TilePlan], Any] | None = None
                 ) -> tiling.TilePlan | None:
  """Super-resolves the image file `src` into `dst` (`upscale_image` between read and write).

  With `save_details` (and an sr_fn that returns 'details') also writes the per-step detail maps
  beside dst: `<stem>_details.npy` (float32 [T, H, W, 3]) and `<stem>_detail_t<t>.png` (0.5 + d).
  Returns the tile plan (None without a planner).

  Raises:
    ValueError: src is not a readable image (tiling.MemoryBudgetError: it cannot fit the budget).
  """
  up = upscale_image(sr_fn, image_files.read_native(src), scale, tile=tile, overlap=overlap,
                     planner=planner, progress=progress, on_plan=on_plan)
  image_files.write_native(dst, up.samples)
  if save_details and 'details' in up.out:
    stem = os.path.splitext(str(dst))[0]
    details = up.out['details'][:, 0].astype(np.float32)
    image_files.atomic_write(f'{stem}_details.npy', lambda p: np.save(p, details))
    for t, d in enumerate(details, start=1):
      image_files.write_png(f'{stem}_detail_t{t}.png',
                            image_files.to_uint8(image_files.detail_image(d)))
  return up.plan
