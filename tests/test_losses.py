"""dssr_loss against the authors' training step (official_dssr_x2_small_train.npz) and by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dssr_jax import losses
from dssr_jax import torch_bicubic


def nhwc(x):
  """NCHW (optionally T-first) -> NHWC."""
  x = np.asarray(x, np.float32)
  return np.moveaxis(x, -3, -1)


@pytest.fixture(scope='module')
def ref(fixtures_dir):
  net = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  train = np.load(fixtures_dir / 'official_dssr_x2_small_train.npz')
  return net, train


def test_loss_of_the_authors_outputs(ref):
  """The stored network outputs, fed to our loss, give the stored loss and per-step terms."""
  net, train = ref
  out = {'steps': jnp.asarray(nhwc(net['outs'])), 'details': jnp.asarray(nhwc(net['details']))}
  loss, terms = losses.dssr_loss(out, jnp.asarray(nhwc(net['input'])), jnp.asarray(nhwc(train['hr'])),
                                 scale=2, alpha=float(train['alpha']))
  assert terms['pix'].shape == terms['detail'].shape == (3,)
  np.testing.assert_allclose(float(loss), train['loss'], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(terms['pix']), train['loss_pix'], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(terms['detail']), train['loss_detail'], rtol=1e-6)


def test_by_hand():
  """Perfect outputs cost 0; offsets of known size give known means; alpha weighs details only."""
  rng = np.random.default_rng(0)
  lr = jnp.asarray(rng.random((2, 5, 6, 3), np.float32))
  hr = jnp.asarray(rng.random((2, 10, 12, 3), np.float32))
  bic = torch_bicubic.up(lr, 2)
  steps = jnp.stack([hr, hr + 0.5, hr - 0.25])
  details = jnp.stack([hr - bic + 0.1, hr - bic, hr - bic - 0.2])
  loss, terms = losses.dssr_loss({'steps': steps, 'details': details}, lr, hr, scale=2, alpha=2.0)
  np.testing.assert_allclose(np.asarray(terms['pix']), [0.0, 0.5, 0.25], atol=1e-5)
  np.testing.assert_allclose(np.asarray(terms['detail']), [0.1, 0.0, 0.2], atol=1e-5)
  np.testing.assert_allclose(float(loss), 0.75 + 2.0 * 0.3, atol=1e-5)


def test_detail_weight_defaults_to_one_and_sums_run_in_float32():
  """alpha defaults to the design's 1; bfloat16 inputs are upcast before the sums (the loss equals a
  float64 computation on the same values, far below bfloat16's 3 significant digits)."""
  rng = np.random.default_rng(1)
  lr = rng.random((1, 5, 6, 3))
  hr = rng.random((1, 10, 12, 3))
  steps, details = rng.random((2, 1, 10, 12, 3)), rng.random((2, 1, 10, 12, 3)) - 0.5
  bf = lambda x: jnp.asarray(x, jnp.bfloat16)
  loss, _ = losses.dssr_loss({'steps': bf(steps), 'details': bf(details)}, bf(lr), bf(hr), scale=2)
  f64 = lambda x: np.asarray(bf(x), np.float64)
  bic = torch_bicubic.bicubic_matrix(5, 10, False, 2).astype(np.float64)
  bic = np.einsum('Hh,bhwc,Ww->bHWc', bic, f64(lr), torch_bicubic.bicubic_matrix(6, 12, False, 2))
  want = sum(np.abs(f64(steps)[t] - f64(hr)).mean() + np.abs(f64(details)[t] - (f64(hr) - bic)).mean()
             for t in range(2))
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_shape_mismatch_is_reported():
  out = {'steps': jnp.zeros((2, 1, 8, 8, 3)), 'details': jnp.zeros((2, 1, 8, 8, 3))}
  with pytest.raises(ValueError, match=r'hr has shape \(1, 6, 6, 3\); the network produced '
                     r'\(1, 8, 8, 3\) per step'):
    losses.dssr_loss(out, jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 6, 6, 3)), scale=2)


def _rel(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope='module')
def fixture_model(ref):
  """The fixture network with the authors' weights (converted), in float32."""
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  net, _ = ref
  sd = {k[3:]: net[k] for k in net.files if k.startswith('sd/')}
  cfg = dict(scale=int(net['scale']), channels=int(net['channels']),
             struct_blocks=int(net['struct_blocks']), recon_blocks=int(net['recon_blocks']),
             num_steps=int(net['num_steps']))
  params = convert.torch_to_flax(sd, model_lib.DSSR(**cfg))
  return cfg, params, model_lib


def test_gradients_match_the_authors(ref, fixture_model):
  """d loss / d params of our model + loss vs the authors' backward pass, tensor by tensor."""
  net, train = ref
  cfg, params, model_lib = fixture_model
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  model = model_lib.DSSR(**cfg)
  lr, hr = jnp.asarray(nhwc(net['input'])), jnp.asarray(nhwc(train['hr']))

  def loss_fn(p):
    return losses.dssr_loss(model.apply({'params': p}, lr), lr, hr, scale=cfg['scale'],
                            alpha=float(train['alpha']))

  (loss, terms), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  np.testing.assert_allclose(float(loss), train['loss'], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(terms['pix']), train['loss_pix'], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(terms['detail']), train['loss_detail'], rtol=1e-6)

  want = convert.torch_to_flax({k[5:]: train[k] for k in train.files if k.startswith('grad/')},
                               model)
  got_leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(grads))
  want_leaves = dict(jax.tree_util.tree_leaves_with_path(want))
  assert len(got_leaves) == len(want_leaves) == 52
  worst, num, den = 0.0, 0.0, 0.0
  for path, g in got_leaves:
    w = np.asarray(want_leaves[path], np.float64)
    g = np.asarray(g, np.float64)
    assert g.shape == w.shape, path
    err = _rel(g, w)
    worst = max(worst, err)
    assert err < 1e-3, (jax.tree_util.keystr(path), err)
    num += float(np.sum((g - w)**2))
    den += float(np.sum(w**2))
  assert np.sqrt(num / den) < 1e-4, np.sqrt(num / den)


def test_bfloat16_close_to_float32(ref, fixture_model):
  """bf16 compute (params stay f32) changes the fixture outputs by a few hundredths at most."""
  net, _ = ref
  cfg, params, model_lib = fixture_model
  lr = jnp.asarray(nhwc(net['input']))
  f32 = model_lib.DSSR(**cfg, dtype='float32').apply({'params': params}, lr)
  bf16 = model_lib.DSSR(**cfg, dtype='bfloat16').apply({'params': params}, lr)
  for key in ('sr', 'steps', 'details'):
    assert bf16[key].dtype == jnp.float32
  # The output image within 3e-2 (measured 2.0e-2: bfloat16 keeps 8 bits, and the T steps and the
  # blocks within each add their roundings); per-step maps, whose values reach 4.2, within 2e-2 of
  # their largest magnitude (measured 3.6e-2 absolute).
  diff = float(jnp.max(jnp.abs(bf16['sr'] - f32['sr'])))
  assert 0 < diff < 3e-2, diff
  for key in ('steps', 'details'):
    diff = float(jnp.max(jnp.abs(bf16[key] - f32[key])))
    assert 0 < diff < 2e-2 * float(jnp.max(jnp.abs(f32[key]))), (key, diff)
  np.testing.assert_allclose(np.asarray(f32['sr']), nhwc(net['output']), atol=1e-5)
