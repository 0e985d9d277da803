"""gs:// storage against a local GCS emulator: each library the product uses for it.

The emulator (tests/gcs_emulator.py) holds an empty bucket for this module. Every
check reads back through a second route (the emulator's own JSON API, or another
library) so that a write which landed elsewhere, e.g. in a local folder named
'gs:', fails the test.
"""

import json
import os
import subprocess
import sys
import urllib.request
import uuid

import numpy as np
import pytest

import gcs_emulator


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """(bucket URL, environment to add) of a running emulator; os.environ holds it meanwhile."""
  bucket = f'test-{uuid.uuid4().hex[:8]}'  # fresh names: TF caches stats per path
  with gcs_emulator.running(tmp_path_factory.mktemp('gcs'), bucket) as env:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
      yield f'gs://{bucket}', env
    finally:
      os.environ.clear()
      os.environ.update(saved)


def _objects(env, url: str) -> dict[str, bytes]:
  """Object name (in its bucket) -> content for each object whose URL starts with `url`.

  Read from the emulator's JSON API directly, past TF, tensorstore and the proxy.
  """
  bucket, _, prefix = url.removeprefix('gs://').partition('/')
  api = f'{env["TENSORSTORE_GCS_HTTP_URL"]}/storage/v1/b/{bucket}/o'
  no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
  listing = json.load(no_proxy.open(f'{api}?prefix={urllib.request.quote(prefix)}'))
  return {o['name']: no_proxy.open(f'{api}/{urllib.request.quote(o["name"], safe="")}?alt=media').read()
          for o in listing.get('items', [])}


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

  stored = _objects(env, run)
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
  assert set(_objects(env, run)) == {'gfile/', 'gfile/sub/', 'gfile/b.txt'}
  with gfile.GFile(f'{run}/b.txt', 'rb') as f:
    assert f.read() == big

  with pytest.raises(tf.errors.NotFoundError):
    gfile.GFile(f'{run}/missing').read()
  gfile.remove(f'{run}/b.txt')
  gfile.rmtree(run)
  assert not gfile.exists(run) and not _objects(env, run)


def test_epath(gcs):
  from etils import epath  # pylint: disable=g-import-not-at-top
  root, env = gcs
  d = epath.Path(root) / 'epath'
  assert type(d._backend).__name__ == '_TfBackend'  # pylint: disable=protected-access
  d.mkdir(parents=True, exist_ok=True)
  (d / 'a.txt').write_text('text')
  (d / 'b.bin').write_bytes(b'\x00\xff')
  stored = _objects(env, str(d))
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
  steps = {n.split('/')[1] for n in _objects(env, str(directory))}
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
  local.write_bytes(_objects(env, name)[name.split('/', 3)[3]])
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
  (data,) = _objects(env, str(path)).values()
  assert data.startswith(b'\x89PNG')
  with tf.io.gfile.GFile(str(path), 'rb') as f, Image.open(f) as im:
    np.testing.assert_array_equal(np.asarray(im), img)
  np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(str(path))).numpy(), img)


def test_subprocess_gets_there_with_env(gcs):
  root, env = gcs
  code = ('import sys, tensorflow as tf\n'
          'with tf.io.gfile.GFile(sys.argv[1], "w") as f: f.write("from a child")\n')
  subprocess.run([sys.executable, '-c', code, f'{root}/child.txt'], env=os.environ | env,
                 check=True, capture_output=True, timeout=300)
  assert list(_objects(env, f'{root}/child.txt').values()) == [b'from a child']


def test_proxy_refuses_other_hosts(gcs):
  _, env = gcs
  opener = urllib.request.build_opener(urllib.request.ProxyHandler({'https': env['HTTPS_PROXY']}))
  with pytest.raises(OSError, match='403'):
    opener.open('https://example.com/', timeout=10)
