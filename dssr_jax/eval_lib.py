"""Scoring a network (or bicubic) on the benchmark protocols: tables, JSON and CSV.

`evaluate` runs one method over datasets x scales under Gaussian8, DIV2KRK (docs/design.md
section 4) or on paired LR/HR folders (`testsets.paired`), on full images, and returns the report
`eval.py` prints and writes:

  {"results": [{"dataset", "scale", "setting", "method", "psnr", "ssim", "psnr_rgb",
                "per_step_psnr", "per_step_mean_psnr",
                "images": [{"name", "lr_stem", "sigma", "psnr", "ssim", "psnr_rgb", ...}], ...}],
   "run": {...how it was produced...}}

psnr and ssim are on Y (docs/design.md section 4.3); psnr_rgb is the PSNR over the three channels
of the same uint8 images with the same border crop (the authors' test script prints both). With
`save_images`, every SR output is written as `save_images/<dataset>/x<scale>/<lr_stem>.png`.

Per-step numbers (paper Table IV / Fig. 8): `per_step_psnr[t-1]` is the Y-PSNR of the image the
network outputs at step t (sr_t, "I_SR^t" in the paper). The released network's final output is
the mean of the T step outputs, so we also give `per_step_mean_psnr[t-1]`, the PSNR of the mean of
the first t step outputs: exactly what the same weights return when run with T = t (the recurrence
is causal), i.e. the "fewer steps at test time" reading. Each is averaged over images like psnr.
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
from dssr_jax import cli
from dssr_jax import imageio
from dssr_jax import inference
from dssr_jax import metrics
from dssr_jax import testsets
from dssr_jax import tiling

SETTINGS = ('gaussian8', 'div2krk', 'paired')
METHODS = ('dssr', 'bicubic')
DIV2KRK_SCALES = (2, 4)


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How images are run and scored (the same for every dataset and scale of one report)."""
  setting: str = 'gaussian8'
  grey_as_y: bool = False  # MATLAB's Y for greyscale HR files (docs/design.md section 4.4).
  self_ensemble: bool = False
  tile: int = 0  # 0: full images, as the published protocol does.
  overlap: int = 32
  max_memory_gb: float | None = None  # None: inference.default_memory_budget()


def bicubic_sr_fn(scale: int) -> tiling.SRFn:
  """The bicubic baseline: MATLAB imresize x`scale` of each LR image (float64, no quantisation)."""
  from dssr_jax import imresize  # pylint: disable=g-import-not-at-top

  def fn(lr: np.ndarray) -> dict[str, np.ndarray]:
    return {'sr': np.stack([imresize.imresize(np.asarray(x, np.float64), scale) for x in lr])}

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


def lr_stems(data_dir: os.PathLike | str, dataset: str, scale: int, setting: str) -> list[str]:
  """The `lr_stem` of every record `load_records` will yield, in order, from file names only.

  This is the check before any work: a missing or empty folder, a paired set whose files do not
  pair or fit (`testsets.paired_files`), a scale the setting lacks.
  """
  d = dataset_dir(data_dir, dataset)
  if setting == 'gaussian8':
    if not imageio.list_images(d):
      raise FileNotFoundError(f'dataset folder {str(d)!r} holds no image files')
    return testsets.gaussian8_stems(d, scale)
  if setting == 'div2krk':
    if scale not in DIV2KRK_SCALES:
      raise ValueError(f'DIV2KRK exists at scales {DIV2KRK_SCALES}, not x{scale}')
    return testsets.div2krk_stems(d)
  if setting == 'paired':
    return [lr.stem for _, lr in testsets.paired_files(d, scale)]
  raise ValueError(f'--setting must be one of {SETTINGS}, got {setting!r}')


def load_records(data_dir: os.PathLike | str, dataset: str, scale: int, setting: str,
                 cache_dir: str | None = None) -> Iterable[testsets.Record]:
  """The records of one dataset for `setting` at `scale` (read and degraded lazily)."""
  d = dataset_dir(data_dir, dataset)
  if setting == 'gaussian8':
    return testsets.gaussian8(d, scale, cache_dir=cache_dir)
  if setting == 'div2krk':
    return testsets.div2krk(d, scale)
  if setting == 'paired':
    return testsets.paired(d, scale)
  raise ValueError(f'--setting must be one of {SETTINGS}, got {setting!r}')


def image_path(save_dir: os.PathLike | str, dataset: str, scale: int, stem: str) -> epath.Path:
  """Where `save_images` puts one SR output."""
  return epath.Path(save_dir) / dataset / f'x{scale}' / f'{stem}.png'


