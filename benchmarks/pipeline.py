r"""Training-pipeline throughput against what the train step consumes; a DIV2K-like test folder.

  python benchmarks/pipeline.py --make_folder=DIR --num_images=320   # 2040x1356 PNGs, ~4 MB each
  python benchmarks/pipeline.py --folders=DIR          # iso_x2/x4, aniso_x2/x4 as shipped
  python benchmarks/pipeline.py --source=embedded --settings=iso:2,aniso:4
  python benchmarks/pipeline.py --folders=DIR --patches_per_image=8 --image_window=64 \
      --settings=iso:4

Each setting builds `create_train_dataset` from the paper config of that degradation and scale
(`configs/default.get_paper_config`, what `configs/iso_x2.py` etc. return) with only the data
folders replaced, and times `--steps` batches after `--warmup` batches (construction, tracing and
the first decodes excluded), so the number is the steady-state rate a training loop can pull. It
prints patches/s next to the rate the paper network's train step consumes on one H100 (`NEED`),
the CPU time the process spent per patch (less sensitive to other jobs on the machine than the
rate), the load average (1 min, the benchmark's own threads included), the cores other processes
kept busy meanwhile (`others`, from /proc/stat) and the process's peak RSS. Run every setting in
its own process (`--settings=iso:2`) to get each one's peak RSS. docs/data.md has the results.

`--make_folder` writes `--num_images` distinct 2040x1356 PNGs (DIV2K's size, zlib level 6) built
from the photos in the scikit-image wheel: tiles of random crops, rescaled, flipped and
colour-mixed, plus mild Gaussian noise, so that files are ~3-5 MB and decode as slowly as DIV2K's
(a real DIV2K PNG is ~2-6 MB). Existing files of the same name are kept (the same seed gives the
same image).
"""

import multiprocessing
import os
import pathlib
import resource
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position
from dssr_jax import image_files  # pylint: disable=g-import-not-at-top,wrong-import-position

# Patches/s the paper network's train step consumes on one H100 (batch 8: x2 32 ms, x4 58 ms per
# step; benchmarks/train_step.py).
NEED = {2: 250, 4: 140}
DIV2K_SIZE = (1356, 2040)

flags.DEFINE_string('make_folder', None, 'Write a DIV2K-like folder of PNGs here and exit.')
flags.DEFINE_integer('num_images', 320, 'Images for --make_folder.')
flags.DEFINE_enum('source', 'folders', ('folders', 'embedded'), 'HR source.')
flags.DEFINE_list('folders', [], 'Image folders (replace the paper configs\' data.folders).')
flags.DEFINE_list('settings', ['iso:2', 'iso:4', 'aniso:2', 'aniso:4'],
                  'degradation:scale pairs to time (paper configs iso_x2, ..., aniso_x4).')
flags.DEFINE_integer('patches_per_image', None, 'Override data.patches_per_image.')
flags.DEFINE_integer('image_window', None, 'Override data.image_window.')
flags.DEFINE_integer('num_parallel_calls', None, 'Override data.num_parallel_calls.')
flags.DEFINE_integer('steps', 400,
                     'Batches timed per setting (several blocks of image_window x k examples).')
flags.DEFINE_integer('warmup', 64, 'Batches drawn before timing (one block at the defaults).')
FLAGS = flags.FLAGS


def _div2k_like(args) -> str:
  """One synthetic 2040x1356 photo-like PNG, a pure function of its seed (for a process pool)."""
  seed, path = args
  path = pathlib.Path(path)
  if path.exists():
    return f'{path.name}: kept'
  from dssr_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photos = list(input_pipeline.embedded_images().values())
  rng = np.random.default_rng([seed, 2040])
  h, w = DIV2K_SIZE
  out = np.zeros((h, w, 3), np.float32)
  # Tiles of a random 1-3 x 1-3 grid, each a rescaled crop of one photo.
  ys = np.sort(np.r_[0, rng.choice(np.arange(240, h - 240), rng.integers(0, 3), replace=False), h])
  xs = np.sort(np.r_[0, rng.choice(np.arange(240, w - 240), rng.integers(0, 3), replace=False), w])
  for y0, y1 in zip(ys[:-1], ys[1:]):
    for x0, x1 in zip(xs[:-1], xs[1:]):
      photo = photos[rng.integers(len(photos))]
      ph, pw = photo.shape[:2]
      ch = int(min(ph, pw * (y1 - y0) / (x1 - x0)) * rng.uniform(0.4, 1.0))
      cw = int(ch * (x1 - x0) / (y1 - y0))
      cy, cx = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
      tile = Image.fromarray(photo[cy:cy + ch, cx:cx + cw]).resize((x1 - x0, y1 - y0),
                                                                   Image.BICUBIC)
      tile = np.asarray(tile, np.float32)
      if rng.random() < 0.5:
        tile = tile[:, ::-1]
      if rng.random() < 0.5:
        tile = tile[::-1]
      mix = (np.eye(3) + rng.normal(0.0, 0.15, (3, 3))).astype(np.float32)
      out[y0:y1, x0:x1] = tile @ mix.T * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
  out += rng.normal(0.0, rng.uniform(1.0, 3.0), out.shape).astype(np.float32)
  image_files.write_png(path, np.clip(np.round(out), 0, 255).astype(np.uint8))
  return f'{path.name}: {path.stat().st_size / 1e6:.2f} MB'


