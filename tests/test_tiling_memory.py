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
from dssr_jax import imageio
from dssr_jax import inference
from dssr_jax import model as model_lib
from dssr_jax import tiling

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


def test_linear_programs_get_the_largest_fitting_tile_with_three_compilations():
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 1_200_000, scale=2, overlap=8, host_shares_budget=False)
  plan = planner.plan((1, 100, 150, 3))
  # By hand: 50,000 + 1060 t^2 <= 1.2e6 holds for t <= 32.9; tiles are multiples of 16.
  assert plan.tile == 32 and plan.overlap == 8
  assert plan.need == 50_000 + 1060 * 32 * 32 <= 1_200_000
  assert plan.whole == 50_000 + 1060 * 15_000 and plan.whole_exact
  # 100 rows in tiles of 32 sharing 8: starts 0, 24, 48, 68 (4); 150 columns: 0..118 (6).
  assert plan.tiles == 4 * 6
  # The smallest tile (checked first), the whole image, then only the chosen tile.
  assert fake.calls == [(1, 16, 16, 3), (1, 100, 150, 3), (1, 32, 32, 3)]
  # The next image: the line already knows both, so nothing new is compiled.
  assert planner.plan((1, 120, 90, 3)).tile == 32
  assert len(fake.calls) == 3
  # A small image runs whole: its own program is measured (it is the one that will run).
  small = planner.plan((1, 20, 30, 3))
  assert small.tile == 0 and small.need == 50_000 + 1060 * 600 and small.tiles == 1
  assert 'whole image' in small.describe() and '32 LR pixels' in plan.describe()


def test_tiles_clipped_to_a_thin_image_may_be_longer():
  # 20 rows: a tile of t covers 20 x t pixels, so 50,000 + 1060 * 20 t <= 1.2e6 allows t <= 54.
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 1_200_000, scale=2, overlap=8, host_shares_budget=False)
  assert planner.plan((1, 20, 400, 3)).tile == 48


def test_an_optimistic_line_is_corrected_by_measuring():
  # Memory growing slower than the pixels: the line through the smallest tile and the whole image
  # under-estimates the sizes between them and first picks 80 (by hand: 1000 * 6400^0.8 + 50,000
  # = 1.15e6 > 1e6); measured, 80 is refused, and the largest that fits is 64 (826,000 bytes).
  fake = FakeProgram(per_px=1000, power=0.8)
  budget = 1_000_000
  planner = tiling.TilePlanner(fake, budget, scale=2, overlap=8, host_shares_budget=False)
  plan = planner.plan((1, 200, 200, 3))
  assert (1, 80, 80, 3) in fake.calls
  assert plan.tile == 64 and plan.need == fake.bytes(64**2) <= budget


def test_host_buffers_share_the_budget_on_cpu():
  # Same programs; the host now also holds the input (12 B/px), the output (12 B/px per LR px)
  # twice and the weight sum (4 B per output px = 16 B per LR px) of the 100x150 image: 52 B/px.
  # A tile of 32 (1,135,440 bytes of program) fits without them, not with them.
  host = 15_000 * (12 + 2 * 12 + 16)
  fake = FakeProgram()
  planner = tiling.TilePlanner(fake, 50_000 + 1060 * 32**2 + host - 1, scale=2, overlap=8)
  plan = planner.plan((1, 100, 150, 3))
  assert plan.tile == 16 and plan.need == 50_000 + 1060 * 256 + host


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
    inference.tile_planner(None, 2, max_memory_gb=-1)


@pytest.fixture(scope='module')
def tiny_fn():
  model = model_lib.DSSR(**helpers.TINY)
  loaded = checkpoint.LoadedModel(model, helpers.random_params(model), dict(helpers.TINY), 0, '')
  return inference.make_sr_fn(loaded, ('sr',))


def test_the_tiny_network_under_a_tiny_budget_is_tiled_and_equals_the_whole_pass(tiny_fn):
  lr = np.random.default_rng(0).random((1, 56, 72, 3), np.float32)
  whole = tiny_fn(lr)['sr']
  budget = int(3e6)  # the whole 56x72 pass needs ~3.8 MB, a 48x48 tile ~2.6 MB (measured)
  planner = inference.tile_planner(tiny_fn, 2, max_memory_gb=budget / 1e9, overlap=16)
  plan = planner.plan(lr.shape)
  assert plan.tile > 0 and plan.whole > budget and plan.need <= budget
  # The numbers are XLA's analysis of the programs themselves, host buffers added on CPU.
  mem = tiny_fn.memory((1, plan.tile, plan.tile, 3))
  assert mem.temp > 0 and mem.argument > 0 and mem.output == 4 * 3 * 4 * plan.tile**2
  host = 56 * 72 * (12 + 2 * 48 + 16)
  assert plan.need == mem.total + host
  assert len(planner.measured) <= 3
  tiled = tiling.tiled_apply(tiny_fn, lr, 2, plan.tile, plan.overlap)['sr']
  np.testing.assert_allclose(tiled, whole, atol=1 / 255)
  assert np.abs(tiled - whole).max() > 0  # it really ran in tiles


def test_default_budget_is_a_share_of_the_memory_there_is():
  avail = inference.available_host_memory()
  total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  assert 0 < avail <= total
  budget = inference.default_memory_budget()
  assert budget == pytest.approx(inference.HOST_FRACTION * avail, rel=0.05)


def _run(args, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=cwd,
                        env=env, timeout=300, check=False)


def test_infer_cli_tiles_under_a_budget_and_refuses_an_impossible_one(tiny_ckpt, tiny_fn,
                                                                     tmp_path):
  rng = np.random.default_rng(1)
  img = (rng.random((56, 72, 3)) * 255).astype(np.uint8)
  imageio.write_png(tmp_path / 'a.png', img)
  proc = _run(['-m', 'dssr_jax.infer', str(tmp_path / 'a.png'), f'--checkpoint={tiny_ckpt}',
               f'--out={tmp_path / "out"}', '--max_memory_gb=0.003', '--overlap=16',
               '--jax_cache_dir='], tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'tiles of 48 LR pixels' in proc.stderr
  assert 'more than the 3.0 MB memory budget' in proc.stderr
  whole = tiny_fn(img[None] / np.float32(255))['sr'][0]  # tiny_ckpt holds tiny_fn's weights
  out = imageio.read_image(tmp_path / 'out' / 'a_x2.png').astype(int)
  assert np.abs(out - imageio.to_uint8(whole).astype(int)).max() <= 1

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
    imageio.write_png(d / 'Rand' / f'{name}.png', (rng.random(shape) * 255).astype(np.uint8))
  return d


def test_eval_refuses_full_images_that_do_not_fit_unless_tiled(tiny_ckpt, data_dir):
  loaded = checkpoint.load_model(tiny_ckpt)
  fn = inference.make_sr_fn(loaded, ('sr', 'steps'))
  # What the largest image needs, from XLA directly: its program plus the fetched outputs
  # (sr and the 2 steps, float32) and the input on the host.
  need = fn.memory((1, 32, 24, 3)).total + 32 * 24 * (12 + 3 * 4 * 4 * 3)
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
