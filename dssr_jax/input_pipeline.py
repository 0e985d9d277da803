"""tf.data training pipeline: HR images -> k crops per decoded image -> degradation -> batches.

Layout (k = data.patches_per_image, W = data.image_window rounded up to a multiple of the global
batch B, N usable images). Image visits v = 0, 1, ... show image perm_e[v mod N] of epoch
e = v div N, a fresh permutation of the images per epoch. Examples g = step * B + row come in
blocks of W k: block b makes k rounds over the W visits bW .. bW + W - 1, and example
g = bWk + rW + j is round r's crop of visit bW + j. Each visit's image is decoded once and gives
its k crops; the B rows of a batch come from B different visits. docs/data.md relates this to
sub-image sampling.

Every training example is a pure function of (seed, g): its visit and round, the image, the crop
and flips (drawn per visit, row r), the kernel and the noise (TF stateless ops seeded from
(seed, g)). Hence
  * the same seed gives the same batches, whatever the parallelism;
  * `start_step=N` starts at step N in O(1) (one block of decodes at most) with exactly the
    batches a run from 0 sees there;
  * process p of P decodes only the visits of its rows and builds rows [p B/P, (p + 1) B/P) of
    each global batch of B, so the processes together produce the single-process batch.

The graph holds no Python for the 'embedded' and 'folders' sources: images are decoded by tf.io
inside tf.data (no GIL), and a script that leaves its iterator alive at exit still exits. HR
sources: the photos inside the scikit-image wheel ('embedded', in memory, no download), folders of
image files ('folders', recursive, several mixed, local or URLs such as gs://; tf.io reads both) or
a TFDS dataset ('tfds', random access through `tfds.data_source`, i.e. prepared in array_record
format; read by Python, see `_ExitGuard`). Odd files are handled on the way in:
grey/RGBA/palette/16-bit become 8-bit RGB as `image_files.read_image` makes them; files whose
header is unreadable, truncated files and formats tf.io cannot decode (TIFF) are skipped at the
scan with a warning naming them; images smaller than the crop are skipped with a logged count; a
file that fails to decode later is replaced by a deterministic draw of another image (depending on
(seed, v) only) and named on stderr.
"""

import atexit
import importlib.resources
import logging
import os
import pathlib
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from etils import epath
import ml_collections
import numpy as np

from dssr_jax import degrade
from dssr_jax import image_files

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
    out[n] = image_files.read_image(path)
  return out


def write_embedded_holdout(directory) -> List[epath.Path]:
  """Writes the `EMBEDDED_HOLDOUT` photos as PNGs (an HR folder for `testsets.gaussian8`)."""
  directory = epath.Path(directory)
  paths = []
  for name, img in embedded_images(EMBEDDED_HOLDOUT).items():
    paths.append(directory / f'{name}.png')
    image_files.write_png(paths[-1], img)
  return paths


# Stateless-RNG streams: seeds are (seed, tag) folded with an index, one tag per use.
_PERMUTATION, _REPLACEMENT, _CROP, _EXAMPLE = 1, 2, 3, 4
# How files are decoded (`_folder_source`): tf.io.decode_image, 16-bit PNG, JPEG.
_GENERIC, _PNG16, _JPEG = 0, 1, 2
_TF_FORMATS = ('PNG', 'JPEG', 'GIF', 'BMP', 'WEBP')
_PNG_END = b'IEND\xaeB`\x82'
_JPEG_END = b'\xff\xd9'
_TAIL = 4096  # Bytes at the end of a file searched for its end marker.


class _Source:
  """HR images by index.

  Attributes:
    names: one name per image (file path, ...), used in messages.
    sizes: (h, w) per image, or None where unknown before decoding.
    load: TF function, int64 index -> uint8 [h, w, 3]; raises an error for an unreadable image.
  """

  def __init__(self, names: List[str], sizes: List[Optional[Tuple[int, int]]], load: Callable):
    self.names, self.sizes, self.load = names, sizes, load


