"""State-dict conversion: key mapping and layouts by hand, errors, .pth wrappers, the CLI path."""

import importlib.util
import pathlib
import subprocess
import sys

import flax
import jax
import numpy as np
import pytest

from dssr_jax import checkpoint
from dssr_jax import convert
from dssr_jax import model as model_lib

REPO = pathlib.Path(__file__).resolve().parent.parent

SMALL = dict(channels=128, struct_blocks=2, recon_blocks=1, num_steps=3)  # the fixture's network


def _random_state_dict(model, seed=0):
  """Random arrays under the authors' names and PyTorch shapes, derived from the model's params."""
  rng = np.random.default_rng(seed)
  shapes = checkpoint.param_shapes(model)
  fake = flax.traverse_util.unflatten_dict(
      {p: rng.standard_normal(s).astype(np.float32) for p, s in shapes.items()})
  return convert.flax_to_torch(fake)


@pytest.fixture(scope='module')
def fixture_sd(fixtures_dir):
  z = np.load(fixtures_dir / 'official_dssr_x2_small.npz')
  return {k[3:]: z[k] for k in z.files if k.startswith('sd/')}


def test_fixture_keys_and_layouts(fixture_sd):
  model = model_lib.DSSR(2, **SMALL)
  assert len(fixture_sd) == 52
  params = convert.torch_to_flax(fixture_sd, model)
  step = params['step']
  w = fixture_sd['feat_ext.crb.crb.1.conv2.weight']  # [out, in, kh, kw]
  k = step['feat_ext']['block_1']['conv2']['kernel']  # [kh, kw, in, out]
  assert w[5, 7, 0, 2] == k[0, 2, 7, 5]
  up = fixture_sd['up.weight']  # ConvTranspose2d [in, out, kh, kw], k = 4
  ku = step['up']['kernel']
  assert up[3, 9, 0, 1] == ku[3, 2, 3, 9]  # K[ky, kx, i, o] = W[i, o, 3-ky, 3-kx]
  assert np.array_equal(params['conv1']['bias'], fixture_sd['conv1.bias'])
  assert np.array_equal(step['UPNet']['conv_2']['bias'], fixture_sd['UPNet.2.bias'])
  assert np.array_equal(step['spatial_trans2']['conv_gama']['bias'],
                        fixture_sd['spatial_trans2.conv_gama.bias'])
  # Back to PyTorch layout exactly (used to compare gradients).
  back = convert.flax_to_torch(params)
  assert set(back) == set(fixture_sd)
  for key, v in fixture_sd.items():
    np.testing.assert_array_equal(back[key], v, err_msg=key)


def test_x4_tail_keys():
  sd = _random_state_dict(model_lib.DSSR(4, **SMALL))
  assert len(sd) == 54
  assert {'UPNet.0.weight', 'UPNet.2.weight', 'UPNet.4.weight'} <= set(sd)
  assert sd['UPNet.2.weight'].shape == (512, 128, 3, 3)
  assert sd['up.weight'].shape == (128, 128, 4, 4)


def test_errors_name_keys_and_shapes(fixture_sd):
  model = model_lib.DSSR(2, **SMALL)
  sd = dict(fixture_sd)
  del sd['conv2.bias']
  sd['extra.weight'] = np.zeros((1, 2))
  sd['compress_in.weight'] = np.zeros((128, 128, 1, 1), np.float32)
  with pytest.raises(ValueError) as e:
    convert.torch_to_flax(sd, model)
  msg = str(e.value)
  assert 'missing key conv2.bias (expected shape (128,))' in msg
  assert 'unexpected key extra.weight (shape (1, 2))' in msg
  assert 'key compress_in.weight has shape (128, 128, 1, 1), the model expects (128, 256, 1, 1)' \
      in msg
  # A checkpoint with more blocks than the model: unexpected keys, named.
  with pytest.raises(ValueError, match='unexpected key feat_ext.crb.crb.1.conv1.weight'):
    convert.torch_to_flax(fixture_sd, model_lib.DSSR(2, **{**SMALL, 'struct_blocks': 1}))


def test_unwrap_common_pth_wrappers():
  sd = {'conv1.weight': np.ones((2, 3, 3, 3)), 'conv1.bias': np.zeros(2)}
  for obj in (sd, {'params': sd}, {'state_dict': sd, 'epoch': 3},
              {'state_dict': {'module.' + k: v for k, v in sd.items()}}):
    out = convert.unwrap_state_dict(obj)
    assert sorted(out) == ['conv1.bias', 'conv1.weight']
    assert out['conv1.weight'].shape == (2, 3, 3, 3)
  with pytest.raises(ValueError, match='no state dict'):
    convert.unwrap_state_dict([1, 2])


def test_infer_config_and_cli_conversion_path(fixture_sd, tmp_path):
  cfg = convert.infer_model_config(fixture_sd, scale=2, num_steps=3)
  assert (cfg['channels'], cfg['struct_blocks'], cfg['recon_blocks']) == (128, 2, 1)
  convert.convert_state_dict(fixture_sd, tmp_path, scale=2, num_steps=3)
  params, model_cfg, step = checkpoint.load_params(tmp_path)
  assert step == 0 and model_cfg == cfg
  want = convert.torch_to_flax(fixture_sd, model_lib.DSSR(**cfg))
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, want)
  # Nothing is overwritten.
  with pytest.raises(FileExistsError):
    convert.convert_state_dict(fixture_sd, tmp_path, scale=2, num_steps=3)
  with pytest.raises(ValueError, match='--scale 4 expects a 4x4 up kernel'):
    sd3 = _random_state_dict(model_lib.DSSR(3, **SMALL))
    convert.convert_state_dict(sd3, tmp_path / 'x', scale=4)


@pytest.mark.skipif(importlib.util.find_spec('torch') is not None, reason='torch is installed')
def test_cli_without_torch_says_so(tmp_path):
  done = subprocess.run([sys.executable, '-m', 'dssr_jax.convert', f'--pth={tmp_path / "a.pth"}',
                         f'--out={tmp_path / "out"}', '--scale=2'], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode != 0 and 'needs PyTorch' in done.stderr and 'Traceback' not in done.stderr
  assert not (tmp_path / 'out').exists()