def make_folder(directory: str, num_images: int) -> None:
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  jobs = [(i, str(directory / f'div2k_like_{i:04d}.png')) for i in range(num_images)]
  with multiprocessing.Pool(os.cpu_count()) as pool:
    for i, line in enumerate(pool.imap(_div2k_like, jobs)):
      if i % 20 == 0 or i == num_images - 1:
        print(f'{i + 1}/{num_images} {line}', flush=True)
  files = [pathlib.Path(p) for _, p in jobs]
  sizes = np.array([f.stat().st_size for f in files]) / 1e6
  from PIL import Image  # pylint: disable=g-import-not-at-top
  decode = []
  for f in files[:10]:
    start = time.perf_counter()
    with Image.open(f) as im:
      im.load()
    decode.append(time.perf_counter() - start)
  print(f'{directory}: {len(files)} PNGs of {DIV2K_SIZE[1]}x{DIV2K_SIZE[0]}, '
        f'{sizes.mean():.2f} MB on average ({sizes.min():.2f}-{sizes.max():.2f}); PIL decode '
        f'{1e3 * np.median(decode):.0f} ms (median of 10, load average {os.getloadavg()[0]:.1f})')


def data_config(degradation: str, scale: int):
  """The paper config's data block with only the folders (and any override flag) replaced."""
  config = default.get_paper_config(scale, degradation).data
  config.source = FLAGS.source
  if FLAGS.source == 'folders':
    if not FLAGS.folders:
      raise app.UsageError('--folders is required with --source=folders (make one with '
                           '--make_folder=DIR)')
    config.folders = tuple(FLAGS.folders)
  for field in ('patches_per_image', 'image_window', 'num_parallel_calls'):
    if FLAGS[field].value is not None:
      config[field] = FLAGS[field].value
  return config


def _busy_seconds() -> float:
  """CPU seconds all processes have spent busy since boot (Linux /proc/stat; nan elsewhere)."""
  try:
    with open('/proc/stat') as f:
      ticks = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return float('nan')
  return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK')  # minus idle, iowait


def measure(degradation: str, scale: int) -> dict:
  from dssr_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  config = data_config(degradation, scale)
  batch = default.get_train_config().batch_size
  ds = input_pipeline.create_train_dataset(config, scale=scale, batch_size=batch, seed=0)
  it = iter(ds.as_numpy_iterator())
  for _ in range(FLAGS.warmup):
    next(it)
  load = os.getloadavg()[0]
  busy, cpu, start = _busy_seconds(), time.process_time(), time.perf_counter()
  for _ in range(FLAGS.steps):
    next(it)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
  others = (_busy_seconds() - busy - cpu) / elapsed
  del it  # Stops the pipeline's threads before the next setting starts.
  patches = FLAGS.steps * batch
  return dict(rate=patches / elapsed, cpu_ms=1e3 * cpu / patches, k=config.patches_per_image,
              window=config.image_window, load=(load + os.getloadavg()[0]) / 2,
              others=max(others, 0.0))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if FLAGS.make_folder:
    make_folder(FLAGS.make_folder, FLAGS.num_images)
    return
  print(f'source={FLAGS.source} folders={",".join(FLAGS.folders)} cores={os.cpu_count()} '
        f'steps={FLAGS.steps}')
  print(f'{"setting":<8}{"scale":>6}{"k":>4}{"window":>7}{"patches/s":>11}{"need":>6}'
        f'{"ratio":>7}{"cpu ms/patch":>14}{"load":>6}{"others":>8}{"peak RSS GB":>13}')
  for item in FLAGS.settings:
    degradation, scale = item.split(':')
    m = measure(degradation, int(scale))
    need = NEED.get(int(scale))
    ratio = f'{m["rate"] / need:.2f}' if need else '-'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    print(f'{degradation:<8}{scale:>6}{m["k"]:>4}{m["window"]:>7}{m["rate"]:>11.1f}'
          f'{need or "-":>6}{ratio:>7}{m["cpu_ms"]:>14.2f}{m["load"]:>6.1f}{m["others"]:>8.2f}'
          f'{rss:>13.2f}',
          flush=True)


if __name__ == '__main__':
  app.run(main)
