"""Super-resolve your own images with a DSSR checkpoint: tiling, self-ensemble, the CLI.

  python -m dssr_jax.infer photo.png more_photos/ list.txt --checkpoint=WORKDIR --out=OUT \
      [--tile=256 --overlap=32] [--self_ensemble] [--save_details] [--overwrite]

The library half (`load_model`, `make_sr_fn`, `tiled_apply`, `self_ensemble`) is what `eval_lib`
and the benchmark use too. Everything here imports only jax, flax, numpy and orbax: no tensorflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import tempfile
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dssr_jax import checkpoint as checkpoint_lib

Array = np.ndarray
# fn(lr [B,h,w,C]) -> pytree of arrays whose last three axes are [h*s, w*s, C'].
SRFn = Callable[[Array], Any]

# Model options that change the parameters or the function they compute: a checkpoint is only
# valid with the values it was trained with. The others (dtype, remat, ...) are run-time choices.
STRUCTURAL_KEYS = ('scale', 'channels', 'struct_blocks', 'recon_blocks', 'num_steps', 'modulation',
                   'affine_on', 'paper_text')
RUNTIME_KEYS = ('dtype', 'remat', 'unroll', 'scan_unroll', 'up_impl', 'down_impl',
                'bicubic_dense')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp')
LIST_EXTENSIONS = ('.txt', '.lst')


# ----------------------------------------------------------------------------------------------
# Model.


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A network with its weights; `config` is the full model config it was built from."""
  model: Any
  params: Any
  config: dict[str, Any]
  step: int
  path: str


def merge_model_config(saved: Mapping[str, Any], requested: Mapping[str, Any] | None,
                       *, source: str) -> dict[str, Any]:
  """The config to build: the checkpoint's, with run-time options taken from `requested`.

  Raises ValueError naming every structural option of `requested` that differs from the
  checkpoint (`scale` included: a network only works at the scale it was trained for).
  """
  config = dict(saved)
  if requested is None:
    return config
  diffs = [f'{k}={requested[k]!r} (checkpoint has {saved[k]!r})' for k in STRUCTURAL_KEYS
           if k in requested and k in saved and requested[k] != saved[k]]
  if diffs:
    raise ValueError(f'model options do not match the checkpoint {source}: ' + ', '.join(diffs) +
                     '. Use the config the checkpoint was trained with.')
  for k in RUNTIME_KEYS:
    if k in requested:
      config[k] = requested[k]
  return config


def _check_param_shapes(model, params, config: Mapping[str, Any], source: str) -> None:
  """Raises ValueError when the saved tree is not the tree this config's network expects."""
  h = w = 8
  lr = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  expected = jax.eval_shape(model.init, jax.random.key(0), lr)['params']
  exp = {jax.tree_util.keystr(p): tuple(v.shape)
         for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(p): tuple(np.shape(v))
         for p, v in jax.tree_util.tree_leaves_with_path(params)}
  problems = [f'{k} missing' for k in exp if k not in got]
  problems += [f'{k} unexpected' for k in got if k not in exp]
  problems += [f'{k} has shape {got[k]}, the network expects {exp[k]}'
               for k in exp if k in got and got[k] != exp[k]]
  if problems:
    more = f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''
    raise ValueError(f'the parameters in {source} do not fit the network of its model config '
                     f'{dict(config)}: ' + '; '.join(problems[:5]) + more)


def load_model(path: os.PathLike | str, step: int | None = None,
               requested: Mapping[str, Any] | None = None) -> LoadedModel:
  """Loads a checkpoint (workdir, its checkpoints/ folder or one step folder) and builds DSSR.

  Args:
    path: where the checkpoint is (any form `checkpoint.load_params` accepts).
    step: which step; the latest when None.
    requested: a model config the caller expects (e.g. from --config); structural options must
      match the checkpoint, run-time ones (dtype, remat) override it.
  """
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  params, saved, step = checkpoint_lib.load_params(path, step)
  source = f'{path} (step {step})'
  config = merge_model_config(saved, requested, source=source)
  known = {f.name for f in dataclasses.fields(model_lib.DSSR)} - {'parent', 'name'}
  unknown = sorted(set(config) - known)
  if unknown:
    raise ValueError(f'checkpoint {source} has model options this DSSR does not know: {unknown}')
  model = model_lib.DSSR(**config)
  _check_param_shapes(model, params, config, source)
  return LoadedModel(model=model, params=params, config=config, step=step, path=str(path))


