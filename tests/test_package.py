"""The package itself (dssr_jax/__init__.py): tensorflow is quiet before it loads, on any CPU.

tensorflow prints its C++ start-up lines (oneDNN's notice, absl's pre-init notice, CPU-feature
advice) only on some CPUs: oneDNN is on by default on Intel with AVX-512, off on AMD. So the check
does not wait for the noise: each command runs in a child whose import system records the
environment at the moment `tensorflow` starts loading, and at exit (where a later, lazy import
would see it). The child starts without either variable, as a user's shell does.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import helpers

REPO = pathlib.Path(__file__).resolve().parent.parent
QUIET = {'TF_CPP_MIN_LOG_LEVEL': '2', 'TF_ENABLE_ONEDNN_OPTS': '0'}
NOISE = ('oneDNN', 'absl::InitializeLog', 'cpu_feature_guard')

# argv: record file, 'path' (a script) or 'module' (python -m), the target, its arguments. Runs
# the target as its command line would and writes {'import': env, 'exit': env} to the record;
# 'import' only when tensorflow was loaded.
SPY = r"""
import importlib.util, json, os, runpy, sys
record, kind, target, *args = sys.argv[1:]
seen = {}
snapshot = lambda when: seen.setdefault(when, {k: os.environ.get(k) for k in %r})

class TensorflowSpy:
  busy = False
  def find_spec(self, name, path=None, target=None):
    if name != 'tensorflow' or TensorflowSpy.busy:
      return None
    TensorflowSpy.busy = True
    try:
      spec = importlib.util.find_spec(name)
    finally:
      TensorflowSpy.busy = False
    if spec is not None and spec.loader is not None:
      run = spec.loader.exec_module
      def exec_module(module):  # a probe (find_spec alone) loads nothing: not recorded
        snapshot('import')
        run(module)
      spec.loader.exec_module = exec_module
    return spec

sys.meta_path.insert(0, TensorflowSpy())
sys.argv = [target, *args]
code = 0
try:
  if kind == 'path':
    runpy.run_path(target, run_name='__main__')
  else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
except SystemExit as e:
  code = e.code
finally:
  snapshot('exit')
  with open(record, 'w') as f:
    json.dump(seen, f)
sys.exit(code)
""" % (tuple(QUIET),)

COMMANDS = {
    # A real (one-step) training run: tf.data, clu and TensorBoard load tensorflow.
    'train': ('path', 'train.py', '--config=configs/smoke.py', '--config.train.num_steps=1'),
    'eval': ('path', 'eval.py', '--help'),
    **{m: ('module', f'dssr_jax.{m}', '--help')
       for m in ('infer', 'export', 'convert', 'testsets', 'plots', 'demo_report')},
}


@pytest.mark.parametrize('name', list(COMMANDS))
def test_tensorflow_is_quiet_before_it_loads(name, tmp_path):
  kind, target, *args = COMMANDS[name]
  if name == 'train':
    args.append(f'--workdir={tmp_path / "w"}')
  env = {k: v for k, v in os.environ.items() if k not in QUIET}
  env.update(JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO), XLA_FLAGS=helpers.FAST_XLA)
  record = tmp_path / 'record.json'
  proc = subprocess.run([sys.executable, '-c', SPY, str(record), kind, target, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  seen = json.loads(record.read_text())
  if name == 'train':
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'import' in seen, 'the training run did not load tensorflow: nothing was checked'
  for when, values in seen.items():
    assert values == QUIET, (when, values)
  noise = [l for l in proc.stderr.splitlines() + proc.stdout.splitlines()
           if any(n in l for n in NOISE)]
  assert not noise, noise
