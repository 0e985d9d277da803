"""The paper's optimiser: Adam(0.9, 0.99, 1e-8), 2e-4 halved at 80k, 160k, ..., 400k."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from dssr_jax import optim


@pytest.fixture(scope='module')
def train_config():
  return default.get_config().train


@pytest.mark.parametrize('step,expected', [
    (0, 2e-4), (79_999, 2e-4), (80_000, 1e-4), (159_999, 1e-4), (160_000, 5e-5),
    (399_999, 2e-4 / 16), (400_000, 2e-4 / 32), (479_999, 2e-4 / 32)])
def test_learning_rate_schedule(train_config, step, expected):
  lr = optim.learning_rate_schedule(train_config)(step)
  np.testing.assert_allclose(float(lr), expected, rtol=1e-7)


def test_paper_values(train_config):
  assert (train_config.adam_b1, train_config.adam_b2, train_config.adam_eps) == (0.9, 0.99, 1e-8)
  assert train_config.num_steps == 480_000 and train_config.batch_size == 8


def test_two_updates_match_hand_computed_adam(train_config):
  tx = optim.create_optimizer(train_config)
  p0 = np.array([0.5, -1.0, 2.0, 0.0], np.float64)
  g1 = np.array([0.1, -0.2, 3.0, 1e-9], np.float64)
  g2 = np.array([-0.3, 0.05, 1.0, 2e-9], np.float64)
  params = {'w': jnp.asarray(p0, jnp.float32)}
  state = tx.init(params)
  got = []
  for g in (g1, g2):
    updates, state = tx.update({'w': jnp.asarray(g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, updates)
    got.append(np.asarray(params['w'], np.float64))
  # Adam by hand (Kingma & Ba, eps outside the square root, no weight decay), lr 2e-4.
  b1, b2, eps, lr = 0.9, 0.99, 1e-8, 2e-4
  m = (1 - b1) * g1
  v = (1 - b2) * g1**2
  p1 = p0 - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
  m = b1 * m + (1 - b1) * g2
  v = b2 * v + (1 - b2) * g2**2
  p2 = p1 - lr * (m / (1 - b1**2)) / (np.sqrt(v / (1 - b2**2)) + eps)
  # First step: |update| = lr * |g| / (|g| + eps), i.e. lr for all but the tiny gradient.
  np.testing.assert_allclose(p1[:3], p0[:3] - 2e-4 * np.sign(g1[:3]), atol=1e-7)
  np.testing.assert_allclose(got[0], p1, rtol=0, atol=2e-7)
  np.testing.assert_allclose(got[1], p2, rtol=0, atol=2e-7)


def test_bad_schedule_is_rejected(train_config):
  cfg = train_config.copy_and_resolve_references()
  cfg.lr_boundaries = (160_000, 80_000)
  with pytest.raises(ValueError, match='lr_boundaries'):
    optim.learning_rate_schedule(cfg)