def make_sr_fn(loaded: LoadedModel, outputs: Sequence[str] = ('sr', 'steps', 'details')) -> SRFn:
  """A numpy-in, numpy-out forward pass; one compilation per input shape, reused after that.

  Args:
    loaded: the network and its weights.
    outputs: which of DSSR's outputs to bring back to the host ('sr' alone saves the transfer
      and the host memory of the T step images when they are not needed).

  The weights are an argument of the jitted function, not a closure constant, so compiling does
  not fold 8M parameters into the program.
  """
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  outputs = tuple(outputs)
  apply = jax.jit(lambda p, x: {k: v for k, v in loaded.model.apply({'params': p}, x).items()
                                if k in outputs}, compiler_options=model_lib.compiler_options())
  params = jax.device_put(loaded.params)

  def fn(lr: Array) -> dict[str, Array]:
    out = apply(params, jnp.asarray(lr, jnp.float32))
    return jax.tree_util.tree_map(np.asarray, out)

  return fn


# ----------------------------------------------------------------------------------------------
# x8 self-ensemble.


def dihedral(x: Array, k: int) -> Array:
  """The k-th (0..7) of the 8 flips/transposes of the image axes (-3, -2)."""
  if k & 1:
    x = np.flip(x, axis=-3)
  if k & 2:
    x = np.flip(x, axis=-2)
  if k & 4:
    x = np.swapaxes(x, -3, -2)
  return x


def dihedral_inverse(x: Array, k: int) -> Array:
  """Undoes `dihedral(., k)`."""
  if k & 4:
    x = np.swapaxes(x, -3, -2)
  if k & 2:
    x = np.flip(x, axis=-2)
  if k & 1:
    x = np.flip(x, axis=-3)
  return x


def self_ensemble(fn: SRFn) -> SRFn:
  """EDSR's x8 geometric self-ensemble: mean of fn over the 8 transforms, each transformed back.

  Runs the 8 passes one after another, so memory stays that of one pass; a non-square input
  compiles twice (h x w and w x h).
  """

  def ensembled(lr: Array) -> Any:
    total = None
    for k in range(8):
      out = jax.tree_util.tree_map(lambda y, k=k: dihedral_inverse(np.asarray(y), k),
                                   fn(np.ascontiguousarray(dihedral(lr, k))))
      total = out if total is None else jax.tree_util.tree_map(np.add, total, out)
    return jax.tree_util.tree_map(lambda t: (t / 8).astype(np.float32), total)

  return ensembled


# ----------------------------------------------------------------------------------------------
# Tiling.


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of length min(tile, n) covering [0, n), neighbours sharing >= overlap."""
  if n <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, n - tile, stride))
  return starts + [n - tile]


def blend_window(start: int, length: int, n: int, ramp: int) -> Array:
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


def tiled_apply(fn: SRFn, lr: Array, scale: int, tile: int, overlap: int,
                progress: Callable[[int], Any] | None = None) -> Any:
  """Applies `fn` to overlapping LR tiles and blends the outputs into the full SR result.

  Args:
    fn: maps an LR batch [B, th, tw, C] to a pytree of arrays whose last three axes are
      [th*scale, tw*scale, C'] (e.g. DSSR's {'sr', 'steps', 'details'}). Every tile has the same
      shape (min(tile, h) x min(tile, w)), so a jitted fn compiles once.
    lr: [B, h, w, C] LR images.
    scale: the upscaling factor of fn.
    tile: tile size in LR pixels (0 or >= h and w: one pass over the whole image).
    overlap: LR pixels shared by neighbouring tiles. Each tile's outer 3/8 of it is dropped,
      so the result matches untiled inference to the extent that the network's output no
      longer depends on pixels that far away.
    progress: called with the number of tiles done after each tile (e.g. a tqdm update).

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


# ----------------------------------------------------------------------------------------------
# Image files at their native bit depth, with alpha. (`imageio.read_image` gives the uint8 RGB
# view the metrics want; inference must instead give back what it was given.)


