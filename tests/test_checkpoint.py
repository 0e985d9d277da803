"""A checkpoint of a network: layout, path forms, overwrite refusal, the network check, training
checkpoints, and reading that writes nothing and says nothing."""

import logging
import os
import pathlib
import re
import subprocess
import sys
import warnings

from etils import epath
import numpy as np
import orbax.checkpoint as ocp
import pytest

import helpers
from dssr_jax import checkpoint
from dssr_jax import image_files

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY = helpers.TINY


def _params():
  rng = np.random.default_rng(0)
  return {'conv1': {'kernel': rng.normal(size=(3, 3, 3, 8)).astype(np.float32),
                    'bias': rng.normal(size=(8,)).astype(np.float32)},
          'up': {'kernel': rng.normal(size=(4, 4, 8, 8)).astype(np.float32)}}


def test_round_trip_and_path_forms(tmp_path):
  params, cfg = _params(), {'scale': 3, 'channels': 8}
  checkpoint.save_params(tmp_path, params, cfg, step=5)
  later = {k: {n: v + 1 for n, v in d.items()} for k, d in params.items()}
  checkpoint.save_params(tmp_path, later, cfg, step=7)

  got, got_cfg, step = checkpoint.load_params(tmp_path)  # the workdir: latest step
  assert step == 7 and got_cfg == cfg
  np.testing.assert_array_equal(got['up']['kernel'], later['up']['kernel'])

  got, _, step = checkpoint.load_params(tmp_path / 'checkpoints', step=5)
  assert step == 5
  np.testing.assert_array_equal(got['conv1']['bias'], params['conv1']['bias'])

  got, _, step = checkpoint.load_params(tmp_path / 'checkpoints' / '5')
  assert step == 5
  np.testing.assert_array_equal(got['conv1']['kernel'], params['conv1']['kernel'])


def test_never_overwrites_silently(tmp_path):
  params = _params()
  checkpoint.save_params(tmp_path, params, {'scale': 2}, step=0)
  with pytest.raises(FileExistsError, match='already exists'):
    checkpoint.save_params(tmp_path, {'x': np.zeros(2)}, {'scale': 4}, step=0)
  got, cfg, _ = checkpoint.load_params(tmp_path)
  assert cfg == {'scale': 2}
  np.testing.assert_array_equal(got['up']['kernel'], params['up']['kernel'])


def test_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoint.load_params(tmp_path / 'nowhere')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no checkpoint found'):
    checkpoint.load_params(tmp_path / 'empty')
  checkpoint.save_params(tmp_path, _params(), {'scale': 2}, step=3)
  with pytest.raises(FileNotFoundError, match='found steps'):
    checkpoint.load_params(tmp_path, step=4)


# The fields that shape the network: every model field but dtype and remat (docs/design.md
# section 1; README's model options), written out here rather than read from the module.
STRUCTURAL = {'scale': 4, 'channels': 16, 'struct_blocks': 2, 'recon_blocks': 3, 'num_steps': 5,
              'modulation': 'add', 'affine_on': 'hr', 'paper_text': True}


def test_only_the_structural_fields_make_another_network():
  saved = dict(TINY, modulation='affine', affine_on='both', paper_text=False, dtype='float32',
               remat=False)
  checkpoint.check_same_network(saved, dict(saved, dtype='bfloat16', remat=True), 'ck')
  checkpoint.check_same_network(saved, {'channels': 8}, 'ck')  # fields left out: not compared
  for field, value in STRUCTURAL.items():
    with pytest.raises(ValueError, match=rf'^ck holds another network: {field}={value!r} '
                       rf'\(checkpoint has {saved[field]!r}\)\. Use the config'):
      checkpoint.check_same_network(saved, dict(saved, **{field: value}), 'ck')
  with pytest.raises(ValueError, match=r'channels=16 .*, num_steps=5 \(checkpoint has 2\)'):
    checkpoint.check_same_network(saved, dict(saved, channels=16, num_steps=5), 'ck')


def test_merge_model_config():
  saved = {'scale': 2, 'channels': 16, 'num_steps': 2, 'dtype': 'float32', 'remat': False}
  got = checkpoint.merge_model_config(saved, {'channels': 16, 'dtype': 'bfloat16'}, source='ck')
  assert got == dict(saved, dtype='bfloat16')
  with pytest.raises(ValueError, match=r'channels=128 \(checkpoint has 16\).*num_steps=4'):
    checkpoint.merge_model_config(saved, {'channels': 128, 'num_steps': 4}, source='ck')
  with pytest.raises(ValueError, match=r'scale=4 \(checkpoint has 2\)'):
    checkpoint.merge_model_config(saved, {'scale': 4}, source='ck')


def test_load_model_rejects_mismatches(tiny_ckpt, tmp_path):
  with pytest.raises(ValueError, match=r'channels=16 \(checkpoint has 8\)'):
    checkpoint.load_model(tiny_ckpt, requested=dict(TINY, channels=16))
  assert checkpoint.load_model(tiny_ckpt, requested=dict(TINY, dtype='bfloat16')).config[
      'dtype'] == 'bfloat16'
  # A checkpoint whose meta lies about the network: caught by the parameter shapes.
  params, _, _ = checkpoint.load_params(tiny_ckpt)
  checkpoint.save_params(tmp_path, params, dict(TINY, recon_blocks=2))
  with pytest.raises(ValueError, match='do not fit the network'):
    checkpoint.load_model(tmp_path)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    checkpoint.load_model(tmp_path / 'nowhere')


