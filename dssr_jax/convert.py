"""The authors' PyTorch state dict <-> dssr_jax params (docs/design.md section 1.7).

`convert_state_dict` turns a released .pth file's state dict into a dssr_jax checkpoint; the
command is `dssr-convert` (dssr_jax/commands/convert.py). torch is imported only to read a .pth
file.
"""

import re
import runpy
from typing import Any, Mapping

import flax
import numpy as np

from dssr_jax import checkpoint
from dssr_jax import model as model_lib

_BLOCK = re.compile(r'^block_(\d+)$')
_TAIL = re.compile(r'^conv_(\d+)$')


def _torch_key(path: tuple[str, ...]) -> str:
  """Flax param path -> the authors' state-dict key."""
  *mods, leaf = path
  if mods and mods[0] == 'step':  # everything inside the recurrent step
    mods = mods[1:]
  parts = []
  for i, m in enumerate(mods):
    if (b := _BLOCK.match(m)) and i > 0 and mods[i - 1] in ('feat_ext', 'feat_refine'):
      parts += ['crb', 'crb', b.group(1)]
    elif (t := _TAIL.match(m)) and i > 0 and mods[i - 1] == 'UPNet':
      parts.append(t.group(1))
    else:
      parts.append(m)
  return '.'.join(parts + [{'kernel': 'weight', 'bias': 'bias'}[leaf]])


def _to_flax(key: str, w: np.ndarray) -> np.ndarray:
  if w.ndim != 4:
    return w
  if key.split('.')[-2] == 'up':  # ConvTranspose2d [in, out, kh, kw] -> flipped HWIO correlation
    return w.transpose(2, 3, 0, 1)[::-1, ::-1]
  return w.transpose(2, 3, 1, 0)  # Conv2d [out, in, kh, kw] -> HWIO


def _to_torch(key: str, w: np.ndarray) -> np.ndarray:
  if w.ndim != 4:
    return w
  if key.split('.')[-2] == 'up':
    return w[::-1, ::-1].transpose(2, 3, 0, 1)
  return w.transpose(3, 2, 0, 1)


def torch_to_flax(state_dict: Mapping[str, Any], model: model_lib.DSSR) -> dict:
  """The authors' state dict (numpy arrays, PyTorch layout) -> params for `model`.

  Also converts gradients of the same layout. Raises ValueError naming every missing, unexpected
  or mis-shaped key (with both shapes).
  """
  shapes = checkpoint.param_shapes(model)
  want = {_torch_key(p): p for p in shapes}
  missing = sorted(set(want) - set(state_dict))
  unexpected = sorted(set(state_dict) - set(want))
  errors = [f'missing key {k} (expected shape '
            f'{_to_torch(k, np.empty(shapes[want[k]])).shape})' for k in missing]
  errors += [f'unexpected key {k} (shape {np.shape(state_dict[k])})' for k in unexpected]
  flat = {}
  for key, path in want.items():
    if key not in state_dict:
      continue
    w = np.asarray(state_dict[key], np.float32)
    expected = _to_torch(key, np.empty(shapes[path], np.float32)).shape
    if w.shape != expected:
      errors.append(f'key {key} has shape {w.shape}, the model expects {expected}')
      continue
    flat[path] = np.ascontiguousarray(_to_flax(key, w))
  if errors:
    raise ValueError('torch_to_flax: state dict does not fit the model '
                     f'({model.scale=}, {model.channels=}, {model.struct_blocks=}, '
                     f'{model.recon_blocks=}):\n  ' + '\n  '.join(errors))
  return flax.traverse_util.unflatten_dict(flat)


def flax_to_torch(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """params (or gradients) -> {authors' key: numpy array in PyTorch layout}."""
  flat = flax.traverse_util.flatten_dict(dict(params))
  return {_torch_key(p): np.ascontiguousarray(_to_torch(_torch_key(p), np.asarray(v)))
          for p, v in flat.items()}


def unwrap_state_dict(obj: Any) -> dict[str, np.ndarray]:
  """A loaded .pth object -> flat {key: numpy}: unwraps 'params'/'state_dict'/'model' holders and
  strips DataParallel's 'module.' prefix."""
  for _ in range(3):
    if isinstance(obj, Mapping):
      inner = [k for k in ('params', 'state_dict', 'model', 'net') if isinstance(obj.get(k), Mapping)]
      if inner and not any(str(k).endswith('.weight') for k in obj):
        obj = obj[inner[0]]
  if not isinstance(obj, Mapping) or not obj:
    raise ValueError('convert: the file holds no state dict (expected a dict of tensors)')
  out = {}
  for k, v in obj.items():
    k = k[len('module.'):] if k.startswith('module.') else k
    out[k] = v.detach().cpu().numpy() if hasattr(v, 'detach') else np.asarray(v)
  return out


def infer_model_config(state_dict: Mapping[str, np.ndarray], scale: int, num_steps: int = 4
                       ) -> dict:
  """Model config that fits a state dict: width and block counts read from its keys."""
  if 'conv1.weight' not in state_dict:
    raise ValueError('convert: state dict has no conv1.weight; is this a DSSR checkpoint?')

  def blocks(prefix):
    ids = {int(m.group(1)) for k in state_dict if (m := re.match(rf'{prefix}\.crb\.crb\.(\d+)\.', k))}
    return max(ids) + 1 if ids else 0

  cfg = dict(scale=scale, channels=int(np.shape(state_dict['conv1.weight'])[0]),
             struct_blocks=blocks('feat_ext'), recon_blocks=blocks('feat_refine'),
             num_steps=num_steps, dtype='float32', remat=False, modulation='affine',
             affine_on='both', paper_text=False)
  return cfg


def convert_state_dict(state_dict, out_dir, scale: int, num_steps: int = 4) -> dict:
  """Converts and saves with dssr_jax.checkpoint.save_params; returns the model config."""
  cfg = infer_model_config(state_dict, scale, num_steps)
  up = state_dict.get('up.weight')
  k = model_lib.layers.RESAMPLE[scale][0] if scale in model_lib.layers.RESAMPLE else None
  if up is not None and k is not None and np.shape(up)[-1] != k:
    raise ValueError(f'convert: --scale {scale} expects a {k}x{k} up kernel, the file has '
                     f'{np.shape(up)[-2]}x{np.shape(up)[-1]} (a checkpoint of another scale?)')
  params = torch_to_flax(state_dict, model_lib.DSSR(**cfg))
  checkpoint.save_params(out_dir, params, cfg, step=0)
  return cfg


def read_pth(path: str) -> dict[str, np.ndarray]:
  """The state dict of a .pth file, as numpy arrays (`unwrap_state_dict`).

  Raises:
    ImportError: PyTorch is not installed.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError('reading a .pth file needs PyTorch (pip install torch); it is not needed '
                      'for anything else in dssr_jax') from None
  return unwrap_state_dict(torch.load(path, map_location='cpu', weights_only=True))


if __name__ == '__main__':  # `python -m dssr_jax.convert` is the command dssr_jax/commands/convert.py
  runpy.run_module('dssr_jax.commands.convert', run_name='__main__', alter_sys=True)