def _embedded_source(config) -> _Source:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names = [n for n in EMBEDDED_FILES
           if not (config.embedded_holdout and n in EMBEDDED_HOLDOUT)]
  images = [embedded_images([n])[n] for n in names]
  # All photos in one flat buffer (~15 MB): a slice per image, no decoding.
  flat = tf.constant(np.concatenate([img.ravel() for img in images]))
  starts = tf.constant(np.cumsum([0] + [img.size for img in images])[:-1], tf.int64)
  shapes = tf.constant([img.shape for img in images], tf.int64)

  def load(i):
    shape = shapes[i]
    return tf.reshape(flat[starts[i]:starts[i] + tf.reduce_prod(shape)], shape)

  return _Source(names, [img.shape[:2] for img in images], load)


def scan_file(path) -> Tuple[Tuple[int, int], int]:
  """((h, w), codec) of a training image file, from its header and its last bytes only.

  Raises:
    ValueError (naming the file): an unreadable header, a format tf.io does not decode, or a
      PNG/JPEG without its end marker (a truncated file).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    # One open: on object storage (gs://) each open is a request and may fetch a whole block.
    with epath.Path(path).open('rb') as f:
      with Image.open(f) as im:
        (w, h), fmt = im.size, im.format
      f.seek(0)
      head = f.read(25)
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - _TAIL))
      tail = f.read()
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'cannot read image {str(path)!r}: {e}') from e
  if fmt not in _TF_FORMATS:
    raise ValueError(f'{str(path)!r}: {fmt} is not decoded by the training pipeline (tf.io reads '
                     f'{", ".join(_TF_FORMATS)}); convert it, e.g. to PNG')
  if (fmt == 'PNG' and _PNG_END not in tail) or (fmt == 'JPEG' and _JPEG_END not in tail):
    raise ValueError(f'{str(path)!r}: truncated {fmt} file (no end marker)')
  if fmt == 'PNG':
    return (h, w), _PNG16 if head[24] == 16 else _GENERIC  # IHDR bit depth
  return (h, w), _JPEG if fmt == 'JPEG' else _GENERIC


def _decode(data, codec):
  """Encoded bytes -> uint8 [h, w, 3], as `image_files.read_image` converts them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def png16():
    x = tf.io.decode_png(data, channels=3, dtype=tf.uint16)
    return tf.cast(tf.round(tf.cast(x, tf.float32) / 257.0), tf.uint8)

  img = tf.switch_case(codec, [
      lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
      png16,
      # Pillow's (libjpeg's default) IDCT: the same pixels as image_files.read_image.
      lambda: tf.io.decode_jpeg(data, channels=3, dct_method='INTEGER_ACCURATE'),
  ])
  return tf.ensure_shape(img, [None, None, 3])


def _folder_source(config) -> _Source:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  folders = config.folders
  if isinstance(folders, str):
    folders = tuple(f for f in folders.split(',') if f)
  if not folders:
    raise ValueError("data.folders is empty; give one or more folders for source='folders'")
  files = []
  for folder in folders:
    found = image_files.list_images(folder, recursive=True)  # FileNotFoundError names the folder
    if not found:
      raise ValueError(f'data.folders: no image files under {str(folder)!r}')
    files.extend(found)
  names, sizes, codecs = [], [], []
  for f in files:
    try:
      size, codec = scan_file(f)
    except ValueError as e:
      logging.warning('skipping training image: %s', e)
      continue
    names.append(str(f))
    sizes.append(size)
    codecs.append(codec)
  if not names:
    raise ValueError(f'data.folders: none of the {len(files)} image files under {folders} is '
                     'readable')
  paths = tf.constant(names)
  codecs = tf.constant(codecs, tf.int32)
  return _Source(names, sizes, lambda i: _decode(tf.io.read_file(paths[i]), codecs[i]))


