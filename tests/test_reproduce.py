"""reproduce.py end to end on a tiny network, and configs/ablation.py's rows against the paper."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import helpers
from configs import ablation
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import paper
import reproduce

REPO = pathlib.Path(__file__).resolve().parent.parent

# The smoke network on the embedded photos, 2 steps; validation on the tiny test set.
TINY_SETS = ['model.channels=8', 'model.struct_blocks=1', 'model.recon_blocks=1',
             'model.num_steps=2', 'data.source=embedded', 'data.patch_size=8',
             'data.num_parallel_calls=2', 'train.num_steps=2', 'train.val_images=1',
             'train.val_sigmas=1']


def child_env(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(REPO),
             XLA_FLAGS=helpers.FAST_XLA, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  return env


def test_ablation_docstring_gives_the_papers_number_for_every_row():
  """Each row the config accepts is one of the paper's, with its number written in the docstring.
  The expected values are the paper's, typed in here from its tables."""
  printed = {'I': [36.89, 36.93, 36.93, 36.95, 36.99, 36.92],
             'II': [36.91, 36.93, 36.94, 36.97, 36.98, 36.99],
             'III': [36.92, 36.94, 36.99]}
  doc = ' '.join(ablation.__doc__.split())
  for table, values in printed.items():
    rows = ablation.experiments(table)
    assert [paper.lookup('Set5', 2, 'gaussian8', experiment=e).psnr for e in rows] == values
    for exp, value in zip(rows, values):
      assert f'{exp}: {value:.2f}' in doc, exp
  assert ablation.experiments('fig8') == [f'num_steps={t}' for t in range(1, 7)]


@pytest.mark.parametrize('arg,section,field,value', [
    ('alpha=0.5', 'train', 'alpha', 0.5), ('alpha=0', 'train', 'alpha', 0.0),
    ('modulation=concat', 'model', 'modulation', 'concat'),
    ('affine_on=lr', 'model', 'affine_on', 'lr'), ('num_steps=6', 'model', 'num_steps', 6)])
def test_ablation_row_changes_one_field_of_the_100k_x2_recipe(arg, section, field, value):
  full = ablation.get_config()
  config = ablation.get_config(arg)
  assert config[section][field] == value and type(config[section][field]) is type(value)
  config[section][field] = full[section][field]
  assert config == full
  assert full.train.num_steps == 100_000 and full.model.scale == 2
  assert full.train.lr_boundaries[0] == 80_000 and full.train.val_dir.endswith('Set5')


@pytest.mark.parametrize('arg', ['alpha=0.3', 'modulation=sum', 'beta=1', 'alpha', 'T=4'])
def test_ablation_refuses_a_row_the_paper_lacks(arg):
  with pytest.raises(ValueError, match='configs/ablation.py'):
    ablation.get_config(arg)


def tiny_set(benchmark_dir, root):
  """Two 48x48 crops of Set5 as ROOT/Set5: a test set the tiny network scores in a second."""
  for f in sorted(image_files.list_images(benchmark_dir / 'Set5'))[:2]:
    image_files.write_png(root / 'Set5' / f.name, image_files.read_image(f)[60:108, 60:108])
  return root


def test_reproduce_writes_table_iii_with_the_papers_column(benchmark_dir, tmp_path,
                                                            monkeypatch):
  """Table III end to end: three rows trained (two steps each), scored, the paper beside each;
  our numbers equal eval_lib's on each run's checkpoint; a rerun trains no finished run."""
  data = tiny_set(benchmark_dir, tmp_path / 'data')
  root = tmp_path / 'runs'
  sets = [f'--set={s}' for s in TINY_SETS + [f'train.val_dir={data / "Set5"}']]
  cmd = [sys.executable, str(REPO / 'reproduce.py'), '--table=III', f'--workdir={root}',
         f'--data_dir={data}'] + sets
  env = child_env(tmp_path)
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  written = json.loads((root / 'table_III.json').read_text())['rows']
  assert [r['experiment'] for r in written] == ['affine_on=lr', 'affine_on=hr', 'affine_on=both']
  assert [(r['paper_psnr'], r['paper_ssim']) for r in written] == [
      (36.92, 0.9492), (36.94, 0.9517), (36.99, 0.9522)]
  assert [r['run'] for r in written] == ['affine_on=lr', 'affine_on=hr', 'full']
  for r in written:
    assert r['step'] == 2 and r['dataset'] == 'Set5' and r['scale'] == 2
    direct = eval_lib.evaluate(data_dir=str(data), datasets=['Set5'], scales=[2],
                               options=eval_lib.EvalOptions(), checkpoint=str(root / r['run']),
                               show_progress=False)['results'][0]
    assert direct['num_images'] == 16  # 2 images x 8 Gaussian8 widths
    # The child compiles with helpers.FAST_XLA, this process with XLA's defaults: float rounding
    # of the network's output moves the PSNR by ~1e-6 dB; scoring another run's checkpoint, by dB.
    assert r['psnr'] == pytest.approx(direct['psnr'], abs=1e-4)
    assert r['ssim'] == pytest.approx(direct['ssim'], abs=1e-5)
  md = (root / 'table_III.md').read_text()
  assert '| affine_on=hr | dssr | Set5 | x2 | - | ' in md and '| 36.94 |' in md
  csv_lines = (root / 'table_III.csv').read_text().splitlines()
  assert len(csv_lines) == 4 and csv_lines[0].startswith('experiment,run,dataset')
  # The table files are not replaced without --overwrite (refused before any training).
  again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 2 and 'table_III' in again.stderr and 'exists' in again.stderr
  # A rerun trains no finished run again.
  from dssr_jax import train_loop  # pylint: disable=g-import-not-at-top

  def retrain(*args):
    raise AssertionError(f'trained again: {args}')

  monkeypatch.setattr(train_loop, 'train_and_evaluate', retrain)
  config = reproduce.load_config('configs/ablation.py:affine_on=lr', TINY_SETS)
  reproduce.train(config, root / 'affine_on=lr')
  config.train.num_steps = 3
  with pytest.raises(AssertionError, match='trained again'):
    reproduce.train(config, root / 'affine_on=lr')


def test_dry_run_prints_every_rows_commands(tmp_path):
  proc = subprocess.run([sys.executable, str(REPO / 'reproduce.py'), '--table=II', '--dry_run',
                         '--workdir=W', '--data_dir=D', '--set=train.num_steps=10'], cwd=REPO,
                        env=child_env(tmp_path), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  train = [l for l in lines if l.startswith('python train.py')]
  assert train == [f'python train.py --config=configs/ablation.py:modulation={m} '
                   f'--workdir=W/modulation={m} --config.train.num_steps=10'
                   for m in ('none', 'add', 'concat', 'channel_attention', 'spatial_attention')] + [
                       'python train.py --config=configs/ablation.py --workdir=W/full '
                       '--config.train.num_steps=10']
  assert sum(l.startswith('python eval.py --checkpoint=W/') for l in lines) == 6
  assert not (tmp_path / 'W').exists()


@pytest.mark.parametrize('args,message', [
    (['--table=IX'], 'table'), (['--table=I', '--set=train.alpah=1'], 'train.alpah'),
    (['--table=V', '--datasets=Set6'], 'Set6'),
    (['--table=I', '--set=train.num_steps=abc'], 'num_steps')])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
  proc = subprocess.run([sys.executable, str(REPO / 'reproduce.py'), '--workdir=W', '--dry_run']
                        + args, cwd=REPO, env=child_env(tmp_path), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2 and proc.stderr.startswith('error:') and message in proc.stderr, (
      proc.stderr)
