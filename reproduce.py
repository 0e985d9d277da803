r"""Runs a table or figure of the paper: trains every row, scores it, writes it beside the paper's.

  python reproduce.py --table=I --workdir=workdirs/paper --data_dir=data/benchmark
  python reproduce.py --table=V --workdir=workdirs/paper --data_dir=data/benchmark --dry_run
  python reproduce.py --table=IV --workdir=W --data_dir=D --set=train.num_steps=1000

Each row's config is a file of configs/ (docs/reproduce.md lists them); it trains in
WORKDIR/<run> exactly as `python train.py --config=<that config> --workdir=WORKDIR/<run>` would
(the same train_loop), and `--dry_run` prints those commands and the eval commands instead.
Rerunning continues unfinished runs and skips finished ones. Every run is scored with eval_lib on
its best checkpoint by validation PSNR (the latest when it validated nothing), and the table is
written to WORKDIR/table_<T>.md, .json and .csv with the paper's numbers (dssr_jax/paper.py) in
their own columns. `--set=section.field=value` changes a field of every row's config (data
folders, a shorter schedule for a trial).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import shlex
from typing import Any, Sequence

from absl import flags
from absl import logging
from etils import epath

from configs import ablation
from configs import default
from dssr_jax import checkpoint as checkpoint_lib
from dssr_jax import commands
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import paper

G8 = ('Set5', 'Set14', 'BSD100', 'Urban100', 'Manga109')


@dataclasses.dataclass(frozen=True)
class Score:
  """One eval_lib.evaluate call: `run` (a Run's name) or None for the bicubic baseline."""
  run: str | None
  datasets: tuple[str, ...]
  scale: int
  setting: str = 'gaussian8'
  experiment: str = 'main'  # paper.Cell.experiment of its rows ('step' for Table IV).
  kernel_widths: tuple[float, ...] = ()  # Table VI (eval.py --setting=kernel_width).


@dataclasses.dataclass(frozen=True)
class Spec:
  """A table: its training runs {name: 'configs/x.py[:arg]'} and what is scored."""
  runs: dict[str, str]
  scores: tuple[Score, ...]


def _ablation(table: str) -> Spec:
  # Rows that are the full model (alpha=1.0, modulation=affine, ...) share one run, 'full'.
  full = ablation.get_config()
  runs, scores = {}, []
  for exp in ablation.experiments(table):
    name = 'full' if ablation.get_config(exp) == full else exp
    runs[name] = 'configs/ablation.py' + ('' if name == 'full' else f':{exp}')
    scores.append(Score(name, ('Set5',), 2, experiment=exp))
  return Spec(runs, tuple(scores))


def _main_tables(table: str) -> Spec:
  if table == 'IV':
    return Spec({'iso_x2': 'configs/iso_x2.py'},
                (Score('iso_x2', ('Set5', 'Set14'), 2, experiment='step'),))
  if table == 'V':
    runs = {f'iso_x{s}': f'configs/iso_x{s}.py' for s in (2, 3, 4)}
    return Spec(runs, tuple(Score(r, G8, s) for s in (2, 3, 4) for r in (f'iso_x{s}', None)))
  if table == 'VI':
    widths = {2: (0.0, 0.6, 1.2, 1.8), 4: (0.0, 1.2, 2.4, 3.6)}
    runs = {f'iso_x{s}': f'configs/iso_x{s}.py' for s in (2, 4)}
    return Spec(runs, tuple(Score(r, G8[:4], s, 'kernel_width', kernel_widths=widths[s])
                            for s in (2, 4) for r in (f'iso_x{s}', None)))
  if table == 'VII':
    runs = {f'aniso_x{s}': f'configs/aniso_x{s}.py' for s in (2, 4)}
    return Spec(runs, tuple(Score(r, ('DIV2KRK',), s, 'div2krk')
                            for s in (2, 4) for r in (f'aniso_x{s}', None)))
  raise AssertionError(table)


TABLES = ('I', 'II', 'III', 'fig8', 'IV', 'V', 'VI', 'VII')


def spec(table: str) -> Spec:
  if table not in TABLES:
    raise ValueError(f'--table must be one of {", ".join(TABLES)} (Table VIII is timing: '
                     f'benchmarks/), got {table!r}')
  return _ablation(table) if table in ablation.TABLES else _main_tables(table)


def load_config(config_spec: str, settings: Sequence[str]):
  """The config `configs/x.py[:arg]` names, with every `section.field=value` of `settings`."""
  path, _, arg = config_spec.partition(':')
  module = importlib.import_module(path.removesuffix('.py').replace('/', '.'))
  config = module.get_config(arg) if arg else module.get_config()
  for item in settings:
    name, sep, text = item.partition('=')
    section, _, field = name.partition('.')
    if not sep or section not in config or field not in config[section]:
      raise ValueError(f'--set takes section.field=value with a field of configs/default.py, '
                       f'got {item!r}')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # a bare word: a string (a folder, a dtype)
    try:
      config[section][field] = value
    except TypeError as e:  # ConfigDict keeps each field's type
      raise ValueError(f'--set={item}: {e}') from e
  return config


def commands_text(s: Spec, root: epath.Path, data_dir: str, settings: Sequence[str]) -> str:
  """The train.py and eval.py commands of a table (what --dry_run prints)."""
  sets = ''.join(f' --config.{shlex.quote(x)}' for x in settings)
  lines = ['# eval.py scores the latest checkpoint; this command scores the best by validation '
           'PSNR (eval.py --step=N)']
  lines += [f'python train.py --config={shlex.quote(c)} '
            f'--workdir={shlex.quote(str(root / n))}{sets}'
           for n, c in s.runs.items()]
  for score in s.scores:
    what = ('--method=bicubic' if score.run is None
            else f'--checkpoint={shlex.quote(str(root / score.run))}')
    extra = (f' --kernel_widths={",".join(str(w) for w in score.kernel_widths)}'
             if score.kernel_widths else '')
    lines.append(f'python eval.py {what} --data_dir={shlex.quote(data_dir)} '
                 f'--datasets={",".join(score.datasets)} --scales={score.scale} '
                 f'--setting={score.setting}{extra}')
  return '\n'.join(lines)


def train(config, workdir: epath.Path) -> None:
  """Trains one run to config.train.num_steps (resuming; nothing to do when it is there)."""
  latest, _ = checkpoint_lib.training_steps(workdir)
  if latest is not None and latest >= config.train.num_steps:
    logging.info('%s: finished (step %d), not trained again', workdir, latest)
    return
  from dssr_jax import train_loop  # pylint: disable=g-import-not-at-top
  out = train_loop.train_and_evaluate(config, workdir, default.get_config())
  if out['stopped_by']:
    raise KeyboardInterrupt(f'{out["stopped_by"]}: {workdir} saved at step {out["step"]}; run '
                            'the same command again to continue')


def _options(score: Score) -> eval_lib.EvalOptions:
  return eval_lib.EvalOptions(setting=score.setting, kernel_widths=score.kernel_widths or None)


def rows(score: Score, report: dict[str, Any]) -> list[dict[str, Any]]:
  """One table row per report result (per step for Table IV), with the paper's cell."""
  out = []
  for r in report['results']:
    method = 'bicubic' if score.run is None else 'dssr'
    width = r.get('kernel_width')
    if score.experiment == 'step':
      cells = [(f'step={t}', psnr, None)
               for t, psnr in enumerate(r['per_step_mean_psnr'], start=1)]
    else:
      cells = [(score.experiment, r['psnr'], r['ssim'])]
    for experiment, psnr, ssim in cells:
      cell = paper.lookup(r['dataset'], r['scale'], r['setting'], method, width, experiment)
      out.append({'experiment': experiment, 'run': score.run or 'bicubic', 'dataset': r['dataset'],
                  'scale': r['scale'], 'setting': r['setting'], 'kernel_width': width,
                  'method': method, 'step': report['run'].get('step'), 'psnr': psnr,
                  'ssim': ssim, 'paper_psnr': cell.psnr if cell else None,
                  'paper_ssim': cell.ssim if cell else None})
  return out


def _num(x, digits):
  return '-' if x is None else f'{x:.{digits}f}'


def markdown(table: str, table_rows: Sequence[dict[str, Any]]) -> str:
  lines = [f'Table {table}: Y-PSNR / SSIM, ours beside the paper\'s (dssr_jax/paper_results.csv)',
           '', '| experiment | method | dataset | scale | kernel width | PSNR | paper PSNR | '
           'SSIM | paper SSIM |', '|---|---|---|---|---|---|---|---|---|']
  for r in table_rows:
    lines.append(f'| {r["experiment"]} | {r["method"]} | {r["dataset"]} | x{r["scale"]} | '
                 f'{_num(r["kernel_width"], 1)} | {_num(r["psnr"], 2)} | '
                 f'{_num(r["paper_psnr"], 2)} | {_num(r["ssim"], 4)} | '
                 f'{_num(r["paper_ssim"], 4)} |')
  return '\n'.join(lines) + '\n'


def csv_text(table_rows: Sequence[dict[str, Any]]) -> str:
  keys = list(table_rows[0])
  lines = [','.join(keys)]
  for r in table_rows:
    lines.append(','.join('' if r[k] is None else str(r[k]) for k in keys))
  return '\n'.join(lines) + '\n'


def output_paths(root: epath.Path, table: str) -> list[epath.Path]:
  return [root / f'table_{table}.{ext}' for ext in ('md', 'json', 'csv')]


def only(s: Spec, datasets: Sequence[str] | None) -> Spec:
  """`s` scoring only `datasets` (None: all of the table's); ValueError for one it lacks."""
  if not datasets:
    return s
  have = {d for score in s.scores for d in score.datasets}
  for d in datasets:
    if d not in have:
      raise ValueError(f'--datasets: this table scores {", ".join(sorted(have))}, not {d!r}')
  scores = [dataclasses.replace(x, datasets=tuple(d for d in x.datasets if d in datasets))
            for x in s.scores]
  return Spec(s.runs, tuple(x for x in scores if x.datasets))


def reproduce(table: str, root, data_dir: str, settings: Sequence[str] = (),
              datasets: Sequence[str] | None = None, overwrite: bool = False
              ) -> list[dict[str, Any]]:
  """Trains every run of `table` (resuming), scores it, writes the three table files."""
  root = image_files.absolute(root)
  s = only(spec(table), datasets)
  outputs = output_paths(root, table)
  image_files.check_free(outputs, overwrite)  # Before hours of training, not after.
  from dssr_jax import train_loop  # pylint: disable=g-import-not-at-top  (tf.data)
  configs = {name: load_config(c, settings) for name, c in s.runs.items()}
  for config in configs.values():  # Every config is sound before anything trains.
    train_loop.check_config(config, default.get_config())
  for score in s.scores:  # Every test folder exists before anything trains.
    for name in score.datasets:
      eval_lib.dataset_dir(data_dir, name)
  for name, config in configs.items():
    logging.info('training %s (%s) in %s', name, s.runs[name], root / name)
    train(config, root / name)
  table_rows = []
  for score in s.scores:
    kwargs = {'method': 'bicubic'}
    if score.run is not None:
      latest, best = checkpoint_lib.training_steps(root / score.run)
      kwargs = {'checkpoint': str(root / score.run), 'step': best if best is not None else latest}
    report = eval_lib.evaluate(data_dir=data_dir, datasets=score.datasets, scales=[score.scale],
                               options=_options(score), show_progress=False, **kwargs)
    table_rows.extend(rows(score, report))
  image_files.write_text(outputs[0], markdown(table, table_rows))
  image_files.write_text(outputs[1], json.dumps({'table': table, 'rows': table_rows}, indent=1) + '\n')
  image_files.write_text(outputs[2], csv_text(table_rows))
  return table_rows


flags.DEFINE_enum('table', None, TABLES, 'The table or figure to reproduce.')
flags.DEFINE_string('workdir', None, 'Root folder: one training workdir per run, the tables.')
flags.DEFINE_string('data_dir', 'data/benchmark', 'The test sets, one folder each (eval.py\'s).')
flags.DEFINE_multi_string('set', [], 'section.field=value for every row\'s config, e.g. '
                          '--set=data.folders="(\'/d/DIV2K_train_HR\',)".')
flags.DEFINE_list('datasets', None, 'Score only these of the table\'s test sets (default: all).')
flags.DEFINE_bool('dry_run', False, 'Print the train and eval commands of every row; run nothing.')
flags.DEFINE_bool('overwrite', False, 'Replace existing table files in --workdir.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.table is None or FLAGS.workdir is None:
    raise ValueError('--table and --workdir are required')
  if FLAGS.dry_run:
    s = only(spec(FLAGS.table), FLAGS.datasets)
    for c in s.runs.values():
      load_config(c, FLAGS.set)  # A bad --set fails here too.
    print(commands_text(s, epath.Path(FLAGS.workdir), FLAGS.data_dir, FLAGS.set))
    return
  table_rows = reproduce(FLAGS.table, FLAGS.workdir, FLAGS.data_dir, FLAGS.set, FLAGS.datasets,
                         FLAGS.overwrite)
  print(markdown(FLAGS.table, table_rows))


if __name__ == '__main__':
  commands.run(main)
