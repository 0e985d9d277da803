"""`python -m dssr_jax.testsets gaussian8|div2krk`: the files written, and scoring them.

An exported Gaussian8 set is a paired set holding exactly the LR images `--setting=gaussian8`
scores, so both settings give the same numbers.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dssr_jax import eval_lib
from dssr_jax import testsets

REPO = __import__('pathlib').Path(__file__).resolve().parent.parent
# docs/design.md section 4.1.
RANGES = {2: (0.8, 1.6), 3: (1.35, 2.4)}


def _png(path, img):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(img).save(path)


def _read(path):
  with Image.open(path) as im:
    return np.asarray(im), im.mode


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """Mini/{a.png (RGB 24x26), g.png (greyscale 25x27)} exported at x2 and x3 by the CLI."""
  root = tmp_path_factory.mktemp('g8')
  rng = np.random.default_rng(0)
  src = {'a': rng.integers(0, 256, (24, 26, 3), dtype=np.uint8),
         'g': rng.integers(0, 256, (25, 27), dtype=np.uint8)}
  for stem, img in src.items():
    _png(root / 'data' / 'Mini' / f'{stem}.png', img)
  cmd = [sys.executable, '-m', 'dssr_jax.testsets', 'gaussian8',
         f'--hr_dir={root / "data" / "Mini"}', f'--out_dir={root / "out"}', '--scales=2,3']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'wrote 32 LR/HR pairs to {root / "out" / "Mini"}' in proc.stdout
  return root, src


def test_export_layout_names_and_files(exported):
  root, src = exported
  for s, (lo, hi) in RANGES.items():
    names = sorted(f'{stem}_sig{sigma:.2f}.png' for stem in src
                   for sigma in np.linspace(lo, hi, 8))
    lr_dir, hr_dir = root / 'out' / 'Mini' / 'LRblur' / f'x{s}', root / 'out' / 'Mini' / 'HR' / f'x{s}'
    assert sorted(os.listdir(lr_dir)) == names == sorted(os.listdir(hr_dir))
    records = {r.lr_stem: r for r in testsets.gaussian8(root / 'data' / 'Mini', s)}
    for name in names:
      stem = name.split('_sig')[0]
      img = src[stem]
      hr, mode = _read(hr_dir / name)
      # The modcropped HR (last rows/columns dropped), greyscale kept greyscale.
      h, w = img.shape[0] // s * s, img.shape[1] // s * s
      assert mode == ('L' if img.ndim == 2 else 'RGB')
      np.testing.assert_array_equal(hr, img[:h, :w])
      lr, _ = _read(lr_dir / name)
      assert lr.shape == (h // s, w // s, 3)
      # The very LR image the gaussian8 setting scores.
      np.testing.assert_array_equal(lr, records[name[:-len('.png')]].lr)


def test_paired_scores_of_the_export_equal_the_gaussian8_setting(exported):
  root, _ = exported
  reports = {}
  for grey_as_y in (False, True):
    for setting, data_dir in (('gaussian8', root / 'data'), ('paired', root / 'out')):
      reports[setting, grey_as_y] = eval_lib.evaluate(
          data_dir=data_dir, datasets=['Mini'], scales=[2, 3], method='bicubic',
          options=eval_lib.EvalOptions(setting=setting, grey_as_y=grey_as_y),
          show_progress=False)['results']
  for grey_as_y in (False, True):
    g8, paired = reports['gaussian8', grey_as_y], reports['paired', grey_as_y]
    assert len(g8) == len(paired) == 2
    for a, b in zip(g8, paired):
      assert a['scale'] == b['scale'] and a['num_images'] == b['num_images'] == 16
      # Gaussian8 runs image by image, sigma by sigma; the export's names sort the same way.
      assert [i['lr_stem'] for i in a['images']] == [i['lr_stem'] for i in b['images']]
      for key in ('psnr', 'ssim', 'psnr_rgb'):
        assert [i[key] for i in a['images']] == [i[key] for i in b['images']], key
        assert a[key] == b[key]
  # grey_as_y moves the greyscale image's scores only, so the equality above under grey_as_y
  # holds because the export kept that HR file greyscale.
  plain, grey = reports['gaussian8', False][0]['images'], reports['gaussian8', True][0]['images']
  assert [i['name'] for i, j in zip(plain, grey) if i['psnr'] != j['psnr']] == ['g'] * 8


def test_export_never_overwrites_and_refuses_two_files_with_one_stem(exported, tmp_path):
  root, _ = exported
  hr_dir = root / 'data' / 'Mini'
  first = root / 'out' / 'Mini' / 'LRblur' / 'x2' / 'a_sig0.80.png'
  before = {p: p.stat().st_mtime_ns for p in (root / 'out').rglob('*.png')}
  with pytest.raises(FileExistsError, match=f"'{first}' already exists; pass --overwrite"):
    testsets.export_gaussian8(hr_dir, root / 'out', scales=(2, 3))
  assert {p: p.stat().st_mtime_ns for p in (root / 'out').rglob('*.png')} == before
  # A new scale is free, and --name picks another folder.
  assert testsets.export_gaussian8(hr_dir, tmp_path, scales=(4,), name='Other') == 16
  assert len(os.listdir(tmp_path / 'Other' / 'HR' / 'x4')) == 16
  assert testsets.export_gaussian8(hr_dir, tmp_path, scales=(4,), name='Other',
                                   overwrite=True) == 16
  _png(tmp_path / 'dup' / 'a.png', np.zeros((8, 8, 3), np.uint8))
  _png(tmp_path / 'dup' / 'a.bmp', np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match=r'two outputs would be written to .*a_sig0\.80\.png'):
    testsets.export_gaussian8(tmp_path / 'dup', tmp_path / 'out2', scales=(2,))
  assert not (tmp_path / 'out2').exists()


def test_div2krk_cli_writes_the_set_the_div2krk_setting_scores(exported, tmp_path):
  root, src = exported
  cmd = [sys.executable, '-m', 'dssr_jax.testsets', 'div2krk',
         f'--hr_dir={root / "data" / "Mini"}', f'--out_dir={tmp_path / "KR"}', '--seed=3',
         '--scales=2']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(tmp_path / 'KR')) == ['gt', 'gt_k_x2', 'lr_x2']
  records = list(testsets.div2krk(tmp_path / 'KR', 2))
  assert [r.lr_stem for r in records] == ['im_1', 'im_2']
  for rec, img in zip(records, src.values()):
    # Modcropped to 2 (the only scale): 24x26 either way.
    np.testing.assert_array_equal(rec.hr, img[:24, :26] if img.ndim == 3 else
                                  np.repeat(img[:24, :26, None], 3, axis=2))
    np.testing.assert_array_equal(rec.lr, testsets.div2krk_lr(rec.hr, rec.kernel, 2))
    np.testing.assert_array_equal(rec.kernel, testsets.div2krk_kernel(3, int(rec.name[4:]), 2))
  assert records[1].grey  # a greyscale HR stays greyscale
  with pytest.raises(FileExistsError, match='already holds images'):
    testsets.make_div2krk(root / 'data' / 'Mini', tmp_path / 'KR', seed=3, scales=(2,))
