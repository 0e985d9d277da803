"""Image files in and out: the one module that reads, writes and converts them.

Two views of a file: `read_image` gives uint8 HxWx3 RGB, what training and the metrics want
(greyscale replicated, alpha dropped, 16-bit scaled to 8; `ImageInfo` says what the file was, so a
protocol can treat greyscale originals its own way, docs/design.md section 4). `read_native`
keeps what inference must give back: greyscale, alpha and 16-bit samples. Writes are atomic, so
an interrupted write never leaves a truncated file nor destroys an existing one: the content is
encoded in memory, then lands in one piece (locally a temporary file renamed into place; in
object storage one upload, which appears whole or not at all).

Every path may also be a URL that etils.epath understands (gs://, s3://, ...; through
tf.io.gfile when TensorFlow is installed). numpy, Pillow and etils only (tensorflow for 16-bit
colour PNGs and URLs, imported only for them).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import re
import struct
import tempfile
import zlib
from typing import BinaryIO, Callable, Sequence, Tuple, Union

from etils import epath
import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp', '.bmp', '.gif')
TIFF_EXTENSIONS = ('.tif', '.tiff')

_GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _reason(e: Exception) -> str:
  """A decoder's error for a user: Pillow's 'cannot identify' names its in-memory buffer."""
  if isinstance(e, UnidentifiedImageError):
    return 'not an image in a format Pillow knows, or a damaged one'
  return str(e)


def to_uint8(x: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] -> uint8: clip, then round (what saving an 8-bit image does)."""
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def detail_image(detail: np.ndarray, gain: float = 1.0) -> np.ndarray:
  """A signed detail map (around 0) as a viewable float image: 0.5 + gain * d, clipped to [0, 1]
  (the paper's Fig. 4 shows them so)."""
  return np.clip(0.5 + gain * np.asarray(detail, np.float32), 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Files.


_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def is_url(path: PathLike) -> bool:
  """True for gs://, s3://, ... paths (never to be passed through pathlib, os or open())."""
  return bool(_URL.match(os.fspath(path)))


def absolute(path: PathLike) -> epath.Path:
  """`path` as an epath.Path: a local one made absolute (`~` expanded), a URL unchanged."""
  path = epath.Path(path)
  return path if is_url(path) else epath.Path(pathlib.Path(path).expanduser().absolute())


def is_image_file(path: PathLike) -> bool:
  return str(path).lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory: PathLike, recursive: bool = False) -> list:
  """Image files in `directory` (sorted, so every run sees the same order).

  Local folders give pathlib.Path objects, URLs epath.Path ones. Object stores have no recursive
  glob: there `recursive` walks the listing.

  Raises:
    FileNotFoundError: naming the directory when it does not exist.
  """
  if is_url(directory):
    directory = epath.Path(directory)
    if not directory.is_dir():
      raise FileNotFoundError(f'image folder {str(directory)!r} does not exist')
    if recursive:
      found = [root / f for root, _, files in directory.walk() for f in files]
    else:  # `is_file` is a request per path: ask only about image names.
      found = [p for p in directory.iterdir() if is_image_file(p) and p.is_file()]
    return sorted(p for p in found if is_image_file(p))
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f'image folder {str(directory)!r} does not exist')
  pattern = '**/*' if recursive else '*'
  return sorted(p for p in directory.glob(pattern) if p.is_file() and is_image_file(p))


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` in one piece, creating its folder.

  Locally a temporary file beside `path` renamed into place, with the mode a plain `open` would
  give it (on any error the temporary file goes). A URL gets one upload of the whole content.
  """
  if is_url(path):
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix=path.suffix, dir=path.parent)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
  """Calls `write(f)` on an in-memory binary file, then `write_bytes(path, its content)`.

  An error inside `write` leaves `path` as it was.
  """
  buf = io.BytesIO()
  write(buf)
  write_bytes(path, buf.getvalue())


def write_text(path: PathLike, text: str) -> None:
  write_bytes(path, text.encode('utf-8'))


def _read(path: PathLike) -> io.BytesIO:
  """The whole file in memory: one request for a URL (decoders read in many small pieces)."""
  return io.BytesIO(epath.Path(path).read_bytes())


# ----------------------------------------------------------------------------------------------
# uint8 RGB.


@dataclasses.dataclass(frozen=True)
class ImageInfo:
  """What a file held before conversion to uint8 RGB.

  Attributes:
    mode: Pillow's mode of the file ('L', 'RGB', 'RGBA', 'I;16', 'P', ...).
    grey: the file was single-channel (optionally with alpha). An RGB file with R=G=B is not grey:
      the protocol decides by the file's channel count, as MATLAB's `size(im, 3) == 1` does.
    high_bit_depth: the file had more than 8 bits per sample; the values were scaled to 8 bits.
    had_alpha: an alpha channel was dropped.
  """
  mode: str
  grey: bool
  high_bit_depth: bool
  had_alpha: bool


def to_rgb_uint8(im: Image.Image) -> Tuple[np.ndarray, ImageInfo]:
  """Converts a Pillow image to uint8 HxWx3 RGB (alpha dropped, grey replicated, 16-bit scaled)."""
  mode = im.mode
  grey = mode in _GREY_MODES
  had_alpha = mode in ('LA', 'La', 'RGBA', 'RGBa', 'PA') or (
      mode == 'P' and 'transparency' in im.info)
  high = mode.startswith('I') or mode == 'F'
  if mode == 'P':
    im = im.convert('RGBA' if had_alpha else 'RGB')
  if mode == '1':
    arr = np.asarray(im, dtype=np.uint8) * 255
  elif high:
    arr = np.asarray(im)
    if mode == 'F':
      arr = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255)
    else:
      # 16-bit samples (I;16*, or 'I' holding 16-bit data): nearest 8-bit level, v * 255 / 65535.
      arr = np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255)
    arr = arr.astype(np.uint8)
  elif mode in ('L', 'LA', 'La'):
    arr = np.asarray(im.getchannel(0), dtype=np.uint8)
  elif mode in ('RGB', 'RGBA', 'RGBa', 'RGBX', 'P'):
    arr = np.asarray(im.convert('RGB') if im.mode != 'RGB' else im, dtype=np.uint8)
  else:  # CMYK, YCbCr, LAB, HSV, ...: Pillow's own conversion.
    arr = np.asarray(im.convert('RGB'), dtype=np.uint8)
  if arr.ndim == 2:
    arr = np.repeat(arr[:, :, None], 3, axis=2)
  arr = np.ascontiguousarray(arr[:, :, :3])
  return arr, ImageInfo(mode=mode, grey=grey, high_bit_depth=high, had_alpha=had_alpha)


def read_image(path: PathLike, with_info: bool = False):
  """Reads any PNG/JPEG/TIFF/WebP/BMP/GIF file as uint8 HxWx3 RGB.

  Greyscale is replicated to three channels, alpha is dropped, 16-bit samples are scaled to the
  nearest 8-bit level (Pillow itself reduces 16-bit *RGB* PNGs to their high byte before we see
  them), palette images are expanded. Multi-frame files give their first frame.

  Returns:
    uint8 array HxWx3, or (array, ImageInfo) when `with_info`.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a readable image (the message names it).
  """
  path = epath.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'image file {str(path)!r} does not exist')
  try:
    with Image.open(_read(path)) as im:
      im.load()
      arr, info = to_rgb_uint8(im)
  except _PIL_ERRORS as e:
    raise ValueError(f'cannot read image {str(path)!r}: {_reason(e)}') from e
  if arr.shape[0] < 1 or arr.shape[1] < 1:
    raise ValueError(f'image {str(path)!r} is empty ({arr.shape})')
  return (arr, info) if with_info else arr


def image_size(path: PathLike) -> Tuple[int, int]:
  """(height, width) from the file header only (no pixel decoding).

  Raises:
    ValueError: the header is not a readable image (the message names the file).
  """
  try:
    with epath.Path(path).open('rb') as f, Image.open(f) as im:
      w, h = im.size
  except _PIL_ERRORS as e:
    raise ValueError(f'cannot read image {str(path)!r}: {_reason(e)}') from e
  return h, w


def png_bytes(img: np.ndarray) -> bytes:
  """A uint8 HxW or HxWx{1,3,4} array encoded as PNG.

  Raises:
    ValueError: `img` is not uint8 HxW or HxWx{1,3,4}.
  """
  img = np.asarray(img)
  if img.dtype != np.uint8:
    raise ValueError(f'write_png: img must be uint8, got {img.dtype}')
  if img.ndim == 3 and img.shape[2] == 1:
    img = img[:, :, 0]
  if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
    raise ValueError(f'write_png: img must be HxW or HxWx3/4, got shape {img.shape}')
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format='PNG')
  return buf.getvalue()


def write_png(path: PathLike, img: np.ndarray) -> None:
  """Writes a uint8 HxW or HxWx{1,3,4} array as PNG, whole or not at all (`write_bytes`)."""
  write_bytes(path, png_bytes(img))


def check_free(paths: Sequence[PathLike], overwrite: bool) -> None:
  """Refuses (before anything is computed or written) to replace a file, or to write two outputs
  under one name.

  One listing per folder, not one request per file.

  Raises:
    ValueError: two of `paths` are the same file.
    FileExistsError: naming the first path that exists, unless `overwrite`.
  """
  seen = set()
  for p in paths:
    if str(p) in seen:
      raise ValueError(f'two outputs would be written to {str(p)!r} (two inputs with one stem?)')
    seen.add(str(p))
  if overwrite:
    return
  listed = {}
  for p in map(epath.Path, paths):
    parent = str(p.parent)
    if parent not in listed:
      d = p.parent
      listed[parent] = {q.name for q in d.iterdir()} if d.is_dir() else set()
    if p.name in listed[parent]:
      raise FileExistsError(f'{str(p)!r} already exists; pass --overwrite to replace it')


# ----------------------------------------------------------------------------------------------
# Native samples: greyscale, alpha and 16 bits kept (inference gives back what it was given).


@dataclasses.dataclass
class NativeImage:
  """An image file's content: colour in [0, 1] for the network, plus what to restore on output."""
  rgb: np.ndarray  # float32 [h, w, 3] in [0, 1]; greyscale replicated to 3 channels.
  alpha: np.ndarray | None  # float32 [h, w] in [0, 1], or None.
  grey: bool  # single-channel colour in the file.
  bits: int  # 8 or 16 bits per sample.
  tiff: bool  # came from a TIFF file (written back as TIFF; everything else becomes PNG).


def _png_header(head: bytes) -> tuple[int, int] | None:
  """(bit depth, colour type) from a PNG's IHDR, or None when the file is not a PNG."""
  if len(head) < 26 or head[:8] != b'\x89PNG\r\n\x1a\n':
    return None
  return head[24], head[25]


def _from_samples(arr: np.ndarray, bits: int, tiff: bool) -> NativeImage:
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


def read_native(path: PathLike) -> NativeImage:
  """Reads a PNG/JPEG/TIFF/WebP/BMP/GIF file keeping greyscale, alpha and 16-bit samples.

  Raises:
    ValueError: naming the file when it cannot be read as an image.
  """
  path = epath.Path(path)
  if not path.is_file():
    raise ValueError(f'{str(path)!r} is not a file')
  try:
    data = _read(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
      import tifffile  # pylint: disable=g-import-not-at-top
      arr = np.asarray(tifffile.imread(data))
      if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'TIFF sample type {arr.dtype} (only 8- and 16-bit integers)')
      return _from_samples(arr, 16 if arr.dtype == np.uint16 else 8, tiff=True)
    header = _png_header(data.getvalue()[:26])
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
      # Pillow reduces 16-bit colour PNGs to 8 bits; tf.io decodes them exactly.
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      arr = tf.io.decode_png(data.getvalue(), channels=0, dtype=tf.uint16).numpy()
      return _from_samples(arr, 16, tiff=False)
    with Image.open(data) as im:
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
    raise ValueError(f'cannot read image {str(path)!r}: {_reason(e)}') from e


def to_samples(rgb: np.ndarray, alpha: np.ndarray | None, grey: bool, bits: int) -> np.ndarray:
  """float [h, w, 3] (+ alpha [h, w]) in [0, 1] -> uint8/uint16 [h, w, c] as the input was."""
  colour = rgb.mean(axis=2, keepdims=True) if grey else rgb
  planes = [colour] if alpha is None else [colour, alpha[:, :, None]]
  x = np.concatenate(planes, axis=2)
  top = 2 ** bits - 1
  return np.round(np.clip(x, 0, 1) * top).astype(np.uint16 if bits == 16 else np.uint8)


def _png16_bytes(arr: np.ndarray) -> bytes:
  """A 16-bit PNG of uint16 [h, w, c] (c = 1..4): Pillow cannot write 16-bit colour PNGs."""
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


def write_native(path: PathLike, samples: np.ndarray) -> None:
  """Writes uint8/uint16 [h, w, c] samples as PNG (TIFF for a .tif/.tiff path), atomically."""
  path = epath.Path(path)
  if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
    raise ValueError(f'write_native: samples must be [h, w, 1..4], got {samples.shape}')
  if path.suffix.lower() in TIFF_EXTENSIONS:
    import tifffile  # pylint: disable=g-import-not-at-top
    c = samples.shape[2]
    kwargs = dict(photometric='rgb' if c >= 3 else 'minisblack')
    if c in (2, 4):
      kwargs['extrasamples'] = ['unassalpha']
    data = samples[:, :, 0] if c == 1 else samples
    atomic_write(path, lambda f: tifffile.imwrite(f, data, **kwargs))
  elif samples.dtype == np.uint16:
    write_bytes(path, _png16_bytes(samples))
  else:
    data = samples[:, :, 0] if samples.shape[2] == 1 else samples
    atomic_write(path, lambda f: Image.fromarray(data).save(f, format='PNG'))