@dataclasses.dataclass
class NativeImage:
  """An image file's content: colour in [0, 1] for the network, plus what to restore on output."""
  rgb: Array  # float32 [h, w, 3] in [0, 1]; greyscale replicated to 3 channels.
  alpha: Array | None  # float32 [h, w] in [0, 1], or None.
  grey: bool  # single-channel colour in the file.
  bits: int  # 8 or 16 bits per sample.
  tiff: bool  # came from a TIFF file (written back as TIFF; everything else becomes PNG).


def _png_header(path: pathlib.Path) -> tuple[int, int] | None:
  """(bit depth, colour type) from a PNG's IHDR, or None when the file is not a PNG."""
  with open(path, 'rb') as f:
    head = f.read(26)
  if len(head) < 26 or head[:8] != b'\x89PNG\r\n\x1a\n':
    return None
  return head[24], head[25]


def _from_samples(arr: Array, bits: int, tiff: bool) -> NativeImage:
  """uint8/uint16 [h, w] or [h, w, 1..4] samples -> NativeImage."""
  if arr.ndim == 2:
    arr = arr[:, :, None]
  if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
    raise ValueError(f'unsupported image layout {arr.shape} (need grey, grey+alpha, RGB or RGBA)')
  x = arr.astype(np.float32) / np.float32(2 ** bits - 1)
  c = arr.shape[2]
  grey = c <= 2
  colour = np.repeat(x[:, :, :1], 3, axis=2) if grey else x[:, :, :3]
  alpha = x[:, :, c - 1] if c in (2, 4) else None
  return NativeImage(rgb=np.ascontiguousarray(colour), alpha=alpha, grey=grey, bits=bits,
                     tiff=tiff)


def read_native(path: os.PathLike | str) -> NativeImage:
  """Reads a PNG/JPEG/TIFF/WebP file keeping greyscale, alpha and 16-bit samples.

  Raises:
    ValueError: naming the file when it cannot be read as an image.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f'{str(path)!r} is not a file')
  try:
    if path.suffix.lower() in ('.tif', '.tiff'):
      import tifffile  # pylint: disable=g-import-not-at-top
      arr = np.asarray(tifffile.imread(path))
      if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'TIFF sample type {arr.dtype} (only 8- and 16-bit integers)')
      return _from_samples(arr, 16 if arr.dtype == np.uint16 else 8, tiff=True)
    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
      # Pillow reduces 16-bit colour PNGs to 8 bits; tf.io decodes them exactly. Imported
      # only here, so the rest of inference needs no tensorflow.
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      arr = tf.io.decode_png(path.read_bytes(), channels=0, dtype=tf.uint16).numpy()
      return _from_samples(arr, 16, tiff=False)
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(path) as im:
      im.load()
      mode = im.mode
      if mode == 'P':
        im = im.convert('RGBA' if 'transparency' in im.info else 'RGB')
      elif mode == '1':
        im = im.convert('L')
      elif mode not in ('L', 'LA', 'RGB', 'RGBA', 'I;16', 'I;16B', 'I;16L', 'I'):
        im = im.convert('RGBA' if 'A' in mode else 'RGB')
      arr = np.asarray(im)
    if mode.startswith('I'):
      if arr.min() < 0 or arr.max() > 65535:
        raise ValueError(f'32-bit integer samples outside 0..65535 (mode {mode})')
      return _from_samples(arr.astype(np.uint16), 16, tiff=False)
    return _from_samples(arr.astype(np.uint8), 8, tiff=False)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read image {str(path)!r}: {e}') from e


def _png16_bytes(arr: Array) -> bytes:
  """A 16-bit PNG of uint16 [h, w, c] (c = 1..4): Pillow cannot write 16-bit colour PNGs."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  h, w, c = arr.shape
  colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
  rows = arr.astype('>u2').reshape(h, w * c)
  raw = np.concatenate([np.zeros((h, 1), np.uint8), rows.view(np.uint8)], axis=1)  # filter 0

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))

  ihdr = struct.pack('>IIBBBBB', w, h, 16, colour_type, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) +
          chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)) + chunk(b'IEND', b''))


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _atomic_write(path: pathlib.Path, write: Callable[[str], None]) -> None:
  """Writes through a temporary file in the same folder, renamed into place when complete."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix=path.suffix, dir=path.parent)
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def to_samples(rgb: Array, alpha: Array | None, grey: bool, bits: int) -> Array:
  """float [h, w, 3] (+ alpha [h, w]) in [0, 1] -> uint8/uint16 [h, w, c] as the input was."""
  colour = rgb.mean(axis=2, keepdims=True) if grey else rgb
  planes = [colour] if alpha is None else [colour, alpha[:, :, None]]
  x = np.concatenate(planes, axis=2)
  top = 2 ** bits - 1
  return np.round(np.clip(x, 0, 1) * top).astype(np.uint16 if bits == 16 else np.uint8)


def write_native(path: os.PathLike | str, samples: Array) -> None:
  """Writes uint8/uint16 [h, w, c] samples as PNG (or TIFF for a .tif/.tiff path), atomically."""
  path = pathlib.Path(path)
  if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
    raise ValueError(f'write_native: samples must be [h, w, 1..4], got {samples.shape}')
  if path.suffix.lower() in ('.tif', '.tiff'):
    import tifffile  # pylint: disable=g-import-not-at-top
    c = samples.shape[2]
    kwargs = dict(photometric='rgb' if c >= 3 else 'minisblack')
    if c in (2, 4):
      kwargs['extrasamples'] = ['unassalpha']
    data = samples[:, :, 0] if c == 1 else samples
    _atomic_write(path, lambda p: tifffile.imwrite(p, data, **kwargs))
  elif samples.dtype == np.uint16:
    data = _png16_bytes(samples)
    _atomic_write(path, lambda p: pathlib.Path(p).write_bytes(data))
  else:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    data = samples[:, :, 0] if samples.shape[2] == 1 else samples
    _atomic_write(path, lambda p: Image.fromarray(data).save(p, format='PNG'))


# ----------------------------------------------------------------------------------------------
# The command.


def upscale_alpha(alpha: Array, scale: int) -> Array:
  """Alpha channel [h, w] upscaled with PyTorch's bicubic (the network only sees colour)."""
  from dssr_jax import resize  # pylint: disable=g-import-not-at-top
  h, w = alpha.shape
  mh = resize.bicubic_matrix(h, h * scale, False, scale)
  mw = resize.bicubic_matrix(w, w * scale, False, scale)
  return np.clip(mh @ alpha.astype(np.float32) @ mw.T, 0, 1)


