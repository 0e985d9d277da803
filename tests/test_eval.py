"""eval: protocol numbers against independent computations, report files, end to end, errors."""

import csv
import dataclasses
import json
import math
import subprocess
import sys

import jax
import numpy as np
import pytest

import helpers

from dssr_jax import checkpoint
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import matlab_bicubic
from dssr_jax import metrics
from dssr_jax import model as model_lib

REPO = __import__('pathlib').Path(__file__).resolve().parent.parent
TINY = helpers.TINY


@dataclasses.dataclass
class Rec:
  name: str
  sigma: float | None
  hr: np.ndarray
  lr: np.ndarray
  grey: bool = False


def _q(x):
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope='module')
def small_data(benchmark_dir, tmp_path_factory):
  """A data_dir with one tiny dataset: 24x24 crops of two Set5 images."""
  d = tmp_path_factory.mktemp('data')
  (d / 'Tiny').mkdir()
  for name in ('baby', 'bird'):
    hr = image_files.read_image(benchmark_dir / 'Set5' / f'{name}.png')
    image_files.write_png(d / 'Tiny' / f'{name}.png', hr[100:124, 100:124])
  return d


def test_bicubic_reproduces_the_protocol_anchors(benchmark_dir):
  # docs/design.md section 4: MATLAB-bicubic down then up, no blur, on the shipped Set5: 33.68 dB (x2)
  # and 28.43 dB (x4). The records are built here from imresize alone, not by testsets.
  for scale, anchor in ((2, 33.68), (4, 28.43)):
    recs = []
    for path in image_files.list_images(benchmark_dir / 'Set5'):
      hr = image_files.read_image(path)
      hr = hr[:hr.shape[0] // scale * scale, :hr.shape[1] // scale * scale]
      recs.append(Rec(path.stem, None, hr, _q(matlab_bicubic.imresize(hr / 255.0, 1 / scale))))
    opts = eval_lib.EvalOptions()
    got = eval_lib.score_records(
        recs, eval_lib.network_outputs(eval_lib.bicubic_sr_fn(scale), scale, opts), scale, opts)
    assert got['num_images'] == 5 and got['per_step_psnr'] == []
    assert abs(got['psnr'] - anchor) < 0.006, (scale, got['psnr'])


def test_score_image_per_step_numbers():
  rng = np.random.default_rng(0)
  hr = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
  truth = hr / 255.0
  steps = np.stack([truth + 0.1, truth - 0.02, truth + 0.0])  # step 1 worst, step 3 exact
  row = eval_lib.score_image({'sr': steps.mean(0), 'steps': steps}, hr, 2, False)
  by_hand = [metrics.psnr_y(_q(s), hr, 2) for s in steps]
  assert row['per_step_psnr'] == by_hand and math.isinf(by_hand[2])
  means = [metrics.psnr_y(_q(steps[:t].mean(0)), hr, 2) for t in (1, 2, 3)]
  np.testing.assert_allclose(row['per_step_mean_psnr'], means)
  assert row['psnr'] == pytest.approx(means[2])


def _report():
  imgs = [{'name': 'a', 'sigma': 0.8, 'psnr': 30.0, 'ssim': 0.9,
           'per_step_psnr': [29.0, 30.5], 'per_step_mean_psnr': [29.0, 30.0]},
          {'name': 'b', 'sigma': 1.6, 'psnr': float('inf'), 'ssim': 1.0,
           'per_step_psnr': [31.0, 32.5], 'per_step_mean_psnr': [31.0, 32.0]}]
  res = [{'dataset': 'Set5', 'scale': 2, 'setting': 'gaussian8', 'method': 'dssr', 'psnr': 37.456,
          'ssim': 0.95291, 'per_step_psnr': [30.0, 31.5], 'per_step_mean_psnr': [30.0, 31.0],
          'images': imgs},
         {'dataset': 'Set14', 'scale': 2, 'setting': 'gaussian8', 'method': 'dssr', 'psnr': 33.1,
          'ssim': 0.91, 'per_step_psnr': [], 'per_step_mean_psnr': [], 'images': []}]
  return {'results': res, 'run': {'method': 'dssr', 'setting': 'gaussian8'}}


def test_tables_json_and_csv(tmp_path):
  report = _report()
  assert eval_lib.markdown_table(report).splitlines() == [
      '| Method | Scale | Set5 | Set14 |', '|---|---|---|---|',
      '| dssr | x2 | 37.46 / 0.9529 | 33.10 / 0.9100 |']
  steps = eval_lib.per_step_table(report).splitlines()
  assert steps[2] == '| Set5 | x2 | - | PSNR, step t output | 30.00 | 31.50 |'
  assert steps[3] == '| Set5 | x2 | - | PSNR, mean of steps 1..t | 30.00 | 31.00 |'
  json_path, csv_path = eval_lib.write_report(report, tmp_path / 'r.json')
  assert csv_path == tmp_path / 'r.csv'
  back = json.loads(json_path.read_text())
  r0 = back['results'][0]
  assert {'dataset', 'scale', 'setting', 'method', 'psnr', 'ssim', 'per_step_psnr',
          'images'} <= set(r0)
  assert set(r0['images'][0]) >= {'name', 'sigma', 'psnr', 'ssim'}
  assert r0['images'][1]['psnr'] is None  # inf is not JSON
  rows = list(csv.DictReader(csv_path.open()))
  assert [r['name'] for r in rows] == ['a', 'b', '(mean)', '(mean)']
  assert rows[0]['psnr_step2'] == '30.500000' and rows[2]['psnr_mean_steps1to2'] == '31.000000'
  with pytest.raises(FileExistsError, match='--overwrite'):
    eval_lib.write_report(report, json_path)
  eval_lib.write_report(report, json_path, overwrite=True)
  with pytest.raises(ValueError, match='.json'):
    eval_lib.write_report(report, tmp_path / 'r.txt')


def test_clear_errors(tiny_ckpt, small_data, tmp_path):
  opts = eval_lib.EvalOptions()
  with pytest.raises(FileNotFoundError, match=r"Set5.*does not exist.*\['Tiny'\]"):
    eval_lib.evaluate(data_dir=small_data, datasets=['Set5'], scales=[2], options=opts,
                      method='bicubic')
  with pytest.raises(FileNotFoundError, match='not a folder'):
    eval_lib.evaluate(data_dir=tmp_path / 'no', datasets=['Tiny'], scales=[2], options=opts)
  with pytest.raises(ValueError, match=r'trained at x2, but --scales asks for x3'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[2, 3], options=opts,
                      checkpoint=tiny_ckpt)
  with pytest.raises(ValueError, match=r'channels=128 \(checkpoint has 8\)'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=None, options=opts,
                      checkpoint=tiny_ckpt, model_config=dict(TINY, scale=4, channels=128))
  with pytest.raises(ValueError, match='needs a checkpoint'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[2], options=opts)
  with pytest.raises(ValueError, match='--scales is required'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=None, options=opts,
                      method='bicubic')
  with pytest.raises(ValueError, match=r'div2krk exists at scales \(2, 4\), not x3'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[3], method='bicubic',
                      options=eval_lib.EvalOptions(setting='div2krk'))


def test_bicubic_gaussian8_set5_x2_is_30_36_db_0_8721_by_an_independent_computation(benchmark_dir,
                                                                                  tmp_path):
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  report = eval_lib.evaluate(data_dir=benchmark_dir, datasets=['Set5'], scales=[2],
                             options=eval_lib.EvalOptions(), method='bicubic',
                             cache_dir=tmp_path, show_progress=False)
  (res,) = report['results']
  assert (res['dataset'], res['scale'], res['setting'], res['method']) == (
      'Set5', 2, 'gaussian8', 'bicubic')
  by_hand = []
  for rec in testsets.gaussian8(benchmark_dir / 'Set5', 2):
    sr = _q(matlab_bicubic.imresize(rec.lr / 255.0, 2))
    by_hand.append((rec.name, rec.sigma, metrics.psnr_y(sr, rec.hr, 2),
                    metrics.ssim_y(sr, rec.hr, 2)))
  assert len(res['images']) == len(by_hand) == 40
  for img, (name, sigma, psnr, ssim) in zip(res['images'], by_hand):
    assert (img['name'], img['sigma']) == (name, sigma)
    assert img['psnr'] == pytest.approx(psnr, abs=1e-9)
    assert img['ssim'] == pytest.approx(ssim, abs=1e-12)
  assert res['psnr'] == pytest.approx(np.mean([r[2] for r in by_hand]), abs=1e-9)
  assert res['ssim'] == pytest.approx(np.mean([r[3] for r in by_hand]), abs=1e-12)
  # The published-protocol number (README's bicubic table): 30.36 dB / 0.8721; blur makes it
  # harder than the no-blur anchor (33.68 dB), more so for wider kernels.
  assert round(res['psnr'], 2) == 30.36 and round(res['ssim'], 4) == 0.8721, res
  psnr_by_sigma = [np.mean([i['psnr'] for i in res['images'] if i['sigma'] == s])
                   for s in sorted({i['sigma'] for i in res['images']})]
  assert np.all(np.diff(psnr_by_sigma) < 0)


@pytest.fixture(scope='module')
def fixture_ckpt(fixtures_dir, tmp_path_factory):
  """The authors' fixture network (converted) saved as a dssr-jax checkpoint."""
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  z = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  cfg = {k: int(z[k]) for k in ('scale', 'channels', 'struct_blocks', 'recon_blocks', 'num_steps')}
  sd = {k[len('sd/'):]: z[k] for k in z.files if k.startswith('sd/')}
  params = convert.torch_to_flax(sd, model_lib.DSSR(**cfg))
  d = tmp_path_factory.mktemp('fixture_ckpt')
  checkpoint.save_params(d, params, cfg, step=0)
  return d, cfg, params


def test_eval_end_to_end_on_the_fixture_weights(fixture_ckpt, small_data, tmp_path):
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  ckpt, cfg, params = fixture_ckpt
  out = tmp_path / 'fixture.json'
  cmd = [sys.executable, str(REPO / 'eval.py'), f'--checkpoint={ckpt}', f'--data_dir={small_data}',
         '--datasets=Tiny', '--scales=2', f'--output={out}', f'--jax_cache_dir={tmp_path / "xla"}',
         f'--cache_dir={tmp_path / "lr"}']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '| dssr | x2 |' in proc.stdout and 'Per step (Table IV, Fig. 9)' in proc.stdout
  report = json.loads(out.read_text())
  (res,) = report['results']
  assert report['run']['step'] == 0 and report['run']['model'] == cfg
  assert len(res['images']) == 16 and len(res['per_step_psnr']) == cfg['num_steps']
  assert (tmp_path / 'fixture.csv').is_file()
  # One record scored independently: the network applied directly, then the metrics.
  rec = next(iter(testsets.gaussian8(small_data / 'Tiny', 2)))
  direct = model_lib.DSSR(**cfg).apply({'params': params}, rec.lr[None] / np.float32(255))
  img = res['images'][0]
  assert (img['name'], img['sigma']) == (rec.name, rec.sigma)
  assert img['psnr'] == pytest.approx(metrics.psnr_y(_q(np.asarray(direct['sr'][0])), rec.hr, 2),
                                      abs=1e-6)
  step2 = metrics.psnr_y(_q(np.asarray(direct['steps'][1, 0])), rec.hr, 2)
  assert img['per_step_psnr'][1] == pytest.approx(step2, abs=1e-6)
  # The mean of all T step outputs is the network's output.
  assert res['per_step_mean_psnr'][-1] == pytest.approx(res['psnr'], abs=0.01)
  # Same command again: the results file is not replaced without --overwrite.
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 2 and 'already exists' in proc.stderr


def test_eval_on_a_checkpoint_written_by_training(small_data, tmp_path):
  # A workdir from the real training loop (the smoke config: a tiny network, 2 steps on the
  # embedded photos): its checkpoints hold the extra training items, and eval reads them by
  # workdir (latest step) and by step.
  from configs import smoke  # pylint: disable=g-import-not-at-top
  from dssr_jax import train_loop  # pylint: disable=g-import-not-at-top
  config = smoke.get_config()
  config.train.update(num_steps=2, checkpoint_every=1, keep_checkpoints=2)
  train_loop.train_and_evaluate(config, tmp_path / 'work')
  assert sorted(p.name for p in (tmp_path / 'work' / 'checkpoints').iterdir()
                if p.name.isdigit()) == ['1', '2']
  options = eval_lib.EvalOptions(tile=8, overlap=4)  # tiled here: the same numbers, less memory
  psnr = {}
  for step in (None, 1):
    report = eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=None,
                               options=options, checkpoint=tmp_path / 'work', step=step,
                               model_config=config.model.to_dict(), show_progress=False)
    (res,) = report['results']
    psnr[report['run']['step']] = res['psnr']
    assert res['num_images'] == 16
    assert len(res['per_step_psnr']) == config.model.num_steps
    assert all(np.isfinite(i['psnr']) for i in res['images'])
  assert set(psnr) == {1, 2}  # the latest by default, the asked one otherwise ...
  assert psnr[1] != psnr[2]  # ... and their weights differ.


