"""A checkpoint of a network: the one place that writes, reads and checks one.

Layout: an orbax step directory `<root>/checkpoints/<step>/` holding at least two items, `params`
(the network's parameter tree) and `meta` (JSON; `meta['model']` is the model config the params
belong to). Training adds `opt_state` and more `meta` keys (`save_training`); conversion of the
authors' weights writes only the two (`save_params`). Paths may be local or URLs (gs://, ...;
etils.epath).

A checkpoint is only ever loaded into the network it holds: `check_same_network` compares the
structural fields (`model.STRUCTURAL_FIELDS`) for resuming, `init_from`, eval and inference alike,
and `check_param_shapes` the parameter tree itself. Reading opens no checkpoint manager, so it
creates nothing and logs no orbax warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Any, Mapping

from etils import epath
import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from dssr_jax import image_files
from dssr_jax import model as model_lib

CHECKPOINTS = 'checkpoints'
TRAINING_ITEMS = ('params', 'opt_state', 'meta')

# ----------------------------------------------------------------------------------------------
# Reading and writing.


def _resolve(path: os.PathLike | str, step: int | None) -> tuple[epath.Path, int | None]:
  """Maps a workdir, its checkpoints/ folder or one checkpoints/<step> folder to (root, step)."""
  path = image_files.absolute(path)
  if not path.exists():
    raise FileNotFoundError(f'checkpoint path {path} does not exist')
  if (path / CHECKPOINTS).is_dir():
    return path / CHECKPOINTS, step
  if path.name.isdigit() and (path / 'params').exists():
    if step is not None and step != int(path.name):
      raise ValueError(f'{path} is the checkpoint of step {path.name}, but step={step} was asked for')
    return path.parent, int(path.name)
  return path, step


def _steps(root: epath.Path) -> list[int]:
  """The finished checkpoints under `root`, oldest first (none when it does not exist)."""
  return sorted(s for s in ocp.utils.checkpoint_steps(root) if (root / str(s)).is_dir())


class _OrbaxInfo(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname


@contextlib.contextmanager
def _quiet_orbax():
  """Drops orbax's INFO records (a dozen per checkpoint opened, none news to the caller) while a
  checkpoint is read or written here; its warnings still pass."""
  logger, quiet = logging.getLogger('absl'), _OrbaxInfo()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


def _read(step_dir: epath.Path, **items: ocp.args.CheckpointArgs) -> dict[str, Any]:
  # A Checkpointer on the one step: a CheckpointManager, even read-only, warns and may create.
  with _quiet_orbax(), ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    return checkpointer.restore(step_dir, args=ocp.args.Composite(**items))


def save_params(directory: os.PathLike | str, params: Any, model_config: Mapping[str, Any],
                step: int = 0, overwrite: bool = False) -> epath.Path:
  """Writes `params` and `{'model': model_config}` to `directory/checkpoints/<step>/`.

  Refuses to replace an existing checkpoint of that step unless `overwrite` is set.
  """
  root = image_files.absolute(directory) / CHECKPOINTS
  target = root / str(step)
  if target.exists():
    if not overwrite:
      raise FileExistsError(f'{target} already exists; pass overwrite=True to replace it')
  params = jax.tree_util.tree_map(np.asarray, params)
  meta = {'model': dict(model_config), 'step': int(step)}
  with _quiet_orbax(), ocp.CheckpointManager(root, item_names=('params', 'meta')) as mngr:
    if target.exists():
      mngr.delete(step)
    mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
  return target


def load_params(path: os.PathLike | str, step: int | None = None
                ) -> tuple[Any, dict[str, Any], int]:
  """Loads (params as numpy arrays, model config dict, step); the latest step when none is given."""
  root, step = _resolve(path, step)
  steps = _steps(root)
  if not steps:
    raise FileNotFoundError(f'no checkpoint found under {root}')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise FileNotFoundError(f'no checkpoint of step {step} under {root}; found steps {steps}')
  restored = _read(root / str(step), params=ocp.args.StandardRestore(),
                   meta=ocp.args.JsonRestore())
  meta = restored['meta']
  if 'model' not in meta:
    raise ValueError(f'checkpoint {root / str(step)} has no model config in its meta item')
  params = jax.tree_util.tree_map(np.asarray, restored['params'])
  return params, dict(meta['model']), int(step)


# ----------------------------------------------------------------------------------------------
# The network a checkpoint holds.


def check_same_network(saved: Mapping[str, Any], wanted: Mapping[str, Any], source: str) -> None:
  """Raises ValueError naming each structural field of `wanted` that differs from `saved` (the
  checkpoint's model config). Fields `wanted` leaves out, and dtype and remat, are not compared."""
  diffs = [f'{k}={wanted[k]!r} (checkpoint has {saved.get(k)!r})'
           for k in model_lib.STRUCTURAL_FIELDS if k in wanted and saved.get(k) != wanted[k]]
  if diffs:
    raise ValueError(f'{source} holds another network: {", ".join(diffs)}. Use the config it was '
                     'trained with (dtype and remat may differ) or another checkpoint.')


def merge_model_config(saved: Mapping[str, Any], requested: Mapping[str, Any] | None,
                       *, source: str) -> dict[str, Any]:
  """The config to build: the checkpoint's, with the other fields (dtype, remat) from `requested`.

  Raises ValueError (`check_same_network`) when a structural field of `requested` differs
  (`scale` included: a network only works at its own scale).
  """
  config = dict(saved)
  if requested is None:
    return config
  check_same_network(saved, requested, source)
  config.update({k: v for k, v in requested.items() if k not in model_lib.STRUCTURAL_FIELDS})
  return config


def build_model(config: Mapping[str, Any], source: str) -> model_lib.DSSR:
  """DSSR(**config), or a ValueError naming the fields this DSSR does not know."""
  known = {f.name for f in dataclasses.fields(model_lib.DSSR)} - {'parent', 'name'}
  unknown = sorted(set(config) - known)
  if unknown:
    raise ValueError(f'{source} has model options this DSSR does not know: {unknown}')
  return model_lib.DSSR(**config)


def param_shapes(model: model_lib.DSSR) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flat {path: shape} of the model's params, without computing anything (eval_shape)."""
  lr = jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
  tree = jax.eval_shape(model.init, jax.random.key(0), lr)['params']
  return {k: tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(tree).items()}


def check_param_shapes(model: model_lib.DSSR, params: Any, source: str) -> None:
  """Raises ValueError when the parameter tree is not the tree `model` expects."""
  name = '/'.join
  exp = {name(k): v for k, v in param_shapes(model).items()}
  got = {name(k): tuple(np.shape(v))
         for k, v in flax.traverse_util.flatten_dict(dict(params)).items()}
  problems = [f'{k} missing' for k in exp if k not in got]
  problems += [f'{k} unexpected' for k in got if k not in exp]
  problems += [f'{k} has shape {got[k]}, the network expects {exp[k]}'
               for k in exp if k in got and got[k] != exp[k]]
  if problems:
    more = f' (and {len(problems) - 5} more)' if len(problems) > 5 else ''
    fields = {k: getattr(model, k) for k in model_lib.STRUCTURAL_FIELDS}
    raise ValueError(f'the parameters in {source} do not fit the network {fields}: ' +
                     '; '.join(problems[:5]) + more)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A network with its weights; `config` is the full model config it was built from."""
  model: model_lib.DSSR
  params: Any
  config: dict[str, Any]
  step: int
  path: str


def load_model(path: os.PathLike | str, step: int | None = None,
               requested: Mapping[str, Any] | None = None) -> LoadedModel:
  """Loads a checkpoint (a workdir, its checkpoints/ folder or one step folder) and builds DSSR.

  Args:
    path: where the checkpoint is (any form `load_params` accepts).
    step: which step; the latest when None.
    requested: a model config the caller expects (e.g. from --config); its structural fields
      must match the checkpoint, the others (dtype, remat) override it.
  """
  params, saved, step = load_params(path, step)
  source = f'checkpoint {path} (step {step})'
  config = merge_model_config(saved, requested, source=source)
  model = build_model(config, source)
  check_param_shapes(model, params, source)
  return LoadedModel(model=model, params=params, config=config, step=step, path=str(path))


# ----------------------------------------------------------------------------------------------
# Training checkpoints: params, Adam state and counters, the last K and the best kept.


def latest_training(workdir: epath.Path) -> tuple[int, dict[str, Any]] | None:
  """(step, meta) of the newest checkpoint in `workdir`, None without one; creates nothing.

  Raises:
    ValueError: that checkpoint has no optimizer state (converted weights): nothing to resume.
  """
  root = workdir / CHECKPOINTS
  steps = _steps(root)
  if not steps:
    return None
  step_dir = root / str(steps[-1])
  if not (step_dir / 'opt_state').exists():
    raise ValueError(f'{step_dir} has no optimizer state (converted weights?): training does not '
                     'resume from it; use another workdir. Nothing was changed.')
  return steps[-1], _read(step_dir, meta=ocp.args.JsonRestore())['meta']


def training_steps(workdir: epath.Path) -> tuple[int | None, int | None]:
  """(latest step, best step by validation PSNR or None) of a training workdir; looks only."""
  directory = workdir / CHECKPOINTS
  if not directory.is_dir():
    return None, None
  options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                         best_fn=lambda m: m['val_psnr'])
  with ocp.CheckpointManager(directory, options=options) as mngr:
    latest = mngr.latest_step()
    best = mngr.best_step() if latest is not None else None
  return latest, best


def training_manager(workdir: epath.Path, keep: int, best: bool = True
                     ) -> ocp.CheckpointManager:
  """`workdir/checkpoints/<step>/{params,opt_state,meta}`: the last `keep`, and with `best` the
  one of the best `val_psnr` (the metric `save_training` is given).

  Creates workdir/checkpoints: open it only for a run that will train.
  """
  policies = ocp.checkpoint_managers
  val_psnr = lambda m: m['val_psnr']
  keep_policies = [policies.LatestN(n=keep)]
  if best:
    keep_policies.append(
        policies.BestN(get_metric_fn=val_psnr, n=1, keep_checkpoints_without_metrics=False))
  # best_fn as well: without it orbax neither writes the metrics nor reads them back, and a resumed
  # run would delete the best checkpoint at its first save. Without validation, none: orbax would
  # warn at every save that it got no metric.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy(keep_policies),
      best_fn=val_psnr if best else None, enable_async_checkpointing=False)
  return ocp.CheckpointManager(workdir / CHECKPOINTS, item_names=TRAINING_ITEMS, options=options)


def save_training(mngr: ocp.CheckpointManager, config, state,
                  metrics: dict[str, float] | None = None) -> int:
  """Saves a `train_lib.TrainState` (step, params, Adam, counters) with `config`'s model and train
  blocks as its meta; returns the step (a step already saved is left as it is)."""
  counters = jax.device_get({'step': state.step, 'skipped': state.skipped,
                             'bad_steps': state.bad_steps})
  counters = {k: int(v) for k, v in counters.items()}
  step = counters['step']
  if step in mngr.all_steps():
    return step
  meta = {'model': config.model.to_dict(), 'train': config.train.to_dict(),
          'data_step': step,  # Batches consumed: where the data stream resumes.
          **counters}
  mngr.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state.params),
      opt_state=ocp.args.StandardSave(state.opt_state),
      meta=ocp.args.JsonSave(meta)), metrics=metrics)
  mngr.wait_until_finished()
  return step


def restore_training(mngr: ocp.CheckpointManager, state):
  """The latest checkpoint onto a `train_lib.TrainState`'s shapes and shardings (it is consumed)."""
  step = mngr.latest_step()
  abstract = lambda tree: jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
  restored = mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract(state.params)),
      opt_state=ocp.args.StandardRestore(abstract(state.opt_state)),
      meta=ocp.args.JsonRestore()))
  meta = restored['meta']
  replicated = jax.sharding.NamedSharding(jax.tree_util.tree_leaves(state.params)[0].sharding.mesh,
                                          jax.sharding.PartitionSpec())
  scalar = lambda v: jax.device_put(jnp.asarray(v, jnp.int32), replicated)
  return state.replace(
      step=scalar(meta['data_step']), params=restored['params'], opt_state=restored['opt_state'],
      bad_steps=scalar(meta['bad_steps']), skipped=scalar(meta['skipped']))
