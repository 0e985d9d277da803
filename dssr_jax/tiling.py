"""Running a network over an image in overlapping tiles, blended without seams.

Every tile has the same shape, so a jitted network compiles once. Neighbouring tiles share
`overlap` LR pixels; each drops the outer 3/8 of the overlap (where its output saw the tile's
artificial border) and ramps linearly into its neighbour over the next quarter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

# fn(lr [B, h, w, C]) -> pytree of arrays whose last three axes are [h*s, w*s, C'].
SRFn = Callable[[np.ndarray], Any]


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of length min(tile, n) covering [0, n), neighbours sharing >= overlap."""
  if n <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, n - tile, stride))
  return starts + [n - tile]


def blend_window(start: int, length: int, n: int, ramp: int) -> np.ndarray:
  """1-D blending weights of one tile (in output pixels) of an image of length n.

  On a side shared with a neighbour, the outer 3/8 of the overlap gets weight 0 (those pixels
  are closest to the tile's artificial zero padding, where its output is wrong), the middle
  quarter ramps up linearly, the rest is 1; on an image border the weight stays 1. With
  neighbours sharing at least `ramp` pixels every pixel keeps a positive total weight. A wide
  zero margin matters more than a wide ramp: the error of a tile decays with the distance from
  its edge, and the ramp only has to hide what is left of it.
  """
  w = np.ones(length, np.float32)
  margin = (3 * ramp) // 8
  width = ramp - 2 * margin
  rise = np.concatenate([np.zeros(margin, np.float32),
                         (np.arange(width, dtype=np.float32) + 0.5) / max(width, 1)])
  if start > 0 and ramp > 0:
    w[:len(rise)] = np.minimum(w[:len(rise)], rise)
  if start + length < n and ramp > 0:
    w[length - len(rise):] = np.minimum(w[length - len(rise):], rise[::-1])
  return w


def tile_shape(tile: int | tuple[int, int]) -> tuple[int, int]:
  """(th, tw) of a tile given as one side (a square) or as (th, tw); (0, 0) for no tiling."""
  th, tw = (tile, tile) if np.ndim(tile) == 0 else tuple(tile)
  th, tw = int(th), int(tw)
  if th < 0 or tw < 0 or (th == 0) != (tw == 0):
    raise ValueError(f'tile {tile} must be >= 0 (0: the whole image), both sides positive or 0')
  return th, tw


def tiled_apply(fn: SRFn, lr: np.ndarray, scale: int, tile: int | tuple[int, int], overlap: int,
                progress: Callable[[int], Any] | None = None) -> Any:
  """Applies `fn` to overlapping LR tiles and blends the outputs into the full SR result.

  Args:
    fn: maps an LR batch [B, th, tw, C] to a pytree of arrays whose last three axes are
      [th*scale, tw*scale, C'] (e.g. DSSR's {'sr', 'steps', 'details'}). Every tile has the same
      shape (min(th, h) x min(tw, w)), so a jitted fn compiles once.
    lr: [B, h, w, C] LR images.
    scale: the upscaling factor of fn.
    tile: tile size in LR pixels, a square side or (th, tw) (0, or at least h by w: one pass over
      the whole image).
    overlap: LR pixels shared by neighbouring tiles.
    progress: called with the number of tiles done after each tile.

  Returns:
    fn's pytree for the whole image, numpy (float32, or float64 where fn gives float64).
  """
  lr = np.asarray(lr)
  if lr.ndim != 4:
    raise ValueError(f'tiled_apply: lr must be [B, h, w, C], got shape {lr.shape}')
  if overlap < 0:
    raise ValueError(f'overlap ({overlap}) must be >= 0')
  _, h, w, _ = lr.shape
  th, tw = tile_shape(tile)
  if th == 0 or (th >= h and tw >= w):
    return jax.tree_util.tree_map(np.asarray, fn(lr))
  # Only an axis that is really cut needs room for the overlap.
  if (th < h and overlap >= th) or (tw < w and overlap >= tw):
    raise ValueError(f'overlap ({overlap}) must be smaller than tile ({tile})')
  th, tw = min(th, h), min(tw, w)
  ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
  ramp = overlap * scale
  acc, wsum, treedef = None, None, None
  for y0 in ys:
    wy = blend_window(y0 * scale, th * scale, h * scale, ramp)
    for x0 in xs:
      wx = blend_window(x0 * scale, tw * scale, w * scale, ramp)
      weight = wy[:, None, None] * wx[None, :, None]
      leaves, td = jax.tree_util.tree_flatten(fn(lr[:, y0:y0 + th, x0:x0 + tw]))
      if acc is None:
        treedef = td
        acc = [np.zeros(l.shape[:-3] + (h * scale, w * scale, l.shape[-1]),
                        np.promote_types(np.asarray(l).dtype, np.float32)) for l in leaves]
        wsum = np.zeros((h * scale, w * scale, 1), np.float32)
      sy = slice(y0 * scale, (y0 + th) * scale)
      sx = slice(x0 * scale, (x0 + tw) * scale)
      for a, l in zip(acc, leaves):
        l = np.asarray(l)
        if l.shape[-3:-1] != (th * scale, tw * scale):
          raise ValueError(f'tiled_apply: fn returned spatial shape {l.shape[-3:-1]} for a '
                           f'{th}x{tw} tile, expected {(th * scale, tw * scale)} at scale {scale}')
        a[..., sy, sx, :] += weight * l
      wsum[sy, sx] += weight
      if progress is not None:
        progress(1)
  return jax.tree_util.tree_unflatten(treedef, [a / wsum for a in acc])


