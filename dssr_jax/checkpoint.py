"""The checkpoint layout every part of dssr-jax reads and writes.

A checkpoint is an orbax step directory `<root>/checkpoints/<step>/` holding at least two items:
`params` (the network's parameter tree) and `meta` (JSON; `meta['model']` is the model config the
params belong to). Training adds `opt_state` and more `meta` keys; conversion of the authors'
weights writes only the two. Eval and inference load any of them with `load_params`. Paths may
be local or URLs (gs://, ...; etils.epath).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from dssr_jax import image_files

CHECKPOINTS = 'checkpoints'


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


def _read_only_manager(root: epath.Path) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      root,
      options=ocp.CheckpointManagerOptions(read_only=True, create=False),
      item_names=('params', 'meta'))


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
  with ocp.CheckpointManager(root, item_names=('params', 'meta')) as mngr:
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
  with _read_only_manager(root) as mngr:
    steps = mngr.all_steps()
    if not steps:
      raise FileNotFoundError(f'no checkpoint found under {root}')
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise FileNotFoundError(f'no checkpoint of step {step} under {root}; found steps {sorted(steps)}')
    restored = mngr.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  meta = restored['meta']
  if 'model' not in meta:
    raise ValueError(f'checkpoint {root / str(step)} has no model config in its meta item')
  params = jax.tree_util.tree_map(np.asarray, restored['params'])
  return params, dict(meta['model']), int(step)
