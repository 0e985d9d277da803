"""Export: the artifacts, loaded by processes that cannot import this library (jax alone, or
tensorflow alone), give DSSR.apply's SR; metadata; bad shapes and overwrites."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import helpers

from dssr_jax import checkpoint
from dssr_jax import export
from dssr_jax import model as model_lib

REPO = pathlib.Path(__file__).resolve().parent.parent

# Makes the named top-level packages unimportable in the consumer process.
BLOCK = '''
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {blocked!r}:
      raise ImportError(name + ' is not available to this consumer')
sys.meta_path.insert(0, Block())
'''

JAX_CONSUMER = BLOCK.format(blocked=('flax', 'dssr_jax', 'tensorflow')) + '''
import jax, numpy as np
exported = jax.export.deserialize(open(sys.argv[1], 'rb').read())
np.save(sys.argv[3], np.asarray(exported.call(np.load(sys.argv[2]))))
'''

TF_CONSUMER = BLOCK.format(blocked=('jax', 'jaxlib', 'flax', 'dssr_jax')) + '''
import numpy as np, tensorflow as tf
lr = np.load(sys.argv[2])
serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
sr = serve(lr=tf.constant(lr))['sr'].numpy()
# The same SavedModel through the TFLite converter and interpreter.
lite = tf.lite.Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(
    sys.argv[1]).convert())
lite.allocate_tensors()
lite.set_tensor(lite.get_input_details()[0]['index'], lr)
lite.invoke()
np.save(sys.argv[3], np.stack([sr, lite.get_tensor(lite.get_output_details()[0]['index'])]))
'''


def _python(args, cwd, **kw):
  return subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=cwd,
                        timeout=300, check=False, **kw)


def _consume(script, artifact, lr, tmp_path):
  """Runs `script` on `artifact` with `lr` in a fresh process (outside the repo); its SR."""
  np.save(tmp_path / 'lr.npy', lr)
  (tmp_path / 'consumer.py').write_text(script)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  proc = _python(['consumer.py', str(artifact), 'lr.npy', 'sr.npy'], tmp_path, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(tmp_path / 'sr.npy')


def _reference(params, lr, **config):
  model = model_lib.DSSR(**dict(helpers.TINY, **config))
  return np.asarray(jax.jit(lambda x: model.apply({'params': params}, x)['sr'])(lr))


@pytest.fixture(scope='module')
def params(tiny_ckpt):
  return checkpoint.load_params(tiny_ckpt)[0]


def test_jax_export_cli_runs_with_jax_alone_at_any_batch(tiny_ckpt, params, tmp_path):
  out = tmp_path / 'dssr.jaxexport'
  proc = _python(['-m', 'dssr_jax.export', f'--checkpoint={tiny_ckpt}', f'--out={out}',
                  '--lr_shape=b,12,16,3'], REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # No library's log lines (orbax notes every checkpoint it opens read-only) around the result.
  assert not re.search(r'^([IW]\d{4} |INFO:|WARNING:)', proc.stderr, re.M), proc.stderr
  assert f'wrote {out} (' in proc.stderr
  meta = json.loads((tmp_path / 'dssr.jaxexport.json').read_text())
  assert meta['scale'] == 2 and meta['compute_dtype'] == 'float32'
  assert meta['input'] == {'name': 'lr', 'shape': ['b', 12, 16, 3], 'range': [0.0, 1.0],
                           'dtype': 'float32', 'layout': 'NHWC', 'channels': 'RGB'}
  assert meta['output']['shape'] == ['b', 24, 32, 3] and meta['platforms'] == ['cpu']
  assert meta['model'] == dict(helpers.TINY, dtype='float32')
  lr = np.random.default_rng(0).random((2, 12, 16, 3), np.float32)
  sr = _consume(JAX_CONSUMER, out, lr, tmp_path)
  assert sr.shape == (2, 24, 32, 3)
  np.testing.assert_allclose(sr, _reference(params, lr), atol=1e-5)

  # The same --out again: refused, the artifact untouched; --overwrite replaces it.
  before = out.read_bytes()
  proc = _python(['-m', 'dssr_jax.export', f'--checkpoint={tiny_ckpt}', f'--out={out}',
                  '--lr_shape=1,12,16,3'], REPO)
  assert proc.returncode == 2 and 'already exists; pass --overwrite' in proc.stderr
  assert out.read_bytes() == before


def test_savedmodel_runs_with_tensorflow_alone_and_converts_to_tflite(tiny_ckpt, params, tmp_path):
  out = tmp_path / 'dssr_savedmodel'
  loaded = checkpoint.load_model(tiny_ckpt)
  meta = export.write(loaded, out, (1, 12, 16, 3), fmt='savedmodel')
  assert meta == json.loads((tmp_path / 'dssr_savedmodel.json').read_text())
  assert meta['output']['shape'] == [1, 24, 32, 3]
  assert (out / 'saved_model.pb').is_file() and not list(tmp_path.glob('.dssr_savedmodel*'))
  lr = np.random.default_rng(1).random((1, 12, 16, 3), np.float32)
  sr, lite = _consume(TF_CONSUMER, out, lr, tmp_path)
  np.testing.assert_allclose(sr, _reference(params, lr), atol=1e-5)
  np.testing.assert_allclose(lite, _reference(params, lr), atol=1e-5)

  with pytest.raises(FileExistsError, match="dssr_savedmodel' already exists"):
    export.write(loaded, out, (1, 8, 8, 3), fmt='savedmodel')
  with pytest.raises(ValueError, match='is a folder'):
    export.write(loaded, out, (1, 8, 8, 3), overwrite=True)
  export.write(loaded, out, (2, 8, 8, 3), fmt='savedmodel', overwrite=True)
  assert json.loads((tmp_path / 'dssr_savedmodel.json').read_text())['input']['shape'][0] == 2
  assert (out / 'saved_model.pb').is_file() and not list(tmp_path.glob('.dssr_savedmodel*'))


def test_bfloat16_export_computes_in_bfloat16(tiny_ckpt, params):
  loaded = checkpoint.load_model(tiny_ckpt)
  exported = export.export_jax(loaded, (1, 12, 16, 3), dtype='bfloat16')
  restored = jax.export.deserialize(exported.serialize())
  lr = np.random.default_rng(2).random((1, 12, 16, 3), np.float32)
  sr = np.asarray(restored.call(lr))
  assert sr.dtype == np.float32  # the interface stays float32
  # bfloat16 keeps 8 bits of mantissa: the SR moves by about 1e-3..1e-2 from the float32 one,
  # far more than float32's own rounding (1e-7) and far less than a wrong network would.
  gap = np.abs(sr - _reference(params, lr)).max()
  assert 1e-4 < gap < 5e-2, gap


@pytest.mark.parametrize('text', ['1,12,16', '1,12,16,1', '0,12,16,3', '1,-4,16,3', '1,12,x,3',
                                  '1.5,12,16,3', ''])
def test_bad_lr_shapes_are_named(text):
  with pytest.raises(ValueError, match='--lr_shape'):
    export.parse_lr_shape(text)


def test_lr_shape_and_platform_parsing():
  assert export.parse_lr_shape('1, 12,16,3') == (1, 12, 16, 3)
  assert export.parse_lr_shape('batch,8,8,3') == ('batch', 8, 8, 3)
  assert export.parse_platforms('cpu,CUDA') == ('cpu', 'cuda')
  with pytest.raises(ValueError, match='--platforms'):
    export.parse_platforms('gpu')


def test_export_cli_rejects_a_bad_shape_before_any_work(tmp_path):
  proc = _python(['-m', 'dssr_jax.export', f'--checkpoint={tmp_path / "none"}',
                  f'--out={tmp_path / "x"}', '--lr_shape=1,12,16,4'], REPO)
  assert proc.returncode == 2
  assert 'error: --lr_shape: the network takes 3 (RGB) channels, got 4' in proc.stderr
  assert not (tmp_path / 'x').exists()
