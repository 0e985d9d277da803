"""The training loop: data, resumable orbax checkpoints, clu metrics, validation, preemption.

The workdir, `config.data.folders`, `config.train.val_dir` and `config.train.init_from` may be
local paths or URLs (gs://, ...) that etils.epath / tf.io.gfile understand.
"""

import os
import signal
import time
from typing import Any

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from dssr_jax import checkpoint as checkpoint_lib
from dssr_jax import image_files
from dssr_jax import model as model_lib
from dssr_jax import train_lib
from dssr_jax import upscaling

ITEMS = ('params', 'opt_state', 'meta')
INIT_PATCH = 16  # Parameter shapes do not depend on the image size.


class BadStepsError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


def check_config(config: ml_collections.ConfigDict,
                 reference: ml_collections.ConfigDict | None = None) -> None:
  """Raises ValueError naming the first bad field: one `reference` (the defaults,
  configs/default.py) does not know, so that a typo is not silently ignored, or a bad value."""

  def walk(cfg, ref, prefix):
    for key in cfg.keys():
      name = f'{prefix}{key}'
      if key not in ref:
        raise ValueError(f'unknown config field {name!r}; known fields here: {sorted(ref.keys())}')
      if isinstance(cfg[key], ml_collections.ConfigDict) and isinstance(ref[key],
                                                                        ml_collections.ConfigDict):
        walk(cfg[key], ref[key], name + '.')

  for section in ('model', 'train', 'data'):
    if section not in config:
      raise ValueError(f'config has no {section!r} section')
    if reference is not None:
      walk(config[section], reference[section], f'{section}.')
  if config.train.num_steps <= 0:
    raise ValueError(f'config.train.num_steps must be positive, got {config.train.num_steps}')
  if config.train.checkpoint_every <= 0:
    raise ValueError('config.train.checkpoint_every must be positive, got '
                     f'{config.train.checkpoint_every}')
  if config.train.keep_checkpoints < 1:
    raise ValueError('config.train.keep_checkpoints must be at least 1, got '
                     f'{config.train.keep_checkpoints}')
  if config.train.val_dir and not epath.Path(config.train.val_dir).is_dir():
    raise FileNotFoundError(f'config.train.val_dir={config.train.val_dir!r} is not a folder')


def create_checkpoint_manager(workdir: epath.Path, keep: int) -> ocp.CheckpointManager:
  """`workdir/checkpoints/<step>/{params,opt_state,meta}`: the last `keep` plus the best val PSNR."""
  policies = ocp.checkpoint_managers
  val_psnr = lambda m: m['val_psnr']
  policy = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=val_psnr, n=1, keep_checkpoints_without_metrics=False),
  ])
  # best_fn as well: without it orbax neither writes the metrics nor reads them back, and a resumed
  # run would delete the best checkpoint at its first save.
  options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=val_psnr,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(workdir / checkpoint_lib.CHECKPOINTS, item_names=ITEMS,
                               options=options)


def _meta(config: ml_collections.ConfigDict, state_host: dict) -> dict:
  return {
      'model': config.model.to_dict(),
      'train': config.train.to_dict(),
      'step': state_host['step'],
      'data_step': state_host['step'],  # Batches consumed: where the data stream resumes.
      'skipped': state_host['skipped'],
      'bad_steps': state_host['bad_steps'],
  }


def save_checkpoint(mngr: ocp.CheckpointManager, config, state: train_lib.TrainState,
                    metrics: dict | None = None) -> int:
  counters = jax.device_get({'step': state.step, 'skipped': state.skipped,
                             'bad_steps': state.bad_steps})
  counters = {k: int(v) for k, v in counters.items()}
  step = counters['step']
  if step in mngr.all_steps():
    return step
  mngr.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state.params),
      opt_state=ocp.args.StandardSave(state.opt_state),
      meta=ocp.args.JsonSave(_meta(config, counters))), metrics=metrics)
  mngr.wait_until_finished()
  return step


def _network_diff(saved: dict, config) -> str:
  """The structural fields (not dtype or remat) where `saved` and config.model differ, or ''."""
  wanted = config.model.to_dict()
  return ', '.join(f'{k}: checkpoint {saved.get(k)!r} vs config {wanted.get(k)!r}'
                   for k in model_lib.STRUCTURAL_FIELDS if saved.get(k) != wanted.get(k))


def _check_compatible(meta: dict, config, where) -> None:
  """A workdir belongs to one network: refuse to touch a checkpoint of another one.

  Only the structural fields count: a run may resume with another dtype or remat.
  """
  text = _network_diff(dict(meta.get('model', {})), config)
  if text:
    raise ValueError(f'{where} holds a checkpoint of another network ({text}); use another '
                     '--workdir or the matching config. Nothing was changed.')
  saved_batch = meta.get('train', {}).get('batch_size')
  if saved_batch is not None and saved_batch != config.train.batch_size:
    raise ValueError(f'{where} was trained with config.train.batch_size={saved_batch}, not '
                     f'{config.train.batch_size}: the data position would not resume. Nothing was '
                     'changed.')


