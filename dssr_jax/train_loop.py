"""The training loop: data, resumable orbax checkpoints, clu metrics, validation, preemption.

The workdir, `config.data.folders`, `config.train.val_dir` and `config.train.init_from` may be
local paths or URLs (gs://, ...) that etils.epath / tf.io.gfile understand.
"""

import os
import signal
import time

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from dssr_jax import checkpoint as checkpoint_lib
from dssr_jax import image_files
from dssr_jax import model as model_lib
from dssr_jax import train_lib

INIT_PATCH = 16  # Parameter shapes do not depend on the image size.


class BadStepsError(RuntimeError):
  """Too many consecutive steps with a non-finite loss or gradient."""


def join_hosts(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Makes this process one of a multi-host run (`jax.distributed.initialize`); call it before
  anything else uses JAX. TPU pods and SLURM jobs are detected; elsewhere give all three."""
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def _check_fields(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict,
                  prefix: str) -> None:
  for key in config.keys():
    if key not in defaults:
      raise ValueError(f'unknown config field {prefix + key!r}; known fields here: '
                       f'{sorted(defaults.keys())}')
  for key in defaults.keys():
    if key not in config:
      raise ValueError(f'config field {prefix + key!r} is missing; configs/default.py sets every '
                       'field: start from default.get_config()')
    if isinstance(defaults[key], ml_collections.ConfigDict):
      _check_fields(config[key], defaults[key], f'{prefix}{key}.')


def check_config(config: ml_collections.ConfigDict,
                 defaults: ml_collections.ConfigDict | None = None) -> None:
  """Raises ValueError (FileNotFoundError for val_dir) naming the first bad field.

  With `defaults` (configs/default.py's `get_config()`, which train.py passes; the library
  imports no configs), the fields are those of the defaults, no more (a typo is not silently
  ignored) and no fewer (the library reads every field as given and never supplies a default of
  its own). Then the values of the network and the schedule
  (`input_pipeline.create_train_dataset` checks the data's).
  """
  if defaults is not None:
    _check_fields(config, defaults, '')
  model_lib.DSSR(**config.model)  # Raises for a bad model field.
  tc = config.train
  if tc.num_steps <= 0:
    raise ValueError(f'config.train.num_steps must be positive, got {tc.num_steps}')
  if tc.checkpoint_every <= 0:
    raise ValueError(f'config.train.checkpoint_every must be positive, got {tc.checkpoint_every}')
  if tc.keep_checkpoints < 1:
    raise ValueError(f'config.train.keep_checkpoints must be at least 1, got {tc.keep_checkpoints}')
  if tc.val_dir and not epath.Path(tc.val_dir).is_dir():
    raise FileNotFoundError(f'config.train.val_dir={tc.val_dir!r} is not a folder')


def _check_resume(meta: dict, config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  """A workdir belongs to one network and one batch size (the data position); dtype and remat
  may change between runs."""
  checkpoint_lib.check_same_network(meta['model'], config.model.to_dict(),
                                    f'workdir {workdir} (step {meta["step"]})')
  if meta['train']['batch_size'] != config.train.batch_size:
    raise ValueError(f'workdir {workdir} was trained with config.train.batch_size='
                     f'{meta["train"]["batch_size"]}, not {config.train.batch_size}: the data '
                     'position would not resume. Nothing was changed.')


def _load_init(config: ml_collections.ConfigDict) -> checkpoint_lib.LoadedModel:
  """The checkpoint of `config.train.init_from`, refused unless it holds config.model's network."""
  try:
    return checkpoint_lib.load_model(config.train.init_from, requested=config.model.to_dict())
  except (ValueError, FileNotFoundError) as e:
    raise type(e)(f'config.train.init_from: {e}') from e


def _place(host_params, like):
  """numpy params -> arrays with the shardings of `like` (same tree; every process has them)."""
  by_path = {jax.tree_util.keystr(p): v
             for p, v in jax.tree_util.tree_leaves_with_path(host_params)}
  return jax.tree_util.tree_map_with_path(
      lambda p, x: jax.make_array_from_process_local_data(
          x.sharding, np.asarray(by_path[jax.tree_util.keystr(p)], x.dtype)), like)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       defaults: ml_collections.ConfigDict | None = None) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints); returns the final host state.

  `config` is checked first (`check_config`, against `defaults` when given).

  A run without a checkpoint of its own starts from the params of `config.train.init_from` when
  set (fresh optimizer state, step 0); a resuming run ignores it. A run that is refused (a bad
  config, data folder or validation folder, a checkpoint of another network) writes nothing.
  """
  # tensorflow (tf.data, clu's writer) takes seconds to import: a refused run need not wait.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from clu import periodic_actions  # pylint: disable=g-import-not-at-top
  from dssr_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from dssr_jax import validation  # pylint: disable=g-import-not-at-top

  check_config(config, defaults)
  workdir = image_files.absolute(workdir)
  tc = config.train
  mesh = train_lib.create_mesh()
  train_lib.check_batch_size(tc.batch_size, mesh)

  # Everything that can refuse the run comes before the first write: the workdir's checkpoint or
  # init_from's, the data, the validation images.
  resumed = checkpoint_lib.latest_training(workdir)
  init = None
  if resumed is not None:
    _check_resume(resumed[1], config, workdir)
  elif tc.init_from:
    init = _load_init(config)
  step = resumed[1]['data_step'] if resumed is not None else 0
  input_pipeline.keep_tensorflow_off_accelerators()
  ds = input_pipeline.create_train_dataset(
      config.data, scale=config.model.scale, batch_size=tc.batch_size, seed=tc.seed,
      start_step=step, process_index=jax.process_index(), process_count=jax.process_count())
  val = validation.Validator(config, mesh) if tc.val_dir else None
  model, tx, state = train_lib.create_train_state(config, mesh, INIT_PATCH)

  logging.info('JAX process %d of %d, local devices %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  mngr = checkpoint_lib.training_manager(workdir, tc.keep_checkpoints, best=val is not None)
  if resumed is not None:
    state = checkpoint_lib.restore_training(mngr, state)
    logging.info('Resumed from checkpoint at step %d', int(state.step))
    if tc.init_from:
      logging.info('config.train.init_from=%r ignored: resuming from the checkpoint in %s',
                   tc.init_from, workdir)
  elif init is not None:
    # Adam's moments and count start at zero whatever the params: the fresh state fits them.
    state = state.replace(params=_place(init.params, state.params))
    logging.info('Initialised the params from %s (step %d); optimizer state fresh, step 0',
                 tc.init_from, init.step)

  writer = metric_writers.create_default_writer(
      str(workdir), just_logging=jax.process_index() > 0, asynchronous=False)
  if step == 0:
    writer.write_hparams(_flatten(config.to_dict()))
  train_step = train_lib.make_train_step(model, tx, mesh, state, tc.alpha)
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
    saved = checkpoint_lib.save_training(mngr, config, state, metrics)
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
      saved = checkpoint_lib.save_training(mngr, config, state)
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
