"""tf.data training pipeline: HR sources -> random crops/augmentation -> degradation -> batches.

Every training example is a pure function of (seed, g), g = step * global_batch + row: the HR image
(a fresh permutation of the images per epoch), the crop, the flips (numpy, seeded by [seed, g]) and
the kernel and noise (TF stateless ops, seeded by [seed, g]). Hence
  * the same seed gives the same batches, whatever the parallelism;
  * `start_step=N` starts at step N in O(1) with exactly the batches a run from 0 sees there;
  * process p of P builds rows [p B/P, (p + 1) B/P) of each global batch of B, so the processes
    together produce the single-process batch.
HR sources: the photos inside the scikit-image wheel ('embedded', no download), folders of image
files ('folders', recursive, several mixed) or a TFDS dataset ('tfds', random access through
`tfds.data_source`, i.e. prepared in array_record format). Odd files are handled on the way in:
grey/RGBA/16-bit become 8-bit RGB (`imageio`), images smaller than the crop are skipped with a
logged count, unreadable files are skipped with a warning naming them.
"""

import collections
import importlib.resources
import logging
import pathlib
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import ml_collections
import numpy as np

from dssr_jax import degrade
from dssr_jax import imageio

# The photos shipped in the scikit-image wheel (file stem -> file name), greyscale ones included.
EMBEDDED_FILES = {
    'astronaut': 'astronaut.png', 'brick': 'brick.png', 'camera': 'camera.png',
    'cell': 'cell.png', 'chelsea': 'chelsea.png', 'coffee': 'coffee.png', 'coins': 'coins.png',
    'grass': 'grass.png', 'gravel': 'gravel.png', 'hubble_deep_field': 'hubble_deep_field.jpg',
    'ihc': 'ihc.png', 'moon': 'moon.png', 'motorcycle_left': 'motorcycle_left.png',
    'motorcycle_right': 'motorcycle_right.png', 'retina': 'retina.jpg', 'rocket': 'rocket.jpg',
}
# Held out from embedded training for the demo's evaluation: two colour photos of unrelated
# content (a cat, a cup of coffee), 451x300 and 600x400.
EMBEDDED_HOLDOUT = ('chelsea', 'coffee')

SOURCES = ('embedded', 'folders', 'tfds')
_MAX_ATTEMPTS = 64