def collect_inputs(inputs: Sequence[str]) -> tuple[list[pathlib.Path], list[str]]:
  """Expands files, folders (their image files) and lists (.txt/.lst, one path a line).

  Returns (image paths in order, without repeats; error messages for inputs that do not exist).
  """
  from dssr_jax import imageio  # pylint: disable=g-import-not-at-top
  files, errors = [], []
  for item in inputs:
    p = pathlib.Path(item)
    if p.is_dir():
      found = imageio.list_images(p)
      if not found:
        errors.append(f'{item}: folder holds no image files')
      files += found
    elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
      for line in p.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
          q = pathlib.Path(line)
          files.append(q if q.is_absolute() else p.parent / q)
    elif p.exists():
      files.append(p)
    else:
      errors.append(f'{item}: no such file or folder')
  seen, unique = set(), []
  for f in files:
    key = f.resolve()
    if key not in seen:
      seen.add(key)
      unique.append(f)
  return unique, errors


def output_path(out_dir: pathlib.Path, src: pathlib.Path, scale: int, tiff: bool) -> pathlib.Path:
  return out_dir / f'{src.stem}_x{scale}{".tif" if tiff else ".png"}'


def upscale(sr_fn: SRFn, img: NativeImage, scale: int, tile: int = 0, overlap: int = 32,
            progress: Callable[[int], Any] | None = None) -> dict[str, Array]:
  """Runs the network on one image; returns 'sr' [H, W, 3] and, from DSSR, 'details' [T, H, W, 3]."""
  out = tiled_apply(sr_fn, img.rgb[None], scale, tile, overlap, progress)
  result = {'sr': out['sr'][0]}
  if 'details' in out:
    result['details'] = out['details'][:, 0]
  return result


