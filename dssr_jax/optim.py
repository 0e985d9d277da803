"""The paper's optimiser: Adam(0.9, 0.99, 1e-8) with a piecewise-constant learning rate."""

import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """`learning_rate * lr_decay_factor ** (number of lr_boundaries <= step)`.

  The update at 0-based step `lr_boundaries[0]` is the first one with the decayed rate, as
  with PyTorch's MultiStepLR stepped once per iteration.
  """
  boundaries = tuple(int(b) for b in config.lr_boundaries)
  if list(boundaries) != sorted(set(boundaries)) or any(b <= 0 for b in boundaries):
    raise ValueError(f'config.train.lr_boundaries must be increasing positive steps, got {boundaries}')
  base, factor = float(config.learning_rate), float(config.lr_decay_factor)
  # A zero rate is allowed: a run that must not move its params (checks of init_from).
  if base < 0 or factor <= 0:
    raise ValueError('config.train.learning_rate must be >= 0 and lr_decay_factor positive, '
                     f'got {base} and {factor}')
  bounds = jnp.asarray(boundaries if boundaries else (0,), jnp.int32)

  def schedule(step):
    if not boundaries:
      return jnp.asarray(base, jnp.float32)
    passed = jnp.sum(jnp.asarray(step, jnp.int32) >= bounds)
    return jnp.asarray(base, jnp.float32) * jnp.asarray(factor, jnp.float32) ** passed

  return schedule


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam without weight decay, driven by `learning_rate_schedule(config)` (config = config.train)."""
  return optax.adam(
      learning_rate=learning_rate_schedule(config),
      b1=config.adam_b1,
      b2=config.adam_b2,
      eps=config.adam_eps,
  )