def restore_checkpoint(mngr, config, state: train_lib.TrainState) -> train_lib.TrainState:
  """Restores the latest checkpoint onto `state`'s shapes and shardings (state is consumed)."""
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
  return train_lib.TrainState(
      step=scalar(meta['data_step']), params=restored['params'], opt_state=restored['opt_state'],
      bad_steps=scalar(meta.get('bad_steps', 0)), skipped=scalar(meta.get('skipped', 0)))


def has_checkpoint(workdir: epath.Path) -> bool:
  """Whether `workdir` holds a checkpoint of its own; looks without creating anything."""
  directory = workdir / checkpoint_lib.CHECKPOINTS
  if not directory.is_dir():
    return False
  options = ocp.CheckpointManagerOptions(read_only=True, create=False)
  with ocp.CheckpointManager(directory, options=options) as mngr:
    return mngr.latest_step() is not None


def load_init_params(config, source: str) -> tuple[Any, int]:
  """(params as numpy, step) of checkpoint `source` for `config.train.init_from`.

  `source` is a workdir (its latest checkpoint), its checkpoints/ folder or one
  checkpoints/<step> folder, of another run or of `python -m dssr_jax.convert`. Raises
  ValueError naming the first structural field (then the parameter shapes) that differs from
  config.model, FileNotFoundError when it holds no checkpoint.
  """
  params, saved, step = checkpoint_lib.load_params(source)
  where = f'config.train.init_from={source!r} (step {step})'
  text = _network_diff(saved, config)
  if text:
    raise ValueError(f'{where} holds a checkpoint of another network ({text}); fine-tuning needs '
                     'the same network: use the matching config. Nothing was written.')
  upscaling.check_param_shapes(train_lib.create_model(config.model), params, where)
  return params, step


def _place(host_params, like):
  """numpy params -> arrays with the shardings of `like` (same tree; every process has them)."""
  by_path = {jax.tree_util.keystr(p): v
             for p, v in jax.tree_util.tree_leaves_with_path(host_params)}
  return jax.tree_util.tree_map_with_path(
      lambda p, x: jax.make_array_from_process_local_data(
          x.sharding, np.asarray(by_path[jax.tree_util.keystr(p)], x.dtype)), like)


def latest_meta(mngr) -> dict | None:
  step = mngr.latest_step()
  if step is None:
    return None
  return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


class _StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (save, then exit cleanly)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.received:  # A second signal: stop now (checkpoints on disk are complete or absent).
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name}')
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out


class InputTimer:
  """Wraps an iterator; `fraction()` is the share of wall time spent blocked in `next` since the
  previous call (`train/input_wait`: near 1 when the input pipeline is the bottleneck)."""

  def __init__(self, iterator, clock=time.perf_counter):
    self.iterator, self.clock = iterator, clock
    self.waited, self.since = 0.0, clock()

  def __next__(self):
    start = self.clock()
    try:
      return next(self.iterator)
    finally:
      self.waited += self.clock() - start

  def fraction(self) -> float:
    now = self.clock()
    out = self.waited / (now - self.since) if now > self.since else 0.0
    self.waited, self.since = 0.0, now
    return out