def lr_sizes(data_dir: os.PathLike | str, dataset: str, scale: int, setting: str
             ) -> list[tuple[str, int, int]]:
  """(name, LR height, LR width) of every test image, from the files' headers (nothing is
  degraded): Gaussian8 LR is the modcropped HR // scale; DIV2KRK and paired sets give LR files."""
  d = dataset_dir(data_dir, dataset)
  if setting == 'gaussian8':
    return [(f.stem, *(n // scale for n in imageio.image_size(f))) for f in imageio.list_images(d)]
  if setting == 'paired':
    return [(l.stem, *imageio.image_size(l)) for _, l in testsets.paired_files(d, scale)]
  return [(f.stem, *imageio.image_size(f)) for f in imageio.list_images(d / f'lr_x{scale}')]


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


def score_image(out: Mapping[str, np.ndarray], hr: np.ndarray, scale: int,
                grey_as_y: bool) -> dict[str, Any]:
  """Y-PSNR/SSIM of one output ({'sr': [H,W,3]} and optionally 'steps': [T,H,W,3]) against HR."""
  sr = imageio.to_uint8(out['sr'])
  if sr.shape != hr.shape:
    raise ValueError(f'SR output {sr.shape} and HR {hr.shape} differ in size')
  row = {'psnr': metrics.psnr_y(sr, hr, scale, grey_as_y),
         'ssim': metrics.ssim_y(sr, hr, scale, grey_as_y),
         'psnr_rgb': metrics.psnr_rgb(sr, hr, scale)}
  steps = out.get('steps')
  if steps is not None:
    steps = np.asarray(steps, np.float64)
    running = np.cumsum(steps, axis=0) / np.arange(1, len(steps) + 1)[:, None, None, None]
    row['per_step_psnr'] = [metrics.psnr_y(imageio.to_uint8(s), hr, scale, grey_as_y) for s in steps]
    row['per_step_mean_psnr'] = [metrics.psnr_y(imageio.to_uint8(s), hr, scale, grey_as_y)
                                 for s in running]
  return row


def _mean(values: Sequence[float]) -> float:
  return float(np.mean(values)) if values else float('nan')


def score_records(records: Iterable[Any], sr_fn: tiling.SRFn, scale: int, options: EvalOptions,
                  save: Callable[[Any, np.ndarray], None] | None = None) -> dict[str, Any]:
  """Runs sr_fn on every record's LR and averages the scores (the mean over images x kernels).

  `save(record, sr)`, if given, receives each SR output as uint8 (as scored).
  """
  images = []
  for rec in records:
    # float64 for the bicubic baseline's sake; the network casts to float32 (the same values as
    # uint8 / 255 computed in float32, for all 256 levels).
    lr = np.asarray(rec.lr, np.float64)[None] / 255.0
    out = tiling.tiled_apply(sr_fn, lr, scale, options.tile, options.overlap)
    out = {k: (v[:, 0] if k in ('steps', 'details') else v[0]) for k, v in out.items()}
    row = {'name': rec.name, 'lr_stem': getattr(rec, 'lr_stem', '') or rec.name,
           'sigma': None if rec.sigma is None else float(rec.sigma)}
    if options.tile and options.tile < max(lr.shape[1:3]):
      row['tile'] = options.tile
    row.update(score_image(out, np.asarray(rec.hr), scale,
                           options.grey_as_y and bool(getattr(rec, 'grey', False))))
    images.append(row)
    if save is not None:
      save(rec, imageio.to_uint8(out['sr']))
  if not images:
    raise ValueError('no test images were found')
  result = {'psnr': _mean([r['psnr'] for r in images]),
            'ssim': _mean([r['ssim'] for r in images]),
            'psnr_rgb': _mean([r['psnr_rgb'] for r in images]),
            'per_step_psnr': [], 'per_step_mean_psnr': []}
  if 'per_step_psnr' in images[0]:
    for key in ('per_step_psnr', 'per_step_mean_psnr'):
      result[key] = [float(v) for v in np.mean([r[key] for r in images], axis=0)]
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
      raise ValueError('--scales is required for --method=bicubic')
    return scales
  if not scales:
    return [model_scale]
  other = [s for s in scales if s != model_scale]
  if other:
    raise ValueError(f'the checkpoint {source} was trained at x{model_scale}, but --scales asks '
                     f'for x{other[0]}; score it with --scales={model_scale}, or pass a checkpoint '
                     f'trained at x{other[0]}')
  return scales


def evaluate(*, data_dir: str, datasets: Sequence[str], scales: Sequence[int] | None,
             options: EvalOptions, method: str = 'dssr', checkpoint: str | None = None,
             step: int | None = None, model_config: Mapping[str, Any] | None = None,
             cache_dir: str | None = None, show_progress: bool = True,
             save_images: os.PathLike | str | None = None, overwrite: bool = False
             ) -> dict[str, Any]:
  """Scores `method` on every dataset x scale; returns the report (see the module docstring).

  Every input is checked (folders, pairs, scales, the checkpoint) and every image to save is
  checked free before any image is run or written.

  Args:
    data_dir: holds one folder per dataset name (local or a URL such as gs://b/data).
    datasets: dataset folder names, e.g. ['Set5', 'Set14'].
    scales: scales to score; for a network, only its own (default: that one).
    options: protocol and run options.
    method: 'dssr' (needs `checkpoint`) or 'bicubic'.
    checkpoint: a workdir, its checkpoints/ folder or one checkpoints/<step> folder.
    step: checkpoint step (default latest).
    model_config: the model config the caller expects (e.g. --config's); its structural options
      must match the checkpoint's ('scale' is checked against `scales` instead).
    cache_dir: where testsets may cache degraded LR images.
    show_progress: a progress bar over images (on a terminal).
    save_images: write every SR output as `save_images/<dataset>/x<scale>/<lr_stem>.png`.
    overwrite: replace existing images there (otherwise an existing one is an error).
  """
  if options.setting not in SETTINGS:
    raise ValueError(f'--setting must be one of {SETTINGS}, got {options.setting!r}')
  if method not in METHODS:
    raise ValueError(f'--method must be one of {METHODS}, got {method!r}')
  if not datasets:
    raise ValueError('--datasets is empty')
  for name in datasets:  # fail before any (slow) model work
    dataset_dir(data_dir, name)
  run: dict[str, Any] = {'method': method, 'setting': options.setting,
                         'grey_as_y': options.grey_as_y, 'self_ensemble': options.self_ensemble,
                         'tile': options.tile, 'overlap': options.overlap if options.tile else None,
                         'metric': 'Y (BT.601) PSNR/SSIM, border crop = scale, SR clipped and '
                                   'rounded to 8 bits; psnr_rgb: PSNR over R, G and B of the '
                                   'same images and crop'}
  if method == 'bicubic':
    scales = check_scales(scales, None, '')
    make_fn = bicubic_sr_fn
  else:
    if checkpoint is None:
      raise ValueError('--method=dssr needs a checkpoint: pass --workdir or --checkpoint')
    requested = None
    if model_config is not None:
      requested = {k: v for k, v in dict(model_config).items() if k != 'scale'}
    loaded = checkpoint_lib.load_model(checkpoint, step, requested)
    scales = check_scales(scales, int(loaded.config['scale']), f'{checkpoint} (step {loaded.step})')
    fn = inference.make_sr_fn(loaded, ('sr', 'steps'))
    make_fn = lambda _: fn
    run.update(checkpoint=str(checkpoint), step=loaded.step, model=loaded.config)
    if not options.tile:
      # Before any image is scored: what the full images need; a refusal when they cannot fit.
      planner = inference.tile_planner(fn, scales[0], max_memory_gb=options.max_memory_gb,
                                       overlap=options.overlap)
      for scale in scales:
        for name in datasets:
          sizes = lr_sizes(data_dir, name, scale, options.setting)
          logging.info('%s', check_memory(planner, sizes, f'{name} x{scale}'))
  stems = {(name, scale): lr_stems(data_dir, name, scale, options.setting)
           for scale in scales for name in datasets}
  if save_images is not None:
    imageio.check_free([image_path(save_images, name, scale, stem)
                         for (name, scale), names in stems.items() for stem in names], overwrite)
    run['saved_images'] = str(save_images)
  results = []
  for scale in scales:
    sr_fn = make_fn(scale)
    if options.self_ensemble:
      sr_fn = inference.self_ensemble(sr_fn)
    for name in datasets:
      records = load_records(data_dir, name, scale, options.setting, cache_dir)
      if show_progress:
        records = cli.progress(records, total=len(stems[name, scale]), desc=f'{name} x{scale}',
                               unit='img')
      save = None
      if save_images is not None:
        save = (lambda rec, sr, name=name, scale=scale: imageio.write_png(
            image_path(save_images, name, scale, rec.lr_stem), sr))
      scored = score_records(records, sr_fn, scale, options, save)
      results.append({'dataset': name, 'scale': scale, 'setting': options.setting,
                      'method': method + ('+' if options.self_ensemble else ''),
                      'grey_as_y': options.grey_as_y, **scored})
  return {'results': results, 'run': run}


# ----------------------------------------------------------------------------------------------
# Tables and files.


def _fmt(x: float, digits: int) -> str:
  return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def markdown_table(report: Mapping[str, Any]) -> str:
  """PSNR / SSIM per method x scale (rows) and dataset (columns), like the paper's Table V."""
  results = report['results']
  datasets = list(dict.fromkeys(r['dataset'] for r in results))
  rows = list(dict.fromkeys((r['method'], r['scale']) for r in results))
  cell = {(r['method'], r['scale'], r['dataset']): r for r in results}
  lines = ['| Method | Scale | ' + ' | '.join(datasets) + ' |',
           '|---|---|' + '---|' * len(datasets)]
  for method, scale in rows:
    cells = []
    for d in datasets:
      r = cell.get((method, scale, d))
      cells.append('-' if r is None else f'{_fmt(r["psnr"], 2)} / {_fmt(r["ssim"], 4)}')
    lines.append(f'| {method} | x{scale} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def per_step_table(report: Mapping[str, Any]) -> str:
  """PSNR of the step-t output and of the mean of steps 1..t (Table IV), or '' for bicubic."""
  results = [r for r in report['results'] if r.get('per_step_psnr')]
  if not results:
    return ''
  steps = max(len(r['per_step_psnr']) for r in results)
  lines = ['| Dataset | Scale | PSNR of | ' + ' | '.join(f't={t}' for t in range(1, steps + 1)) +
           ' |', '|---|---|---|' + '---|' * steps]
  for r in results:
    for key, label in (('per_step_psnr', 'step t output'),
                       ('per_step_mean_psnr', 'mean of steps 1..t')):
      vals = [_fmt(v, 2) for v in r[key]] + ['-'] * (steps - len(r[key]))
      lines.append(f'| {r["dataset"]} | x{r["scale"]} | {label} | ' + ' | '.join(vals) + ' |')
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
  """One row per image and one 'mean' row per dataset x scale (name column = '(mean)')."""
  results = report['results']
  steps = max([len(r.get('per_step_psnr') or []) for r in results] + [0])
  step_cols = [f'psnr_step{t}' for t in range(1, steps + 1)]
  mean_cols = [f'psnr_mean_steps1to{t}' for t in range(1, steps + 1)]
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator='\n')
  w.writerow(['dataset', 'scale', 'setting', 'method', 'name', 'sigma', 'psnr', 'ssim',
              'psnr_rgb'] + step_cols + mean_cols)

  def num(row, key):
    return '' if row.get(key) is None else f'{row[key]:.6f}'

  def vals(row, key):
    v = list(row.get(key) or [])
    return [f'{x:.6f}' if x is not None else '' for x in v] + [''] * (steps - len(v))

  for r in results:
    head = [r['dataset'], r['scale'], r['setting'], r['method']]
    for img in r['images']:
      sigma = '' if img['sigma'] is None else f'{img["sigma"]:.6f}'
      w.writerow(head + [img['name'], sigma, f'{img["psnr"]:.6f}', f'{img["ssim"]:.6f}',
                         num(img, 'psnr_rgb')] +
                 vals(img, 'per_step_psnr') + vals(img, 'per_step_mean_psnr'))
    w.writerow(head + ['(mean)', '', f'{r["psnr"]:.6f}', f'{r["ssim"]:.6f}', num(r, 'psnr_rgb')] +
               vals(r, 'per_step_psnr') + vals(r, 'per_step_mean_psnr'))
  return buf.getvalue()


def output_paths(output: os.PathLike | str) -> tuple[epath.Path, epath.Path]:
  """(the JSON path, the CSV beside it); local or a URL."""
  path = epath.Path(output)
  if path.suffix.lower() != '.json':
    raise ValueError(f'--output must name a .json file, got {str(path)!r}')
  return path, path.with_suffix('.csv')


def check_outputs_free(output: os.PathLike | str, overwrite: bool) -> None:
  """Refuses (before any work) to replace earlier results unless `overwrite`."""
  imageio.check_free(output_paths(output), overwrite)


def write_report(report: Mapping[str, Any], output: os.PathLike | str,
                 overwrite: bool = False) -> tuple[epath.Path, epath.Path]:
  """Writes the JSON and the CSV beside it, each whole or not at all (`imageio.write_text`)."""
  check_outputs_free(output, overwrite)
  json_path, csv_path = output_paths(output)
  imageio.write_text(json_path, json.dumps(_json_safe(report), indent=1) + '\n')
  imageio.write_text(csv_path, csv_text(report))
  return json_path, csv_path