def test_param_shapes_are_the_designs():
  """The TINY network's tree, sized from docs/design.md section 1.2 by hand (C = 8, x2)."""
  from dssr_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  shapes = checkpoint.param_shapes(model_lib.DSSR(**TINY))
  c = 8
  assert shapes[('conv1', 'kernel')] == (3, 3, 3, c)
  assert shapes[('step', 'compress_in', 'kernel')] == (1, 1, 2 * c, c)
  assert shapes[('step', 'up', 'kernel')] == (4, 4, c, c)  # x2: kernel 4
  assert shapes[('step', 'UPNet', 'conv_0', 'kernel')] == (3, 3, c, 4 * c)  # C s^2
  assert shapes[('step', 'UPNet', 'conv_2', 'kernel')] == (3, 3, c, 3)
  assert ('step', 'feat_ext', 'block_0', 'conv1', 'kernel') in shapes
  assert ('step', 'feat_ext', 'block_1', 'conv1', 'kernel') not in shapes  # struct_blocks = 1


def _tree(root: pathlib.Path) -> list:
  return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob('*'))


class _Records(logging.Handler):
  """Every record that reaches the absl logger's handlers (after its filters)."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.records = []

  def emit(self, record):
    self.records.append(record)


def test_loading_writes_nothing_and_logs_no_orbax_lines(tiny_ckpt, tmp_path):
  absl_logger = logging.getLogger('absl')
  records, level = _Records(), absl_logger.level
  absl_logger.addHandler(records)
  absl_logger.setLevel(logging.DEBUG)
  before = _tree(tiny_ckpt)
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      checkpoint.load_params(tiny_ckpt)
      checkpoint.load_params(tiny_ckpt / 'checkpoints' / '1')
      checkpoint.load_model(tiny_ckpt, requested=TINY)
      assert checkpoint.latest_training(epath.Path(tmp_path / 'new')) is None
  finally:
    absl_logger.removeHandler(records)
    absl_logger.setLevel(level)
  assert _tree(tiny_ckpt) == before
  assert not (tmp_path / 'new').exists()
  orbax = [r.getMessage() for r in records.records if f'{os.sep}orbax{os.sep}' in r.pathname]
  assert not orbax, orbax  # e.g. 'Given directory is read only=...', 'Closing ...'
  assert not [r for r in records.records if r.levelno >= logging.WARNING], records.records
  assert not caught, [str(w.message) for w in caught]


def _orbax_lines(text: str) -> list[str]:
  """absl-format log lines whose source file is one of orbax's (and no module of dssr_jax's)."""
  ours = {p.name for p in (REPO / 'dssr_jax').rglob('*.py')}
  theirs = {p.name for p in pathlib.Path(ocp.__file__).parent.rglob('*.py')} - ours - {
      '__init__.py'}
  source = re.compile(r'^[IWE]\d{4} [\d:.]+ +\d+ (\S+\.py):\d+\]')
  return [l for l in text.splitlines()
          if (m := source.match(l)) and m.group(1) in theirs or 'orbax' in l.lower()]


def test_commands_that_load_a_checkpoint_print_no_orbax_lines(tiny_ckpt, tmp_path):
  rng = np.random.default_rng(0)
  hr = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
  image_files.write_png(tmp_path / 'Pairs' / 'HR' / 'x2' / 'a.png', hr)
  image_files.write_png(tmp_path / 'Pairs' / 'LRblur' / 'x2' / 'a.png', hr[::2, ::2])
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO), XLA_FLAGS=helpers.FAST_XLA)
  runs = {
      'infer': ['-m', 'dssr_jax.infer', str(tmp_path / 'Pairs' / 'LRblur' / 'x2' / 'a.png'),
                f'--checkpoint={tiny_ckpt}', f'--out={tmp_path / "out"}', '--jax_cache_dir='],
      'eval': ['eval.py', f'--checkpoint={tiny_ckpt}', f'--data_dir={tmp_path}',
               '--datasets=Pairs', '--setting=paired', '--jax_cache_dir='],
  }
  for name, args in runs.items():
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (name, proc.stderr[-3000:])
    assert not _orbax_lines(proc.stderr + proc.stdout), (name, _orbax_lines(proc.stderr))


def test_the_best_checkpoint_survives_a_resume(tmp_path):
  """The best validation PSNR is kept beside the last K, also when a new process (a resumed run)
  opens the workdir and saves worse ones."""

  def save(mngr, step, psnr):
    mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave({'w': np.full(2, step, np.float32)}),
        opt_state=ocp.args.StandardSave({'m': np.zeros(2, np.float32)}),
        meta=ocp.args.JsonSave({'step': step})),
        metrics={'val_psnr': psnr})
    mngr.wait_until_finished()

  mngr = checkpoint.training_manager(epath.Path(tmp_path), keep=1)
  save(mngr, 1, 30.0)
  save(mngr, 2, 20.0)
  assert mngr.all_steps() == [1, 2]
  mngr.close()
  mngr = checkpoint.training_manager(epath.Path(tmp_path), keep=1)
  save(mngr, 3, 21.0)
  assert mngr.all_steps() == [1, 3]
  save(mngr, 4, 31.0)
  assert mngr.all_steps() == [4]


def test_converted_weights_are_not_resumed(tmp_path):
  checkpoint.save_params(tmp_path, {'w': np.zeros(2, np.float32)}, TINY, step=0)
  before = _tree(tmp_path)
  with pytest.raises(ValueError, match='has no optimizer state'):
    checkpoint.latest_training(epath.Path(tmp_path))
  assert _tree(tmp_path) == before