def _summarise(history: list[dict]) -> dict[str, float]:
  """Means of the logged training metrics; the per-step terms become pix_t0.. / detail_t0..."""
  h = jax.device_get(history)
  finite = [m for m in h if m['finite']]
  out = {'train/skipped_in_window': float(len(h) - len(finite))}
  if not finite:
    return out
  out['train/loss'] = float(np.mean([m['loss'] for m in finite]))
  out['train/grad_norm'] = float(np.mean([m['grad_norm'] for m in finite]))
  for key in ('pix', 'detail'):
    terms = np.mean([m[key] for m in finite], axis=0)
    for t, v in enumerate(terms):
      out[f'train/{key}_t{t}'] = float(v)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints); returns the final host state.

  A run without a checkpoint of its own starts from the params of `config.train.init_from` when
  set (fresh optimizer state, step 0); a resuming run ignores it.
  """
  from dssr_jax import input_pipeline  # pylint: disable=g-import-not-at-top  (tf.data)
  from dssr_jax import validation  # pylint: disable=g-import-not-at-top

  check_config(config)
  workdir = image_files.absolute(workdir)
  tc = config.train
  mesh = train_lib.create_mesh()
  local_batch = train_lib.check_batch_size(tc.batch_size, mesh)

  init = None
  if tc.get('init_from') and not has_checkpoint(workdir):
    init = load_init_params(config, tc.init_from)  # Refuses another network before any write.

  mngr = create_checkpoint_manager(workdir, tc.keep_checkpoints)
  meta = latest_meta(mngr)
  if meta is not None:
    _check_compatible(meta, config, workdir)
    latest = workdir / checkpoint_lib.CHECKPOINTS / str(mngr.latest_step())
    if not (latest / 'opt_state').exists():
      raise ValueError(f'{latest} has no optimizer state (converted weights?): training does not '
                       'resume from it; use another --workdir. Nothing was changed.')

  model, tx, state = train_lib.create_train_state(config, mesh, INIT_PATCH)
  if meta is not None:
    state = restore_checkpoint(mngr, config, state)
    logging.info('Resumed from checkpoint at step %d', int(state.step))
    if tc.get('init_from'):
      logging.info('config.train.init_from=%r ignored: resuming from the checkpoint in %s',
                   tc.init_from, workdir)
  elif init is not None:
    # Adam's moments and count start at zero whatever the params: the fresh state fits them.
    state = state.replace(params=_place(init[0], state.params))
    logging.info('Initialised the params from %s (step %d); optimizer state fresh, step 0',
                 tc.init_from, init[1])
  step = int(state.step)

  writer = metric_writers.create_default_writer(
      str(workdir), just_logging=jax.process_index() > 0, asynchronous=False)
  if step == 0:
    writer.write_hparams(_flatten(config.to_dict()))

  val = validation.Validator(config, mesh) if tc.val_dir else None
  train_step = train_lib.make_train_step(model, tx, mesh, state, tc.alpha)
  ds = input_pipeline.create_train_dataset(
      config.data, scale=config.model.scale, batch_size=tc.batch_size, seed=tc.seed,
      start_step=step, process_index=jax.process_index(), process_count=jax.process_count())
  batches = InputTimer(iter(ds.as_numpy_iterator()))

  hooks = [periodic_actions.ReportProgress(num_train_steps=tc.num_steps, writer=writer,
                                           every_steps=tc.log_every)]
  if tc.profile_steps > 0 and jax.process_index() == 0:
    hooks.append(periodic_actions.Profile(num_profile_steps=tc.profile_steps, logdir=str(workdir),
                                          first_profile=step + 5))

  def checkpoint(state):
    metrics = None
    if val is not None:
      scores = val.run(state.params, writer, int(state.step))
      metrics = {'val_psnr': scores['val/psnr']}
    saved = save_checkpoint(mngr, config, state, metrics)
    logging.info('Saved checkpoint at step %d in %s', saved, workdir / 'checkpoints')

  history, pending = [], None
  stop = None
  with _StopSignal() as stop_signal:
    while step < tc.num_steps:
      batch = train_lib.global_batch(next(batches), mesh)
      state, metrics = train_step(state, batch)
      step += 1
      history.append(metrics)
      # The counter of the previous step is read while this one runs: no stall on the device.
      if pending is not None:
        _check_bad(pending, step - 1, tc.max_bad_steps)
      pending = metrics
      for hook in hooks:
        hook(step)
      if step % tc.log_every == 0 or step == tc.num_steps:
        writer.write_scalars(step, dict(_summarise(history),
                                        **{'train/input_wait': batches.fraction()}))
        history = []
      if step % tc.checkpoint_every == 0 and step < tc.num_steps:
        checkpoint(state)
      if stop_signal.received:
        stop = stop_signal.received
        break
    if pending is not None:
      _check_bad(pending, step, tc.max_bad_steps)
    if stop:
      saved = save_checkpoint(mngr, config, state)
      logging.info('%s received: saved checkpoint at step %d; exiting.', stop, saved)
    else:
      checkpoint(state)
  writer.flush()
  writer.close()
  mngr.close()
  params = host_copy(state.params)
  last = {k: np.asarray(v) for k, v in host_copy(pending).items()} if pending else None
  return {'step': step, 'params': params, 'stopped_by': stop, 'last_metrics': last}


def host_copy(tree):
  """A replicated (possibly multi-process) array tree -> numpy, from this process's first copy."""
  return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _check_bad(metrics: dict, step: int, limit: int) -> None:
  bad = int(metrics['bad_steps'])
  if bad:
    logging.warning('step %d: non-finite loss or gradient, update skipped (%d in a row)', step, bad)
  if bad >= limit:
    raise BadStepsError(f'{bad} consecutive steps (up to step {step}) had a non-finite loss or '
                        f'gradient; stopping (config.train.max_bad_steps={limit}). The last '
                        'checkpoint holds the last good state.')
