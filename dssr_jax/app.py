r"""A web page to upscale photos with a DSSR checkpoint (Gradio).

  python -m dssr_jax.app --checkpoint=WORKDIR [--port=7860] [--max_memory_gb=4]

Upload an image (PNG, JPEG, TIFF, WebP, BMP, GIF; greyscale, alpha and 16-bit kept, as
`python -m dssr_jax.infer` does), optionally tick the x8 self-ensemble, and get: a slider over
bicubic and DSSR, the detail maps of the T recurrent steps, and the upscaled file to download,
byte-identical to what `dssr_jax.infer` writes with the same --max_memory_gb and --overlap (both
call `upscaling.upscale_image` and `image_files.write_native`). Requests wait in one queue, so two
photos never share the memory budget. The command is `dssr_jax.commands.serve`; this module is the
page and the pure steps of one request. Only this module imports gradio.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import runpy
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np
from PIL import Image

from dssr_jax import checkpoint
from dssr_jax import image_files
from dssr_jax import tiling
from dssr_jax import upscaling

# The detail maps show this many LR pixels (at most) from the image's centre, at the network's
# resolution: a whole photo's maps shrunk to a page would show nothing, and a crop costs one
# small pass instead of the whole image's T maps in memory.
DETAIL_CROP = 96
# The slider's images are shrunk to this many pixels on their long side (the browser would
# scale a 48-megapixel image down anyway; sending it would take longer than computing it).
SLIDER_SIDE = 1600


@dataclasses.dataclass(frozen=True)
class Engine:
  """What every request uses, built once at start-up (`make_engine`)."""
  scale: int
  num_steps: int
  sr_fn: upscaling.CompiledSR  # outputs 'sr' only: the program `dssr_jax.infer` runs.
  detail_fn: upscaling.CompiledSR  # outputs 'details', for the centre crop.
  planner: tiling.TilePlanner
  max_pixels: int  # larger inputs are refused before decoding (Pillow's decompression-bomb limit)


def make_engine(loaded: checkpoint.LoadedModel, *, max_memory_gb: float | None = None,
                overlap: int = 32, max_pixels: int | None = None) -> Engine:
  """Compiles the network's programs and checks the memory budget, as `dssr_jax.infer` does.

  Raises:
    ValueError: the budget cannot hold even the smallest tile.
  """
  scale = int(loaded.config['scale'])
  sr_fn = upscaling.make_sr_fn(loaded, ('sr',))
  planner = upscaling.tile_planner(sr_fn, scale, max_memory_gb=max_memory_gb, overlap=overlap)
  planner.check_smallest()
  return Engine(scale=scale, num_steps=int(loaded.model.num_steps), sr_fn=sr_fn,
                detail_fn=upscaling.make_sr_fn(loaded, ('details',)), planner=planner,
                max_pixels=int(max_pixels or Image.MAX_IMAGE_PIXELS))


# ----------------------------------------------------------------------------------------------
# One request, step by step (no gradio here, so each step is testable alone).


def _header_size(path: str) -> tuple[int, int]:
  """(height, width) from the file's header; TIFF through tifffile, which reads the TIFFs that
  Pillow cannot (16-bit colour) as `image_files.read_native` does."""
  if path.lower().endswith(image_files.TIFF_EXTENSIONS):
    import tifffile  # pylint: disable=g-import-not-at-top
    try:
      with tifffile.TiffFile(path) as f:
        return tuple(f.pages[0].shape[:2])
    except tifffile.TiffFileError as e:
      raise ValueError(str(e)) from None
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)  # read_upload checks it
    with Image.open(path) as im:
      return im.size[::-1]


def read_upload(path: str, name: str, max_pixels: int) -> image_files.NativeImage:
  """Decodes an uploaded file, or a ValueError saying what is wrong with it, naming `name`.

  The size is read from the header first, so a small file that decodes to a huge image (a
  decompression bomb) is refused before any pixel is decoded, whatever its format.
  """
  if os.path.getsize(path) == 0:
    raise ValueError(f'{name} is an empty file (0 bytes)')
  try:
    h, w = _header_size(path)
  except Image.UnidentifiedImageError:
    raise ValueError(f'{name} is not an image this page reads (PNG, JPEG, TIFF, WebP, BMP, '
                     'GIF)') from None
  except Image.DecompressionBombError as e:
    raise ValueError(f'{name}: {e}') from None
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f'{name} is a damaged image: {e}') from None
  if h * w > max_pixels:
    raise ValueError(f'{name} is {w}x{h} pixels ({h * w / 1e6:.0f} megapixels), more than the '
                     f'{max_pixels / 1e6:.0f} megapixels this page accepts (a decompression '
                     'bomb?)')
  try:
    return image_files.read_native(path)
  except ValueError as e:
    raise ValueError(str(e).replace(repr(str(path)), name)) from None


def to_display(rgb: np.ndarray, grey: bool) -> np.ndarray:
  """float [h, w, 3] in [0, 1] -> uint8 RGB as an 8-bit file of the input's colour would show."""
  samples = image_files.to_samples(rgb, None, grey, 8)
  return np.repeat(samples, 3, axis=2) if grey else samples


