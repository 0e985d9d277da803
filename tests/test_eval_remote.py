"""Test sets, scoring, saved images and reports on gs:// (a local GCS emulator).

Everything is done twice, on a bucket and in a local folder, and must agree byte for byte; what
landed in the bucket is read back through the emulator's own JSON API, so a write that went to a
local folder named 'gs:' fails.
"""

import json
import os

import numpy as np
import pytest

import gcs_emulator

from dssr_jax import eval_lib
from dssr_jax import html_report
from dssr_jax import image_files
from dssr_jax import testsets


def _objects(env, url):
  """Object name below `url` (relative to it) -> bytes; no folder markers."""
  prefix = url.removeprefix('gs://').partition('/')[2]
  skip = len(prefix) + 1 if prefix else 0
  return {k[skip:]: v for k, v in gcs_emulator.objects(env, url).items() if not k.endswith('/')}


def _local_files(root):
  return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob('*') if p.is_file()}


def _dated(files):
  """A MATLAB file's 128-byte header holds its creation time: compare what follows."""
  return {k: v[128:] if k.endswith('.mat') else v for k, v in files.items()}


def test_export_score_save_and_report_on_a_bucket(gcs, tmp_path):
  root, env = gcs
  rng = np.random.default_rng(0)
  local = tmp_path / 'local'
  for name, shape in (('a', (24, 26, 3)), ('g', (25, 27))):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    image_files.write_png(local / 'hr' / 'Mini' / f'{name}.png', img)
    image_files.write_png(f'{root}/hr/Mini/{name}.png', img)
  assert _objects(env, f'{root}/hr') == _local_files(local / 'hr')

  reports = {}
  for base in (root, str(local)):
    assert testsets.export_gaussian8(f'{base}/hr/Mini', f'{base}/data', scales=(2,)) == 16
    testsets.make_div2krk(f'{base}/hr/Mini', f'{base}/data/KR', seed=1, scales=(2,))
    report = {}
    page = html_report.Collector(f'{base}/html', crop=8, window=16)
    for setting, dataset in (('paired', 'Mini'), ('div2krk', 'KR')):
      report[setting] = eval_lib.evaluate(
          data_dir=f'{base}/data', datasets=[dataset], scales=[2], method='bicubic',
          options=eval_lib.EvalOptions(setting=setting), show_progress=False,
          save_images=f'{base}/sr', on_image=page.add if setting == 'paired' else None)
    eval_lib.write_report(report['paired'], f'{base}/r.json')
    page.write(report['paired'])
    with pytest.raises(FileExistsError, match=f"'{base}/html/index.html' already exists"):
      html_report.check_free(f'{base}/html', overwrite=False)
    with pytest.raises(FileExistsError, match=f"'{base}/r.json' already exists"):
      eval_lib.write_report(report['paired'], f'{base}/r.json')
    with pytest.raises(FileExistsError, match=f"'{base}/sr/Mini/x2/a_sig0.80.png' already"):
      eval_lib.evaluate(data_dir=f'{base}/data', datasets=['Mini'], scales=[2], method='bicubic',
                        options=eval_lib.EvalOptions(setting='paired'), show_progress=False,
                        save_images=f'{base}/sr')
    reports[base] = report

  for sub in ('data', 'sr', 'html'):
    remote = _objects(env, f'{root}/{sub}')
    assert _dated(remote) == _dated(_local_files(local / sub)) and len(remote) > 16
  assert len(_objects(env, f'{root}/sr/Mini/x2')) == 16
  assert len(_objects(env, f'{root}/html/img/Mini/x2')) == 16 * 4  # LR, bicubic, HR, thumbnail
  assert _objects(env, f'{root}/sr/KR/x2').keys() == {'im_1.png', 'im_2.png'}
  for setting in ('paired', 'div2krk'):
    assert reports[root][setting]['results'] == reports[str(local)][setting]['results']
  back = json.loads(_objects(env, root)['r.json'])
  assert back['results'][0]['psnr'] == pytest.approx(reports[root]['paired']['results'][0]['psnr'])
  assert _objects(env, root)['r.csv'] == (local / 'r.csv').read_bytes()
  assert not os.path.exists('gs:') and not (tmp_path / 'gs:').exists()


def test_missing_remote_folders_are_named(gcs):
  root, _ = gcs
  with pytest.raises(FileNotFoundError, match=f"'{root}/nothing' is not a folder"):
    eval_lib.evaluate(data_dir=f'{root}/nothing', datasets=['X'], scales=[2], method='bicubic',
                      options=eval_lib.EvalOptions(setting='paired'), show_progress=False)
  image_files.write_png(f'{root}/only_hr/S/HR/x2/a.png', np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(FileNotFoundError, match=f"'{root}/only_hr/S/LRblur/x2' does not exist"):
    eval_lib.evaluate(data_dir=f'{root}/only_hr', datasets=['S'], scales=[2], method='bicubic',
                      options=eval_lib.EvalOptions(setting='paired'), show_progress=False)
