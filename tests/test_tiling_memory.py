"""Memory-bounded inference: the tile chosen from XLA's memory analysis, whole / tiled / impossible
budgets, the infer CLI under a budget, and eval's refusal before it starts."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import helpers

from dssr_jax import checkpoint
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import model as model_lib
from dssr_jax import tiling
from dssr_jax import upscaling

REPO = pathlib.Path(__file__).resolve().parent.parent


class FakeProgram:
  """A stand-in for compiled programs: bytes = fixed + per_px * pixels**power, calls counted."""

  def __init__(self, fixed=50_000, per_px=1060, power=1.0):
    self.fixed, self.per_px, self.power, self.calls = fixed, per_px, power, []

  def bytes(self, px):
    return int(self.fixed + self.per_px * px**self.power)

  def __call__(self, shape):
    self.calls.append(shape)
    px = shape[0] * shape[1] * shape[2]
    total = self.bytes(px)
    return tiling.ProgramMemory(temp=total - self.fixed - 12 * px, argument=self.fixed,
                                output=12 * px)


def _covering(n, t, overlap):
  """Start offsets of tiles of length t over [0, n), by hand: as few as cover n, each next one
  starting where the previous one ends less `overlap` (the last flush with the end)."""
  if t >= n:
    return [0]
  count = 1 + -(-(n - t) // (t - overlap))
  return [min(i * (t - overlap), n - t) for i in range(count)]


def _check_layout(plan, h, w, overlap):
  """Lays the plan's tiles over the image, counting how many cover each pixel: none missing, the
  grid and tile count as the plan says, neighbours sharing at least `overlap` pixels."""
  th, tw = plan.tile
  ys, xs = tiling.tile_starts(h, th, overlap), tiling.tile_starts(w, tw, overlap)
  assert (len(ys), len(xs)) == plan.grid and len(ys) * len(xs) == plan.tiles
  count = np.zeros((h, w), int)
  for y in ys:
    for x in xs:
      assert y >= 0 and x >= 0 and y + th <= h and x + tw <= w
      count[y:y + th, x:x + tw] += 1
  assert count.min() >= 1  # no gap
  # Along each axis: the band two neighbours share (covered twice) is >= overlap wide.
  for starts, t, line in ((ys, th, count[:, 0]), (xs, tw, count[0, :])):
    for a, b in zip(starts, starts[1:]):
      assert a < b and a + t - b >= overlap
      assert np.all(line[b:a + t] >= 2)
  assert count.sum() == plan.tiles * th * tw == round(plan.computed * h * w)


def test_a_photo_is_cut_into_few_tiles_that_compute_little_more_than_its_pixels():
  # The paper network's memory (10.5 kB per LR pixel, 33 MB of weights) under 2 GB: the whole
  # 540x960 photo needs 5.5 GB; a tile may have at most (2e9 - 33e6) / 10,500 = 187,333 pixels,
  # less than a third of the photo (172,800) with its overlaps, so it takes four tiles.
  fake = FakeProgram(fixed=33_000_000, per_px=10_500)
  budget = 2 * 10**9
  planner = tiling.TilePlanner(fake, budget, scale=2, overlap=32, host_shares_budget=False)
  plan = planner.plan((1, 540, 960, 3))
  th, tw = plan.tile
  assert plan.tiles * th * tw <= 1.3 * 540 * 960  # six squares of 416 would be 2.0x
  assert plan.need == fake.bytes(th * tw) <= budget
  assert plan.tiles == 4 and th * tw > 540 * 960 / 4
  _check_layout(plan, 540, 960, 32)
  # The smallest tile (checked first), the whole image, then only the chosen tile.
  assert fake.calls == [(1, 64, 64, 3), (1, 540, 960, 3), (1, th, tw, 3)]
  assert '2x2 tiles of 288x496 LR pixels (overlap 32, 1.10x' in plan.describe()


def test_plans_cover_the_image_with_the_fewest_pixels_that_fit():
  # Against a brute force over every tile shape (multiples of 16 or the full side) whose program
  # fits: no plan computes more pixels than the best of them, and every plan lays its tiles
  # without a gap or a thin overlap.
  budget = 1_200_000  # tiles of at most (1.2e6 - 50,000) / 1060 = 1084 pixels
  for h, w, overlap in [(100, 150, 8), (20, 400, 8), (97, 61, 5), (300, 41, 0), (64, 200, 16)]:
    fake = FakeProgram()
    planner = tiling.TilePlanner(fake, budget, scale=2, overlap=overlap, host_shares_budget=False)
    plan = planner.plan((1, h, w, 3))
    lengths = lambda n: [n] + list(range(max(16, 2 * overlap), n, 16))
    best = min(len(_covering(h, th, overlap)) * len(_covering(w, tw, overlap)) * th * tw
               for th in lengths(h) for tw in lengths(w) if fake.bytes(th * tw) <= budget)
    th, tw = plan.tile
    assert plan.tiles * th * tw == best, (h, w)
    assert plan.need == fake.bytes(th * tw) <= budget
    _check_layout(plan, h, w, overlap)
    assert len(fake.calls) <= 3


def test_later_images_reuse_the_line_and_small_ones_run_whole():
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 1_200_000, scale=2, overlap=8, host_shares_budget=False)
  plan = planner.plan((1, 100, 150, 3))
  assert plan.whole == 50_000 + 1060 * 15_000 and plan.whole_exact
  calls = len(fake.calls)
  # The next image: the line already knows two sizes, so only its own tile is compiled.
  assert planner.plan((1, 120, 90, 3)).tiles > 1
  assert len(fake.calls) <= calls + 1
  # A small image runs whole: its own program is measured (it is the one that will run).
  small = planner.plan((1, 20, 30, 3))
  assert small.tile == 0 and small.need == 50_000 + 1060 * 600 and small.tiles == 1
  assert 'whole image' in small.describe()


def test_an_optimistic_line_is_corrected_by_measuring():
  # Memory growing slower than the pixels: the line through the smallest tile and the whole image
  # under-estimates the sizes between them. Tiles it wrongly predicts to fit are measured and
  # refused; the chosen one is measured to fit.
  fake = FakeProgram(per_px=1000, power=0.8)
  budget = 1_000_000
  planner = tiling.TilePlanner(fake, budget, scale=2, overlap=8, host_shares_budget=False)
  plan = planner.plan((1, 200, 200, 3))
  th, tw = plan.tile
  refused = [s for s in fake.calls if fake.bytes(s[1] * s[2]) > budget and s[1:3] != (200, 200)]
  assert refused  # the line was wrong at least once
  assert plan.need == fake.bytes(th * tw) <= budget
  _check_layout(plan, 200, 200, 8)


def test_host_buffers_share_the_budget_on_cpu():
  # Same programs; the host now also holds the input (12 B/px), the output (12 B/px per LR px)
  # twice and the weight sum (4 B per output px = 16 B per LR px) of the 100x150 image: 52 B/px.
  # A tile of 32x32 (1,135,440 bytes of program, the choice without them) fits with them only
  # if it has fewer pixels.
  host = 15_000 * (12 + 2 * 12 + 16)
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 50_000 + 1060 * 32**2 + host - 1, scale=2, overlap=8)
  plan = planner.plan((1, 100, 150, 3))
  th, tw = plan.tile
  assert th * tw < 32**2 and plan.need == 50_000 + 1060 * th * tw + host


def test_impossible_budgets_are_clear_errors():
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 100_000, scale=2, overlap=8, host_shares_budget=False)
  with pytest.raises(tiling.MemoryBudgetError,
                     match=r'0\.1 MB cannot hold even the smallest tile \(16x16.*needs 0\.3 MB'):
    planner.check_smallest()
  with pytest.raises(tiling.MemoryBudgetError, match='smallest tile'):
    planner.plan((1, 100, 150, 3))
  with pytest.raises(ValueError, match='must be positive'):
    tiling.TilePlanner(fake, 0, scale=2)
  with pytest.raises(ValueError, match='must be positive'):
    upscaling.tile_planner(None, 2, max_memory_gb=-1)


@pytest.fixture(scope='module')
def tiny_fn():
  model = model_lib.DSSR(**helpers.TINY)
  loaded = checkpoint.LoadedModel(model, helpers.random_params(model), dict(helpers.TINY), 0, '')
  return upscaling.make_sr_fn(loaded, ('sr',))


def test_the_tiny_network_under_a_tiny_budget_is_tiled_and_equals_the_whole_pass(tiny_fn):
  lr = np.random.default_rng(0).random((1, 56, 72, 3), np.float32)
  whole = tiny_fn(lr)['sr']
  budget = int(3e6)  # the whole 56x72 pass needs ~3.8 MB, a 48x48 tile ~2.6 MB (measured)
  planner = upscaling.tile_planner(tiny_fn, 2, max_memory_gb=budget / 1e9, overlap=16)
  plan = planner.plan(lr.shape)
  th, tw = plan.tile
  assert plan.tiles > 1 and plan.whole > budget and plan.need <= budget
  assert th != tw  # a rectangle
  # The numbers are XLA's analysis of the programs themselves, host buffers added on CPU.
  mem = tiny_fn.memory((1, th, tw, 3))
  assert mem.temp > 0 and mem.argument > 0 and mem.output == 4 * 3 * 4 * th * tw
  host = 56 * 72 * (12 + 2 * 48 + 16)
  assert plan.need == mem.total + host
  assert len(planner.measured) <= 3
  tiled = tiling.tiled_apply(tiny_fn, lr, 2, plan.tile, plan.overlap)['sr']
  np.testing.assert_allclose(tiled, whole, atol=1 / 255)
  assert np.abs(tiled - whole).max() > 0  # it really ran in tiles


def test_default_budget_is_a_share_of_the_memory_there_is():
  avail = upscaling.available_host_memory()
  total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  assert 0 < avail <= total
  budget = upscaling.default_memory_budget()
  assert budget == pytest.approx(upscaling.HOST_FRACTION * avail, rel=0.05)


def _run(args, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=cwd,
                        env=env, timeout=300, check=False)


def test_infer_cli_tiles_under_a_budget_and_refuses_an_impossible_one(tiny_ckpt, tiny_fn,
                                                                     tmp_path):
  rng = np.random.default_rng(1)
  img = (rng.random((56, 72, 3)) * 255).astype(np.uint8)
  image_files.write_png(tmp_path / 'a.png', img)
  proc = _run(['-m', 'dssr_jax.infer', str(tmp_path / 'a.png'), f'--checkpoint={tiny_ckpt}',
               f'--out={tmp_path / "out"}', '--max_memory_gb=0.003', '--overlap=16',
               '--jax_cache_dir='], tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert '1x2 tiles of 56x48 LR pixels (overlap 16' in proc.stderr
  assert 'more than the 3.0 MB memory budget' in proc.stderr
  whole = tiny_fn(img[None] / np.float32(255))['sr'][0]  # tiny_ckpt holds tiny_fn's weights
  out = image_files.read_image(tmp_path / 'out' / 'a_x2.png').astype(int)
  assert np.abs(out - image_files.to_uint8(whole).astype(int)).max() <= 1

  proc = _run(['-m', 'dssr_jax.infer', str(tmp_path / 'a.png'), f'--checkpoint={tiny_ckpt}',
               f'--out={tmp_path / "out2"}', '--max_memory_gb=0.0001', '--jax_cache_dir='],
              tmp_path)
  assert proc.returncode == 2
  assert 'error: a memory budget of 0.1 MB cannot hold even the smallest tile (64x64' in proc.stderr
  assert not (tmp_path / 'out2').exists()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """One dataset of two random 'HR' images: 64x48 and 40x40 (LR 32x24 and 20x20 at x2)."""
  d = tmp_path_factory.mktemp('data')
  rng = np.random.default_rng(2)
  for name, shape in (('big', (64, 48, 3)), ('small', (40, 40, 3))):
    image_files.write_png(d / 'Rand' / f'{name}.png', (rng.random(shape) * 255).astype(np.uint8))
  return d


def test_eval_refuses_full_images_that_do_not_fit_unless_tiled(tiny_ckpt, data_dir):
  loaded = checkpoint.load_model(tiny_ckpt)
  fn = upscaling.make_sr_fn(loaded, ('sr', 'steps', 'details'))
  # What the largest image needs, from XLA directly: its program plus the fetched outputs
  # (sr, the 2 steps and the 2 detail maps, float32) and the input on the host.
  need = fn.memory((1, 32, 24, 3)).total + 32 * 24 * (12 + 5 * 3 * 4 * 4)
  opts = dict(data_dir=data_dir, datasets=['Rand'], scales=None, checkpoint=tiny_ckpt,
              show_progress=False)
  budget = need - 1000
  with pytest.raises(tiling.MemoryBudgetError,
                     match=rf'Rand x2: full images need up to {need / 1e6:.1f} MB \(big, 32x24 LR'
                           r'.*does not fit.*--tile=N'):
    eval_lib.evaluate(options=eval_lib.EvalOptions(max_memory_gb=budget / 1e9), **opts)
  report = eval_lib.evaluate(
      options=eval_lib.EvalOptions(max_memory_gb=budget / 1e9, tile=24, overlap=8), **opts)
  (res,) = report['results']
  assert res['tile'] == 24 and report['run']['tile'] == 24
  tiles = {img['name']: img.get('tile') for img in res['images']}
  assert tiles == {'big': 24, 'small': None}  # 20x20 fits in one tile of 24


def test_eval_cli_refuses_before_scoring(tiny_ckpt, data_dir, tmp_path):
  out = tmp_path / 'r.json'
  proc = _run([str(REPO / 'eval.py'), f'--checkpoint={tiny_ckpt}', f'--data_dir={data_dir}',
               '--datasets=Rand', '--max_memory_gb=0.0005', f'--output={out}',
               '--jax_cache_dir='], tmp_path)
  assert proc.returncode == 2
  assert 'error: Rand x2: full images need up to ' in proc.stderr
  assert 'of a 0.5 MB memory budget: the full-image protocol does not fit' in proc.stderr
  assert not out.exists()
