"""The paper's published numbers (`paper_results.csv`, one row per table cell) and their lookup.

Every eval report prints the paper's value beside ours where the paper has one; the reproduction
commands (docs/reproduce.md) write each table with the paper's column.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import pathlib

TABLES = ('I', 'II', 'III', 'IV', 'V', 'VI', 'VII')
_CSV = pathlib.Path(__file__).with_name('paper_results.csv')


@dataclasses.dataclass(frozen=True)
class Cell:
  """One published number: Y-PSNR (dB) and, where printed, Y-SSIM."""
  table: str
  experiment: str  # 'main', '<config field>=<value>' (Tables I-III) or 'step=<t>' (Table IV).
  dataset: str
  scale: int
  setting: str  # 'gaussian8', 'kernel_width' or 'div2krk' (eval.py --setting).
  kernel_width: float | None  # Table VI's isotropic Gaussian width; None elsewhere.
  method: str  # 'dssr' or 'bicubic'.
  psnr: float
  ssim: float | None


@functools.lru_cache(maxsize=1)
def cells() -> tuple[Cell, ...]:
  """Every published cell, in the CSV's order."""
  with _CSV.open(newline='') as f:
    rows = csv.DictReader(line for line in f if not line.startswith('#'))
    return tuple(Cell(table=r['table'], experiment=r['experiment'], dataset=r['dataset'],
                      scale=int(r['scale']), setting=r['setting'],
                      kernel_width=float(r['kernel_width']) if r['kernel_width'] else None,
                      method=r['method'], psnr=float(r['psnr']),
                      ssim=float(r['ssim']) if r['ssim'] else None) for r in rows)


def lookup(dataset: str, scale: int, setting: str, method: str = 'dssr',
           kernel_width: float | None = None, experiment: str = 'main') -> Cell | None:
  """The published cell for one row of a report, or None where the paper has none."""
  for c in cells():
    if (c.dataset == dataset and c.scale == scale and c.setting == setting and c.method == method
        and c.experiment == experiment
        and (c.kernel_width is None) == (kernel_width is None)
        and (kernel_width is None or abs(c.kernel_width - kernel_width) < 1e-9)):
      return c
  return None


def table(name: str) -> tuple[Cell, ...]:
  """The cells of one table ('I' ... 'VII')."""
  if name not in TABLES:
    raise ValueError(f'the paper has tables {", ".join(TABLES)}; got {name!r}')
  return tuple(c for c in cells() if c.table == name)