class _ExitGuard:
  """Keeps Python loaders inside tf.data from hanging the interpreter at exit.

  A tf.data iterator still alive when the interpreter exits is destroyed during finalisation and
  waits for its in-flight calls; a call that needs the GIL then never returns (CPython ends a
  thread that takes the GIL while finalising), so the process sleeps forever. atexit handlers run
  before finalisation: this one sets a TF flag that every load reads (after counting itself) before
  it calls Python, and waits until every counted load has either skipped Python or returned from
  it. After that no tf.data thread can enter Python; skipped loads fail, as unreadable images do.
  """

  def __init__(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.exiting = tf.Variable(False, trainable=False)
    self.started = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.returned = 0  # Python calls that returned (or raised).
    self.lock = threading.Lock()
    atexit.register(self.drain)

  def loader(self, fn: Callable[[int], np.ndarray]) -> Callable:
    """`fn` (index -> uint8 HxWx3) as a TF function of an int64 index."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    def call(i):
      try:
        return fn(i)
      finally:
        with self.lock:
          self.returned += 1

    def skip():
      with tf.control_dependencies([self.skipped.assign_add(1)]):
        return tf.zeros([0, 0, 3], tf.uint8)

    def load(i):
      with tf.control_dependencies([self.started.assign_add(1)]):
        exiting = self.exiting.read_value()  # Read after counting: see `drain`.
      img = tf.cond(exiting, skip, lambda: tf.numpy_function(call, [i], tf.uint8, stateful=False))
      return tf.ensure_shape(img, [None, None, 3])

    return load

  def drain(self, limit: float = 60.0):
    # A load counted before the flag is set may still call Python; one counted after skips it.
    self.exiting.assign(True)
    end = time.monotonic() + limit
    while time.monotonic() < end:
      started, skipped = int(self.started.numpy()), int(self.skipped.numpy())
      with self.lock:
        if started == skipped + self.returned:
          return
      time.sleep(0.01)  # Lets waiting loads take the GIL and return.


_exit_guard = None
_exit_guard_lock = threading.Lock()


def _python_loader(fn: Callable[[int], np.ndarray]) -> Callable:
  """A Python image loader (index -> uint8 HxWx3) as a TF function, guarded for interpreter exit."""
  global _exit_guard
  with _exit_guard_lock:
    if _exit_guard is None:
      _exit_guard = _ExitGuard()
  return _exit_guard.loader(fn)


def _tfds_source(config) -> _Source:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.data_source(config.tfds_name, split=config.tfds_split,
                          data_dir=config.tfds_data_dir or None)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f'data.tfds_name={config.tfds_name!r} split={config.tfds_split!r}: cannot open it for '
        'random access (prepare it in array_record format, e.g. `tfds build '
        f'{config.tfds_name} --file_format=array_record`): {e}') from e
  key = config.tfds_image_key
  n = len(ds)

  def load(i):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    arr = np.asarray(ds[int(i)][key])
    if arr.ndim == 3 and arr.shape[2] == 1:
      arr = arr[:, :, 0]
    return image_files.to_rgb_uint8(Image.fromarray(arr))[0]

  return _Source([f'{config.tfds_name}[{i}]' for i in range(n)], [None] * n,
                 _python_loader(load))


def make_source(config: ml_collections.ConfigDict) -> _Source:
  source = config.source
  if source == 'embedded':
    return _embedded_source(config)
  if source == 'folders':
    return _folder_source(config)
  if source == 'tfds':
    return _tfds_source(config)
  raise ValueError(f'data.source must be one of {SOURCES}, got {source!r}')


def keep_tensorflow_off_accelerators() -> None:
  """Hides GPUs from tensorflow (tf.data and the TensorBoard writer run on the CPU); otherwise its
  runtime takes the accelerator memory that JAX needs. Call before tensorflow runs anything."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Its runtime has started: an earlier call in this process hid them.
    pass


def block_slots(batch_size: int, image_window: int) -> int:
  """W: visits per block, `image_window` rounded up to a multiple of the global batch."""
  return -(-int(image_window) // batch_size) * batch_size


def check_data_config(config: ml_collections.ConfigDict, scale: int) -> None:
  """Raises ValueError naming the first bad field of `config` (the `config.data` block)."""
  if config.source not in SOURCES:
    raise ValueError(f'data.source must be one of {SOURCES}, got {config.source!r}')
  if config.degradation not in degrade.DEGRADATIONS:
    raise ValueError(f'data.degradation must be one of {degrade.DEGRADATIONS}, '
                     f'got {config.degradation!r}')
  if config.degradation == 'aniso' and scale not in (2, 4):
    raise ValueError(f"data.degradation='aniso' supports scale 2 or 4, got {scale}")
  if config.degradation == 'iso':
    degrade.train_sigma_range(scale, config.sigma_range)
  p = config.patch_size
  if not isinstance(p, int) or p < 4:
    raise ValueError(f'data.patch_size must be an integer >= 4, got {p!r}')
  if p * scale <= (31 if scale == 4 else 21) // 2:
    raise ValueError(f'data.patch_size {p} is too small for the blur kernel at x{scale}')
  if not config.noise_std >= 0:
    raise ValueError(f'data.noise_std must be >= 0, got {config.noise_std!r}')
  for field in ('patches_per_image', 'image_window'):
    v = config[field]
    if not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f'data.{field} must be an integer >= 1, got {v!r}')


def random_crops(img, rng, k: int, hr_patch: int):
  """uint8 [k, hr_patch, hr_patch, 3]: k uniform crops of `img`, each flipped left-right, flipped
  up-down and transposed with probability 1/2 each (the 8 dihedral transforms equally likely,
  docs/design.md section 2.3). `rng` is a stateless key."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  u = tf.random.stateless_uniform([k, 5], rng)
  h, w = tf.shape(img)[0], tf.shape(img)[1]
  ys = tf.minimum(tf.cast(u[:, 0] * tf.cast(h - hr_patch + 1, tf.float32), tf.int32), h - hr_patch)
  xs = tf.minimum(tf.cast(u[:, 1] * tf.cast(w - hr_patch + 1, tf.float32), tf.int32), w - hr_patch)
  out = []
  for r in range(k):  # Per crop: only the chosen flips are computed.
    x = img[ys[r]:ys[r] + hr_patch, xs[r]:xs[r] + hr_patch]
    x = tf.cond(u[r, 2] < 0.5, lambda x=x: tf.reverse(x, [1]), lambda x=x: x)
    x = tf.cond(u[r, 3] < 0.5, lambda x=x: tf.reverse(x, [0]), lambda x=x: x)
    out.append(tf.cond(u[r, 4] < 0.5, lambda x=x: tf.transpose(x, [1, 0, 2]), lambda x=x: x))
  return tf.ensure_shape(tf.stack(out), [k, hr_patch, hr_patch, 3])


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
  degradation = data_config.degradation
  sigma_range = data_config.sigma_range
  noise_std = float(data_config.noise_std)
  p = data_config.patch_size
  hr_patch = p * scale
  source = make_source(data_config)
  usable = [i for i, s in enumerate(source.sizes) if s is None or min(s) >= hr_patch]
  skipped = len(source.sizes) - len(usable)
  if skipped:
    logging.warning('skipping %d of %d training images smaller than the %dx%d HR crop',
                    skipped, len(source.sizes), hr_patch, hr_patch)
  if not usable:
    raise ValueError(f'no training image is at least {hr_patch}x{hr_patch} '
                     f'({len(source.sizes)} images, {skipped} too small)')

  k = int(data_config.patches_per_image)
  slots = block_slots(batch_size, data_config.image_window)  # W
  local = batch_size // process_count  # L
  offset = process_index * local
  per_block = slots // process_count  # visits of this process per block
  n = len(usable)
  usable = tf.constant(usable, tf.int64)
  names = tf.constant(source.names)
  shuffle = data_config.shuffle
  parallel = data_config.num_parallel_calls
  parallel = tf.data.AUTOTUNE if parallel == -1 else parallel
  prefetch = data_config.prefetch

  def key(tag, index):
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, tag], tf.int64), index)

  def checked_load(i):
    img = source.load(i)
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
        tf.reduce_min(tf.shape(img)[:2]), hr_patch, message='image smaller than the HR crop')]):
      return i, tf.identity(img)

  def visit(t):
    """This process's t-th visit as a dataset of its k crops and their example indices g."""
    block, i = t // per_block, t % per_block
    j = (i // local) * batch_size + offset + i % local  # slot in the block
    v = block * slots + j
    epoch, pos = v // n, v % n
    if shuffle:
      order = tf.argsort(tf.random.stateless_uniform([n], key(_PERMUTATION, epoch)), stable=True)
      pos = tf.cast(order[pos], tf.int64)
    # The image, else deterministic replacements: the first of the candidates that decodes.
    others = tf.random.stateless_uniform([_MAX_ATTEMPTS - 1], key(_REPLACEMENT, v), 0, n,
                                         dtype=tf.int64)
    candidates = tf.gather(usable, tf.concat([[pos], others], 0))
    found = tf.data.Dataset.from_tensor_slices(candidates).map(checked_load).ignore_errors()
    none = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.zeros([0, 0, 3], tf.uint8)))
    g = block * slots * k + tf.range(k, dtype=tf.int64) * slots + j

    def cut(idx, img):
      ok = tf.debugging.assert_non_negative(
          idx, message=f'{_MAX_ATTEMPTS} draws found no readable image of at least '
          f'{hr_patch}x{hr_patch}')

      def warn():
        with tf.control_dependencies([tf.print(
            'skipping unreadable training image', names[candidates[0]],
            '(or smaller than the HR crop); replaced by', names[idx],
            output_stream=sys.stderr)]):
          return tf.constant(True)

      replaced = tf.cond(tf.logical_and(idx >= 0, tf.not_equal(idx, candidates[0])), warn,
                         lambda: tf.constant(False))
      with tf.control_dependencies([ok, replaced]):
        img = tf.identity(img)
      return random_crops(img, key(_CROP, v), k, hr_patch), g

    # map + unbatch: the decoded image is freed once cut, only the crops wait their turn.
    return found.concatenate(none).take(1).map(cut).unbatch()

  def example(hr, g):
    hr = tf.cast(hr, tf.float32) / 255.0
    s_kernel, s_noise = tf.unstack(tf.random.experimental.stateless_split(key(_EXAMPLE, g), 2))
    if degradation == 'iso':
      lr = degrade.iso_degrade_tf(hr, degrade.sample_sigma_tf(s_kernel, scale, sigma_range), scale)
    else:
      lr = degrade.aniso_degrade_tf(hr, degrade.sample_kernel_tf(s_kernel, scale, 'aniso'), scale)
    if noise_std > 0:
      lr += noise_std * tf.random.stateless_normal(tf.shape(lr), s_noise)
    lr = tf.ensure_shape(degrade.quantize_tf(lr), [p, p, 3])
    return {'lr': lr, 'hr': hr}

  # Start at the block holding this process's first example of `start_step`, skip the rest.
  first = start_step * batch_size + offset
  block, r = divmod(first, slots * k)
  skip = (r // slots) * per_block + (r % slots) // batch_size * local
  ds = tf.data.Dataset.range(block * per_block, np.iinfo(np.int64).max)
  # A cycle of `per_block` visits, one crop from each in turn: k rounds per block, increasing g.
  ds = ds.interleave(visit, cycle_length=per_block, block_length=1, num_parallel_calls=parallel,
                     deterministic=True)
  ds = ds.skip(skip)
  ds = ds.map(example, num_parallel_calls=parallel, deterministic=True)
  ds = ds.batch(local, drop_remainder=True)
  if prefetch:
    ds = ds.prefetch(tf.data.AUTOTUNE if prefetch == -1 else prefetch)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)