def slider_pair(lr: np.ndarray, sr: np.ndarray, max_side: int = SLIDER_SIDE
                ) -> tuple[np.ndarray, np.ndarray]:
  """(bicubic, DSSR) uint8 RGB at the SR size shrunk to fit max_side: the slider's two images.

  The bicubic image is the LR resized straight to the shown size, so both sides show the same
  grid and neither is resized twice.
  """
  h, w = sr.shape[:2]
  f = min(1.0, max_side / max(h, w))
  size = (max(1, round(w * f)), max(1, round(h * f)))
  bicubic = np.asarray(Image.fromarray(lr).resize(size, Image.Resampling.BICUBIC))
  shown = sr if size == (w, h) else np.asarray(
      Image.fromarray(sr).resize(size, Image.Resampling.LANCZOS))
  return bicubic, shown


def centre_crop(x: np.ndarray, size: int) -> np.ndarray:
  """The centre size x size window of [h, w, C] (smaller sides kept whole)."""
  h, w = x.shape[:2]
  top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
  return x[top:top + size, left:left + size]


def detail_maps(fn: upscaling.SRFn, rgb: np.ndarray) -> list[np.ndarray]:
  """The T steps' detail maps of the centre crop of `rgb`, rendered as `--save_details` does."""
  details = fn(np.ascontiguousarray(centre_crop(rgb, DETAIL_CROP))[None])['details'][:, 0]
  return [image_files.to_uint8(image_files.detail_image(d)) for d in details]


@dataclasses.dataclass(frozen=True)
class Result:
  """What the page shows for one upload."""
  file: str  # the upscaled file, named as dssr_jax.infer names it
  slider: tuple[np.ndarray, np.ndarray]  # bicubic, DSSR
  details: list[np.ndarray]  # T detail maps of the centre crop
  summary: str


