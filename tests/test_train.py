"""train.py / train_loop on the `smoke` config: checkpoints, resume, devices, processes, SIGTERM.

Every run is a subprocess (XLA_FLAGS and jax.distributed must be set before jax starts) sharing
one persistent compilation cache, so the tiny network compiles once per device layout.
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from configs import default
from configs import smoke
from dssr_jax import checkpoint
from dssr_jax import model as model_lib
from dssr_jax import optim
from dssr_jax import torch_bicubic
from dssr_jax import train_lib
from dssr_jax import train_loop

REPO = pathlib.Path(__file__).resolve().parent.parent

# Runs train_and_evaluate on configs/smoke.py for each job of a JSON list (one process, so the
# imports are paid once), recording a digest of every batch fed to the step and the log lines.
# Per job writes <out>.params<process>.npz and <out>.<process>.json (out defaults to the workdir).
DRIVER = helpers.CHILD_PREAMBLE + r"""
global_batch = train_lib.global_batch
for job in json.loads(sys.argv[2]):
  config = smoke.get_config()
  for k, v in job.get('overrides', {}).items():
    section, field = k.split('.')
    config[section][field] = v
  digests, nan_steps, messages[:] = [], job.get('nan_steps', []), []
  def recording(local, mesh):
    if len(digests) + 1 in nan_steps:  # 1-based step numbers whose input becomes NaN
      local = dict(local, lr=np.full_like(local['lr'], np.nan))
    digests.append(hashlib.sha1(b''.join(np.ascontiguousarray(local[k]).tobytes()
                                         for k in sorted(local))).hexdigest())
    return global_batch(local, mesh)
  train_lib.global_batch = recording
  record = {'devices': jax.device_count(), 'processes': jax.process_count()}
  try:
    out = train_loop.train_and_evaluate(config, job['workdir'])
  except Exception as e:  # pylint: disable=broad-except
    record['error'] = f'{type(e).__name__}: {e}'
  else:
    flat = {jax.tree_util.keystr(p): v
            for p, v in jax.tree_util.tree_leaves_with_path(out['params'])}
    np.savez(job['out'] + f'.params{jax.process_index()}.npz', **flat)
    record['step'] = out['step']
    record['last'] = {k: np.asarray(v).tolist() for k, v in (out['last_metrics'] or {}).items()}
  record.update(digests=digests, log=list(messages))
  with open(job['out'] + f'.{jax.process_index()}.json', 'w') as f:
    json.dump(record, f)
"""


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp('jax_cache')
  e = dict(os.environ)
  e.update(JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(cache),
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0', TF_CPP_MIN_LOG_LEVEL='2',
           PYTHONPATH=str(REPO))
  e['XLA_FLAGS'] = helpers.FAST_XLA
  return e


class Run:
  """One job's outcome: record (json), params (dict of arrays, absent on error), log text."""

  def __init__(self, out):
    self.record = json.loads(pathlib.Path(f'{out}.0.json').read_text())
    self.log = '\n'.join(self.record['log'])
    self.error = self.record.get('error')
    self.params = (None if self.error else dict(np.load(f'{out}.params0.npz')))