def test_bicubic_on_the_div2krk_sample(benchmark_dir):
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  report = eval_lib.evaluate(data_dir=benchmark_dir, datasets=['DIV2KRK_sample'], scales=[4],
                             options=eval_lib.EvalOptions(setting='div2krk'), method='bicubic',
                             show_progress=False)
  (res,) = report['results']
  assert res['setting'] == 'div2krk' and res['num_images'] == 4
  rec = next(iter(testsets.div2krk(benchmark_dir / 'DIV2KRK_sample', 4)))
  img = res['images'][0]
  assert (img['name'], img['sigma']) == (rec.name, None)
  sr = _q(matlab_bicubic.imresize(rec.lr / 255.0, 4))
  assert img['psnr'] == pytest.approx(metrics.psnr_y(sr, rec.hr, 4), abs=1e-9)
  assert 18 < res['psnr'] < 35


def test_eval_cli_self_ensemble_scores_the_mean_of_eight_transforms(tiny_ckpt, small_data,
                                                                    tmp_path):
  """`eval.py --self_ensemble`: each image is scored on the mean of the network's outputs over the
  8 flips/transposes of its LR, each turned back (computed here with np.rot90), steps included."""
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'se.json'
  cmd = [sys.executable, str(REPO / 'eval.py'), f'--checkpoint={tiny_ckpt}',
         f'--data_dir={small_data}', '--datasets=Tiny', '--self_ensemble', f'--output={out}',
         '--jax_cache_dir=']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '| dssr+ | x2 |' in proc.stdout and 'x8 self-ensemble' in proc.stdout
  report = json.loads(out.read_text())
  (res,) = report['results']
  assert report['run']['self_ensemble'] and res['method'] == 'dssr+' and res['num_images'] == 16
  params, _, _ = checkpoint.load_params(tiny_ckpt)
  apply = jax.jit(lambda x: model_lib.DSSR(**TINY).apply({'params': params}, x))
  gaps = []
  for rec, img in zip(testsets.gaussian8(small_data / 'Tiny', 2), res['images']):
    lr = rec.lr[None] / np.float32(255)
    outs = []
    for flip in (False, True):
      for k in range(4):
        x = np.rot90(lr[:, :, ::-1] if flip else lr, k, axes=(1, 2))
        o = {key: np.rot90(np.asarray(v), -k, axes=(-3, -2)) for key, v in apply(x).items()}
        outs.append({key: v[..., :, ::-1, :] if flip else v for key, v in o.items()})
    sr = np.mean([o['sr'][0] for o in outs], axis=0)
    steps = np.mean([o['steps'][:, 0] for o in outs], axis=0)
    assert (img['name'], img['sigma']) == (rec.name, rec.sigma)
    # float32 sums in another order move a pixel across a rounding boundary now and then
    # (measured: up to 4e-5 dB).
    want = metrics.psnr_y(_q(sr), rec.hr, 2)
    assert img['psnr'] == pytest.approx(want, abs=3e-4)
    assert img['ssim'] == pytest.approx(metrics.ssim_y(_q(sr), rec.hr, 2), abs=1e-5)
    assert img['per_step_psnr'][0] == pytest.approx(metrics.psnr_y(_q(steps[0]), rec.hr, 2),
                                                    abs=3e-4)
    gaps += [abs(metrics.psnr_y(_q(np.mean([o['sr'][0] for o in half], axis=0)), rec.hr, 2) - want)
             for half in (outs[:4], outs[4:])]
  # Half the transforms (rotations only, or the mirrored ones) would score visibly differently.
  assert max(gaps) > 3e-3, max(gaps)


