r"""The paper's ablations (Tables I-III, Fig. 8): one row each, 100k iterations, Set5 x2 Gaussian8.

  python train.py --config=configs/ablation.py:alpha=0.5 --workdir=workdirs/ablation/alpha=0.5
  python reproduce.py --table=I --workdir=workdirs/ablation --data_dir=data/benchmark

The text after `:` names the row as `field=value`; without it, the full model at 100k iterations.
Every row is the x2 paper recipe of configs/iso_x2.py (setting 1, batch 8, LR patch 64, T 4,
alpha 1, affine modulation on both sides; validation on Set5 under Gaussian8) with one field
changed, trained for 100k instead of 480k iterations (paper Sec. IV-B). The authors release no
options for the ablations; their one schedule (2e-4, MultiStepLR halving at 80k, 160k, ...) run
to 100k iterations halves the rate once, at 80k, and so does this config.

Rows, with the paper's Y-PSNR on Set5 x2 (Gaussian8; dssr_jax/paper_results.csv):

Table I, weight of the detail loss (`config.train.alpha`):
  alpha=0: 36.89, alpha=0.01: 36.93, alpha=0.1: 36.93, alpha=0.5: 36.95, alpha=1.0: 36.99,
  alpha=5.0: 36.92.
Table II, what replaces the affine transform (`config.model.modulation`, docs/design.md 1.8):
  modulation=none: 36.91, modulation=add: 36.93, modulation=concat: 36.94,
  modulation=channel_attention: 36.97, modulation=spatial_attention: 36.98,
  modulation=affine: 36.99.
Table III, which side is modulated (`config.model.affine_on`), PSNR / SSIM:
  affine_on=lr: 36.92 / 0.9492, affine_on=hr: 36.94 / 0.9517, affine_on=both: 36.99 / 0.9522.
Fig. 8, the number of recurrent steps T (`config.model.num_steps`):
  num_steps=1 ... num_steps=6; the paper prints only the curve (PSNR rises with T, flat from
  4 to 6).

alpha=1.0, modulation=affine, affine_on=both and num_steps=4 are the same model, the full one.
"""

from configs import default

# field -> (config section, the paper's rows as they are written after `:`).
ROWS = {
    'alpha': ('train', ('0', '0.01', '0.1', '0.5', '1.0', '5.0')),
    'modulation': ('model', ('none', 'add', 'concat', 'channel_attention', 'spatial_attention',
                             'affine')),
    'affine_on': ('model', ('lr', 'hr', 'both')),
    'num_steps': ('model', ('1', '2', '3', '4', '5', '6')),
}
TABLES = {'I': 'alpha', 'II': 'modulation', 'III': 'affine_on', 'fig8': 'num_steps'}
NUM_STEPS = 100_000


def experiments(table: str) -> list[str]:
  """The `field=value` of every row of one ablation table ('I', 'II', 'III' or 'fig8')."""
  if table not in TABLES:
    raise ValueError(f'the ablations are {", ".join(TABLES)}; got {table!r}')
  field = TABLES[table]
  return [f'{field}={v}' for v in ROWS[field][1]]


def parse(arg: str | None) -> tuple[str, str] | None:
  """'field=value' -> (field, value), None for the full model; ValueError naming what is wrong."""
  if not arg:
    return None
  field, sep, value = arg.partition('=')
  if not sep or field not in ROWS:
    raise ValueError(f'configs/ablation.py takes one row as field=value with field one of '
                     f'{", ".join(ROWS)}; got {arg!r}')
  if value not in ROWS[field][1]:
    raise ValueError(f'configs/ablation.py: {field} has the paper\'s rows '
                     f'{", ".join(ROWS[field][1])}; got {value!r}')
  return field, value


def get_config(arg: str | None = None):
  config = default.get_paper_config(2, 'iso')
  config.train.num_steps = NUM_STEPS
  row = parse(arg)
  if row is not None:
    field, value = row
    section = ROWS[field][0]
    current = config[section][field]
    config[section][field] = type(current)(value)
  return config