def drive(jobs, env, devices=1, timeout=400):
  """Runs DRIVER on jobs [{'workdir', 'overrides', 'nan_steps'}]; returns one Run per job."""
  env = dict(env)
  if devices > 1:
    env['XLA_FLAGS'] = f'{helpers.FAST_XLA} --xla_force_host_platform_device_count={devices}'
  jobs = [dict(j, workdir=str(j['workdir']), out=str(j.get('out', j['workdir']))) for j in jobs]
  proc = subprocess.run([sys.executable, '-c', DRIVER, str(REPO), json.dumps(jobs)], env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [Run(j['out']) for j in jobs]


def assert_params_close(a, b, tol):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


def assert_last_loss_and_grad_norm_close(a, b):
  """Adam's update barely depends on the gradient's scale: params alone would not show a gradient
  summed (not averaged) over devices. The logged loss and gradient norm do."""
  for k in ('loss', 'grad_norm'):
    np.testing.assert_allclose(a.record['last'][k], b.record['last'][k], rtol=1e-5, err_msg=k)


@pytest.fixture(scope='module')
def runs(tmp_path_factory, env):
  """Every one-device run, in one process: smoke (2 steps) and resume to 4 in the same workdir,
  4 straight, 1 step, a NaN batch at step 2, NaN batches at steps 2 and 3 with max_bad_steps 2."""
  d = tmp_path_factory.mktemp('runs')
  jobs = {
      'smoke': {'workdir': d / 'smoke'},
      'resumed': {'workdir': d / 'smoke', 'out': d / 'resumed', 'overrides': {'train.num_steps': 4}},
      'straight': {'workdir': d / 'straight', 'overrides': {'train.num_steps': 4}},
      'one': {'workdir': d / 'one', 'overrides': {'train.num_steps': 1}},
      'skip': {'workdir': d / 'skip', 'nan_steps': [2]},
      'stop': {'workdir': d / 'stop', 'nan_steps': [2, 3],
               'overrides': {'train.num_steps': 5, 'train.max_bad_steps': 2}},
      # Resumes 'one' (float32, step 1) in bfloat16; runs after it.
      'bf16': {'workdir': d / 'one', 'out': d / 'bf16',
               'overrides': {'train.num_steps': 2, 'model.dtype': 'bfloat16'}},
  }
  out = dict(zip(jobs, drive(list(jobs.values()), env)))
  out['dir'] = d
  return out


def test_smoke_two_steps(runs):
  run = runs['smoke']
  assert run.error is None and run.record['step'] == 2 and len(run.record['digests']) == 2
  assert np.isfinite(run.record['last']['loss']) and run.record['last']['finite']
  assert len(run.record['last']['pix']) == len(run.record['last']['detail']) == 2  # T = 2
  assert list((runs['dir'] / 'smoke').glob('events.out.tfevents.*')), 'no TensorBoard event file'
  waits = [float(w) for w in re.findall(r'train/input_wait=([0-9.e+-]+)', run.log)]
  assert len(waits) == 2 and all(0 <= w <= 1 for w in waits), waits  # log_every = 1
  _, model_config, step = checkpoint.load_params((runs['dir'] / 'smoke') / 'checkpoints' / '2')
  assert step == 2 and model_config == smoke.get_config().model.to_dict()


def test_input_wait_is_the_share_of_time_blocked_in_next():
  now = [0.0]

  def batches():
    while True:
      now[0] += 3.0  # the input pipeline keeps the loop waiting 3 s per batch
      yield {}

  timer = train_loop.InputTimer(batches(), clock=lambda: now[0])
  for _ in range(4):
    next(timer)
    now[0] += 1.0  # the step's own second
  assert timer.fraction() == pytest.approx(12 / 16)
  next(timer)
  now[0] += 5.0
  assert timer.fraction() == pytest.approx(3 / 8)  # each logging window on its own


def test_resume_equals_straight_run(runs):
  """2 steps, stop, resume to 4 == 4 steps straight: same batches, identical params."""
  first, resumed, straight = runs['smoke'], runs['resumed'], runs['straight']
  assert 'Resumed from checkpoint at step 2' in resumed.log
  assert 'Resumed' not in straight.log
  assert first.record['digests'] + resumed.record['digests'] == straight.record['digests']
  assert len(set(straight.record['digests'])) == 4
  assert_params_close(resumed.params, straight.params, 0)
  assert sorted(int(p.name) for p in ((runs['dir'] / 'smoke') / 'checkpoints').iterdir()) == [2, 4]


def test_resume_may_change_dtype(runs):
  """dtype changes how the network is computed, not its parameters: a float32 run resumes in
  bfloat16 (another `channels` is refused, below)."""
  run = runs['bf16']
  assert run.error is None and 'Resumed from checkpoint at step 1' in run.log
  assert run.record['step'] == 2 and np.isfinite(run.record['last']['loss'])
  _, model_config, step = checkpoint.load_params(runs['dir'] / 'one' / 'checkpoints' / '2')
  assert step == 2 and model_config['dtype'] == 'bfloat16'


def test_non_finite_steps_are_skipped_then_stop(runs):
  """A NaN batch leaves params (and Adam) as they were; too many in a row stop the run."""
  skip = runs['skip']
  assert not skip.record['last']['finite'] and skip.record['last']['bad_steps'] == 1
  assert 'step 2: non-finite loss or gradient, update skipped (1 in a row)' in skip.log
  assert_params_close(skip.params, runs['one'].params, 0)
  meta = json.loads((runs['dir'] / 'skip' / 'checkpoints' / '2' / 'meta' / 'metadata').read_text())
  assert meta['skipped'] == 1 and meta['step'] == 2
  assert 'BadStepsError: 2 consecutive steps (up to step 3) had a non-finite' in runs['stop'].error


def test_eight_devices_match_one(runs, tmp_path, env):
  """Batch of 8 split over 8 fake CPU devices == 1 device on the same global batch: params, loss
  and gradient norm."""
  eight = drive([{'workdir': tmp_path / 'eight'}], env, devices=8)[0]
  assert eight.record['devices'] == 8
  assert eight.record['digests'] == runs['smoke'].record['digests']
  assert_params_close(eight.params, runs['smoke'].params, 1e-5)
  assert_last_loss_and_grad_norm_close(eight, runs['smoke'])


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(runs, tmp_path, env):
  """Two processes on localhost (jax.distributed, gloo CPU collectives), 4 rows each."""
  env = dict(env, JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo')
  port, workdir = _free_port(), tmp_path / 'multi'
  code = DRIVER.replace(
      'import jax\n', 'import jax\njax.distributed.initialize(f"localhost:{sys.argv[3]}", 2, '
      'int(sys.argv[4]))\n', 1)
  jobs = json.dumps([{'workdir': str(workdir), 'out': str(workdir)}])
  procs = [subprocess.Popen([sys.executable, '-c', code, str(REPO), jobs, str(port), str(i)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-3000:]
  run = Run(workdir)
  assert run.error is None, run.error
  assert run.record['processes'] == 2 and run.record['devices'] == 2
  assert_params_close(run.params, runs['smoke'].params, 1e-5)
  assert_last_loss_and_grad_norm_close(run, runs['smoke'])


def test_sigterm_saves_and_resumes(tmp_path, env, runs):
  """SIGTERM mid-run: a checkpoint of the last finished step, exit 0, and training resumes."""
  workdir = tmp_path / 'term'
  cmd = [sys.executable, str(REPO / 'train.py'), '--config=configs/smoke.py',
         f'--workdir={workdir}', '--config.train.num_steps=100000']
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  lines, deadline = [], time.time() + 300
  for line in proc.stdout:  # Logged once per step (log_every=1): wait for the third.
    lines.append(line)
    if '] train/' in line and sum('] train/' in l for l in lines) >= 3:
      proc.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, ''.join(lines[-30:])
  rest, _ = proc.communicate(timeout=120)
  log = ''.join(lines) + rest
  assert proc.returncode == 0, log[-3000:]
  assert 'SIGTERM received: saved checkpoint at step' in log
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir())
  assert len(steps) == 1 and 3 <= steps[0] < 100000
  run = drive([{'workdir': workdir, 'overrides': {'train.num_steps': steps[0] + 1}}], env)[0]
  assert f'Resumed from checkpoint at step {steps[0]}' in run.log
  assert run.record['step'] == steps[0] + 1


def test_other_network_in_workdir_is_refused(runs):
  workdir = runs['dir'] / 'smoke'
  before = sorted((p, p.stat().st_mtime_ns) for p in workdir.rglob('*'))
  config = smoke.get_config()
  config.model.channels = 16
  with pytest.raises(ValueError, match=r'holds another network: channels=16 \(checkpoint has 8\)'):
    train_loop.train_and_evaluate(config, workdir)
  config = smoke.get_config()
  config.model.scale = 4
  with pytest.raises(ValueError, match=r'scale=4 \(checkpoint has 2\)'):
    train_loop.train_and_evaluate(config, workdir)
  assert sorted((p, p.stat().st_mtime_ns) for p in workdir.rglob('*')) == before


def test_workdir_with_converted_weights_is_refused(tmp_path):
  config = smoke.get_config()
  params = {'conv1': {'kernel': np.zeros((3, 3, 3, 8), np.float32)}}
  checkpoint.save_params(tmp_path, params, config.model.to_dict(), step=0)
  before = sorted(p for p in tmp_path.rglob('*'))
  with pytest.raises(ValueError, match='has no optimizer state'):
    train_loop.train_and_evaluate(config, tmp_path)
  assert sorted(p for p in tmp_path.rglob('*')) == before


def test_every_field_of_configs_default_is_required():
  """The library reads every field as given: a config without one is refused by name."""
  defaults = default.get_config()
  for section in ('model', 'train', 'data'):
    for field in defaults[section].keys():
      config = smoke.get_config()
      del config[section][field]
      with pytest.raises(ValueError, match=f"config field '{section}.{field}' is missing"):
        train_loop.check_config(config, defaults)
  config = smoke.get_config()
  del config['data']
  with pytest.raises(ValueError, match="config field 'data' is missing"):
    train_loop.check_config(config, defaults)


def test_bad_config_fields_are_named(tmp_path):
  config = smoke.get_config()
  config.train.num_stepz = 3
  with pytest.raises(ValueError, match="unknown config field 'train.num_stepz'"):
    train_loop.check_config(config, default.get_config())
  with pytest.raises(ValueError, match='batch_size=6 must be a positive multiple of the device '
                     'count 4'):
    train_lib.check_batch_size(6, types.SimpleNamespace(devices=np.zeros(4)))
  config = smoke.get_config()
  config.train.val_dir = str(tmp_path / 'missing')
  with pytest.raises(FileNotFoundError, match='val_dir'):
    train_loop.check_config(config)
  assert not list(tmp_path.iterdir())


# train.py runs that must be refused: (arguments after --workdir, the one line they print).
REFUSED = {
    'field typo': (['--config=configs/smoke.py', '--config.train.num_step=5'],
                   r'--config.train.num_step: the config has no field .num_step.; did you mean '
                   r'"num_steps"'),
    'no config file': (['--config=configs/smoke'],
                       r"--config: .*No such file or directory: 'configs/smoke'"),
    'scale 5': (['--config=configs/smoke.py', '--config.model.scale=5'],
                r'scale must be 2, 3 or 4, got 5'),
    'no data folder': (['--config=configs/smoke.py', '--config.data.source=folders',
                        '--config.data.folders=MISSING'], r"image folder '.*missing' does not exist"),
    'no init_from': (['--config=configs/smoke.py', '--config.train.init_from=MISSING'],
                     r'config.train.init_from: checkpoint path .*missing does not exist'),
}


def test_a_refused_run_prints_one_line_and_writes_nothing(tmp_path, env):
  env = {k: v for k, v in env.items() if not k.startswith('TF_')}
  procs = {}
  for i, (name, (args, _)) in enumerate(REFUSED.items()):
    args = [a.replace('MISSING', str(tmp_path / 'missing')) for a in args]
    procs[name] = subprocess.Popen(
        [sys.executable, str(REPO / 'train.py'), f'--workdir={tmp_path / str(i)}', *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for i, (name, proc) in enumerate(procs.items()):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (name, err[-3000:])
    assert not out and re.fullmatch(f'error: .*{REFUSED[name][1]}.*\n', err), (name, err)
    assert not (tmp_path / str(i)).exists(), name


# ------------------------------------------------------------------------------------------------
# The train step itself, in this process: against Adam on the authors' gradients, and by hand.


def _nhwc(a):
  return np.moveaxis(np.asarray(a, np.float32), -3, -1)


def _fresh_state(params, tx):
  params = jax.tree_util.tree_map(jnp.array, params)  # copies: the step donates its state
  zero = lambda: jnp.zeros((), jnp.int32)
  return train_lib.TrainState(step=zero(), params=params, opt_state=tx.init(params),
                              bad_steps=zero(), skipped=zero())


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v, np.float64)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope='module')
def authors_step(fixtures_dir):
  """The authors' fixture network (converted), its batch, their loss and their gradients."""
  from dssr_jax import convert  # pylint: disable=g-import-not-at-top
  net = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  train = np.load(fixtures_dir / 'official_dssr_x2_small_train.npz')
  cfg = {k: int(net[k]) for k in ('scale', 'channels', 'struct_blocks', 'recon_blocks',
                                  'num_steps')}
  model = model_lib.DSSR(**cfg)
  params = convert.torch_to_flax({k[3:]: net[k] for k in net.files if k.startswith('sd/')}, model)
  grads = convert.torch_to_flax(
      {k[5:]: train[k] for k in train.files if k.startswith('grad/')}, model)
  batch = {'lr': _nhwc(net['input']), 'hr': _nhwc(train['hr'])}
  return model, params, grads, batch, float(train['loss']), float(train['alpha'])


def test_train_step_descends_the_gradient(authors_step):
  """One jitted train step on the authors' fixture moves the parameters by minus the first Adam
  update of the authors' gradient, lr g / (|g| + eps) with the design's lr 2e-4 and eps 1e-8
  (bias-corrected moments of one step are g and g^2), computed here in numpy; the step reports
  their loss and the norm of their gradient."""
  model, params, grads, batch, loss, alpha = authors_step
  tx = optim.create_optimizer(default.get_config().train)
  mesh = train_lib.create_mesh()
  state = _fresh_state(params, tx)
  step = train_lib.make_train_step(model, tx, mesh, state, alpha)
  new, metrics = step(state, train_lib.global_batch(batch, mesh))
  assert int(new.step) == 1 and bool(metrics['finite'])
  np.testing.assert_allclose(float(metrics['loss']), loss, rtol=1e-6)
  g = _flat(grads)
  np.testing.assert_allclose(float(metrics['grad_norm']),
                             np.sqrt(sum(np.sum(v ** 2) for v in g.values())), rtol=1e-4)
  p0, p1 = _flat(params), _flat(new.params)
  assert sorted(p1) == sorted(g)
  num = den = 0.0
  for k, gk in g.items():
    want = -2e-4 * gk / (np.abs(gk) + 1e-8)
    got = p1[k] - p0[k]
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    # A few entries whose gradient is at float32 noise may take the other sign (fixture README).
    assert err < 1e-2, (k, err)
    num, den = num + np.sum((got - want) ** 2), den + np.sum(want ** 2)
  assert np.sqrt(num / den) < 2e-3, np.sqrt(num / den)


TINY_TRAIN = dict(scale=2, channels=8, struct_blocks=1, recon_blocks=1, num_steps=2)


@pytest.fixture(scope='module')
def tiny_training():
  """A tiny network, a fixed batch, and a jitted train step with alpha 0.5 and an lr of 1e-3
  halved from the third update on."""
  model = model_lib.DSSR(**TINY_TRAIN)
  params = helpers.random_params(model, seed=3, h=6, w=6)
  rng = np.random.default_rng(4)
  hr = rng.random((4, 12, 12, 3)).astype(np.float32)
  batch = {'lr': hr.reshape(4, 6, 2, 6, 2, 3).mean((2, 4)), 'hr': hr}
  config = default.get_config().train
  config.update(learning_rate=1e-3, lr_boundaries=(2,), lr_decay_factor=0.5)
  tx = optim.create_optimizer(config)
  mesh = train_lib.create_mesh()
  step = train_lib.make_train_step(model, tx, mesh, _fresh_state(params, tx), 0.5)
  states, metrics = [_fresh_state(params, tx)], []
  for _ in range(8):
    state, m = step(states[-1], train_lib.global_batch(batch, mesh))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  states[0] = _fresh_state(params, tx)  # the first was donated to the step
  return model, params, batch, states, metrics


def test_train_step_follows_adam_on_the_detail_weighted_loss(tiny_training):
  """Three steps equal Adam (beta 0.9 / 0.99, eps 1e-8, bias-corrected) written out here, on the
  gradient of the loss with the detail term weighted by alpha = 0.5, with the decayed lr at the
  third step; each step reports that loss and that gradient's norm."""
  model, params, batch, states, metrics = tiny_training
  lr, hr = jnp.asarray(batch['lr']), jnp.asarray(batch['hr'])

  def loss_fn(p):
    out = model.apply({'params': p}, lr)
    bic = torch_bicubic.up(lr, 2)
    pix = sum(jnp.mean(jnp.abs(out['steps'][t] - hr)) for t in range(2))
    detail = sum(jnp.mean(jnp.abs(out['details'][t] - (hr - bic))) for t in range(2))
    return pix + 0.5 * detail

  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  p = _flat(params)
  keys = sorted(p)
  m = {k: 0.0 for k in keys}
  v = {k: 0.0 for k in keys}
  for t, rate in ((1, 1e-3), (2, 1e-3), (3, 5e-4)):
    tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                        [jnp.asarray(p[k], jnp.float32) for k in
                                         _flat(params)])
    loss, g = grad_fn(tree)
    g = _flat(g)
    np.testing.assert_allclose(float(metrics[t - 1]['loss']), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(metrics[t - 1]['grad_norm']),
                               np.sqrt(sum(np.sum(x ** 2) for x in g.values())), rtol=1e-4)
    for k in keys:
      m[k] = 0.9 * m[k] + 0.1 * g[k]
      v[k] = 0.99 * v[k] + 0.01 * g[k] ** 2
      p[k] = p[k] - rate * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.99 ** t)) + 1e-8)
    got = _flat(states[t].params)
    p0 = _flat(params)
    for k in keys:
      moved = p[k] - p0[k]
      err = np.linalg.norm(got[k] - p[k]) / np.linalg.norm(moved)
      assert err < 1e-3, (t, k, err)


def test_training_lowers_the_loss_on_a_fixed_batch(tiny_training):
  """Eight steps on one batch: the loss falls, step after step (gradient ascent would raise it)."""
  *_, metrics = tiny_training
  losses_ = [float(m['loss']) for m in metrics]
  assert all(b < a for a, b in zip(losses_, losses_[1:])), losses_
  assert losses_[-1] < 0.9 * losses_[0], losses_