# ----------------------------------------------------------------------------------------------
# Choosing the tile from a memory budget.

GB = 10**9


def format_bytes(n: float) -> str:
  return f'{n / GB:.2f} GB' if n >= GB / 10 else f'{n / 1e6:.1f} MB'


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
  """XLA's memory analysis of one compiled program, in bytes (`compiled.memory_analysis()`)."""
  temp: int
  argument: int
  output: int

  @property
  def total(self) -> int:
    return self.temp + self.argument + self.output


# (B, h, w, C) -> XLA's memory analysis of the program compiled for an input of that shape.
MeasureFn = Callable[[tuple[int, ...]], ProgramMemory]


@dataclasses.dataclass(frozen=True)
class TilePlan:
  """How one image runs: whole (tile 0) or in tiles, and the memory that needs.

  Attributes:
    tile: the LR tile (th, tw) for `tiled_apply`; 0 for the whole image in one pass.
    overlap: LR pixels shared by neighbouring tiles.
    need: bytes of the chosen pass: the compiled program's (temp + argument + output, XLA's
      analysis of the program that runs) plus the full-size host buffers when they share the
      budget (CPU).
    whole: bytes a whole-image pass needs (measured, or predicted from the measured programs).
    whole_exact: whether `whole` was measured on the whole image's own program.
    budget: the budget in bytes.
    tiles: number of tiles (1 when whole).
    grid: (rows, columns) of tiles.
    computed: the LR pixels the network computes (tiles * th * tw), over the image's pixels.
  """
  tile: int | tuple[int, int]
  overlap: int
  need: int
  whole: int
  whole_exact: bool
  budget: int
  tiles: int
  grid: tuple[int, int] = (1, 1)
  computed: float = 1.0

  def describe(self) -> str:
    whole = ('' if self.whole_exact else '~') + format_bytes(self.whole)
    budget = format_bytes(self.budget)
    if not self.tile:
      return f'whole image: needs {whole} of the {budget} memory budget'
    (rows, cols), (th, tw) = self.grid, tile_shape(self.tile)
    return (f'{rows}x{cols} tiles of {th}x{tw} LR pixels (overlap {self.overlap}, '
            f'{self.computed:.2f}x the image\'s pixels): the whole image would need {whole}, '
            f'more than the {budget} memory budget; tiled it needs {format_bytes(self.need)}')