def embedded_images(names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """The photos that ship inside the scikit-image wheel, name -> uint8 HxWx3 RGB.

  Args:
    names: a subset of `EMBEDDED_FILES` (default: all of them).

  Raises:
    ValueError: an unknown name.
    FileNotFoundError: the scikit-image installation lacks a file.
  """
  names = tuple(EMBEDDED_FILES) if names is None else tuple(names)
  unknown = [n for n in names if n not in EMBEDDED_FILES]
  if unknown:
    raise ValueError(f'unknown embedded image(s) {unknown}; known: {sorted(EMBEDDED_FILES)}')
  root = importlib.resources.files('skimage') / 'data'
  out = {}
  for n in names:
    path = pathlib.Path(str(root / EMBEDDED_FILES[n]))
    out[n] = imageio.read_image(path)
  return out


def write_embedded_holdout(directory) -> List[pathlib.Path]:
  """Writes the `EMBEDDED_HOLDOUT` photos as PNGs (an HR folder for `testsets.gaussian8`)."""
  directory = pathlib.Path(directory)
  paths = []
  for name, img in embedded_images(EMBEDDED_HOLDOUT).items():
    paths.append(directory / f'{name}.png')
    imageio.write_png(paths[-1], img)
  return paths


class _Source:
  """Random access to HR images: `names`, `sizes` ((h, w) or None when unknown), `load(i)`."""

  def __init__(self, names: List[str], sizes: List[Optional[Tuple[int, int]]],
               load: Callable[[int], np.ndarray]):
    self.names, self.sizes, self.load = names, sizes, load


def _embedded_source(config) -> _Source:
  names = [n for n in EMBEDDED_FILES
           if not (config.get('embedded_holdout', True) and n in EMBEDDED_HOLDOUT)]
  images = embedded_images(names)
  return _Source(names, [images[n].shape[:2] for n in names], lambda i: images[names[i]])


def _folder_source(config) -> _Source:
  folders = config.get('folders') or ()
  if isinstance(folders, str):
    folders = tuple(f for f in folders.split(',') if f)
  if not folders:
    raise ValueError("data.folders is empty; give one or more folders for source='folders'")
  files = []
  for folder in folders:
    found = imageio.list_images(folder, recursive=True)  # FileNotFoundError names the folder
    if not found:
      raise ValueError(f'data.folders: no image files under {str(folder)!r}')
    files.extend(found)
  names, sizes, paths = [], [], []
  for f in files:
    try:
      size = imageio.image_size(f)
    except ValueError as e:
      logging.warning('skipping unreadable training image: %s', e)
      continue
    names.append(str(f))
    sizes.append(size)
    paths.append(f)
  return _Source(names, sizes, lambda i: imageio.read_image(paths[i]))


def _tfds_source(config) -> _Source:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.data_source(config.tfds_name, split=config.tfds_split,
                          data_dir=config.get('tfds_data_dir') or None)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'data.tfds_name={config.tfds_name!r} split={config.tfds_split!r}: cannot open it for '
        'random access (prepare it in array_record format, e.g. `tfds build '
        f'{config.tfds_name} --file_format=array_record`): {e}') from e
  key = config.get('tfds_image_key', 'hr')
  n = len(ds)

  def load(i):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    arr = np.asarray(ds[i][key])
    if arr.ndim == 3 and arr.shape[2] == 1:
      arr = arr[:, :, 0]
    return imageio.to_rgb_uint8(Image.fromarray(arr))[0]

  return _Source([f'{config.tfds_name}[{i}]' for i in range(n)], [None] * n, load)


def make_source(config: ml_collections.ConfigDict) -> _Source:
  source = config.get('source', 'embedded')
  if source == 'embedded':
    return _embedded_source(config)
  if source == 'folders':
    return _folder_source(config)
  if source == 'tfds':
    return _tfds_source(config)
  raise ValueError(f'data.source must be one of {SOURCES}, got {source!r}')