def process_file(sr_fn: SRFn, src: pathlib.Path, dst: pathlib.Path, scale: int, *, tile: int,
                 overlap: int, save_details: bool, overwrite: bool,
                 progress: Callable[[int], Any] | None = None) -> str:
  """Upscales `src` into `dst`; returns a one-line status. Raises ValueError for a bad file."""
  if dst.exists() and not overwrite:
    return f'{src}: skipped, {dst} exists (pass --overwrite to replace it)'
  img = read_native(src)
  out = upscale(sr_fn, img, scale, tile, overlap, progress)
  alpha = None if img.alpha is None else upscale_alpha(img.alpha, scale)
  write_native(dst, to_samples(out['sr'], alpha, img.grey, img.bits))
  if save_details and 'details' in out:
    stem = dst.with_suffix('')
    np.save(f'{stem}_details.npy', out['details'].astype(np.float32))
    for t, d in enumerate(out['details'], start=1):
      # Detail maps are signed residuals around 0: shown as 0.5 + d, as Fig. 4 of the paper does.
      write_native(pathlib.Path(f'{stem}_detail_t{t}.png'),
                   to_samples(0.5 + d, None, grey=False, bits=8))
  return f'{src} -> {dst}'


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m dssr_jax.infer',
      description='Super-resolve images (PNG/JPEG/TIFF/WebP files, folders, or .txt lists of '
                  'paths) with a DSSR checkpoint. Greyscale stays greyscale, alpha is kept '
                  '(upscaled with bicubic), 16-bit input gives 16-bit output.')
  parser.add_argument('inputs', nargs='+', metavar='INPUT')
  parser.add_argument('--checkpoint', required=True,
                      help='workdir, its checkpoints/ folder, or one checkpoints/<step> folder')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--tile', type=int, default=0,
                      help='LR tile size for bounded memory (0: whole image at once)')
  parser.add_argument('--overlap', type=int, default=32, help='LR pixels shared by tiles')
  parser.add_argument('--self_ensemble', action='store_true', help='x8 flip/transpose ensemble')
  parser.add_argument('--save_details', action='store_true',
                      help='also write the per-step detail maps (.npy and 0.5+d PNGs)')
  parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default=None,
                      help='compute dtype (default: the checkpoint\'s)')
  parser.add_argument('--jax_cache_dir', default=os.path.join('~', '.cache', 'dssr_jax', 'xla'),
                      help='JAX persistent compilation cache ("" to disable)')
  args = parser.parse_args(argv)
  if args.tile < 0 or args.overlap < 0:
    parser.error(f'--tile ({args.tile}) and --overlap ({args.overlap}) must be >= 0')
  if args.tile and args.overlap >= args.tile:
    parser.error(f'--overlap ({args.overlap}) must be smaller than --tile ({args.tile})')
  return args


def main(argv: Sequence[str] | None = None) -> int:
  """The command; returns the exit status (1 when any input failed)."""
  import tqdm  # pylint: disable=g-import-not-at-top
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  files, errors = collect_inputs(args.inputs)
  for e in errors:
    print(f'error: {e}', file=sys.stderr)
  if not files:
    print('error: no input images', file=sys.stderr)
    return 1
  if args.jax_cache_dir:
    # Every new image size compiles; the cache makes the next run with that size skip it.
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(args.jax_cache_dir))
  requested = {'dtype': args.dtype} if args.dtype else None
  loaded = load_model(args.checkpoint, args.step, requested)
  scale = int(loaded.config['scale'])
  sr_fn = make_sr_fn(loaded, ('sr', 'details') if args.save_details else ('sr',))
  if args.self_ensemble:
    sr_fn = self_ensemble(sr_fn)
  out_dir = pathlib.Path(args.out)
  targets: dict[pathlib.Path, pathlib.Path] = {}
  failed = len(errors)
  for src in tqdm.tqdm(files, desc='images', unit='img', file=sys.stderr):
    dst = output_path(out_dir, src, scale, src.suffix.lower() in ('.tif', '.tiff'))
    if dst in targets:
      print(f'error: {src}: its output {dst} would replace that of {targets[dst]}; '
            'rename one of them', file=sys.stderr)
      failed += 1
      continue
    targets[dst] = src
    try:
      msg = process_file(sr_fn, src, dst, scale, tile=args.tile, overlap=args.overlap,
                         save_details=args.save_details, overwrite=args.overwrite)
      tqdm.tqdm.write(msg, file=sys.stderr)
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      failed += 1
  print(f'{len(files) + len(errors) - failed} of {len(files) + len(errors)} inputs done, '
        f'{failed} failed; outputs in {out_dir}', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
