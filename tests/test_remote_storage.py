"""gs:// storage against a local GCS emulator: each library the product uses for it, then the
product itself (train.py to a gs:// workdir with data and validation images in the bucket, its
resume, eval.py and inference on that workdir, the converter's output, image files).

The emulator (tests/gcs_emulator.py) holds an empty bucket for this module. Every
check reads back through a second route (the emulator's own JSON API, or another
library) so that a write which landed elsewhere, e.g. in a local folder named
'gs:', fails the test.
"""

import io
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

import gcs_emulator
import helpers


def test_tf_gfile(gcs):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gfile = tf.io.gfile
  root, env = gcs
  run = f'{root}/gfile'
  gfile.makedirs(f'{run}/sub')
  assert gfile.isdir(f'{run}/sub')
  with gfile.GFile(f'{run}/a.txt', 'w') as f:
    f.write('hello')
  big = np.random.default_rng(0).bytes(3 << 20)  # megabytes in one resumable upload
  with gfile.GFile(f'{run}/big.bin', 'wb') as f:
    f.write(big)

  stored = gcs_emulator.objects(env, run)
  assert stored['gfile/a.txt'] == b'hello' and stored['gfile/big.bin'] == big
  assert not os.path.exists('gs:')  # nothing went to a local folder

  with gfile.GFile(f'{run}/big.bin', 'rb') as f:
    assert f.read() == big
  assert gfile.exists(f'{run}/a.txt') and not gfile.exists(f'{run}/b.txt')
  assert gfile.stat(f'{run}/big.bin').length == len(big)
  assert gfile.glob(f'{run}/*.txt') == [f'{run}/a.txt']
  assert sorted(gfile.listdir(run)) == ['a.txt', 'big.bin', 'sub/']

  # rename = copy + delete on GCS; without overwrite it refuses an existing target.
  gfile.rename(f'{run}/a.txt', f'{run}/b.txt')
  with pytest.raises(tf.errors.AlreadyExistsError):
    gfile.rename(f'{run}/big.bin', f'{run}/b.txt')
  gfile.rename(f'{run}/big.bin', f'{run}/b.txt', overwrite=True)
  # 'x/': the empty objects that TF's makedirs leaves as folder markers.
  assert set(gcs_emulator.objects(env, run)) == {'gfile/', 'gfile/sub/', 'gfile/b.txt'}
  with gfile.GFile(f'{run}/b.txt', 'rb') as f:
    assert f.read() == big

  with pytest.raises(tf.errors.NotFoundError):
    gfile.GFile(f'{run}/missing').read()
  gfile.remove(f'{run}/b.txt')
  gfile.rmtree(run)
  assert not gfile.exists(run) and not gcs_emulator.objects(env, run)


def test_epath(gcs):
  from etils import epath  # pylint: disable=g-import-not-at-top
  root, env = gcs
  d = epath.Path(root) / 'epath'
  assert type(d._backend).__name__ == '_TfBackend'  # pylint: disable=protected-access
  d.mkdir(parents=True, exist_ok=True)
  (d / 'a.txt').write_text('text')
  (d / 'b.bin').write_bytes(b'\x00\xff')
  stored = gcs_emulator.objects(env, str(d))
  assert stored['epath/a.txt'] == b'text' and stored['epath/b.bin'] == b'\x00\xff'
  assert (d / 'a.txt').read_text() == 'text' and (d / 'b.bin').read_bytes() == b'\x00\xff'
  assert sorted(p.name for p in d.iterdir()) == ['a.txt', 'b.bin']
  assert [str(p) for p in d.glob('*.txt')] == [f'{root}/epath/a.txt']
  assert d.is_dir() and (d / 'a.txt').is_file() and not (d / 'c').exists()
  (d / 'a.txt').rename(d / 'c.txt')
  (d / 'b.bin').replace(d / 'c.txt')
  assert [p.name for p in d.iterdir()] == ['c.txt']
  assert (d / 'c.txt').read_bytes() == b'\x00\xff'
  # str() keeps the URL; absolute()/resolve() would make it a local path.
  assert str(d / 'x') == f'{root}/epath/x' and d.parent == epath.Path(root)