class HRPatches:
  """The HR half of the pipeline as a pure function of the example index (numpy)."""

  def __init__(self, source: _Source, hr_patch: int, seed: int, shuffle: bool = True,
               patches_per_image: int = 1, image_window: int = 32):
    """See `create_train_dataset`; `patches_per_image` / `image_window` as in configs/default.py."""
    self.source, self.hr_patch, self.seed, self.shuffle = source, hr_patch, seed, shuffle
    if patches_per_image < 1 or image_window < 1:
      raise ValueError(f'data.patches_per_image ({patches_per_image}) and data.image_window '
                       f'({image_window}) must be >= 1')
    self.patches_per_image = int(patches_per_image)
    ok = [i for i, s in enumerate(source.sizes) if s is None or min(s) >= hr_patch]
    skipped = len(source.sizes) - len(ok)
    if skipped:
      logging.warning('skipping %d of %d training images smaller than the %dx%d HR crop',
                      skipped, len(source.sizes), hr_patch, hr_patch)
    if not ok:
      raise ValueError(f'no training image is at least {hr_patch}x{hr_patch} '
                       f'({len(source.sizes)} images, {skipped} too small)')
    self.usable = np.array(ok)
    self.skipped_small = skipped
    self.window = min(int(image_window), len(ok))
    self._warned = set()  # Only to warn once per bad file; never changes which data is drawn.
    # Memoised decodes (pure: a file decodes to the same pixels every time), used when each image
    # gives several patches. Twice the window, so that the tf.data threads working at the edge of
    # a window do not evict images still in use.
    self._cache = collections.OrderedDict()
    self._cache_size = 2 * self.window if self.patches_per_image > 1 else 0
    self._lock = threading.Lock()

  def _permutation(self, epoch: int) -> np.ndarray:
    # Recomputed per example: ~40 us for 3450 images, and no cache to keep consistent.
    return np.random.default_rng([self.seed, epoch, 1]).permutation(len(self.usable))

  def image_index(self, g: int) -> int:
    """The source index of example g's image.

    Image visits are numbered v = 0, 1, ...; visit v shows image perm_e[v mod N] of epoch
    e = v div N. With k = patches_per_image > 1, each block of `window` x k examples makes k
    rounds over `window` consecutive visits, so neighbouring rows still come from different images
    while every decoded image serves k patches from the cache.
    """
    n, k, w = len(self.usable), self.patches_per_image, self.window
    if k == 1:
      visit = g
    else:
      block, r = divmod(g, w * k)
      visit = block * w + r % w
    epoch, pos = divmod(visit, n)
    if not self.shuffle:
      return int(self.usable[pos])
    return int(self.usable[self._permutation(epoch)[pos]])

  def _load(self, idx: int) -> np.ndarray:
    if not self._cache_size:
      return self.source.load(idx)
    with self._lock:
      if idx in self._cache:
        self._cache.move_to_end(idx)
        return self._cache[idx]
    img = self.source.load(idx)  # Decoding outside the lock: threads decode in parallel.
    with self._lock:
      self._cache[idx] = img
      while len(self._cache) > self._cache_size:
        self._cache.popitem(last=False)
    return img

  def __call__(self, g) -> np.ndarray:
    """uint8 [p, p, 3]: crop, flips and transpose of the image that example g draws."""
    g = int(g)
    rng = np.random.default_rng([self.seed, g, 0])
    idx = self.image_index(g)
    p = self.hr_patch
    for _ in range(_MAX_ATTEMPTS):
      try:
        img = self._load(idx)
      except (ValueError, OSError) as e:
        img = None
        if idx not in self._warned:
          self._warned.add(idx)
          logging.warning('skipping unreadable training image %s: %s', self.source.names[idx], e)
      if img is not None and min(img.shape[:2]) < p:
        if idx not in self._warned:
          self._warned.add(idx)
          logging.warning('skipping training image %s: %s smaller than the %dx%d HR crop',
                          self.source.names[idx], img.shape[:2], p, p)
        img = None
      if img is None:  # Deterministic replacement: depends on (seed, g) only.
        idx = int(self.usable[rng.integers(len(self.usable))])
        continue
      y = rng.integers(0, img.shape[0] - p + 1)
      x = rng.integers(0, img.shape[1] - p + 1)
      patch = img[y:y + p, x:x + p]
      hflip, vflip, transpose = rng.random(3) < 0.5
      if hflip:
        patch = patch[:, ::-1]
      if vflip:
        patch = patch[::-1]
      if transpose:
        patch = patch.transpose(1, 0, 2)
      return np.ascontiguousarray(patch)
    raise ValueError(f'example {g}: {_MAX_ATTEMPTS} draws found no readable image of at least '
                     f'{p}x{p}')


def check_data_config(config: ml_collections.ConfigDict, scale: int) -> None:
  """Raises ValueError naming the first bad field of `config` (the `config.data` block)."""
  if config.get('source', 'embedded') not in SOURCES:
    raise ValueError(f'data.source must be one of {SOURCES}, got {config.get("source")!r}')
  if config.get('degradation', 'iso') not in degrade.DEGRADATIONS:
    raise ValueError(f'data.degradation must be one of {degrade.DEGRADATIONS}, '
                     f'got {config.get("degradation")!r}')
  if config.get('degradation', 'iso') == 'aniso' and scale not in (2, 4):
    raise ValueError(f"data.degradation='aniso' supports scale 2 or 4, got {scale}")
  if config.get('degradation', 'iso') == 'iso':
    degrade.train_sigma_range(scale, config.get('sigma_range'))
  p = config.get('patch_size', 64)
  if not isinstance(p, int) or p < 4:
    raise ValueError(f'data.patch_size must be an integer >= 4, got {p!r}')
  if p * scale <= (31 if scale == 4 else 21) // 2:
    raise ValueError(f'data.patch_size {p} is too small for the blur kernel at x{scale}')
  if not config.get('noise_std', 0.0) >= 0:
    raise ValueError(f'data.noise_std must be >= 0, got {config.get("noise_std")!r}')


