"""`make demo`'s plumbing: train.py on configs/demo.py, then dssr_jax.demo_report.

The end-to-end test runs both commands as the Makefile does, on a tiny network for a few steps,
so it checks that the pieces connect (files written, the gain line printed and consistent with
results.json, quiet output), not the demo's quality: that is measured by `make demo` itself.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import helpers

from configs import demo
from dssr_jax import demo_report
from dssr_jax import image_files
from dssr_jax import input_pipeline
from dssr_jax import torch_bicubic

REPO = pathlib.Path(__file__).resolve().parent.parent
GAIN_RE = re.compile(r'^Held-out gain over bicubic: ([+-]\d+\.\d\d) dB \(DSSR (\d+\.\d\d) dB vs '
                     r'bicubic (\d+\.\d\d) dB, mean Y-PSNR, Gaussian8 x(\d)\)$', re.M)
# The smallest network (compiling the step and the init dominates the test's time); the rest of
# the demo config (data, schedule) as it is.
TINY = ('--config.model.channels=4', '--config.model.struct_blocks=0',
        '--config.model.recon_blocks=0', '--config.model.num_steps=1',
        '--config.data.patch_size=8', '--config.train.num_steps=5',
        '--config.train.log_every=5', '--config.train.checkpoint_every=5')


def test_demo_trains_on_no_held_out_photo():
  config = demo.get_config()
  assert config.data.source == 'embedded'
  source = input_pipeline.make_source(config.data)
  assert source.names and not set(source.names) & set(input_pipeline.EMBEDDED_HOLDOUT)
  # Not only the names: no training photo has a held-out photo's pixels (same-size crop at 0, 0).
  held = input_pipeline.embedded_images(input_pipeline.EMBEDDED_HOLDOUT)
  train = input_pipeline.embedded_images(source.names)
  for h in held.values():
    for t in train.values():
      if t.shape[0] >= h.shape[0] and t.shape[1] >= h.shape[1]:
        assert not np.array_equal(t[:h.shape[0], :h.shape[1]], h)


def test_summary_line_parses():
  m = GAIN_RE.search(demo_report.summary_line(30.75, 32.5, 2))
  assert m and m.groups() == ('+1.75', '32.50', '30.75', '2')
  assert GAIN_RE.search(demo_report.summary_line(30.0, 29.5, 4)).group(1) == '-0.50'


def test_detail_box_finds_where_bicubic_loses_most():
  hr = np.full((40, 60, 3), 128, np.uint8)
  bic = hr.copy()
  bic[22:30, 36:44] = 100  # the only place bicubic differs: an 8x8 block at (22, 36)
  assert demo_report.detail_box(hr, bic, 8, 2) == (22, 36)
  # A window larger than the block covers it; ties go to the first such window.
  top, left = demo_report.detail_box(hr, bic, 12, 2)
  assert top <= 22 and top + 12 >= 30 and left <= 36 and left + 12 >= 44
  bic[0:2, 0:2] = 0  # a larger loss in a corner wins with a 2x2 window
  assert demo_report.detail_box(hr, bic, 2, 2) == (0, 0)
  hr[-2:, -2:], bic[-2:, -2:] = 255, 0  # ... and a larger one in the last window of the grid
  assert demo_report.detail_box(hr, bic, 2, 2) == (38, 58)
  with pytest.raises(ValueError, match='does not fit'):
    demo_report.detail_box(hr, bic, 42, 2)


def test_detail_box_is_the_brute_force_argmax():
  rng = np.random.default_rng(1)
  hr = rng.integers(0, 256, (23, 30, 3), dtype=np.uint8)
  bic = rng.integers(0, 256, (23, 30, 3), dtype=np.uint8)
  w = np.array([65.481, 128.553, 24.966]) / 255  # BT.601 luma weights, from the definition
  err = np.abs((hr.astype(np.float64) - bic) @ w)
  for size, scale in ((7, 1), (6, 2), (9, 3)):
    sums = {(t, l): err[t:t + size, l:l + size].sum()
            for t in range(0, 23 - size + 1, scale) for l in range(0, 30 - size + 1, scale)}
    assert demo_report.detail_box(hr, bic, size, scale) == max(sums, key=sums.get)


def test_figure_panels_are_exact_zoomed_crops():
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
  bic = hr.copy()
  bic[20:36, 30:46] //= 2  # bicubic loses most here: the crop is (20, 30), 16x16
  sr = rng.integers(0, 256, hr.shape, dtype=np.uint8)
  lr = hr[::2, ::2]
  details = rng.normal(0, 0.05, (3,) + hr.shape).astype(np.float32)
  row = {'name': 'x', 'sigma': 1.0, 'psnr_bicubic': 20.0, 'psnr_dssr': 21.0,
         'psnr_steps': [20.5, 20.8, 21.0]}
  kept = {'row': row, 'lr': lr, 'bicubic': bic, 'sr': sr, 'hr': hr, 'details': details}
  img, info = demo_report.figure(kept, scale=2, size=16, zoom=3)
  assert info['box'] == [20, 30, 16]
  p, gap, label = 16 * 3, demo_report.GAP, 22
  assert img.shape == (2 * (label + p) + gap, 4 * p + 3 * gap, 3)
  panel = lambda r, c: img[r * (label + p + gap) + label:r * (label + p + gap) + label + p,
                           c * (p + gap):c * (p + gap) + p]
  zoom = lambda x: np.repeat(np.repeat(x[20:36, 30:46], 3, 0), 3, 1)
  np.testing.assert_array_equal(panel(0, 1), zoom(bic))
  np.testing.assert_array_equal(panel(0, 2), zoom(sr))
  np.testing.assert_array_equal(panel(0, 3), zoom(hr))
  np.testing.assert_array_equal(panel(0, 0), zoom(np.repeat(np.repeat(lr, 2, 0), 2, 1)))
  g = info['detail_gain']
  np.testing.assert_array_equal(panel(1, 1), zoom(image_files.to_uint8(0.5 + g * details[1])))
  # The last detail panel is the target the maps are trained towards: HR minus the network's own
  # (PyTorch) bicubic of the LR, not the MATLAB bicubic of the top row.
  up = lambda n: torch_bicubic.bicubic_matrix(n, 2 * n, False, 2)
  target = hr / 255.0 - np.einsum('Hh,hwc,Ww->HWc', up(24), lr / 255.0, up(32))
  got = panel(1, 3)[::3, ::3] / 255.0
  want = np.clip(0.5 + g * target[20:36, 30:46], 0, 1)
  np.testing.assert_allclose(got, want, atol=0.5 / 255 + 1e-6)


def _run(args, env):
  proc = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=150)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_make_demo_pipeline_end_to_end(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO), XLA_FLAGS=helpers.FAST_XLA)
  # The commands must quiet tensorflow themselves: the product's defaults are what is tested (a
  # user who sets these variables gets tensorflow's notices, as asked).
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  env.pop('TF_ENABLE_ONEDNN_OPTS', None)
  workdir = tmp_path / 'demo'
  train = _run(['train.py', '--config=configs/demo.py', f'--workdir={workdir}', *TINY], env)
  report = _run(['-m', 'dssr_jax.demo_report', f'--workdir={workdir}'], env)
  for proc in (train, report):
    for text in (proc.stdout, proc.stderr):
      assert '\r' not in text  # no progress frames in a log
      assert 'oneDNN' not in text and 'cpu_feature_guard' not in text

  out = workdir / 'demo'
  results = json.loads((out / 'results.json').read_text())
  assert results['checkpoint_step'] == 5
  assert results['held_out'] == sorted(input_pipeline.EMBEDDED_HOLDOUT)
  assert len(results['rows']) == 8 * len(input_pipeline.EMBEDDED_HOLDOUT)
  for r in results['rows']:
    assert len(r['psnr_steps']) == 1 and 10 < r['psnr_bicubic'] < 60
  m = GAIN_RE.search(report.stdout)
  assert m, report.stdout
  gain, dssr, bicubic, scale = float(m[1]), float(m[2]), float(m[3]), int(m[4])
  assert scale == 2
  assert dssr == pytest.approx(np.mean([r['psnr_dssr'] for r in results['rows']]), abs=0.006)
  assert bicubic == pytest.approx(np.mean([r['psnr_bicubic'] for r in results['rows']]),
                                  abs=0.006)
  assert gain == pytest.approx(dssr - bicubic, abs=0.011)

  fig = out / 'comparison.png'
  assert f'Comparison image: {fig}' in report.stdout
  img = image_files.read_image(fig)
  # Two rows of panels: four in the first, T = 1 detail map and HR - bicubic in the second.
  side = demo_report.ZOOM * demo_report.CROP
  assert img.shape == (2 * (22 + side) + demo_report.GAP, 4 * side + 3 * demo_report.GAP, 3)
