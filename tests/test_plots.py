"""Figures: the numbers behind them, and the command writing each figure."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from dssr_jax import checkpoint
from dssr_jax import model as model_lib
from dssr_jax import plots
from dssr_jax import torch_bicubic

REPO = pathlib.Path(__file__).resolve().parent.parent


def _plots(*args):
  """`python -m dssr_jax.plots ARGS` from the repo root."""
  return subprocess.run([sys.executable, '-m', 'dssr_jax.plots', *map(str, args)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)

TINY = dict(scale=2, channels=8, struct_blocks=1, recon_blocks=1, num_steps=3)


def _is_png(path, min_size=(200, 100)):
  with Image.open(path) as im:
    return im.format == 'PNG' and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]


def test_detail_stats_by_hand():
  rng = np.random.default_rng(1)
  hr = (rng.random((8, 10, 3)) * 255).astype(np.uint8)
  lr = (rng.random((4, 5, 3)) * 255).astype(np.uint8)
  # The detail the loss targets: HR minus PyTorch's bicubic of the LR (docs/design.md section 2).
  bic = np.einsum('Hh,hwc,Ww->HWc', torch_bicubic.bicubic_matrix(4, 8, False, 2), lr / 255.0,
                  torch_bicubic.bicubic_matrix(5, 10, False, 2))
  true = hr / 255.0 - bic
  np.testing.assert_allclose(plots.true_detail(hr, lr, 2), true, atol=1e-6)
  details = np.stack([np.zeros_like(true), true, true + 0.25])
  s = plots.detail_stats(details, hr, lr, 2)
  np.testing.assert_allclose(s['l1_to_true'], [np.abs(true).mean(), 0, 0.25], atol=1e-6)
  np.testing.assert_allclose(s['mean_abs'], [0, np.abs(true).mean(), np.abs(true + 0.25).mean()],
                             atol=1e-6)


def test_detail_l1_figure_fig9(tmp_path):
  # One line per kernel width: the kernel-width rows, and the sigmas inside a Gaussian8 row.
  report = {'results': [
      {'dataset': 'Set14', 'scale': 4, 'setting': 'kernel_width', 'kernel_width': w,
       'method': 'dssr', 'per_step_detail_l1': [0.03 + w / 100, 0.02 + w / 100]}
      for w in (0.0, 1.2)] + [
          {'dataset': 'Set5', 'scale': 2, 'setting': 'gaussian8', 'method': 'dssr',
           'per_step_detail_l1': [0.02, 0.01],
           'per_sigma_detail_l1': {'0.8': [0.015, 0.008], '1.6': [0.025, 0.012]}}]}
  (tmp_path / 'r.json').write_text(json.dumps(report))
  done = _plots('detail_l1', f'--report={tmp_path / "r.json"}', f'--out={tmp_path / "f9.png"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert _is_png(tmp_path / 'f9.png')
  for r in report['results']:
    r.pop('per_step_detail_l1')
    r.pop('per_sigma_detail_l1', None)
  with pytest.raises(ValueError, match='no per-step detail L1'):
    plots.plot_detail_l1(report, tmp_path / 'none.png')
  assert not (tmp_path / 'none.png').exists()


def test_per_step_figure(tmp_path):
  report = {'results': [{'dataset': 'Set5', 'scale': 2, 'setting': 'gaussian8', 'method': 'dssr',
                         'per_step_psnr': [30.1, 30.8, 31.0], 'per_step_mean_psnr': [30.1, 30.6, 30.9]}]}
  (tmp_path / 'r.json').write_text(json.dumps(report))
  done = _plots('steps', f'--report={tmp_path / "r.json"}', f'--out={tmp_path / "s.png"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert _is_png(tmp_path / 's.png')
  with pytest.raises(ValueError, match='no per-step PSNR'):
    plots.plot_per_step_psnr({'results': [{'per_step_psnr': []}]}, tmp_path / 'x.png')


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
  model = model_lib.DSSR(**TINY)
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 8, 8, 3), np.float32))['params']
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map(
      lambda x: rng.uniform(-0.1, 0.1, x.shape).astype(np.float32), shapes)
  d = tmp_path_factory.mktemp('tiny')
  checkpoint.save_params(d, params, TINY)
  return d


def test_details_and_crops_commands(tiny_ckpt, tmp_path):
  hr = (np.random.default_rng(2).random((30, 34, 3)) * 255).astype(np.uint8)
  Image.fromarray(hr).save(tmp_path / 'hr.png')
  Image.fromarray(hr[::-1]).save(tmp_path / 'hr2.png')
  done = _plots('details', f'--checkpoint={tiny_ckpt}', f'--hr={tmp_path / "hr.png"}',
                f'--hr={tmp_path / "hr2.png"}', '--sigma=1.2', f'--out={tmp_path / "d.png"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'hr2 step 2: mean |d|' in done.stdout
  assert _is_png(tmp_path / 'd.png')
  done = _plots('crops', f'--checkpoint={tiny_ckpt}', f'--hr={tmp_path / "hr.png"}', '--sigma=1.2',
                '--box=4,6,20', f'--out={tmp_path / "c.png"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert _is_png(tmp_path / 'c.png')
  for box, message in (('20,20,20', 'does not fit in the 30x34 HR image'),
                       ('4,6', '--box must be Y,X,SIZE')):
    done = _plots('crops', f'--checkpoint={tiny_ckpt}', f'--hr={tmp_path / "hr.png"}',
                  '--sigma=1.2', f'--box={box}', f'--out={tmp_path / "c2.png"}')
    assert done.returncode != 0 and message in done.stderr and 'Traceback' not in done.stderr
  assert not (tmp_path / 'c2.png').exists()
