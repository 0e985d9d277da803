"""Running a network over an image in overlapping tiles, blended without seams.

Every tile has the same shape, so a jitted network compiles once. Neighbouring tiles share
`overlap` LR pixels; each drops the outer 3/8 of the overlap (where its output saw the tile's
artificial border) and ramps linearly into its neighbour over the next quarter.
"""

from __future__ import annotations

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


def tiled_apply(fn: SRFn, lr: np.ndarray, scale: int, tile: int, overlap: int,
                progress: Callable[[int], Any] | None = None) -> Any:
  """Applies `fn` to overlapping LR tiles and blends the outputs into the full SR result.

  Args:
    fn: maps an LR batch [B, th, tw, C] to a pytree of arrays whose last three axes are
      [th*scale, tw*scale, C'] (e.g. DSSR's {'sr', 'steps', 'details'}). Every tile has the same
      shape (min(tile, h) x min(tile, w)), so a jitted fn compiles once.
    lr: [B, h, w, C] LR images.
    scale: the upscaling factor of fn.
    tile: tile size in LR pixels (0 or >= h and w: one pass over the whole image).
    overlap: LR pixels shared by neighbouring tiles.
    progress: called with the number of tiles done after each tile.

  Returns:
    fn's pytree for the whole image, numpy (float32, or float64 where fn gives float64).
  """
  lr = np.asarray(lr)
  if lr.ndim != 4:
    raise ValueError(f'tiled_apply: lr must be [B, h, w, C], got shape {lr.shape}')
  if tile < 0 or overlap < 0:
    raise ValueError(f'tile ({tile}) and overlap ({overlap}) must be >= 0')
  _, h, w, _ = lr.shape
  if tile == 0 or (tile >= h and tile >= w):
    return jax.tree_util.tree_map(np.asarray, fn(lr))
  if overlap >= tile:
    raise ValueError(f'overlap ({overlap}) must be smaller than tile ({tile})')
  th, tw = min(tile, h), min(tile, w)
  ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
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
