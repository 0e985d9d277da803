"""Scoring a network, bicubic or SR images made elsewhere on the benchmark protocols.

`evaluate` runs one method over datasets x scales under one of `SETTINGS` -- Gaussian8, DASR's
fixed kernel widths, DIV2KRK (docs/design.md section 4) or paired LR/HR folders
(`testsets.paired`) --, on full images, and returns the report `eval.py` prints and writes:

  {"results": [{"dataset", "scale", "setting", "kernel_width", "method", "psnr", "ssim",
                "psnr_rgb", "paper": {"psnr", "ssim", "table"} | null,
                "per_step_psnr", "per_step_mean_psnr", "per_step_detail_l1",
                "per_sigma_detail_l1": {"<sigma>": [...]},
                "images": [{"name", "lr_stem", "sigma", "psnr", "ssim", "psnr_rgb",
                            "detail_l1", ...}], ...}],
   "run": {...how it was produced...}}

One result per dataset x scale, and per kernel width for `kernel_width`. psnr and ssim are on Y
(docs/design.md section 4.3); psnr_rgb is the PSNR over the three channels of the same uint8
images with the same border crop (the authors' test script prints both). `paper` is the
published value of the same row (`paper.lookup`). With `save_images`, every SR output is written
as `save_images/<dataset>/x<scale>/<lr_stem>.png`; `method='images'` reads SR images from that
layout instead of running anything.

Per-step numbers (paper Table IV / Fig. 8): `per_step_psnr[t-1]` is the Y-PSNR of the image the
network outputs at step t (sr_t, "I_SR^t" in the paper). The released network's final output is
the mean of the T step outputs, so we also give `per_step_mean_psnr[t-1]`, the PSNR of the mean of
the first t step outputs: exactly what the same weights return when run with T = t (the recurrence
is causal), i.e. the "fewer steps at test time" reading. Each is averaged over images like psnr.
`per_step_detail_l1[t-1]` (Fig. 9) is the mean |d_t - (HR - bic(LR))| of step t's detail map,
the distance the training loss's detail term measures (`losses.detail_label`), on [0, 1]
intensities over the whole image, averaged over images; `per_sigma_detail_l1` keeps it per
kernel width where a row mixes widths (Gaussian8).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

from etils import epath
import numpy as np

from dssr_jax import checkpoint as checkpoint_lib
from dssr_jax import degrade
from dssr_jax import image_files
from dssr_jax import metrics
from dssr_jax import paper
from dssr_jax import progress
from dssr_jax import testsets
from dssr_jax import tiling
from dssr_jax import upscaling

METHODS = ('dssr', 'bicubic', 'images')


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How images are run and scored (the same for every dataset and scale of one report)."""
  setting: str = 'gaussian8'
  grey_as_y: bool = False  # MATLAB's Y for greyscale HR files (docs/design.md section 4.4).
  self_ensemble: bool = False
  tile: int = 0  # 0: full images, as the published protocol does.
  overlap: int = 32
  max_memory_gb: float | None = None  # None: upscaling.default_memory_budget()
  kernel_widths: tuple[float, ...] | None = None  # kernel_width only; None: the paper's per scale.


def bicubic_sr_fn(scale: int) -> tiling.SRFn:
  """The bicubic baseline: MATLAB imresize x`scale` of each LR image (float64, no quantisation)."""
  from dssr_jax import matlab_bicubic  # pylint: disable=g-import-not-at-top

  def fn(lr: np.ndarray) -> dict[str, np.ndarray]:
    return {'sr': np.stack([matlab_bicubic.imresize(np.asarray(x, np.float64), scale) for x in lr])}

  return fn


def dataset_dir(data_dir: os.PathLike | str, dataset: str) -> epath.Path:
  """`data_dir/dataset`, or FileNotFoundError listing what data_dir does hold."""
  root = epath.Path(data_dir)
  if not root.is_dir():
    raise FileNotFoundError(f'--data_dir {str(root)!r} is not a folder')
  d = root / dataset
  if not d.is_dir():
    have = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise FileNotFoundError(f'dataset folder {str(d)!r} does not exist; {str(root)!r} holds '
                            f'{have or "no folders"}')
  return d


