"""Inference: tiling with blending, the x8 self-ensemble, image round trips, the CLI, bad inputs."""

import numpy as np
import pytest

from dssr_jax import infer
from dssr_jax import resize


def _bicubic_fn(scale):
  """PyTorch bicubic x`scale` in numpy: a stand-in network whose tile edges are known exactly."""

  def fn(lr):
    _, h, w, _ = lr.shape
    mh = resize.bicubic_matrix(h, h * scale, False, scale)
    mw = resize.bicubic_matrix(w, w * scale, False, scale)
    sr = np.einsum('Hh,bhwc,Ww->bHWc', mh, lr, mw)
    return {'sr': sr, 'steps': np.stack([sr, 2 * sr])}

  return fn


@pytest.mark.parametrize('shape,tile,overlap', [((23, 31), 14, 8), ((16, 9), 12, 8),
                                                ((7, 30), 12, 8)])
def test_tiled_bicubic_equals_untiled(shape, tile, overlap):
  # Bicubic reads 2 LR pixels either side; the zero-weight margin (a quarter of the overlap)
  # hides every output pixel that saw a tile edge, so tiling must be exact, seams included.
  rng = np.random.default_rng(0)
  lr = rng.random((2,) + shape + (3,), dtype=np.float32)
  fn = _bicubic_fn(2)
  calls = []
  full = fn(lr)
  tiled = infer.tiled_apply(lambda x: calls.append(x.shape) or fn(x), lr, 2, tile, overlap)
  assert len(set(calls)) == 1  # every tile has the same shape: one compilation
  assert tiled['sr'].shape == full['sr'].shape and tiled['steps'].shape == full['steps'].shape
  np.testing.assert_allclose(tiled['sr'], full['sr'], atol=1e-5)
  np.testing.assert_allclose(tiled['steps'], full['steps'], atol=1e-5)


def test_blending_is_smooth_where_tiles_disagree():
  # A fn that returns a constant per tile (its start row): blending must give a monotone ramp
  # between neighbouring constants, never a jump bigger than the ramp step.
  lr = np.zeros((1, 40, 8, 1), np.float32)
  lr[0, :, :, 0] = np.arange(40, dtype=np.float32)[:, None]

  def fn(x):
    return np.full((x.shape[0], x.shape[1] * 2, x.shape[2] * 2, 1), x[0, 0, 0, 0], np.float32)

  out = infer.tiled_apply(fn, lr, 2, 16, 8)[..., 0][0, :, 0]
  assert np.all(np.diff(out) >= 0)
  assert np.max(np.diff(out)) <= 8 / (16 - 2 * 4) + 1e-5  # tile offsets differ by 8
  assert out[0] == 0 and out[-1] == 24


def test_tile_starts_cover_the_image():
  for n, tile, overlap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (5, 32, 8), (64, 16, 0)]:
    starts = infer.tile_starts(n, tile, overlap)
    t = min(tile, n)
    covered = np.zeros(n, bool)
    for s in starts:
      covered[s:s + t] = True
      assert 0 <= s and s + t <= n
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_tiled_rejects_bad_arguments():
  lr = np.zeros((1, 20, 20, 3), np.float32)
  with pytest.raises(ValueError, match='overlap'):
    infer.tiled_apply(_bicubic_fn(2), lr, 2, 8, 8)
  with pytest.raises(ValueError, match='must be >= 0'):
    infer.tiled_apply(_bicubic_fn(2), lr, 2, -1, 0)
  with pytest.raises(ValueError, match=r'\[B, h, w, C\]'):
    infer.tiled_apply(_bicubic_fn(2), lr[0], 2, 8, 2)
  with pytest.raises(ValueError, match='spatial shape'):
    infer.tiled_apply(lambda x: x, lr, 2, 8, 2)


def test_dihedral_inverse_and_self_ensemble():
  rng = np.random.default_rng(1)
  x = rng.random((1, 5, 7, 3)).astype(np.float32)
  shapes = set()
  for k in range(8):
    shapes.add(infer.dihedral(x, k).shape)
    np.testing.assert_array_equal(infer.dihedral_inverse(infer.dihedral(x, k), k), x)
  assert shapes == {(1, 5, 7, 3), (1, 7, 5, 3)}
  assert len({infer.dihedral(x, k).tobytes() for k in range(8)}) == 8

  # Nearest-neighbour upscaling commutes with every flip/transpose: the ensemble changes nothing.
  def nearest(lr):
    return {'sr': np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2)}

  np.testing.assert_allclose(infer.self_ensemble(nearest)(x)['sr'], nearest(x)['sr'], atol=1e-7)

  # A fn that ignores its input and returns a fixed pattern: the ensemble is the pattern averaged
  # over the 8 symmetries of the square, computed here by hand for a 2x2 output.
  def pattern(lr):
    p = np.array([[1., 2.], [3., 4.]], np.float32)[None, :, :, None]
    return np.broadcast_to(p, (lr.shape[0], 2, 2, 1))

  sq = np.zeros((1, 1, 1, 1), np.float32)
  # Rows/columns flips and transposes of [[1,2],[3,4]]: corners 1 and 4 map onto each other and
  # onto 2 and 3, so every output pixel is the mean 2.5.
  np.testing.assert_allclose(infer.self_ensemble(pattern)(sq), np.full((1, 2, 2, 1), 2.5))


def test_merge_model_config():
  saved = {'scale': 2, 'channels': 16, 'num_steps': 2, 'dtype': 'float32', 'remat': False}
  got = infer.merge_model_config(saved, {'channels': 16, 'dtype': 'bfloat16'}, source='ck')
  assert got == dict(saved, dtype='bfloat16')
  with pytest.raises(ValueError, match=r'channels=128 \(checkpoint has 16\).*num_steps=4'):
    infer.merge_model_config(saved, {'channels': 128, 'num_steps': 4}, source='ck')
  with pytest.raises(ValueError, match=r'scale=4 \(checkpoint has 2\)'):
    infer.merge_model_config(saved, {'scale': 4}, source='ck')