def upscale_upload(engine: Engine, path: str, out_dir: str, *, self_ensemble: bool = False,
                   progress: Callable[[int, int], Any] | None = None) -> Result:
  """Runs one upload through the CLI's computation and writes the file to download.

  Args:
    engine: the start-up state.
    path: the uploaded file (its name is kept: `<stem>_x<scale>.png`, .tif for TIFF).
    out_dir: an empty folder for the output.
    self_ensemble: average the 8 flips/transposes (`--self_ensemble`).
    progress: called with (tiles done, tiles) as the work goes on.

  Raises:
    ValueError: a message for the page (not an image, too large, ...).
  """
  start = time.monotonic()
  name = pathlib.Path(path).name
  img = read_upload(path, name, engine.max_pixels)
  sr_fn, detail_fn = engine.sr_fn, engine.detail_fn
  if self_ensemble:
    sr_fn, detail_fn = upscaling.self_ensemble(sr_fn), upscaling.self_ensemble(detail_fn)
  report = progress or (lambda done, total: None)
  plans, done = [], [0]

  def planned(plan: tiling.TilePlan) -> None:
    plans.append(plan)
    report(0, plan.tiles)

  def tick(n: int) -> None:
    done[0] += n
    report(done[0], plans[0].tiles)

  up = upscaling.upscale_image(sr_fn, img, engine.scale, planner=engine.planner,
                               progress=tick, on_plan=planned)
  if done[0] < up.plan.tiles:  # a whole image is one pass, which tiled_apply does not count
    report(up.plan.tiles, up.plan.tiles)
  dst = upscaling.output_path(out_dir, name, engine.scale)
  image_files.write_native(dst, up.samples)
  slider = slider_pair(to_display(img.rgb, img.grey), to_display(up.out['sr'][0], img.grey))
  details = detail_maps(detail_fn, img.rgb)
  h, w = img.rgb.shape[:2]
  mode = ('grey' if img.grey else 'colour') + (' + alpha' if img.alpha is not None else '')
  summary = (f'**{name}**: {w}x{h} -> {w * engine.scale}x{h * engine.scale}, {mode}, '
             f'{img.bits}-bit{", x8 self-ensemble" if self_ensemble else ""}; '
             f'{up.plan.describe()}; {time.monotonic() - start:.1f} s')
  return Result(file=str(dst), slider=slider, details=details, summary=summary)


# ----------------------------------------------------------------------------------------------
# The page.


def build(engine: Engine, work_dir: str):
  """The gr.Blocks page over `engine`; outputs go to fresh folders under `work_dir`.

  One request runs at a time (`queue(default_concurrency_limit=1)`): the memory budget is for
  one image, and two images at once on a CPU would only share its cores.
  """
  import gradio as gr  # pylint: disable=g-import-not-at-top

  def run(file: str | None, ensemble: bool, progress=gr.Progress()):
    # A user's mistake is a message where the result would be, not an exception: the page
    # keeps it in view (a toast goes away) and clears the previous image's results.
    if not file:
      return None, [], None, 'Upload an image first.'
    progress(0, desc='starting')
    try:
      r = upscale_upload(engine, file, tempfile.mkdtemp(dir=work_dir), self_ensemble=ensemble,
                         progress=lambda i, n: progress((i, n), desc='tiles', unit='tiles'))
    except ValueError as e:
      return None, [], None, f'**Cannot upscale this file.** {e}'
    captions = [f'step {t}' for t in range(1, len(r.details) + 1)]
    return r.slider, list(zip(r.details, captions)), r.file, r.summary

  crop = f'{DETAIL_CROP}x{DETAIL_CROP}'
  with gr.Blocks(title='DSSR upscaler', delete_cache=(3600, 3600)) as page:
    gr.Markdown(f'# DSSR x{engine.scale}\nUpload a photo. DSSR upscales it in '
                f'{engine.num_steps} recurrent steps, each adding a detail map.')
    with gr.Row():
      with gr.Column(scale=1):
        upload = gr.File(label='Image (PNG, JPEG, TIFF, WebP, BMP, GIF)', type='filepath',
                         elem_id='upload')
        ensemble = gr.Checkbox(label='x8 self-ensemble (8 times slower, slightly better)',
                               elem_id='ensemble')
        button = gr.Button('Upscale', variant='primary', elem_id='run')
        download = gr.File(label='Upscaled file', interactive=False, elem_id='download')
        summary = gr.Markdown(elem_id='summary')
      with gr.Column(scale=2):
        slider = gr.ImageSlider(label='bicubic | DSSR', format='png', type='numpy',
                                interactive=False, elem_id='slider', max_height=600)
        details = gr.Gallery(label=f'Detail maps of the T steps (centre {crop} LR pixels, '
                             'shown as 0.5 + d)', format='png', columns=engine.num_steps,
                             elem_id='details', allow_preview=False, height='auto')
    button.click(run, [upload, ensemble], [slider, details, download, summary],
                 concurrency_limit=1)
  page.queue(default_concurrency_limit=1)
  return page


if __name__ == '__main__':  # `python -m dssr_jax.app` is the command dssr_jax/commands/serve.py
  runpy.run_module('dssr_jax.commands.serve', run_name='__main__', alter_sys=True)
