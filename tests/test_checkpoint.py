"""The shared checkpoint layout: round trip, path forms, refusal to overwrite, clear errors."""

import numpy as np
import pytest

from dssr_jax import checkpoint


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
