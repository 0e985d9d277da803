"""Inference: tiling with blending, the x8 self-ensemble, image round trips, the CLI, bad inputs."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dssr_jax import image_files
from dssr_jax import tiling
from dssr_jax import torch_bicubic
from dssr_jax import upscaling

REPO = pathlib.Path(__file__).resolve().parent.parent


def _infer(*args):
  """`python -m dssr_jax.infer ARGS` from the repo root: (exit status, stderr)."""
  done = subprocess.run([sys.executable, '-m', 'dssr_jax.infer', *map(str, args),
                         '--jax_cache_dir='], cwd=REPO, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  return done.returncode, done.stderr


def _bicubic_fn(scale):
  """PyTorch bicubic x`scale` in numpy: a stand-in network whose tile edges are known exactly."""

  def fn(lr):
    _, h, w, _ = lr.shape
    mh = torch_bicubic.bicubic_matrix(h, h * scale, False, scale)
    mw = torch_bicubic.bicubic_matrix(w, w * scale, False, scale)
    sr = np.einsum('Hh,bhwc,Ww->bHWc', mh, lr, mw)
    return {'sr': sr, 'steps': np.stack([sr, 2 * sr])}

  return fn


@pytest.mark.parametrize('shape,tile,overlap', [((23, 31), 14, 8), ((16, 9), 12, 8),
                                                ((7, 30), 12, 8), ((23, 31), (12, 20), 8),
                                                ((23, 31), (23, 13), 8), ((30, 9), (11, 9), 8)])
def test_tiled_bicubic_equals_untiled(shape, tile, overlap):
  # Bicubic reads 2 LR pixels either side; the zero-weight margin (3/8 of the overlap)
  # hides every output pixel that saw a tile edge, so tiling must be exact, seams included.
  rng = np.random.default_rng(0)
  lr = rng.random((2,) + shape + (3,), dtype=np.float32)
  fn = _bicubic_fn(2)
  calls = []
  full = fn(lr)
  tiled = tiling.tiled_apply(lambda x: calls.append(x.shape) or fn(x), lr, 2, tile, overlap)
  assert len(set(calls)) == 1  # every tile has the same shape: one compilation
  th, tw = (tile, tile) if np.ndim(tile) == 0 else tile
  assert calls[0][1:3] == (min(th, shape[0]), min(tw, shape[1]))
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

  out = tiling.tiled_apply(fn, lr, 2, 16, 8)[..., 0][0, :, 0]
  assert np.all(np.diff(out) >= 0)
  assert np.max(np.diff(out)) <= 8 / (16 - 2 * 6) + 1e-5  # offsets differ by 8, ramp 4 px
  assert out[0] == 0 and out[-1] == 24


def test_tile_starts_cover_the_image():
  for n, tile, overlap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (5, 32, 8), (64, 16, 0)]:
    starts = tiling.tile_starts(n, tile, overlap)
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
    tiling.tiled_apply(_bicubic_fn(2), lr, 2, 8, 8)
  with pytest.raises(ValueError, match='must be >= 0'):
    tiling.tiled_apply(_bicubic_fn(2), lr, 2, -1, 0)
  with pytest.raises(ValueError, match='both sides positive'):
    tiling.tiled_apply(_bicubic_fn(2), lr, 2, (8, 0), 2)
  with pytest.raises(ValueError, match='overlap'):  # the cut axis is too short for the overlap
    tiling.tiled_apply(_bicubic_fn(2), lr, 2, (20, 8), 8)
  with pytest.raises(ValueError, match=r'\[B, h, w, C\]'):
    tiling.tiled_apply(_bicubic_fn(2), lr[0], 2, 8, 2)
  with pytest.raises(ValueError, match='spatial shape'):
    tiling.tiled_apply(lambda x: x, lr, 2, 8, 2)


def test_dihedral_inverse_and_self_ensemble():
  rng = np.random.default_rng(1)
  x = rng.random((1, 5, 7, 3)).astype(np.float32)
  shapes = set()
  for k in range(8):
    shapes.add(upscaling.dihedral(x, k).shape)
    np.testing.assert_array_equal(upscaling.dihedral_inverse(upscaling.dihedral(x, k), k), x)
  assert shapes == {(1, 5, 7, 3), (1, 7, 5, 3)}
  assert len({upscaling.dihedral(x, k).tobytes() for k in range(8)}) == 8

  # Nearest-neighbour upscaling commutes with every flip/transpose: the ensemble changes nothing.
  def nearest(lr):
    return {'sr': np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2)}

  np.testing.assert_allclose(upscaling.self_ensemble(nearest)(x)['sr'], nearest(x)['sr'], atol=1e-7)

  # A fn that ignores its input and returns a fixed pattern: the ensemble is the pattern averaged
  # over the 8 symmetries of the square, computed here by hand for a 2x2 output.
  def pattern(lr):
    p = np.array([[1., 2.], [3., 4.]], np.float32)[None, :, :, None]
    return np.broadcast_to(p, (lr.shape[0], 2, 2, 1))

  sq = np.zeros((1, 1, 1, 1), np.float32)
  # Rows/columns flips and transposes of [[1,2],[3,4]]: corners 1 and 4 map onto each other and
  # onto 2 and 3, so every output pixel is the mean 2.5.
  np.testing.assert_allclose(upscaling.self_ensemble(pattern)(sq), np.full((1, 2, 2, 1), 2.5))


def _d4(x, k, flip):
  """One of the 8 symmetries of the square on axes (-3, -2): mirror the columns (flip), then
  rotate by k quarter turns; `_d4_inverse` undoes it. Written apart from `upscaling.dihedral`."""
  if flip:
    x = x[..., :, ::-1, :]
  return np.rot90(x, k, axes=(-3, -2))


def _d4_inverse(y, k, flip):
  y = np.rot90(y, -k, axes=(-3, -2))
  return y[..., :, ::-1, :] if flip else y


def _lopsided(lr):
  """A stand-in network with no symmetry at all: x2 nearest upscaling, a running sum down the rows,
  a weight that grows along the columns, a squared term; every output reads its own input."""
  up = np.repeat(np.repeat(lr, 2, axis=-3), 2, axis=-2)
  cols = np.arange(up.shape[-2], dtype=np.float64)[:, None]
  sr = np.cumsum(up, axis=-3) * (1 + 0.3 * cols) + up[..., ::-1] ** 2
  return {'sr': sr, 'steps': np.stack([sr, 2 * sr + up])}


def test_self_ensemble_averages_all_eight_transforms():
  """The ensemble is the mean over all 8 symmetries g of g^-1(f(g(x))), for every output (the
  steps too), on an input-dependent f without symmetry, for which 2 or 4 transforms differ."""
  rng = np.random.default_rng(2)
  for shape in ((2, 4, 5, 3), (1, 3, 3, 3)):
    x = rng.random(shape)
    per = [{k: _d4_inverse(v, k_rot, flip) for k, v in _lopsided(_d4(x, k_rot, flip)).items()}
           for flip in (False, True) for k_rot in range(4)]
    want = {k: np.mean([p[k] for p in per], axis=0) for k in ('sr', 'steps')}
    got = upscaling.self_ensemble(_lopsided)(x)
    for k in ('sr', 'steps'):
      assert got[k].shape == want[k].shape
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    # Fewer transforms give another answer here: rotations only, or flips only.
    for subset in (per[:4], per[::4], [per[0], per[2], per[4], per[6]]):
      assert np.abs(np.mean([p['sr'] for p in subset], axis=0) - want['sr']).max() > 0.1


# ------------------------------------------------------------------------------------------------
# With a real network: a tiny randomly initialised one, and the authors' converted fixture weights.

from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

import helpers  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = helpers.TINY


@pytest.fixture(scope='module')
def tiny_fn(tiny_ckpt):
  return upscaling.make_sr_fn(checkpoint.load_model(tiny_ckpt))


def test_fixture_weights_through_checkpoint_reproduce_the_authors_outputs(fixtures_dir, tmp_path):
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  z = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  cfg = {k: int(z[k]) for k in ('scale', 'channels', 'struct_blocks', 'recon_blocks', 'num_steps')}
  sd = {k[len('sd/'):]: z[k] for k in z.files if k.startswith('sd/')}
  checkpoint.save_params(tmp_path, convert.torch_to_flax(sd, model_lib.DSSR(**cfg)), cfg)
  loaded = checkpoint.load_model(tmp_path / 'checkpoints')
  assert loaded.step == 0 and loaded.config == cfg
  out = upscaling.make_sr_fn(loaded)(z['input'].transpose(0, 2, 3, 1))
  np.testing.assert_allclose(out['sr'], z['output'].transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(out['steps'], z['outs'].transpose(0, 1, 3, 4, 2), atol=1e-5)
  np.testing.assert_allclose(out['details'], z['details'].transpose(0, 1, 3, 4, 2), atol=1e-5)


def test_tiled_network_matches_untiled(tiny_fn):
  rng = np.random.default_rng(3)
  lr = rng.random((1, 30, 26, 3), dtype=np.float32)
  full = tiny_fn(lr)
  bic = torch_bicubic.bicubic_matrix(30, 60, False, 2)
  bic = np.einsum('Hh,bhwc,Ww->bHWc', bic, lr, torch_bicubic.bicubic_matrix(26, 52, False, 2))
  assert np.abs(full['sr'] - bic).max() > 0.02  # the network does more than bicubic here
  tiled = tiling.tiled_apply(tiny_fn, lr, 2, 16, 12)  # 4 tiles; each drops 4 px at inner edges
  for key in ('sr', 'steps', 'details'):
    assert tiled[key].shape == full[key].shape
    np.testing.assert_allclose(tiled[key], full[key], atol=1 / 255)
  # A rectangular grid (2x3 tiles of 22x18) agrees as well.
  calls = []
  rect = tiling.tiled_apply(lambda x: calls.append(x.shape) or tiny_fn(x), lr, 2, (22, 18), 12)
  assert set(calls) == {(1, 22, 18, 3)} and len(calls) == 2 * 3
  np.testing.assert_allclose(rect['sr'], full['sr'], atol=1 / 255)
  # Without overlap the seams are visibly wrong: the agreement above is the blending's doing.
  hard = tiling.tiled_apply(tiny_fn, lr, 2, 15, 0)
  assert np.abs(hard['sr'] - full['sr']).max() > 1 / 255


def _write_inputs(d):
  rng = np.random.default_rng(5)
  rgb = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
  Image.fromarray(rgb).save(d / 'rgb.jpg', quality=95)
  Image.fromarray(rgb[:, :, 0]).save(d / 'grey.png')
  rgba = np.concatenate([rgb, np.linspace(0, 255, 11)[None, :, None].repeat(9, 0).astype(np.uint8)],
                        axis=2)
  Image.fromarray(rgba, 'RGBA').save(d / 'rgba.png')
  g16 = (rng.random((9, 11)) * 65535).astype(np.uint16)
  Image.fromarray(g16).save(d / 'grey16.png')  # uint16 -> mode I;16
  import tifffile  # pylint: disable=g-import-not-at-top
  rgb16 = (rng.random((9, 11, 3)) * 65535).astype(np.uint16)
  tifffile.imwrite(d / 'rgb16.tif', rgb16, photometric='rgb')
  (d / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not a png')
  return rgba


def test_cli_keeps_modes_sizes_alpha_and_depth(tiny_ckpt, tmp_path):
  src, out = tmp_path / 'in', tmp_path / 'out'
  src.mkdir()
  rgba = _write_inputs(src)
  status, err = _infer(src, tmp_path / 'missing.png', f'--checkpoint={tiny_ckpt}', f'--out={out}',
                       '--save_details')
  assert status == 1  # two inputs failed ...
  assert 'broken.png' in err and 'missing.png' in err  # ... reported by name ...
  assert "broken.png': not an image in a format Pillow knows" in err and 'BytesIO' not in err
  assert f'5 of 7 inputs upscaled into {out}; 2 failed' in err
  expect = {'rgb_x2.png': 'RGB', 'grey_x2.png': 'L', 'rgba_x2.png': 'RGBA',
            'grey16_x2.png': 'I;16', 'rgb16_x2.tif': 'RGB'}
  for name, mode in expect.items():  # ... and the others were done.
    with Image.open(out / name) as im:
      assert (name, im.mode, im.size) == (name, mode, (22, 18))
  assert not (out / 'broken_x2.png').exists()
  # Alpha: PyTorch-bicubic upscaled input alpha, to 8-bit rounding.
  got_alpha = np.asarray(Image.open(out / 'rgba_x2.png'))[:, :, 3].astype(np.float32)
  up = lambda n: torch_bicubic.bicubic_matrix(n, 2 * n, False, 2)
  want = np.clip(up(9) @ (rgba[:, :, 3] / np.float32(255)) @ up(11).T, 0, 1) * 255
  assert np.abs(got_alpha - want).max() <= 0.5 + 1e-3
  # 16-bit stays 16-bit: more than 256 distinct levels survive.
  g16 = np.asarray(Image.open(out / 'grey16_x2.png'))
  assert g16.dtype in (np.uint16, np.int32) and len(np.unique(g16)) > 256
  rgb16 = image_files.read_native(out / 'rgb16_x2.tif')
  assert rgb16.bits == 16 and not rgb16.grey and rgb16.rgb.shape == (18, 22, 3)
  details = np.load(out / 'rgb_x2_details.npy')
  assert details.shape == (TINY['num_steps'], 18, 22, 3)
  assert (out / 'rgb_x2_detail_t2.png').exists()


def test_cli_never_overwrites_without_flag(tiny_ckpt, tmp_path):
  src, out = tmp_path / 'a.png', tmp_path / 'out'
  Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(src)
  out.mkdir()
  (out / 'a_x2.png').write_bytes(b'precious')
  lst = tmp_path / 'list.txt'
  lst.write_text('# inputs\na.png\n')
  status, err = _infer(lst, f'--checkpoint={tiny_ckpt}', f'--out={out}')
  assert status == 0 and (out / 'a_x2.png').read_bytes() == b'precious'
  # Skipped is not done, and a run that wrote nothing names no output folder.
  assert err.splitlines()[-1] == ('0 of 1 inputs upscaled; 1 skipped (their outputs exist; '
                                  '--overwrite replaces them)')
  status, err = _infer(lst, f'--checkpoint={tiny_ckpt}', f'--out={out}', '--overwrite', '--tile=4',
                       '--overlap=2')
  assert status == 0, err
  with Image.open(out / 'a_x2.png') as im:
    assert im.size == (16, 16)
  assert not [p for p in out.iterdir() if p.name.startswith('.')]  # no temp files left
  umask = os.umask(0)
  os.umask(umask)
  assert (out / 'a_x2.png').stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_cli_rejects_bad_flags(tiny_ckpt, tmp_path):
  status, err = _infer(tmp_path, f'--checkpoint={tiny_ckpt}', f'--out={tmp_path}', '--tile=8',
                       '--overlap=8')
  assert (status, err) == (2, 'error: --overlap (8) must be smaller than --tile (8)\n')
  status, err = _infer(f'--checkpoint={tiny_ckpt}', f'--out={tmp_path}')
  assert status != 0 and 'give one or more input images' in err
  assert 'Traceback' not in err


def test_png16_colour_round_trip(tmp_path):
  rng = np.random.default_rng(7)
  for c in (1, 2, 3, 4):
    x = (rng.random((5, 6, c)) * 65535).astype(np.uint16)
    image_files.write_native(tmp_path / f'c{c}.png', x)
    img = image_files.read_native(tmp_path / f'c{c}.png')
    assert img.bits == 16 and img.grey == (c <= 2) and (img.alpha is not None) == (c in (2, 4))
    back = image_files.to_samples(img.rgb, img.alpha, img.grey, 16)
    np.testing.assert_array_equal(back, x)
