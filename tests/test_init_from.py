"""config.train.init_from: a new run starts from another run's or converted weights.

All runs are `train_loop.train_and_evaluate` on configs/smoke.py with learning rate 0 (one
compiled step for every job), in one subprocess. The source run uses another seed than the runs
that start from it, so a run that loaded nothing would keep params of its own seed.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

import helpers
from configs import smoke
from dssr_jax import checkpoint
from dssr_jax import convert
from dssr_jax import image_files
from dssr_jax import model as model_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
# Runs each job of a JSON list; prints one JSON record per job (error, log lines) on the last
# line and writes the final params of a successful job to <out>.npz.
DRIVER = helpers.CHILD_PREAMBLE + r"""
records = []
for job in json.loads(sys.argv[3]):
  config = smoke.get_config()
  config.data.update(source='folders', folders=(sys.argv[2],))
  config.train.update(learning_rate=0.0, num_steps=1)
  for k, v in job.get('overrides', {}).items():
    section, field = k.split('.')
    config[section][field] = v
  messages[:] = []
  record = {}
  try:
    out = train_loop.train_and_evaluate(config, job['workdir'])
  except Exception as e:  # pylint: disable=broad-except
    record['error'] = f'{type(e).__name__}: {e}'
  else:
    leaves = jax.tree_util.tree_leaves_with_path(out['params'])
    np.savez(job['out'] + '.npz', **{jax.tree_util.keystr(p): v for p, v in leaves})
  record['log'] = '\n'.join(messages)
  records.append(record)
print(json.dumps(records))
"""


def _flat(tree) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _assert_same(got: dict, want: dict):
  assert sorted(got) == sorted(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  d = tmp_path_factory.mktemp('init_from')
  image_files.write_png(d / 'data' / 'a.png', np.full((32, 32, 3), 90, np.uint8))
  model_config = smoke.get_config().model.to_dict()
  # The authors' layout, converted: the tiny network with random weights (not any run's init).
  converted = helpers.random_params(model_lib.DSSR(**helpers.TINY), seed=3)
  convert.convert_state_dict(convert.flax_to_torch(converted), d / 'converted', scale=2,
                             num_steps=helpers.TINY['num_steps'])
  # A checkpoint whose meta claims this network but whose params are 4 channels wide.
  narrow = helpers.random_params(model_lib.DSSR(**dict(helpers.TINY, channels=4)))
  checkpoint.save_params(d / 'narrow', narrow, model_config, step=0)
  src = str(d / 'src')
  jobs = {  # name: (workdir, config overrides)
      'src': ('src', {'train.seed': 1}),
      'new': ('new', {'train.init_from': src, 'train.num_steps': 2}),
      # Resuming `new` with init_from pointing at other weights: they must not be loaded.
      'resumed': ('new', {'train.init_from': str(d / 'converted'), 'train.num_steps': 3}),
      'from_converted': ('from_converted', {'train.init_from': str(d / 'converted')}),
      'wide': ('wide', {'train.init_from': src, 'model.channels': 16}),
      'x4': ('x4', {'train.init_from': src, 'model.scale': 4}),
      'shapes': ('shapes', {'train.init_from': str(d / 'narrow')}),
      'nowhere': ('nowhere', {'train.init_from': str(d / 'missing')}),
  }
  jobs_json = json.dumps([{'workdir': str(d / w), 'out': str(d / name), 'overrides': o}
                          for name, (w, o) in jobs.items()])
  # The persistent cache lets every job reuse the first job's compiled init and step.
  env = os.environ | {'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '2', 'XLA_FLAGS': helpers.FAST_XLA,
                      'JAX_COMPILATION_CACHE_DIR': str(d / 'jax_cache'),
                      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
                      'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}
  proc = subprocess.run([sys.executable, '-c', DRIVER, str(REPO), str(d / 'data'), jobs_json],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = dict(zip(jobs, json.loads(proc.stdout.strip().splitlines()[-1])))
  return {'dir': d, 'records': records, 'converted': _flat(converted)}


def _params(runs, name) -> dict:
  return dict(np.load(runs['dir'] / f'{name}.npz'))


def test_new_run_starts_from_the_source_params(runs):
  src, new = runs['records']['src'], runs['records']['new']
  assert 'error' not in src and 'error' not in new, (src, new)
  assert f'Initialised the params from {runs["dir"] / "src"} (step 1)' in new['log']
  assert 'read only' not in new['log']  # orbax's warning for a read-only checkpoint manager
  # Learning rate 0: after its steps the new run still holds exactly the source's params.
  _assert_same(_params(runs, 'new'), _params(runs, 'src'))


def test_new_run_has_its_own_step_and_fresh_optimizer(runs):
  new = runs['dir'] / 'new' / 'checkpoints'
  assert sorted(int(p.name) for p in new.iterdir()) == [2, 3]  # 3: the resumed job below
  with ocp.CheckpointManager(new, item_names=('opt_state', 'meta')) as mngr:
    got = mngr.restore(2, args=ocp.args.Composite(opt_state=ocp.args.StandardRestore(),
                                                    meta=ocp.args.JsonRestore()))
  assert got['meta']['step'] == 2  # steps 1 and 2 of its own, not the source's step 1 onwards
  counts = [np.asarray(v) for k, v in _flat(got['opt_state']).items() if 'count' in k]
  assert counts and all(c == 2 for c in counts)  # Adam counted two steps: it started fresh
  # The source is untouched.
  assert sorted(p.name for p in (runs['dir'] / 'src' / 'checkpoints').iterdir()) == ['1']


def test_resume_ignores_init_from_and_says_so(runs):
  resumed = runs['records']['resumed']
  assert 'error' not in resumed, resumed
  assert 'Resumed from checkpoint at step 2' in resumed['log']
  assert f"config.train.init_from='{runs['dir'] / 'converted'}' ignored" in resumed['log']
  assert 'Initialised the params' not in resumed['log']
  _assert_same(_params(runs, 'resumed'), _params(runs, 'src'))  # not the converted weights


def test_init_from_converted_weights(runs):
  record = runs['records']['from_converted']
  assert 'error' not in record, record
  assert '(step 0)' in record['log']
  _assert_same(_params(runs, 'from_converted'), runs['converted'])


@pytest.mark.parametrize('name,message', [
    ('wide', r'ValueError: config.train.init_from: checkpoint .*src \(step 1\) holds another '
             r'network: channels=16 \(checkpoint has 8\)'),
    ('x4', r'holds another network: scale=4 \(checkpoint has 2\)'),
    ('shapes', r'ValueError: config.train.init_from: the parameters in checkpoint .*narrow '
               r'\(step 0\) do not fit the network .* has shape \(.*4\), the network expects '
               r'\(.*8\)'),
    ('nowhere', r'FileNotFoundError: config.train.init_from: checkpoint path .*missing does not '
                r'exist'),
])
def test_another_network_is_refused_before_anything_is_written(runs, name, message):
  record = runs['records'][name]
  assert 'error' in record and re.search(message, record['error']), record
  assert not (runs['dir'] / name).exists()
