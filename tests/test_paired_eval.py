"""eval.py --setting=paired and --save_images, against a numpy reference of the protocol.

The reference is written here from docs/design.md section 4.3: SR clipped and rounded to uint8,
BT.601 studio-range Y from RGB in [0, 1] (not rounded), `scale` pixels shaved from every border,
PSNR = 10 log10(255^2 / MSE) in float64; RGB PSNR the same over all three channels. HR larger than
scale x LR loses its last rows/columns (modcrop, as Gaussian8 does).
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import helpers

from dssr_jax import checkpoint
from dssr_jax import eval_lib
from dssr_jax import matlab_bicubic
from dssr_jax import metrics
from dssr_jax import model as model_lib

REPO = __import__('pathlib').Path(__file__).resolve().parent.parent
BICUBIC = dict(method='bicubic', options=eval_lib.EvalOptions(setting='paired'),
               show_progress=False)


def ref_y(img):
  x = img.astype(np.float64) / 255.0
  return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def ref_psnr(sr, hr, shave, y=True):
  a, b = (ref_y(sr), ref_y(hr)) if y else (sr.astype(np.float64), hr.astype(np.float64))
  d = (a - b)[shave:-shave, shave:-shave]
  return 10.0 * np.log10(255.0 ** 2 / np.mean(d ** 2))


def to8(x):
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def png(path, img):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(img).save(path)


def read(path):
  with Image.open(path) as im:
    return np.asarray(im.convert('RGB'))


# HR sizes: 'a' exactly 2 x its LR, 'b' one row and one column more (modcrop drops them). One LR
# size: the network compiles once.
SIZES = {'a': ((26, 30), (13, 15)), 'b': ((27, 31), (13, 15))}


def make_set(root, name='Pairs', scale=2, sizes=None, seed=0):
  """ROOT/NAME/{HR,LRblur}/xS with random HR and an LR of each (its every s-th pixel, so that the
  pair is plausible); returns {stem: (hr, lr)} as written."""
  rng = np.random.default_rng(seed)
  out = {}
  for stem, (hr_size, lr_size) in (sizes or SIZES).items():
    hr = rng.integers(0, 256, hr_size + (3,), dtype=np.uint8)
    lr = np.ascontiguousarray(hr[:lr_size[0] * scale:scale, :lr_size[1] * scale:scale])
    png(root / name / 'HR' / f'x{scale}' / f'{stem}.png', hr)
    png(root / name / 'LRblur' / f'x{scale}' / f'{stem}.png', lr)
    out[stem] = (hr, lr)
  return out


def test_paired_bicubic_scores_equal_the_numpy_reference(tmp_path):
  pairs = make_set(tmp_path / 'data')
  report = eval_lib.evaluate(data_dir=str(tmp_path / 'data'), datasets=['Pairs'], scales=[2],
                             save_images=str(tmp_path / 'sr'), **BICUBIC)
  (res,) = report['results']
  assert (res['dataset'], res['scale'], res['setting']) == ('Pairs', 2, 'paired')
  assert [(i['name'], i['lr_stem'], i['sigma']) for i in res['images']] == [
      ('a', 'a', None), ('b', 'b', None)]
  ys, rgbs = [], []
  for img in res['images']:
    hr, lr = pairs[img['name']]
    h, w = 2 * lr.shape[0], 2 * lr.shape[1]
    sr = to8(matlab_bicubic.imresize(lr / 255.0, 2))
    assert sr.shape == (h, w, 3)
    # The saved output is what was scored.
    np.testing.assert_array_equal(read(tmp_path / 'sr' / 'Pairs' / 'x2' / f'{img["name"]}.png'),
                                  sr)
    ys.append(ref_psnr(sr, hr[:h, :w], 2))
    rgbs.append(ref_psnr(sr, hr[:h, :w], 2, y=False))
    assert img['psnr'] == pytest.approx(ys[-1], abs=1e-9)
    assert img['psnr_rgb'] == pytest.approx(rgbs[-1], abs=1e-9)
    assert abs(img['psnr'] - img['psnr_rgb']) > 0.05  # two different numbers
  assert res['psnr'] == pytest.approx(np.mean(ys), abs=1e-9)
  assert res['psnr_rgb'] == pytest.approx(np.mean(rgbs), abs=1e-9)
  assert res['num_images'] == 2 and 0 < res['ssim'] < 1
  assert sorted(os.listdir(tmp_path / 'sr' / 'Pairs' / 'x2')) == ['a.png', 'b.png']


def test_rgb_psnr_shaves_like_y_psnr():
  rng = np.random.default_rng(3)
  hr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
  sr = hr.copy()
  sr[:3] = 255 - sr[:3]  # errors only in the top 3 rows
  assert metrics.psnr_rgb(sr, hr, 3) == float('inf')
  assert metrics.psnr_rgb(sr, hr, 2) == pytest.approx(ref_psnr(sr, hr, 2, y=False), abs=1e-9)
  sr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
  assert metrics.psnr_rgb(sr, hr, 4) == pytest.approx(ref_psnr(sr, hr, 4, y=False), abs=1e-9)
  with pytest.raises(ValueError, match='uint8'):
    metrics.psnr_rgb(sr.astype(np.float32), hr, 2)


def _bad_sets(root):
  """name -> (a paired set that cannot be scored, what the error must say)."""
  cases = {}
  make_set(root, 'Extra')
  png(root / 'Extra' / 'HR' / 'x2' / 'c.png', np.zeros((26, 30, 3), np.uint8))
  cases['Extra'] = r"holds 3 images but .* holds 2; without a partner: c\.png"
  make_set(root, 'Renamed')
  os.rename(root / 'Renamed' / 'LRblur' / 'x2' / 'b.png', root / 'Renamed' / 'LRblur' / 'x2' /
            'bb.png')
  cases['Renamed'] = r"unpaired names: .*HR/x2/b\.png.* and .*LRblur/x2/bb\.png"
  make_set(root, 'Big', sizes={'a': ((26, 30), (13, 15)), 'b': ((30, 26), (14, 13))})
  cases['Big'] = r"HR/x2/b\.png' \(30x26\) does not fit x2 its LR .*LRblur/x2/b\.png' \(14x13\)"
  make_set(root, 'Small', sizes={'a': ((25, 30), (13, 15))})
  cases['Small'] = r"HR/x2/a\.png' \(25x30\) does not fit"
  make_set(root, 'NoLR')
  for f in (root / 'NoLR' / 'LRblur' / 'x2').iterdir():
    f.unlink()
  cases['NoLR'] = r"no image files in .*NoLR/LRblur/x2"
  return cases


def test_paired_errors_name_the_files_and_nothing_is_written(tmp_path):
  data = tmp_path / 'data'
  for name, message in _bad_sets(data).items():
    with pytest.raises(ValueError, match=message):
      # A good dataset first: the check of every dataset comes before any image is run.
      make_set(data, 'Good')
      eval_lib.evaluate(data_dir=data, datasets=['Good', name], scales=[2],
                        save_images=tmp_path / 'sr', **BICUBIC)
    assert not (tmp_path / 'sr').exists()
  with pytest.raises(FileNotFoundError, match=r"Good/HR/x4' does not exist"):
    eval_lib.evaluate(data_dir=data, datasets=['Good'], scales=[4], **BICUBIC)

  # Through the CLI: one short line, exit 2, neither the report nor any image.
  cmd = [sys.executable, 'eval.py', '--method=bicubic', '--setting=paired', f'--data_dir={data}',
         '--datasets=Good,Extra', '--scales=2', f'--output={tmp_path / "r.json"}',
         f'--save_images={tmp_path / "sr"}', '--jax_cache_dir=']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'without a partner: c.png' in proc.stderr and 'Traceback' not in proc.stderr
  assert not (tmp_path / 'r.json').exists() and not (tmp_path / 'sr').exists()


def test_save_images_cli_writes_the_networks_outputs_and_never_overwrites(tiny_ckpt, tmp_path):
  pairs = make_set(tmp_path / 'data')
  sr_dir = tmp_path / 'sr'
  cmd = [sys.executable, 'eval.py', f'--checkpoint={tiny_ckpt}', '--setting=paired',
         f'--data_dir={tmp_path / "data"}', '--datasets=Pairs', f'--save_images={sr_dir}',
         '--jax_cache_dir=']
  proc = subprocess.run(cmd + [f'--output={tmp_path / "r.json"}'], capture_output=True, text=True,
                        cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (res,) = json.loads((tmp_path / 'r.json').read_text())['results']
  assert sorted(os.listdir(sr_dir / 'Pairs' / 'x2')) == ['a.png', 'b.png']
  params, _, _ = checkpoint.load_params(tiny_ckpt)
  apply = jax.jit(lambda x: model_lib.DSSR(**helpers.TINY).apply({'params': params}, x)['sr'])
  saved = {}
  for img in res['images']:
    hr, lr = pairs[img['name']]
    saved[img['name']] = (sr_dir / 'Pairs' / 'x2' / f'{img["name"]}.png').read_bytes()
    sr = read(sr_dir / 'Pairs' / 'x2' / f'{img["name"]}.png')
    direct = to8(np.asarray(apply(lr[None] / np.float32(255))[0]))
    # The network run here and in eval.py may differ in float32 summation order: a rounding
    # boundary crossed now and then, never more than one level.
    assert sr.shape == direct.shape and np.abs(sr.astype(int) - direct).max() <= 1
    assert np.mean(sr != direct) < 0.01
    crop = hr[:sr.shape[0], :sr.shape[1]]
    assert img['psnr'] == pytest.approx(ref_psnr(sr, crop, 2), abs=1e-9)
    assert img['psnr_rgb'] == pytest.approx(ref_psnr(sr, crop, 2, y=False), abs=1e-9)

  # Again (bicubic, quicker to start), with a fresh report name: the images are there, so nothing
  # is run or replaced.
  cmd[2:3] = ['--method=bicubic', '--scales=2']  # in place of --checkpoint
  proc = subprocess.run(cmd + [f'--output={tmp_path / "r2.json"}'], capture_output=True,
                        text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 2
  assert f"{sr_dir / 'Pairs' / 'x2' / 'a.png'}' already exists; pass --overwrite" in proc.stderr
  assert not (tmp_path / 'r2.json').exists()
  for name, data in saved.items():
    assert (sr_dir / 'Pairs' / 'x2' / f'{name}.png').read_bytes() == data

  # --overwrite replaces them (here with bicubic's outputs).
  os.remove(sr_dir / 'Pairs' / 'x2' / 'a.png')  # the first clash is now b.png
  with pytest.raises(FileExistsError, match='b.png'):
    eval_lib.evaluate(data_dir=tmp_path / 'data', datasets=['Pairs'], scales=[2],
                      save_images=sr_dir, **BICUBIC)
  assert not (sr_dir / 'Pairs' / 'x2' / 'a.png').exists()
  eval_lib.evaluate(data_dir=tmp_path / 'data', datasets=['Pairs'], scales=[2],
                    save_images=sr_dir, overwrite=True, **BICUBIC)
  for name, (_, lr) in pairs.items():
    np.testing.assert_array_equal(read(sr_dir / 'Pairs' / 'x2' / f'{name}.png'),
                                  to8(matlab_bicubic.imresize(lr / 255.0, 2)))


def test_save_images_names_for_gaussian8_and_div2krk(tmp_path):
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(5)
  png(tmp_path / 'data' / 'Tiny' / 'p.png', rng.integers(0, 256, (16, 18, 3), dtype=np.uint8))
  eval_lib.evaluate(data_dir=tmp_path / 'data', datasets=['Tiny'], scales=[2], method='bicubic',
                    options=eval_lib.EvalOptions(), show_progress=False,
                    save_images=tmp_path / 'sr')
  # Gaussian8 x2: sigma = linspace(0.8, 1.6, 8), two decimals.
  sigmas = ['0.80', '0.91', '1.03', '1.14', '1.26', '1.37', '1.49', '1.60']
  assert sorted(os.listdir(tmp_path / 'sr' / 'Tiny' / 'x2')) == [f'p_sig{s}.png' for s in sigmas]
  testsets.make_div2krk(tmp_path / 'data' / 'Tiny', tmp_path / 'data' / 'KR', scales=(2,))
  eval_lib.evaluate(data_dir=tmp_path / 'data', datasets=['KR'], scales=[2], method='bicubic',
                    options=eval_lib.EvalOptions(setting='div2krk'), show_progress=False,
                    save_images=tmp_path / 'sr')
  assert os.listdir(tmp_path / 'sr' / 'KR' / 'x2') == ['im_1.png']  # the LR file's stem


def test_paired_eval_reads_each_header_once(tiny_ckpt, tmp_path, monkeypatch):
  # The check, the memory plan and the records share one listing: a remote set is not asked for
  # the same header two or three times.
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  pairs = make_set(tmp_path / 'data')
  read = []
  size = image_files.image_size
  monkeypatch.setattr(image_files, 'image_size', lambda p: read.append(str(p)) or size(p))
  report = eval_lib.evaluate(data_dir=tmp_path / 'data', datasets=['Pairs'], scales=None,
                             checkpoint=tiny_ckpt, options=eval_lib.EvalOptions(setting='paired'),
                             show_progress=False)
  assert report['results'][0]['num_images'] == len(pairs)
  assert len(read) == 2 * len(pairs) == len(set(read)), read
