"""DSSR against the authors' network (fixture), parameter counts, rolled vs unrolled, variants, errors."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import reference

from dssr_jax import convert
from dssr_jax import fast
from dssr_jax import losses
from dssr_jax import model as model_lib

TINY = dict(channels=16, struct_blocks=1, recon_blocks=1, num_steps=2)


def _nhwc(a):  # NCHW (or T-first TNCHW) -> NHWC
  return np.moveaxis(a, -3, -1)


@pytest.fixture(scope='module')
def fixture(fixtures_dir):
  z = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  return {k: z[k] for k in z.files}


def test_fixture_matches_authors_network(fixture):
  cfg = {k: int(fixture[k]) for k in ('scale', 'channels', 'struct_blocks', 'recon_blocks',
                                      'num_steps')}
  model = model_lib.DSSR(**cfg)
  sd = {k[3:]: v for k, v in fixture.items() if k.startswith('sd/')}
  params = convert.torch_to_flax(sd, model)
  assert helpers.param_count(params) == 3_294_086
  out = jax.jit(model.apply)({'params': params}, jnp.asarray(_nhwc(fixture['input'])))
  assert out['sr'].dtype == jnp.float32
  np.testing.assert_allclose(out['sr'], _nhwc(fixture['output']), atol=1e-5, rtol=0)
  np.testing.assert_allclose(out['steps'], _nhwc(fixture['outs']), atol=1e-5, rtol=0)
  np.testing.assert_allclose(out['details'], _nhwc(fixture['details']), atol=1e-5, rtol=0)


def _shapes(model, h=8, w=8):
  lr = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), lr)['params']


@pytest.mark.parametrize('scale,count', [(2, 8_311_942), (3, 9_344_774), (4, 8_902_278)])
def test_paper_parameter_counts(scale, count):
  for t in (4, 1):
    assert helpers.param_count(_shapes(model_lib.DSSR(scale, num_steps=t))) == count
  # The paper-text reading adds exactly its LR detail conv (3 -> 128, 3x3).
  paper = helpers.param_count(_shapes(model_lib.DSSR(scale, paper_text=True)))
  assert paper == count + 128 * 3 * 9 + 128


@pytest.fixture(scope='module')
def tiny_x2():
  model = model_lib.DSSR(2, num_steps=3, channels=16, struct_blocks=1, recon_blocks=1)
  lr = jnp.asarray(np.random.default_rng(1).random((2, 6, 7, 3)), jnp.float32)
  return model, helpers.random_params(model), lr


def test_rolled_scan_equals_unrolled_steps_and_remat(tiny_x2):
  """The plain network runs the steps as a rolled scan; the faster executions unroll it, remat
  recomputes it: same parameters, same outputs."""
  model, params, lr = tiny_x2
  model = model.clone(execution=fast.PLAIN)
  ref = jax.jit(model.apply)({'params': params}, lr)
  assert ref['steps'].shape == ref['details'].shape == (3, 2, 12, 14, 3)
  np.testing.assert_allclose(ref['sr'], ref['steps'].mean(0), atol=1e-6)
  # The steps differ: the carry really moves between them.
  assert float(jnp.abs(ref['steps'][0] - ref['steps'][1]).max()) > 1e-4
  for kw in (dict(remat=True), dict(execution=fast.CPU), dict(execution=fast.ACCELERATOR),
             dict(execution=fast.CPU, remat=True)):
    other = model.clone(**kw)
    assert jax.tree_util.tree_structure(_shapes(other, 6, 7)) == \
        jax.tree_util.tree_structure(params)
    out = jax.jit(other.apply)({'params': params}, lr)
    for k in ('sr', 'steps', 'details'):
      np.testing.assert_allclose(out[k], ref[k], atol=1e-5, err_msg=f'{kw} {k}')


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny_x2):
  model, params, lr = tiny_x2
  ref = jax.jit(model.apply)({'params': params}, lr)
  bf = model.clone(dtype='bfloat16')
  p16 = jax.eval_shape(bf.init, jax.random.key(2), lr)['params']
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(p16))
  out = jax.jit(bf.apply)({'params': params}, lr)
  assert all(v.dtype == jnp.float32 for v in out.values())
  np.testing.assert_allclose(out['sr'], ref['sr'], atol=5e-2)


@pytest.mark.parametrize('scale', [3, 4])
def test_scales_3_and_4_shapes(scale):
  model = model_lib.DSSR(scale, **TINY)
  lr = jnp.full((1, 5, 6, 3), 0.5)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], lr)
  assert out['sr'].shape == (1, 5 * scale, 6 * scale, 3)
  assert out['steps'].shape == out['details'].shape == (2, 1, 5 * scale, 6 * scale, 3)
  tail = _shapes(model)['step']['UPNet']
  assert sorted(tail) == (['conv_0', 'conv_2', 'conv_4'] if scale == 4 else ['conv_0', 'conv_2'])


# (options, param groups that must exist in params['step'], groups that must not). Every case runs
# the tiny network against `reference.dssr_forward`, the design's equations in numpy.
VARIANTS = [
    (dict(modulation='affine'), {'conv2', 'spatial_trans1', 'spatial_trans2'}, {'conv2_lr'}),
    (dict(scale=3), {'conv2', 'spatial_trans1', 'spatial_trans2'}, set()),
    (dict(scale=4), {'conv2', 'spatial_trans1', 'spatial_trans2'}, set()),
    (dict(modulation='none'), set(), {'conv2', 'spatial_trans1', 'spatial_trans2'}),
    (dict(modulation='add'), {'spatial_trans1', 'spatial_trans2'}, set()),
    (dict(modulation='concat'), {'spatial_trans1', 'spatial_trans2'}, set()),
    # 32 channels: the squeeze conv's reduction by 16 (to 2 channels) shows.
    (dict(modulation='channel_attention', channels=32), {'spatial_trans1', 'spatial_trans2'}, set()),
    (dict(modulation='spatial_attention'), {'spatial_trans1', 'spatial_trans2'}, set()),
    (dict(affine_on='hr'), {'conv2', 'spatial_trans1'}, {'spatial_trans2'}),
    (dict(affine_on='lr'), {'conv2', 'spatial_trans2'}, {'spatial_trans1'}),
    (dict(paper_text=True), {'conv2', 'conv2_lr'}, set()),
    (dict(paper_text=True, affine_on='lr'), {'conv2_lr', 'spatial_trans2'},
     {'conv2', 'spatial_trans1'}),
    # Wide enough for the CPU's folded form of the HR modulation's first conv.
    (dict(channels=72), {'conv2', 'spatial_trans1', 'spatial_trans2'}, set()),
]
HEADS = {'affine': {'conv_gama', 'conv_beta'}, 'add': set(), 'concat': {'conv_fuse'},
         'channel_attention': {'conv_squeeze', 'conv_excite'}, 'spatial_attention': {'conv_att'}}
REF_NET = dict(scale=2, channels=4, struct_blocks=2, recon_blocks=1, num_steps=3)


def test_numpy_reference_reproduces_the_authors_network(fixture):
  """The design reference used below, run on the authors' fixture weights, gives their outputs."""
  cfg = {k: int(fixture[k]) for k in ('scale', 'channels', 'struct_blocks', 'recon_blocks',
                                      'num_steps')}
  sd = {k[3:]: v for k, v in fixture.items() if k.startswith('sd/')}
  params = convert.torch_to_flax(sd, model_lib.DSSR(**cfg))
  cfg.pop('channels')
  out = reference.dssr_forward(params, _nhwc(fixture['input'])[:1], **cfg)
  np.testing.assert_allclose(out['sr'], _nhwc(fixture['output'])[:1], atol=2e-6, rtol=0)
  np.testing.assert_allclose(out['steps'], _nhwc(fixture['outs'])[:, :1], atol=2e-6, rtol=0)
  np.testing.assert_allclose(out['details'], _nhwc(fixture['details'])[:, :1], atol=2e-6, rtol=0)


