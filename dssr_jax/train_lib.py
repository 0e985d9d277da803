"""Train state and the data-parallel train step (docs/design.md section 2).

Only jax, flax, optax, numpy and ml_collections are imported here: the GPU benchmark uses this
file on a machine without tensorflow. The loop around it (data, checkpoints, metrics) lives in
`train_loop.py`.
"""

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dssr_jax import fast
from dssr_jax import losses
from dssr_jax import model as model_lib
from dssr_jax import optim

DATA_AXIS = 'data'


@flax.struct.dataclass
class TrainState:
  """Everything a step changes. `step` counts batches consumed, skipped ones included."""
  step: jax.Array
  params: Any
  opt_state: Any
  bad_steps: jax.Array  # Consecutive steps whose update was skipped (non-finite loss or grads).
  skipped: jax.Array  # All skipped steps so far.


def create_model(model_config: ml_collections.ConfigDict) -> model_lib.DSSR:
  return model_lib.DSSR(**model_config)


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh over every device of every process; the batch is split along it."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_size(global_batch: int, mesh: Mesh) -> int:
  """Returns the per-process batch; raises unless the global batch splits evenly."""
  n = mesh.devices.size
  if global_batch <= 0 or global_batch % n:
    raise ValueError(f'config.train.batch_size={global_batch} must be a positive multiple of the '
                     f'device count {n}')
  if global_batch % jax.process_count():
    raise ValueError(f'config.train.batch_size={global_batch} must divide by the process count '
                     f'{jax.process_count()}')
  return global_batch // jax.process_count()


def init_state(model: model_lib.DSSR, tx: optax.GradientTransformation, rng: jax.Array,
               lr_patch: int) -> TrainState:
  """Fresh parameters (PyTorch's default init) and optimiser state."""
  params = model.init(rng, jnp.zeros((1, lr_patch, lr_patch, 3), jnp.float32))['params']
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, opt_state=tx.init(params), bad_steps=zero,
                    skipped=zero)


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(tree)
  return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(x)) for x in leaves],
                          jnp.array(True))


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: model_lib.DSSR,
               tx: optax.GradientTransformation, alpha: float
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on `dssr_loss`; a non-finite loss or gradient leaves params and Adam untouched."""

  def loss_fn(params):
    out = model.apply({'params': params}, batch['lr'])
    return losses.dssr_loss(out, batch['lr'], batch['hr'], scale=model.scale, alpha=alpha)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ok = jnp.isfinite(loss) & _all_finite(grads)
  # The skip happens inside the step so that a bad batch costs no host round trip; the Adam count
  # (and so the learning-rate schedule) does not advance either.
  keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
  new_state = TrainState(
      step=state.step + 1,
      params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      bad_steps=jnp.where(ok, 0, state.bad_steps + 1),
      skipped=state.skipped + jnp.where(ok, 0, 1))
  metrics = {
      'loss': loss,
      'pix': terms['pix'],
      'detail': terms['detail'],
      'grad_norm': optax.global_norm(grads),
      'finite': ok,
      'bad_steps': new_state.bad_steps,
  }
  return new_state, metrics


def state_shardings(state_shape: TrainState, mesh: Mesh) -> TrainState:
  """Every leaf of the state is replicated over the mesh."""
  return jax.tree_util.tree_map(lambda _: NamedSharding(mesh, P()), state_shape)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def make_train_step(model: model_lib.DSSR, tx: optax.GradientTransformation, mesh: Mesh,
                    state_shape: TrainState, alpha: float,
                    compiler_options: dict[str, str] | None = None
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """One `jax.jit` of `train_step`: replicated state (donated), batch sharded on axis 0.

  `compiler_options`: XLA's options for it; None = `fast.compiler_options()`, {} = XLA's
  defaults (for A/B studies).
  """
  if compiler_options is None:
    compiler_options = fast.compiler_options()
  replicated = NamedSharding(mesh, P())
  shardings = state_shardings(state_shape, mesh)
  return jax.jit(
      functools.partial(train_step, model=model, tx=tx, alpha=alpha),
      in_shardings=(shardings, batch_sharding(mesh)),
      out_shardings=(shardings, replicated),
      donate_argnums=(0,), compiler_options=compiler_options)


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows of the batch -> arrays over the whole mesh (rows in process order)."""
  sharding = batch_sharding(mesh)
  out = {}
  for k, v in local.items():
    v = np.asarray(v)
    shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
    out[k] = jax.make_array_from_process_local_data(sharding, v, shape)
  return out


def create_train_state(config: ml_collections.ConfigDict, mesh: Mesh, lr_patch: int = 16
                       ) -> tuple[model_lib.DSSR, optax.GradientTransformation, TrainState]:
  """Model, optimiser and a fresh state placed (replicated) on the mesh."""
  model = create_model(config.model)
  tx = optim.create_optimizer(config.train)
  rng = jax.random.PRNGKey(config.train.seed)
  init = functools.partial(init_state, model, tx, lr_patch=lr_patch)
  shape = jax.eval_shape(init, rng)
  state = jax.jit(init, out_shardings=state_shardings(shape, mesh))(rng)
  return model, tx, state