def test_kernel_width_bicubic_meets_the_published_anchors(benchmark_dir):
  # Table VI's bicubic row at width 0 (downsampling only): Set5 33.66 dB (x2), 28.42 dB (x4).
  report = eval_lib.evaluate(
      data_dir=benchmark_dir, datasets=['Set5'], scales=[2, 4], method='bicubic',
      options=eval_lib.EvalOptions(setting='kernel_width', kernel_widths=(0.0, 1.2)),
      show_progress=False)
  rows = {(r['scale'], r['kernel_width']): r for r in report['results']}
  assert list(rows) == [(2, 0.0), (2, 1.2), (4, 0.0), (4, 1.2)]  # one row per scale x width
  for scale, anchor in ((2, 33.66), (4, 28.42)):
    r = rows[scale, 0.0]
    assert abs(r['psnr'] - anchor) < 0.05, (scale, r['psnr'])
    assert r['paper'] == {'psnr': anchor, 'ssim': None, 'table': 'VI'}
    assert [i['lr_stem'] for i in rows[scale, 1.2]['images']][:2] == ['baby_w1.2', 'bird_w1.2']
    assert rows[scale, 1.2]['psnr'] < r['psnr'] - 0.5  # the blur costs bicubic
  assert rows[2, 1.2]['paper']['psnr'] == 29.28
  table = eval_lib.markdown_table(report).splitlines()
  assert table[0] == '| Method | Scale | Width | Set5 | Set5 paper |'
  assert table[2].startswith('| bicubic | x2 | 0 | 33.68 / ')
  assert table[2].endswith(' | 33.66 (VI) |')
  with pytest.raises(ValueError, match='--kernel_widths is for --setting=kernel_width'):
    eval_lib.evaluate(data_dir=benchmark_dir, datasets=['Set5'], scales=[2], method='bicubic',
                      options=eval_lib.EvalOptions(kernel_widths=(1.0,)))