def axis_tiles(n: int, min_tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
  """(count, length) of the tilings of an axis of length n, from one tile to the most.

  For each count k, the shortest length that covers n in k tiles sharing >= overlap, ceil((n +
  (k - 1) * overlap) / k), rounded up to a multiple of `multiple` (so that images of similar
  sizes share compiled programs), no shorter than `min_tile`; count is then the number of tiles
  `tile_starts` lays at that length (rounding up may save one).
  """
  found = {n: 1}
  for k in range(2, n + 1):
    t = -(-(n + (k - 1) * overlap) // k)
    t = max(min_tile, -(-t // multiple) * multiple)
    if t >= n:
      continue
    found.setdefault(t, len(tile_starts(n, t, overlap)))
    if t == min_tile:
      break
  return sorted((k, t) for t, k in found.items())


class MemoryBudgetError(ValueError):
  """The budget cannot hold what was asked (the message gives both numbers)."""


class TilePlanner:
  """Chooses, per image, the grid of equal tiles that computes the fewest pixels within a budget.

  A tiled image computes its overlaps twice, so the planner does not simply take the largest
  square that fits: it lays every grid of rows x columns over the image, each with the smallest
  rectangle (th x tw, every tile the same shape, so one compilation) that covers it with
  neighbours sharing `overlap` pixels, and takes the grid whose tiles add up to the fewest pixels
  among those whose program fits the budget (a 540x960 photo at the paper network's width under
  2 GB: 2x2 tiles of 288x496, 1.10x its pixels, where the largest square that fits, 416, takes
  six tiles and 2.0x).

  The numbers are XLA's own memory analysis of the compiled programs (`measure`). Compiling is
  slow, so the planner compiles as few programs as it can: the memory of a convolutional network
  grows linearly with its input's pixels, so a line bytes = a + b * pixels is fitted (least
  squares) through every program measured so far, and only the size the line picks is compiled,
  to check it (that program is also the one that then runs, so the check costs nothing extra).

  On CPU the program shares the host RAM with the full-size buffers around it (the input, the
  fetched output and, when tiled, the blending accumulators); `host_shares_budget` counts them.
  """

  def __init__(self, measure: MeasureFn, budget: int, *, scale: int, overlap: int = 32,
               multiple: int = 16, host_shares_budget: bool = True):
    if budget <= 0:
      raise ValueError(f'the memory budget must be positive, got {budget / GB:g} GB')
    if overlap < 0 or multiple < 1:
      raise ValueError(f'overlap ({overlap}) must be >= 0 and multiple ({multiple}) >= 1')
    self.measure_fn, self.budget, self.scale, self.overlap = measure, int(budget), scale, overlap
    self.multiple, self.host_shares_budget = multiple, host_shares_budget
    # The smallest useful tile: half of it is overlap; a multiple of `multiple`.
    self.min_tile = max(multiple, -(-2 * overlap // multiple) * multiple)
    self.measured: dict[tuple[int, ...], ProgramMemory] = {}

  def measure(self, shape: tuple[int, ...]) -> ProgramMemory:
    shape = tuple(int(s) for s in shape)
    if shape not in self.measured:
      self.measured[shape] = self.measure_fn(shape)
    return self.measured[shape]

  def _fit(self) -> tuple[float, float, float]:
    """(bytes at 0 pixels, bytes per pixel, output bytes per pixel) through the measurements."""
    px = np.array([s[0] * s[1] * s[2] for s in self.measured], np.float64)
    total = np.array([m.total for m in self.measured.values()], np.float64)
    out = float(np.max([m.output / p for m, p in zip(self.measured.values(), px)]))
    if len(set(px)) < 2:  # one size: proportional (over-estimates larger inputs when a > 0)
      return 0.0, float(np.max(total / px)), out
    slope, intercept = np.polyfit(px, total, 1)
    return float(intercept), float(slope), out

  def _host(self, shape: tuple[int, ...], tiled: bool, out_per_px: float) -> int:
    if not self.host_shares_budget:
      return 0
    b, h, w, c = shape
    px = b * h * w
    # The fetched output once; tiled: the accumulators and their normalised copy, and the
    # weight sum (one channel at the output size).
    out = out_per_px * px
    extra = 2 * out + h * w * self.scale**2 * 4 if tiled else out
    return int(px * c * 4 + extra)

  def _predict(self, shape: tuple[int, ...]) -> int:
    a, b, _ = self._fit()
    return int(a + b * shape[0] * shape[1] * shape[2])

  def _need(self, image: tuple[int, ...], run: tuple[int, ...], tiled: bool,
            exact: bool) -> int:
    """Bytes to run `image` as programs of shape `run` (measured when `exact`)."""
    program = self.measure(run).total if exact else self._predict(run)
    return program + self._host(image, tiled, self._fit()[2])

  def _known(self) -> bool:
    """Whether the line has two points (two input sizes measured)."""
    return len({s[0] * s[1] * s[2] for s in self.measured}) >= 2

  def check_smallest(self, batch: int = 1, channels: int = 3) -> int:
    """Bytes of the smallest tile's program; MemoryBudgetError when even that does not fit.

    Run it before any work: it compiles one small program.
    """
    t = self.min_tile
    need = self.measure((batch, t, t, channels)).total
    if need > self.budget:
      raise MemoryBudgetError(
          f'a memory budget of {format_bytes(self.budget)} cannot hold even the smallest tile '
          f'({t}x{t} LR pixels, overlap {self.overlap}), whose compiled program needs '
          f'{format_bytes(need)}; raise --max_memory_gb')
    return need

  def need_whole(self, shape: tuple[int, ...], exact: bool = True) -> int:
    """Bytes a whole-image pass over an input of `shape` [B, h, w, C] needs."""
    shape = tuple(int(s) for s in shape)
    if not exact and not self._known():  # two small programs give the line its two points
      t = 2 * self.min_tile
      self.check_smallest(shape[0], shape[3])
      self.measure((shape[0], t, t, shape[3]))
    return self._need(shape, shape, False, exact)

  def candidates(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """(rows, cols, th, tw) of every tiling of an h x w image, fewest computed pixels first."""
    rows = axis_tiles(h, self.min_tile, self.overlap, self.multiple)
    cols = axis_tiles(w, self.min_tile, self.overlap, self.multiple)
    grids = [(r, c, th, tw) for r, th in rows for c, tw in cols if r * c > 1]
    # Ties (equal pixels): fewer tiles, each with less per-call overhead.
    return sorted(grids, key=lambda g: (g[0] * g[1] * g[2] * g[3], g[0] * g[1]))

  def plan(self, shape: tuple[int, ...]) -> TilePlan:
    """The tiling for an input of `shape` [B, h, w, C]: tile 0 when the whole image fits.

    Raises:
      MemoryBudgetError: not even the smallest tile fits.
    """
    shape = tuple(int(s) for s in shape)
    b, h, w, c = shape
    self.check_smallest(b, c)
    # Measure the whole image's program unless the line says it is clearly too big.
    exact = not self._known() or self._need(shape, shape, False, False) <= 1.05 * self.budget
    whole = self._need(shape, shape, False, exact)
    if whole <= self.budget:
      return TilePlan(0, self.overlap, whole, whole, exact, self.budget, 1)
    grids = self.candidates(h, w)
    while grids:
      run = lambda g: (b, g[2], g[3], c)
      fit = [g for g in grids if self._need(shape, run(g), True, False) <= self.budget]
      # None predicted to fit: measure the smallest tile, in case the line is pessimistic.
      g = fit[0] if fit else min(grids, key=lambda g: g[2] * g[3])
      need = self._need(shape, run(g), True, True)
      if need <= self.budget:
        rows, cols, th, tw = g
        return TilePlan((th, tw), self.overlap, need, whole, exact, self.budget, rows * cols,
                        (rows, cols), rows * cols * th * tw / (h * w))
      # The line was optimistic; it now knows this point, and no tile of as many pixels fits.
      grids = [u for u in grids if u[2] * u[3] < g[2] * g[3]]
    host = self._host(shape, True, self._fit()[2])
    raise MemoryBudgetError(
        f'a memory budget of {format_bytes(self.budget)} cannot hold even the smallest tile '
        f'({self.min_tile}x{self.min_tile} LR pixels) of this {h}x{w} image together with its '
        f'full-size buffers ({format_bytes(host)}); raise --max_memory_gb')
