"""Each ablated field (paper Tables I-III, Fig. 8) reaches what training computes, and validation
(which picks every row's best checkpoint) scores as eval.py does at every scale."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import helpers
from configs import smoke
from dssr_jax import checkpoint
from dssr_jax import eval_lib
from dssr_jax import image_files
from dssr_jax import model as model_lib
from dssr_jax import train_lib
from dssr_jax import validation

REPO = pathlib.Path(__file__).resolve().parent.parent

# One training step per job through train_loop.train_and_evaluate (train.py's path), all from the
# same seed and batch; writes the saved parameters' shapes and the step's metrics.
DRIVER = helpers.CHILD_PREAMBLE + r"""
out = {}
for name, overrides in json.loads(sys.argv[2]).items():
  config = smoke.get_config()
  config.train.num_steps = 1
  for k, v in overrides.items():
    section, field = k.split('.')
    config[section][field] = v
  train_loop.check_config(config)
  result = train_loop.train_and_evaluate(config, sys.argv[3] + '/' + name)
  out[name] = {
      'shapes': {jax.tree_util.keystr(p): list(np.shape(v))
                 for p, v in jax.tree_util.tree_leaves_with_path(result['params'])},
      'metrics': {k: np.asarray(v).tolist() for k, v in result['last_metrics'].items()}}
print('RESULT' + json.dumps(out))
"""

# The smoke network (alpha 1, affine on both sides, T = 2) with alpha 0.5, and one run with every
# ablated field changed at once (compiles cost minutes on a loaded 2-core machine): each field's
# effect shows on its own in the parameters or the metrics.
JOBS = {
    'base': {'train.alpha': 0.5},
    'variant': {'train.alpha': 0.0, 'model.modulation': 'concat', 'model.affine_on': 'lr',
                'model.num_steps': 3},
}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  d = tmp_path_factory.mktemp('ablation')
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(REPO),
             XLA_FLAGS=helpers.FAST_XLA)
  proc = subprocess.run([sys.executable, '-c', DRIVER, str(REPO), json.dumps(JOBS), str(d)],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][-1]
  return json.loads(line[len('RESULT'):])


def _modules(shapes):
  """'step/spatial_trans1/conv_fuse' -> kernel shape, for every conv of the saved parameters."""
  out = {}
  for path, shape in shapes.items():
    parts = [p.strip("[]'") for p in path.split('][')]
    if parts[-1] == 'kernel':
      out['/'.join(parts[:-1])] = tuple(shape)
  return out


def test_alpha_weights_the_detail_term_of_the_loss(trained):
  """Table I: the first step's logged loss is sum_t pix_t + alpha * sum_t detail_t (design 2.1)
  with the config's alpha, 0.5 and 0 (a loop that ignores alpha or scales it fails)."""
  base, variant = trained['base']['metrics'], trained['variant']['metrics']
  assert sum(base['detail']) > 0.01 and sum(variant['detail']) > 0.01
  assert base['loss'] == pytest.approx(sum(base['pix']) + 0.5 * sum(base['detail']), rel=1e-6)
  assert variant['loss'] == pytest.approx(sum(variant['pix']), rel=1e-6)


def test_modulation_and_affine_on_build_the_network_design_1_8_defines(trained):
  """Tables II and III: the trained parameters hold exactly the layers the definition gives
  (design 1.8): with concat on the LR side only, no HR stack, an LR stack of the four-conv trunk
  and a 1x1 fuse of 2C -> C channels, every other layer as the full model's."""
  full = _modules(trained['base']['shapes'])
  mods = _modules(trained['variant']['shapes'])
  c = 8
  hr_stack, lr_stack = 'step/spatial_trans1/', 'step/spatial_trans2/'
  trunk = {f'conv{i}' for i in range(1, 5)}
  assert {k[len(hr_stack):] for k in full if k.startswith(hr_stack)} == trunk | {'conv_gama',
                                                                                 'conv_beta'}
  assert not any(k.startswith(hr_stack) for k in mods)
  assert {k[len(lr_stack):] for k in mods if k.startswith(lr_stack)} == trunk | {'conv_fuse'}
  assert mods[lr_stack + 'conv_fuse'] == (1, 1, 2 * c, c)
  rest = lambda m: {k: v for k, v in m.items() if not k.startswith((hr_stack, lr_stack))}
  assert rest(mods) == rest(full)


def test_num_steps_sets_the_steps_training_computes(trained):
  """Fig. 8: T = 3 trains three steps (three pixel and detail terms), T = 2 two."""
  assert len(trained['variant']['metrics']['pix']) == 3
  assert len(trained['variant']['metrics']['detail']) == 3
  assert len(trained['base']['metrics']['pix']) == 2


@pytest.mark.parametrize('scale', [3, 4])
def test_validation_psnr_equals_eval_at_every_scale(benchmark_dir, tmp_path, scale):
  """The PSNR that picks every row's best checkpoint is eval.py's on the same images and widths
  (its border crop = scale); the crops' sizes are not multiples of the scale (modcrop)."""
  data = tmp_path / 'data'
  for f in sorted(image_files.list_images(benchmark_dir / 'Set5'))[:2]:
    image_files.write_png(data / 'Set5' / f.name, image_files.read_image(f)[50:101, 40:87])
  model_config = dict(helpers.TINY, scale=scale)
  params = helpers.random_params(model_lib.DSSR(**model_config), seed=scale)
  ckpt = tmp_path / 'ckpt'
  checkpoint.save_params(ckpt, params, model_config, step=1)
  config = smoke.get_config()
  config.model.update(model_config)
  config.train.update(dict(val_dir=str(data / 'Set5'), val_images=2, val_sigmas=8))

  class Writer:
    write_scalars = write_images = lambda *args: None

  val = validation.Validator(config, train_lib.create_mesh()).run(params, Writer(), 0)
  report = eval_lib.evaluate(data_dir=str(data), datasets=['Set5'], scales=[scale],
                             options=eval_lib.EvalOptions(), checkpoint=str(ckpt),
                             show_progress=False)
  assert report['results'][0]['num_images'] == 16
  assert val['val/psnr'] == pytest.approx(report['results'][0]['psnr'], abs=1e-6)