def _row(dataset, scale, setting, method, psnr, width=None):
  return {'dataset': dataset, 'scale': scale, 'setting': setting, 'kernel_width': width,
          'method': method, 'psnr': psnr, 'ssim': 0.5, 'psnr_rgb': psnr,
          'paper': eval_lib.paper_value(dataset, scale, setting, method, width),
          'per_step_psnr': [psnr] * 4 if method == 'dssr' else [],
          'per_step_mean_psnr': [psnr] * 4 if method == 'dssr' else [],
          'per_step_detail_l1': [0.1, 0.05, 0.03, 0.02] if method == 'dssr' else [], 'images': []}


def test_the_papers_values_are_printed_beside_ours(tmp_path):
  report = {'results': [_row('Set5', 2, 'gaussian8', 'dssr', 36.0),
                        _row('Set5', 2, 'gaussian8', 'bicubic', 27.0),
                        _row('Set5', 2, 'gaussian8', 'dssr+', 36.5),
                        _row('Set5', 2, 'paired', 'dssr', 35.0),
                        _row('Set14', 4, 'kernel_width', 'dssr', 27.0, width=2.4)],
            'run': {'method': 'dssr', 'setting': 'gaussian8'}}
  # Table V: DSSR 37.46 / 0.9529 and bicubic 28.82 / 0.8577 on Set5 x2; Table VI: Set14 x4 width
  # 2.4 DSSR 28.54; nothing for self-ensemble or a paired set.
  assert [r['paper'] and r['paper']['psnr'] for r in report['results']] == [
      37.46, 28.82, None, None, 28.54]
  table = eval_lib.markdown_table(report).splitlines()
  assert table[0] == ('| Method | Scale | Width | Setting | Set5 | Set5 paper | Set14 | '
                      'Set14 paper |')
  assert table[2] == '| dssr | x2 |  | gaussian8 | 36.00 / 0.5000 | 37.46 / 0.9529 (V) | - | - |'
  assert table[3] == '| bicubic | x2 |  | gaussian8 | 27.00 / 0.5000 | 28.82 / 0.8577 (V) | - | - |'
  assert table[4] == '| dssr+ | x2 |  | gaussian8 | 36.50 / 0.5000 | - | - | - |'
  assert table[6] == '| dssr | x4 | 2.4 | kernel_width | - | - | 27.00 / 0.5000 | 28.54 (VI) |'
  steps = eval_lib.per_step_table(report).splitlines()
  assert '| Set5 | x2 | - | PSNR, paper (Table IV) | 37.15 | 37.37 | 37.44 | 37.46 |' in steps
  assert ('| Set5 | x2 | - | L1 detail to HR - bic (Fig. 9) | 0.10000 | 0.05000 | 0.03000 | '
          '0.02000 |') in steps
  json_path, csv_path = eval_lib.write_report(report, tmp_path / 'r.json')
  assert json.loads(json_path.read_text())['results'][0]['paper'] == {
      'psnr': 37.46, 'ssim': 0.9529, 'table': 'V'}
  rows = list(csv.DictReader(csv_path.open()))
  assert rows[0]['paper_psnr'] == '37.460000' and rows[1]['paper_ssim'] == '0.857700'
  assert rows[4]['kernel_width'] == '2.4' and rows[4]['detail_l1_step4'] == '0.020000'