def test_orbax_checkpoint_manager(gcs):
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  root, env = gcs
  directory = epath.Path(root) / 'ckpt'
  rng = np.random.default_rng(0)
  # Enough leaves that tensorstore's OCDBT commits in several rounds and re-reads its manifest.
  params = {f'layer{i}': {'kernel': rng.normal(size=(3, 3, 4, 8)).astype(np.float32),
                          'bias': rng.normal(size=(8,)).astype(np.float32)} for i in range(40)}
  options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
  with ocp.CheckpointManager(directory, options=options) as mngr:
    for step in (1, 2, 3):
      mngr.save(step, args=ocp.args.Composite(
          params=ocp.args.StandardSave(jax.tree.map(lambda x, s=step: x + s, params)),
          meta=ocp.args.JsonSave({'step': step})))
    mngr.wait_until_finished()
  steps = {n.split('/')[1] for n in gcs_emulator.objects(env, str(directory))}
  assert steps == {'', '2', '3'}  # step 1 deleted in the bucket, not only forgotten ('': ckpt/)

  with ocp.CheckpointManager(directory) as mngr:
    assert mngr.all_steps() == [2, 3] and mngr.latest_step() == 3
    got = mngr.restore(3, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(params), meta=ocp.args.JsonRestore()))
  assert got.meta == {'step': 3}
  for name, layer in params.items():
    for k, v in layer.items():
      np.testing.assert_array_equal(np.asarray(got.params[name][k]), v + 3)


def test_clu_writer_tensorboard_events(gcs, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  root, env = gcs
  logdir = f'{root}/events'
  writer = metric_writers.create_default_writer(logdir, asynchronous=True)
  for step in (1, 2, 3):
    writer.write_scalars(step, {'loss': 1.0 / step})
  writer.close()
  (name,) = tf.io.gfile.glob(f'{logdir}/events.out.tfevents.*')
  local = tmp_path / 'events'  # the bucket's bytes, parsed from a local copy
  local.write_bytes(gcs_emulator.objects(env, name)[name.split('/', 3)[3]])
  losses = {e.step: float(tf.make_ndarray(v.tensor))
            for e in tf.compat.v1.train.summary_iterator(str(local))
            for v in e.summary.value if v.tag == 'loss'}
  assert losses == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3})


def test_pillow_png_both_ways(gcs):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root, env = gcs
  img = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
  path = epath.Path(root) / 'img' / 'x.png'
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    Image.fromarray(img).save(f, format='PNG')
  (data,) = gcs_emulator.objects(env, str(path)).values()
  assert data.startswith(b'\x89PNG')
  with tf.io.gfile.GFile(str(path), 'rb') as f, Image.open(f) as im:
    np.testing.assert_array_equal(np.asarray(im), img)
  np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(str(path))).numpy(), img)


def test_proxy_refuses_other_hosts(gcs):
  _, env = gcs
  opener = urllib.request.build_opener(urllib.request.ProxyHandler({'https': env['HTTPS_PROXY']}))
  with pytest.raises(OSError, match='403'):
    opener.open('https://example.com/', timeout=10)


# ----------------------------------------------------------------------------------------------
# The product on gs://: training, resume, eval, inference, conversion, image files.

REPO = pathlib.Path(__file__).resolve().parent.parent
# Two constant-colour training images (one in a subfolder: folders are read recursively) and a
# file that is no image; decoded, each shows which file it came from.
TRAIN_VALUES = {'data/a.png': 40, 'data/sub/b.png': 200}


def _png(img: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format='PNG')
  return buf.getvalue()