@pytest.mark.parametrize('kw,present,absent', VARIANTS,
                         ids=lambda v: str(sorted(v) if isinstance(v, set) else v))  # stable ids
def test_variants_match_their_definitions(kw, present, absent):
  """Every modulation kind, `affine_on` setting, paper-text row (P1-P3) and scale computes the
  design's forward pass: the network against a direct numpy reference on tiny inputs."""
  cfg = {**REF_NET, **kw}
  model = model_lib.DSSR(**cfg)
  lr = np.random.default_rng(0).random((2, 5, 6, 3)).astype(np.float32)
  params = helpers.random_params(model, seed=1, h=5, w=6)
  out = jax.jit(model.apply)({'params': params}, jnp.asarray(lr))
  step = params['step']
  assert present <= set(step) and not absent & set(step)
  mod = kw.get('modulation', 'affine')
  for name in ('spatial_trans1', 'spatial_trans2'):
    if name in step:
      assert set(step[name]) == {f'conv{i}' for i in range(1, 5)} | HEADS[mod]
  s = cfg['scale']
  assert out['sr'].shape == (2, 5 * s, 6 * s, 3)
  assert out['steps'].shape == out['details'].shape == (3, 2, 5 * s, 6 * s, 3)
  ref = reference.dssr_forward(params, lr, **{k: v for k, v in cfg.items() if k != 'channels'})
  for k in ('sr', 'steps', 'details'):
    np.testing.assert_allclose(np.asarray(out[k]), ref[k], atol=1e-5, rtol=0, err_msg=k)
  # The output is not dominated by the bicubic residual: the network's own part is O(1).
  assert np.abs(ref['sr'] - reference.bicubic_up(lr.astype(np.float64), s)).max() > 0.3


def test_bad_inputs():
  model = model_lib.DSSR(2, **TINY)
  with pytest.raises(ValueError, match='rank 4'):
    model.init(jax.random.key(0), jnp.zeros((6, 6, 3)))
  with pytest.raises(ValueError, match='3 \\(RGB\\) channels'):
    model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))
  for field, value in (('scale', 5), ('modulation', 'film'), ('affine_on', 'neither'),
                       ('dtype', 'float16'), ('num_steps', 0), ('channels', 0)):
    kw = {**TINY, 'scale': 2, field: value}
    with pytest.raises(ValueError, match=f'DSSR: {field} must be'):
      model_lib.DSSR(**kw)


def test_config_builds_model():
  from configs import default  # pylint: disable=g-import-not-at-top
  cfg = default.get_model_config()
  model = model_lib.DSSR(**cfg)
  assert flax.traverse_util.flatten_dict(_shapes(model)) and model.scale == cfg.scale


def test_remat_really_cuts_training_memory():
  """XLA's compiled temp memory of the gradient shrinks with remat (it did not while unrolled)."""
  lr = jnp.zeros((2, 16, 16, 3))
  hr = jnp.zeros((2, 32, 32, 3))
  temp = {}
  for remat in (False, True):
    model = model_lib.DSSR(2, channels=16, struct_blocks=1, recon_blocks=1, num_steps=4,
                           remat=remat)
    params = jax.eval_shape(model.init, jax.random.key(0), lr)
    grad = jax.jit(jax.grad(lambda p, m=model: losses.dssr_loss(m.apply(p, lr), lr, hr, scale=2)[0]))
    temp[remat] = grad.lower(params).compile().memory_analysis().temp_size_in_bytes
  assert temp[True] < 0.6 * temp[False], temp
