"""Reading and writing images as uint8 RGB, whatever the file holds.

Super-resolution code wants every image as uint8 HxWx3 RGB; files come as greyscale, grey+alpha,
palette, RGBA, 16-bit or 1-bit, in PNG, JPEG, TIFF, WebP, BMP or GIF. `read_image` converts all of
them and reports what the file was, so callers can treat greyscale originals the way a protocol
asks (DESIGN.md section 4). Only numpy and Pillow: the model, eval and infer paths use this module
and must not need tensorflow.
"""

import dataclasses
import os
import pathlib
import tempfile
from typing import Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp', '.bmp', '.gif')

_GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


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


def is_image_file(path: PathLike) -> bool:
  return str(path).lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory: PathLike, recursive: bool = False) -> list:
  """Image files in `directory` (sorted, so every run sees the same order).

  Raises:
    FileNotFoundError: naming the directory when it does not exist.
  """
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f'image folder {str(directory)!r} does not exist')
  pattern = '**/*' if recursive else '*'
  return sorted(p for p in directory.glob(pattern) if p.is_file() and is_image_file(p))


def to_rgb_uint8(im: Image.Image) -> Tuple[np.ndarray, ImageInfo]:
  """Converts a Pillow image to uint8 HxWx3 RGB (alpha dropped, grey replicated, 16-bit scaled)."""
  mode = im.mode
  grey = mode in _GREY_MODES
  had_alpha = mode in ('LA', 'La', 'RGBA', 'RGBa', 'PA') or (
      mode == 'P' and 'transparency' in im.info)
  high = mode.startswith('I') or mode == 'F'
  if mode == 'P':
    # Palette images: grey if the palette itself is grey is not worth guessing; treat as colour.
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

  Args:
    path: the file.
    with_info: also return an `ImageInfo` describing the original.

  Returns:
    uint8 array HxWx3, or (array, ImageInfo) when `with_info`.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a readable image (the message names it).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'image file {str(path)!r} does not exist')
  try:
    with Image.open(path) as im:
      im.load()
      arr, info = to_rgb_uint8(im)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'cannot read image {str(path)!r}: {e}') from e
  if arr.shape[0] < 1 or arr.shape[1] < 1:
    raise ValueError(f'image {str(path)!r} is empty ({arr.shape})')
  return (arr, info) if with_info else arr


def image_size(path: PathLike) -> Tuple[int, int]:
  """(height, width) from the file header only (cheap; no pixel decoding).

  Raises:
    ValueError: the header is not a readable image (the message names the file).
  """
  try:
    with Image.open(path) as im:
      w, h = im.size
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'cannot read image {str(path)!r}: {e}') from e
  return h, w


def write_png(path: PathLike, img: np.ndarray) -> None:
  """Writes a uint8 HxWx3 (or HxW) array as PNG, atomically.

  The image goes to a temporary file in the same folder first and is renamed over `path`, so an
  interrupted write never leaves a truncated file behind nor destroys an existing one.

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
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix='.tmp', dir=path.parent)
  try:
    with os.fdopen(fd, 'wb') as f:
      Image.fromarray(img).save(f, format='PNG')
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