def _photo(h: int, w: int, seed: int) -> np.ndarray:
  """A smooth colour image (noise would make any SR score meaningless)."""
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
  img = [0.5 + 0.4 * np.sin(6 * x + 4 * y + p) for p in phase]
  return np.round(np.stack(img, -1) * 255).astype(np.uint8)


def _put(root: str, name: str, data: bytes) -> None:
  from etils import epath  # pylint: disable=g-import-not-at-top
  epath.Path(f'{root}/{name}').write_bytes(data)


def _child(args, env, cwd, timeout=300) -> subprocess.CompletedProcess:
  """Runs `python ARGS` in `cwd` (not the repo: a URL mangled into a local path lands there)."""
  proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert not (pathlib.Path(cwd) / 'gs:').exists(), 'a gs:// path became a local folder'
  return proc


@pytest.fixture(scope='module')
def child_env(gcs, tmp_path_factory):
  _, env = gcs
  return os.environ | env | {
      'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2', 'PYTHONPATH': str(REPO),
      'XLA_FLAGS': helpers.FAST_XLA,
      'JAX_COMPILATION_CACHE_DIR': str(tmp_path_factory.mktemp('jax_cache')),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


@pytest.fixture(scope='module')
def gs_run(gcs, child_env, tmp_path_factory):
  """train.py on configs/smoke.py to gs://.../run (data and validation images in the bucket),
  then a second train.py that resumes it; returns (root, first run, resumed run)."""
  root, _ = gcs
  for name, value in TRAIN_VALUES.items():
    _put(root, name, _png(np.full((32, 32, 3), value, np.uint8)))
  _put(root, 'data/notes.txt', b'not an image')
  _put(root, 'val/v.png', _png(_photo(24, 24, 0)))
  cwd = tmp_path_factory.mktemp('cwd')
  args = [str(REPO / 'train.py'), f'--config={REPO / "configs" / "smoke.py"}',
          f'--workdir={root}/run', '--config.data.source=folders',
          f'--config.data.folders={root}/data', f'--config.train.val_dir={root}/val',
          '--config.train.val_images=1', '--config.train.val_sigmas=1']
  first = _child(args, child_env, cwd)
  resumed = _child(args + ['--config.train.num_steps=3'], child_env, cwd)
  return root, first, resumed


def test_training_data_from_gs_folders(gcs, gs_run):
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  from dssr_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from configs import smoke  # pylint: disable=g-import-not-at-top
  root, _, _ = gs_run
  assert [str(p) for p in image_files.list_images(f'{root}/data', recursive=True)] == [
      f'{root}/{n}' for n in sorted(TRAIN_VALUES)]
  assert [str(p) for p in image_files.list_images(f'{root}/data')] == [f'{root}/data/a.png']
  config = smoke.get_config().data
  config.update(source='folders', folders=(f'{root}/data',))
  source = input_pipeline.make_source(config)  # what the training run above read
  assert source.names == [f'{root}/{n}' for n in sorted(TRAIN_VALUES)]
  assert source.sizes == [(32, 32)] * 2
  for i, name in enumerate(sorted(TRAIN_VALUES)):
    np.testing.assert_array_equal(source.load(i).numpy(), np.full((32, 32, 3), TRAIN_VALUES[name]))


def test_train_to_gs_then_resume(gcs, gs_run):
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from configs import smoke  # pylint: disable=g-import-not-at-top
  root, first, resumed = gs_run
  _, env = gcs
  names = set(gcs_emulator.objects(env, f'{root}/run'))
  for step in (2, 3):
    assert any(n.startswith(f'run/checkpoints/{step}/params/') for n in names), sorted(names)
  assert 'Saved checkpoint at step 2 in gs://' in first.stderr
  assert 'val/psnr' in first.stderr  # validation on gs://.../val ran
  assert len([n for n in names if n.startswith('run/events.out.tfevents.')]) == 2  # one a run
  assert 'Resumed from checkpoint at step 2' in resumed.stderr
  _, model_config, step = checkpoint.load_params(f'{root}/run')
  assert step == 3 and model_config == smoke.get_config().model.to_dict()


def test_eval_scores_the_gs_workdir(gcs, gs_run, child_env, tmp_path):
  root, _, _ = gs_run
  _, env = gcs
  _put(root, 'bench/Tiny/x.png', _png(_photo(24, 28, 1)))
  _child([str(REPO / 'eval.py'), f'--checkpoint={root}/run', f'--data_dir={root}/bench',
          '--datasets=Tiny', '--scales=2', f'--output={root}/eval/results.json',
          '--jax_cache_dir='], child_env, tmp_path)
  stored = gcs_emulator.objects(env, f'{root}/eval/')
  report = json.loads(stored['eval/results.json'])
  (result,) = report['results']
  assert (result['dataset'], result['scale'], len(result['images'])) == ('Tiny', 2, 8)
  assert all(np.isfinite(img['psnr']) for img in result['images'])
  assert stored['eval/results.csv'].decode().count('\n') == 10  # header, 8 images, the mean


def test_infer_writes_to_gs(gcs, gs_run, child_env, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root, _, _ = gs_run
  _, env = gcs
  _put(root, 'in/photo.png', _png(_photo(10, 14, 2)))
  _put(root, 'in/grey.png', _png(_photo(9, 11, 3)[:, :, 0]))
  proc = _child(['-m', 'dssr_jax.infer', f'{root}/in', f'--checkpoint={root}/run',
                 f'--out={root}/sr', '--jax_cache_dir='], child_env, tmp_path)
  assert f'2 of 2 inputs upscaled into {root}/sr' in proc.stderr
  stored = {n: v for n, v in gcs_emulator.objects(env, f'{root}/sr/').items() if not n.endswith('/')}
  assert sorted(stored) == ['sr/grey_x2.png', 'sr/photo_x2.png']  # ('sr/': a folder marker)
  with Image.open(io.BytesIO(stored['sr/photo_x2.png'])) as im:
    assert (im.mode, im.size) == ('RGB', (28, 20))
  with Image.open(io.BytesIO(stored['sr/grey_x2.png'])) as im:
    assert (im.mode, im.size) == ('L', (22, 18))


def test_convert_output_and_image_files_on_gs(gcs):
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  root, env = gcs
  params = helpers.random_params(model_lib.DSSR(**helpers.TINY))
  convert.convert_state_dict(convert.flax_to_torch(params), f'{root}/converted', scale=2,
                             num_steps=helpers.TINY['num_steps'])
  assert any(n.startswith('converted/checkpoints/0/params/') for n in gcs_emulator.objects(env, root))
  got, config, step = checkpoint.load_params(f'{root}/converted')
  assert step == 0 and {k: config[k] for k in helpers.TINY} == helpers.TINY
  want, have = _leaves(params), _leaves(got)
  assert want.keys() == have.keys()
  for k, v in want.items():
    np.testing.assert_array_equal(np.asarray(v), have[k], err_msg=k)

  img = _photo(6, 5, 4)
  image_files.write_png(f'{root}/files/a.png', img)
  assert gcs_emulator.objects(env, f'{root}/files/a.png')['files/a.png'] == _png(img)
  np.testing.assert_array_equal(image_files.read_image(f'{root}/files/a.png'), img)
  assert image_files.image_size(f'{root}/files/a.png') == (6, 5)
  deep = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 997 % 65536).astype(np.uint16)
  image_files.write_native(f'{root}/files/deep.png', deep)
  back = image_files.read_native(f'{root}/files/deep.png')
  assert back.bits == 16
  np.testing.assert_array_equal(image_files.to_samples(back.rgb, None, False, 16), deep)
  image_files.write_text(f'{root}/files/t.json', '{"a": 1}\n')
  assert gcs_emulator.objects(env, f'{root}/files/t.json') == {'files/t.json': b'{"a": 1}\n'}
  assert not os.path.exists('gs:')  # nothing went to a local folder


def _leaves(tree) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}