def _torch_bicubic_up(x, s):
  """PyTorch's bicubic upsampling (align_corners=False, a = -0.75, border indices clamped) of
  [h, w, c], written from its definition."""
  a = -0.75

  def weight(t):
    t = abs(t)
    return ((a + 2) * t ** 3 - (a + 3) * t ** 2 + 1 if t <= 1
            else a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0)

  def matrix(n):
    m = np.zeros((n * s, n))
    for o in range(n * s):
      src = (o + 0.5) / s - 0.5
      f = int(np.floor(src))
      for k in range(f - 1, f + 3):
        m[o, min(max(k, 0), n - 1)] += weight(src - k)
    return m

  return np.einsum('Hh,hwc,Ww->HWc', matrix(x.shape[0]), x, matrix(x.shape[1]))


def test_detail_l1_is_zero_for_the_label_and_c_for_an_offset():
  rng = np.random.default_rng(7)
  hr = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
  lr = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
  label = hr / 255.0 - _torch_bicubic_up(lr / 255.0, 2)
  details = np.stack([label, label + 0.03, label - 0.25])
  row = eval_lib.score_image({'sr': hr / 255.0, 'details': details}, hr, 2, False, lr)
  np.testing.assert_allclose(row['detail_l1'], [0.0, 0.03, 0.25], atol=2e-6)