def create_train_dataset(data_config: ml_collections.ConfigDict, *, scale: int, batch_size: int,
                         seed: int, start_step: int = 0, process_index: int = 0,
                         process_count: int = 1):
  """The infinite, deterministic training dataset of this process.

  Args:
    data_config: the `config.data` block (configs/default.py documents every field).
    scale: SR factor (2, 3, 4).
    batch_size: the GLOBAL batch size; this process yields batch_size // process_count rows.
    seed: non-negative integer; the same seed gives the same batches.
    start_step: the first step to produce (training resume): the batches equal those a run from
      step 0 yields from this step on.
    process_index, process_count: multi-host sharding (jax.process_index(), jax.process_count()).

  Returns:
    tf.data.Dataset of {'lr': float32 [b, p, p, 3] quantised to 8 bits, 'hr': float32 [b, p s,
    p s, 3]} in [0, 1], b = batch_size // process_count, p = data_config.patch_size.

  Raises:
    ValueError / FileNotFoundError: a bad argument or config field, named in the message.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if int(scale) != scale or scale < 1:
    raise ValueError(f'scale must be a positive integer, got {scale!r}')
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'need 0 <= process_index < process_count, got {process_index}, '
                     f'{process_count}')
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f'batch_size {batch_size} must be a positive multiple of process_count '
                     f'{process_count}')
  if start_step < 0:
    raise ValueError(f'start_step must be >= 0, got {start_step}')
  check_data_config(data_config, scale)
  scale, seed = int(scale), int(seed)
  degradation = data_config.get('degradation', 'iso')
  sigma_range = data_config.get('sigma_range')
  noise_std = float(data_config.get('noise_std', 0.0))
  p = data_config.get('patch_size', 64)
  hr_patch = p * scale
  patches = HRPatches(make_source(data_config), hr_patch, seed,
                      shuffle=data_config.get('shuffle', True),
                      patches_per_image=data_config.get('patches_per_image', 1),
                      image_window=data_config.get('image_window', 32))
  local = batch_size // process_count
  offset = process_index * local

  def example(j):
    g = (j // local) * batch_size + offset + j % local
    hr = tf.numpy_function(patches, [g], tf.uint8, stateful=False)
    hr = tf.cast(tf.ensure_shape(hr, [hr_patch, hr_patch, 3]), tf.float32) / 255.0
    s_kernel, s_noise = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([tf.constant(seed, tf.int64), g]), 2))
    if degradation == 'iso':
      lr = degrade.iso_degrade_tf(hr, degrade.sample_sigma_tf(s_kernel, scale, sigma_range), scale)
    else:
      lr = degrade.aniso_degrade_tf(hr, degrade.sample_kernel_tf(s_kernel, scale, 'aniso'), scale)
    if noise_std > 0:
      lr += noise_std * tf.random.stateless_normal(tf.shape(lr), s_noise)
    lr = tf.ensure_shape(degrade.quantize_tf(lr), [p, p, 3])
    return {'lr': lr, 'hr': hr}

  parallel = data_config.get('num_parallel_calls', -1)
  ds = tf.data.Dataset.range(start_step * local, np.iinfo(np.int64).max)
  ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE if parallel == -1 else parallel,
              deterministic=True)
  ds = ds.batch(local, drop_remainder=True)
  prefetch = data_config.get('prefetch', 2)
  if prefetch:
    ds = ds.prefetch(tf.data.AUTOTUNE if prefetch == -1 else prefetch)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)