# ----------------------------------------------------------------------------------------------
# The settings: one entry each.


@dataclasses.dataclass(frozen=True)
class Item:
  """One record-to-be, from file names and headers only (nothing decoded or degraded)."""
  name: str  # the HR image's stem
  lr_stem: str
  lr_size: tuple[int, int]  # (height, width); the SR output and the cropped HR are scale x it
  source: Any = None  # what the setting's `records` reads it from (paired: the file pair)


def _hr_listing(d: epath.Path, scale: int, stem: Callable[[str], str]) -> list[Item]:
  files = image_files.list_images(d)
  if not files:
    raise FileNotFoundError(f'dataset folder {str(d)!r} holds no image files')
  return [Item(f.stem, stem(f.stem), tuple(n // scale for n in image_files.image_size(f)))
          for f in files]


def _div2krk_listing(d: epath.Path, scale: int) -> list[Item]:
  items = []
  for stem in testsets.div2krk_stems(d):
    lr = d / f'lr_x{scale}' / f'{stem}.png'
    if not lr.is_file():
      raise FileNotFoundError(f'DIV2KRK: {str(lr)!r} does not exist')
    items.append(Item(f'img_{stem[len("im_"):]}', stem, image_files.image_size(lr)))
  return items


@dataclasses.dataclass(frozen=True)
class Setting:
  """A test protocol: what a dataset folder holds and how its records are made.

  Attributes:
    scales: the scales it exists at.
    has_widths: one row per kernel width (`EvalOptions.kernel_widths`).
    listing: (dataset folder, scale, width) -> its `Item`s in record order; the check before any
      work (a missing or empty folder, a paired set whose files do not pair or fit).
    records: (dataset folder, scale, width, listing, cache_dir) -> the records, lazily.
  """
  scales: tuple[int, ...]
  has_widths: bool
  listing: Callable[[epath.Path, int, float | None], list[Item]]
  records: Callable[[epath.Path, int, float | None, list[Item], str | None],
                    Iterable[testsets.Record]]


SETTINGS: dict[str, Setting] = {
    'gaussian8': Setting(
        scales=(2, 3, 4), has_widths=False,
        listing=lambda d, s, _: [
            dataclasses.replace(i, lr_stem=testsets.gaussian8_stem(i.name, sigma))
            for i in _hr_listing(d, s, str) for sigma in degrade.gaussian8_sigmas(s)],
        records=lambda d, s, _, __, cache: testsets.gaussian8(d, s, cache_dir=cache)),
    'kernel_width': Setting(
        scales=(2, 3, 4), has_widths=True,
        listing=lambda d, s, w: _hr_listing(d, s, lambda n: testsets.kernel_width_stem(n, w)),
        records=lambda d, s, w, _, __: testsets.kernel_width(d, s, w)),
    'div2krk': Setting(
        scales=(2, 4), has_widths=False,
        listing=lambda d, s, _: _div2krk_listing(d, s),
        records=lambda d, s, _, __, ___: testsets.div2krk(d, s)),
    'paired': Setting(
        scales=(2, 3, 4), has_widths=False,
        listing=lambda d, s, _: [Item(f[1].stem, f[1].stem, f[2], source=f)
                                 for f in testsets.paired_files(d, s)],
        # The listing read every header already: the records reuse it.
        records=lambda d, s, _, items, __: testsets.paired(d, s, [i.source for i in items])),
}


def get_setting(name: str) -> Setting:
  if name not in SETTINGS:
    raise ValueError(f'--setting must be one of {", ".join(SETTINGS)}, got {name!r}')
  return SETTINGS[name]


def widths_of(options: EvalOptions, scale: int) -> tuple[float | None, ...]:
  """The kernel widths that make one row each at `scale`; (None,) for a setting without widths."""
  if not get_setting(options.setting).has_widths:
    if options.kernel_widths is not None:
      raise ValueError(f'--kernel_widths is for --setting=kernel_width, not {options.setting}')
    return (None,)
  return testsets.kernel_widths(scale, options.kernel_widths)


def image_path(save_dir: os.PathLike | str, dataset: str, scale: int, stem: str) -> epath.Path:
  """Where `save_images` puts one SR output (and `--method=images` reads it)."""
  return epath.Path(save_dir) / dataset / f'x{scale}' / f'{stem}.png'


def check_memory(planner: tiling.TilePlanner, sizes: Sequence[tuple[str, int, int]],
                 label: str) -> str:
  """Says what the largest full-image pass of `sizes` needs; refuses when it does not fit.

  Each image's need is predicted from a few small compiled programs (or measured, when there are
  only one or two sizes); the largest one's is XLA's analysis of its own program (the one that
  then runs). Returns the report line.

  Raises:
    tiling.MemoryBudgetError: it does not fit the budget.
  """
  if not sizes:
    return f'{label}: no images'
  # With few sizes every program will be compiled anyway: measure them all, no small probes.
  exact = len({(h, w) for _, h, w in sizes}) <= 2
  needs = sorted((planner.need_whole((1, h, w, 3), exact=exact), name, h, w)
                 for name, h, w in sizes)
  _, name, h, w = needs[-1]
  need = planner.need_whole((1, h, w, 3))
  line = (f'{label}: full images need up to {tiling.format_bytes(need)} ({name}, {h}x{w} LR; '
          f'the smallest ~{tiling.format_bytes(needs[0][0])}), of a '
          f'{tiling.format_bytes(planner.budget)} memory budget')
  if need > planner.budget:
    raise tiling.MemoryBudgetError(
        f'{line}: the full-image protocol does not fit. Pass --tile=N to score it in tiles '
        '(numbers then differ slightly from the protocol\'s) or raise --max_memory_gb')
  return line


def check_sr_images(sr_dir: os.PathLike | str, listings: Mapping[tuple[str, int, Any], list[Item]],
                    limit: int = 10) -> None:
  """Every SR image `--method=images` will score exists and is scale x its LR in size.

  Raises:
    FileNotFoundError: naming every missing or mis-sized file (the first `limit`, and a count).
  """
  problems = []
  for (dataset, scale, _), items in listings.items():
    for item in items:
      path = image_path(sr_dir, dataset, scale, item.lr_stem)
      want = (item.lr_size[0] * scale, item.lr_size[1] * scale)
      if not path.is_file():
        problems.append(f'{path} (missing)')
        continue
      got = image_files.image_size(path)
      if tuple(got) != want:
        problems.append(f'{path} (is {got[0]}x{got[1]}, the HR is {want[0]}x{want[1]})')
  if problems:
    more = f' and {len(problems) - limit} more' if len(problems) > limit else ''
    raise FileNotFoundError(f'--sr_dir: {len(problems)} SR image(s) missing or of the wrong size: '
                            f'{"; ".join(problems[:limit])}{more}')


# ----------------------------------------------------------------------------------------------
# Scoring.


def detail_l1(details: np.ndarray, lr: np.ndarray, hr: np.ndarray, scale: int) -> list[float]:
  """Per step t, mean |details_t - (HR - bic(LR))| over the whole image (the paper's Fig. 9).

  details: [T, sH, sW, 3]; lr [H, W, 3] and hr [sH, sW, 3] as uint8. On [0, 1] floats, the label
  as the training loss defines it (`losses.detail_label`).
  """
  from dssr_jax import losses  # pylint: disable=g-import-not-at-top
  label = np.asarray(losses.detail_label(np.asarray(lr, np.float32)[None] / 255,
                                         np.asarray(hr, np.float32)[None] / 255, scale))
  return [float(v) for v in np.abs(np.asarray(details, np.float32) - label).mean(axis=(1, 2, 3))]


def score_image(out: Mapping[str, np.ndarray], hr: np.ndarray, scale: int,
                grey_as_y: bool, lr: np.ndarray | None = None) -> dict[str, Any]:
  """Y-PSNR/SSIM of one output ({'sr': [H,W,3]} and optionally 'steps' and 'details':
  [T,H,W,3]) against HR; with `details` and the uint8 `lr`, also `detail_l1` per step."""
  sr = image_files.to_uint8(out['sr'])
  if sr.shape != hr.shape:
    raise ValueError(f'SR output {sr.shape} and HR {hr.shape} differ in size')
  row = {'psnr': metrics.psnr_y(sr, hr, scale, grey_as_y),
         'ssim': metrics.ssim_y(sr, hr, scale, grey_as_y),
         'psnr_rgb': metrics.psnr_rgb(sr, hr, scale)}
  steps = out.get('steps')
  if steps is not None:
    steps = np.asarray(steps, np.float64)
    running = np.cumsum(steps, axis=0) / np.arange(1, len(steps) + 1)[:, None, None, None]
    row['per_step_psnr'] = [metrics.psnr_y(image_files.to_uint8(s), hr, scale, grey_as_y)
                            for s in steps]
    row['per_step_mean_psnr'] = [metrics.psnr_y(image_files.to_uint8(s), hr, scale, grey_as_y)
                                 for s in running]
  if out.get('details') is not None and lr is not None:
    row['detail_l1'] = detail_l1(out['details'], lr, hr, scale)
  return row


def mean(values: Sequence[float]) -> float:
  """The mean of a list of scores (nan for none)."""
  return float(np.mean(values)) if len(values) else float('nan')


# What a caller learns of each scored image: (record, its uint8 LR, the outputs as scored -- 'sr'
# as uint8, 'steps' and 'details' [T, sH, sW, 3] float when the network gives them --, the row).
OnImage = Callable[[Any, np.ndarray, Mapping[str, np.ndarray], Mapping[str, Any]], None]
Outputs = Callable[[Any], Mapping[str, np.ndarray]]


def network_outputs(sr_fn: tiling.SRFn, scale: int, options: EvalOptions) -> Outputs:
  """record -> sr_fn's outputs for its LR, on full images or in `options.tile` tiles."""

  def outputs(rec) -> dict[str, np.ndarray]:
    # float64 for the bicubic baseline's sake; the network casts to float32 (the same values as
    # uint8 / 255 computed in float32, for all 256 levels).
    lr = np.asarray(rec.lr, np.float64)[None] / 255.0
    out = tiling.tiled_apply(sr_fn, lr, scale, options.tile, options.overlap)
    return {k: (v[:, 0] if k in ('steps', 'details') else v[0]) for k, v in out.items()}

  return outputs


def saved_outputs(sr_dir: os.PathLike | str, dataset: str, scale: int) -> Outputs:
  """record -> {'sr'}: the SR image made elsewhere, read from `image_path(sr_dir, ...)`."""
  return lambda rec: {'sr': image_files.read_image(image_path(sr_dir, dataset, scale, rec.lr_stem))
                      / 255.0}


def score_records(records: Iterable[Any], outputs: Outputs, scale: int, options: EvalOptions,
                  on_image: OnImage | None = None) -> dict[str, Any]:
  """Scores `outputs(record)` for every record and averages (the mean over images x kernels).

  `on_image(record, lr, outputs, row)`, if given, sees every scored image (see `OnImage`).
  """
  images = []
  for rec in records:
    out = dict(outputs(rec))
    lr = np.asarray(rec.lr)
    row = {'name': rec.name, 'lr_stem': getattr(rec, 'lr_stem', '') or rec.name,
           'sigma': None if rec.sigma is None else float(rec.sigma)}
    if options.tile and options.tile < max(lr.shape[:2]):
      row['tile'] = options.tile
    row.update(score_image(out, np.asarray(rec.hr), scale,
                           options.grey_as_y and bool(getattr(rec, 'grey', False)), lr))
    images.append(row)
    if on_image is not None:
      on_image(rec, lr, {**out, 'sr': image_files.to_uint8(out['sr'])}, row)
  if not images:
    raise ValueError('no test images were found')
  result = {'psnr': mean([r['psnr'] for r in images]),
            'ssim': mean([r['ssim'] for r in images]),
            'psnr_rgb': mean([r['psnr_rgb'] for r in images]),
            'per_step_psnr': [], 'per_step_mean_psnr': [], 'per_step_detail_l1': []}
  for key, out_key in (('per_step_psnr', 'per_step_psnr'),
                       ('per_step_mean_psnr', 'per_step_mean_psnr'),
                       ('detail_l1', 'per_step_detail_l1')):
    if key in images[0]:
      result[out_key] = [float(v) for v in np.mean([r[key] for r in images], axis=0)]
  if 'detail_l1' in images[0] and images[0]['sigma'] is not None:
    # Gaussian8 rows mix eight widths: Fig. 9 per width needs them apart.
    sigmas = sorted({r['sigma'] for r in images})
    result['per_sigma_detail_l1'] = {
        f'{s:g}': [float(v) for v in np.mean([r['detail_l1'] for r in images if r['sigma'] == s],
                                             axis=0)] for s in sigmas}
  tiled = [r['tile'] for r in images if 'tile' in r]
  result['tile'] = tiled[0] if tiled else None  # the LR tile size, when any image was tiled
  result['num_images'] = len(images)
  result['images'] = images
  return result


def check_scales(scales: Sequence[int], model_scale: int | None, source: str) -> list[int]:
  """The scales to score: a network only at its own scale (all of `scales` must be that)."""
  scales = [int(s) for s in scales] if scales else []
  for s in scales:
    if s not in (2, 3, 4):
      raise ValueError(f'--scales: {s} is not one of 2, 3, 4')
  if model_scale is None:
    if not scales:
      raise ValueError('--scales is required for --method=bicubic and --method=images')
    return scales
  if not scales:
    return [model_scale]
  other = [s for s in scales if s != model_scale]
  if other:
    raise ValueError(f'the checkpoint {source} was trained at x{model_scale}, but --scales asks '
                     f'for x{other[0]}; score it with --scales={model_scale}, or pass a checkpoint '
                     f'trained at x{other[0]}')
  return scales


def paper_value(dataset: str, scale: int, setting: str, method: str,
                kernel_width: float | None) -> dict[str, Any] | None:
  """The paper's number for one row ({psnr, ssim, table}), or None where it has none."""
  if method not in ('dssr', 'bicubic'):  # self-ensemble and others' images: not in the paper
    return None
  cell = paper.lookup(dataset, scale, setting, method, kernel_width)
  return None if cell is None else {'psnr': cell.psnr, 'ssim': cell.ssim, 'table': cell.table}


def evaluate(*, data_dir: str, datasets: Sequence[str], scales: Sequence[int] | None,
             options: EvalOptions, method: str = 'dssr', checkpoint: str | None = None,
             step: int | None = None, model_config: Mapping[str, Any] | None = None,
             cache_dir: str | None = None, show_progress: bool = True,
             save_images: os.PathLike | str | None = None, overwrite: bool = False,
             sr_dir: os.PathLike | str | None = None,
             on_image: Callable[..., None] | None = None) -> dict[str, Any]:
  """Scores `method` on every dataset x scale (x kernel width); returns the report (see the
  module docstring).

  Every input is checked (folders, pairs, scales, the checkpoint, the SR images of
  `method='images'`) and every image to save is checked free before any image is run or written.

  Args:
    data_dir: holds one folder per dataset name (local or a URL such as gs://b/data).
    datasets: dataset folder names, e.g. ['Set5', 'Set14'].
    scales: scales to score; for a network, only its own (default: that one).
    options: protocol and run options.
    method: 'dssr' (needs `checkpoint`), 'bicubic' or 'images' (needs `sr_dir`).
    checkpoint: a workdir, its checkpoints/ folder or one checkpoints/<step> folder.
    step: checkpoint step (default latest).
    model_config: the model config the caller expects (e.g. --config's); its structural options
      must match the checkpoint's ('scale' is checked against `scales` instead).
    cache_dir: where testsets may cache degraded LR images.
    show_progress: a progress bar over images (on a terminal).
    save_images: write every SR output as `save_images/<dataset>/x<scale>/<lr_stem>.png`.
    overwrite: replace existing images there (otherwise an existing one is an error).
    sr_dir: for `method='images'`, SR images made elsewhere in the layout `save_images` writes.
    on_image: called as `on_image(head, record, lr, outputs, row)` for every scored image, after
      `save_images` wrote it: `head` is its result's {'dataset', 'scale', 'setting',
      'kernel_width', 'method', 'grey_as_y'}, the rest as `score_records`' `OnImage`.
  """
  setting = get_setting(options.setting)
  if method not in METHODS:
    raise ValueError(f'--method must be one of {METHODS}, got {method!r}')
  if (method == 'images') != (sr_dir is not None):
    raise ValueError('--method=images scores the SR images of --sr_dir; --sr_dir is for it only')
  if not datasets:
    raise ValueError('--datasets is empty')
  for name in datasets:  # fail before any (slow) model work
    dataset_dir(data_dir, name)
  run: dict[str, Any] = {'method': method, 'setting': options.setting,
                         'grey_as_y': options.grey_as_y, 'self_ensemble': options.self_ensemble,
                         'tile': options.tile, 'overlap': options.overlap if options.tile else None,
                         'metric': 'Y (BT.601) PSNR/SSIM, border crop = scale, SR clipped and '
                                   'rounded to 8 bits; psnr_rgb: PSNR over R, G and B of the '
                                   'same images and crop; per_step_detail_l1: mean |d_t - (HR - '
                                   'bic(LR))| on [0, 1] (Fig. 9)'}
  if method == 'dssr':
    if checkpoint is None:
      raise ValueError('--method=dssr needs a checkpoint: pass --checkpoint')
    requested = None
    if model_config is not None:
      requested = {k: v for k, v in dict(model_config).items() if k != 'scale'}
    loaded = checkpoint_lib.load_model(checkpoint, step, requested)
    scales = check_scales(scales, int(loaded.config['scale']), f'{checkpoint} (step {loaded.step})')
    run.update(checkpoint=str(checkpoint), step=loaded.step, model=loaded.config)
  else:
    if options.self_ensemble:
      raise ValueError(f'--self_ensemble is for the network, not --method={method}')
    scales = check_scales(scales, None, '')
  for scale in scales:
    if scale not in setting.scales:
      raise ValueError(f'--setting={options.setting} exists at scales {setting.scales}, '
                       f'not x{scale}')
  listings = {(name, scale, width): setting.listing(dataset_dir(data_dir, name), scale, width)
              for scale in scales for name in datasets for width in widths_of(options, scale)}
  if method == 'images':
    check_sr_images(sr_dir, listings)
    run['sr_dir'] = str(sr_dir)
  if method == 'dssr':
    fn = upscaling.make_sr_fn(loaded, ('sr', 'steps', 'details'))
    make_fn = lambda _: fn
    if not options.tile:
      # Before any image is scored: what the full images need; a refusal when they cannot fit.
      planner = upscaling.tile_planner(fn, scales[0], max_memory_gb=options.max_memory_gb,
                                       overlap=options.overlap)
      for scale in scales:
        for name in datasets:
          sizes = {(i.name, *i.lr_size) for (n, s, _), items in listings.items()
                   if (n, s) == (name, scale) for i in items}
          logging.info('%s', check_memory(planner, sorted(sizes), f'{name} x{scale}'))
  else:
    make_fn = bicubic_sr_fn
  if save_images is not None:
    image_files.check_free([image_path(save_images, name, scale, i.lr_stem)
                        for (name, scale, _), items in listings.items() for i in items], overwrite)
    run['saved_images'] = str(save_images)
  results = []
  for scale in scales:
    if method == 'images':
      sr_fn = None
    else:
      sr_fn = make_fn(scale)
      if options.self_ensemble:
        sr_fn = upscaling.self_ensemble(sr_fn)
    for name in datasets:
      for width in widths_of(options, scale):
        items = listings[name, scale, width]
        records = setting.records(dataset_dir(data_dir, name), scale, width, items, cache_dir)
        if show_progress:
          desc = f'{name} x{scale}' + ('' if width is None else f' width {width:g}')
          records = progress.progress(records, total=len(items), desc=desc, unit='img')

        shown = method + ('+' if options.self_ensemble else '')
        head = {'dataset': name, 'scale': scale, 'setting': options.setting,
                'kernel_width': width, 'method': shown, 'grey_as_y': options.grey_as_y}

        def each(rec, lr, out, row, name=name, scale=scale, head=head):
          if save_images is not None:
            image_files.write_png(image_path(save_images, name, scale, rec.lr_stem), out['sr'])
          if on_image is not None:
            on_image(head, rec, lr, out, row)

        outputs = (saved_outputs(sr_dir, name, scale) if sr_fn is None
                   else network_outputs(sr_fn, scale, options))
        scored = score_records(records, outputs, scale, options, each)
        results.append({**head, 'paper': paper_value(name, scale, options.setting, shown, width),
                        **scored})
  return {'results': results, 'run': run}


# ----------------------------------------------------------------------------------------------
# Tables and files.


def _fmt(x: float, digits: int) -> str:
  return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def _width(r: Mapping[str, Any]) -> str:
  return '' if r.get('kernel_width') is None else f'{r["kernel_width"]:g}'


def _score(psnr: float | None, ssim: float | None) -> str:
  return _fmt(psnr, 2) if ssim is None else f'{_fmt(psnr, 2)} / {_fmt(ssim, 4)}'


def markdown_table(report: Mapping[str, Any]) -> str:
  """PSNR / SSIM per method x scale (x kernel width) rows and dataset columns, like the paper's
  Tables V-VII; beside each dataset the paper's value where any row has one."""
  results = report['results']
  datasets = list(dict.fromkeys(r['dataset'] for r in results))
  with_paper = {d for d in datasets for r in results if r['dataset'] == d and r.get('paper')}
  settings = len({r['setting'] for r in results}) > 1
  widths = any(r.get('kernel_width') is not None for r in results)
  key = lambda r: (r['method'], r['scale'], _width(r), r['setting'])
  rows = list(dict.fromkeys(key(r) for r in results))
  cell = {(*key(r), r['dataset']): r for r in results}
  head = ['Method', 'Scale'] + (['Width'] if widths else []) + (['Setting'] if settings else [])
  for d in datasets:
    head += [d] + ([f'{d} paper'] if d in with_paper else [])
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for method, scale, width, setting in rows:
    cells = ([method, f'x{scale}'] + ([width] if widths else []) +
             ([setting] if settings else []))
    for d in datasets:
      r = cell.get((method, scale, width, setting, d))
      cells.append('-' if r is None else _score(r['psnr'], r['ssim']))
      if d in with_paper:
        p = r and r.get('paper')
        cells.append(f'{_score(p["psnr"], p["ssim"])} ({p["table"]})' if p else '-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def per_step_table(report: Mapping[str, Any]) -> str:
  """Per step t: the PSNR of the step-t output and of the mean of steps 1..t (Table IV, with the
  paper's values where it has them) and the detail maps' L1 to HR - bic(LR) (Fig. 9); '' for
  methods without steps."""
  results = [r for r in report['results'] if r.get('per_step_psnr')]
  if not results:
    return ''
  steps = max(len(r['per_step_psnr']) for r in results)
  lines = ['| Dataset | Scale | Width | Per step | ' +
           ' | '.join(f't={t}' for t in range(1, steps + 1)) + ' |',
           '|---|---|---|---|' + '---|' * steps]
  for r in results:
    table4 = [paper.lookup(r['dataset'], r['scale'], r['setting'], r['method'], r.get(
        'kernel_width'), experiment=f'step={t}') for t in range(1, steps + 1)]
    rows = [('per_step_psnr', 'PSNR, step t output', 2),
            ('per_step_mean_psnr', 'PSNR, mean of steps 1..t', 2)]
    if any(table4):
      rows.append(('paper', 'PSNR, paper (Table IV)', 2))
    rows.append(('per_step_detail_l1', 'L1 detail to HR - bic (Fig. 9)', 5))
    for key, label, digits in rows:
      values = [c and c.psnr for c in table4] if key == 'paper' else list(r.get(key) or [])
      vals = [_fmt(v, digits) for v in values] + ['-'] * (steps - len(values))
      lines.append(f'| {r["dataset"]} | x{r["scale"]} | {_width(r) or "-"} | {label} | ' +
                   ' | '.join(vals) + ' |')
  return '\n'.join(lines)


def describe(report: Mapping[str, Any]) -> str:
  """One line saying how the numbers were produced."""
  run = report.get('run', {})
  parts = [f'setting {run.get("setting")}', f'method {run.get("method")}']
  if run.get('checkpoint'):
    parts.append(f'checkpoint {run["checkpoint"]} step {run.get("step")}')
  parts.append('greyscale HR scored as grey Y (MATLAB)' if run.get('grey_as_y')
               else 'greyscale HR scored as RGB (authors)')
  if run.get('self_ensemble'):
    parts.append('x8 self-ensemble')
  parts.append(f'tiles {run["tile"]} (overlap {run["overlap"]})' if run.get('tile')
               else 'full images')
  return '; '.join(parts)


def _json_safe(x: Any) -> Any:
  """inf/nan are not JSON: identical images (PSNR inf) are written as null."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, np.generic):
    return _json_safe(x.item())
  return x


def csv_text(report: Mapping[str, Any]) -> str:
  """One row per image and one 'mean' row per dataset x scale x width (name column = '(mean)'),
  the mean rows with the paper's value where it has one."""
  results = report['results']
  steps = max([len(r.get('per_step_psnr') or []) for r in results] + [0])
  cols = {'per_step_psnr': 'psnr_step', 'per_step_mean_psnr': 'psnr_mean_steps1to',
          'detail_l1': 'detail_l1_step'}
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator='\n')
  w.writerow(['dataset', 'scale', 'setting', 'kernel_width', 'method', 'name', 'sigma', 'psnr',
              'ssim', 'psnr_rgb', 'paper_psnr', 'paper_ssim'] +
             [f'{c}{t}' for c in cols.values() for t in range(1, steps + 1)])

  def num(row, key):
    return '' if row.get(key) is None else f'{row[key]:.6f}'

  def vals(row, key):
    v = list(row.get(key) or [])
    return [f'{x:.6f}' if x is not None else '' for x in v] + [''] * (steps - len(v))

  for r in results:
    head = [r['dataset'], r['scale'], r['setting'], _width(r), r['method']]
    for img in r['images']:
      w.writerow(head + [img['name'], num(img, 'sigma'), num(img, 'psnr'), num(img, 'ssim'),
                         num(img, 'psnr_rgb'), '', ''] + sum((vals(img, k) for k in cols), []))
    p = r.get('paper') or {}
    mean_row = dict(r, detail_l1=r.get('per_step_detail_l1'))
    w.writerow(head + ['(mean)', '', num(r, 'psnr'), num(r, 'ssim'), num(r, 'psnr_rgb'),
                       num(p, 'psnr'), num(p, 'ssim')] + sum((vals(mean_row, k) for k in cols), []))
  return buf.getvalue()


def output_paths(output: os.PathLike | str) -> tuple[epath.Path, epath.Path]:
  """(the JSON path, the CSV beside it); local or a URL."""
  path = epath.Path(output)
  if path.suffix.lower() != '.json':
    raise ValueError(f'--output must name a .json file, got {str(path)!r}')
  return path, path.with_suffix('.csv')


def check_outputs_free(output: os.PathLike | str, overwrite: bool) -> None:
  """Refuses (before any work) to replace earlier results unless `overwrite`."""
  image_files.check_free(output_paths(output), overwrite)


def write_report(report: Mapping[str, Any], output: os.PathLike | str,
                 overwrite: bool = False) -> tuple[epath.Path, epath.Path]:
  """Writes the JSON and the CSV beside it, each whole or not at all (`image_files.write_text`)."""
  check_outputs_free(output, overwrite)
  json_path, csv_path = output_paths(output)
  image_files.write_text(json_path, json.dumps(_json_safe(report), indent=1) + '\n')
  image_files.write_text(csv_path, csv_text(report))
  return json_path, csv_path