def test_saved_images_score_the_same_through_method_images(tiny_ckpt, small_data, tmp_path):
  from dssr_jax import testsets  # pylint: disable=g-import-not-at-top
  seen = []
  ours = eval_lib.evaluate(
      data_dir=small_data, datasets=['Tiny'], scales=None, options=eval_lib.EvalOptions(),
      checkpoint=tiny_ckpt, show_progress=False, save_images=tmp_path / 'sr',
      on_image=lambda head, rec, lr, out, row: seen.append((rec, lr, out, row)))
  (res,) = ours['results']
  # The per-image callback saw every image once, with what was scored and saved.
  assert [s[3] for s in seen] == res['images'] and len(seen) == 16
  rec, lr, out, row = seen[0]
  np.testing.assert_array_equal(lr, rec.lr)
  np.testing.assert_array_equal(image_files.read_image(tmp_path / 'sr' / 'Tiny' / 'x2' /
                                                   f'{rec.lr_stem}.png'), out['sr'])
  # Fig. 9: per step and per sigma, the detail maps' L1 to HR - bic(LR), from the definition.
  assert out['details'].shape == (TINY['num_steps'], 24, 24, 3)
  label = rec.hr / 255.0 - _torch_bicubic_up(rec.lr / 255.0, 2)
  np.testing.assert_allclose(row['detail_l1'], np.abs(out['details'] - label).mean(axis=(1, 2, 3)),
                             atol=1e-6)
  assert len(res['per_step_detail_l1']) == TINY['num_steps']
  assert len(res['per_sigma_detail_l1']) == 8
  np.testing.assert_allclose(res['per_step_detail_l1'],
                             np.mean([s[3]['detail_l1'] for s in seen], axis=0))

  theirs = eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[2], method='images',
                             sr_dir=tmp_path / 'sr', options=eval_lib.EvalOptions(),
                             show_progress=False)
  (other,) = theirs['results']
  assert other['method'] == 'images' and other['paper'] is None
  for key in ('psnr', 'ssim', 'psnr_rgb'):
    assert other[key] == res[key]
    assert [i[key] for i in other['images']] == [i[key] for i in res['images']]

  # One file gone, one of the wrong size: one line names both, before anything is scored.
  x2 = tmp_path / 'sr' / 'Tiny' / 'x2'
  stems = testsets.gaussian8_stems(small_data / 'Tiny', 2)
  (x2 / f'{stems[3]}.png').unlink()
  image_files.write_png(x2 / f'{stems[9]}.png', np.zeros((24, 22, 3), np.uint8))
  cmd = [sys.executable, str(REPO / 'eval.py'), '--method=images', f'--sr_dir={tmp_path / "sr"}',
         f'--data_dir={small_data}', '--datasets=Tiny', '--scales=2',
         f'--output={tmp_path / "r.json"}', '--jax_cache_dir=']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr[-2000:]
  assert proc.stderr.startswith('error: --sr_dir: 2 SR image(s) missing or of the wrong size')
  assert f'{stems[3]}.png (missing)' in proc.stderr
  assert f'{stems[9]}.png (is 24x22, the HR is 24x24)' in proc.stderr
  assert not (tmp_path / 'r.json').exists() and not (tmp_path / 'r.csv').exists()
  with pytest.raises(ValueError, match='--sr_dir is for it only'):
    eval_lib.evaluate(data_dir=small_data, datasets=['Tiny'], scales=[2], method='bicubic',
                      sr_dir=tmp_path / 'sr', options=eval_lib.EvalOptions())
