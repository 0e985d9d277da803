"""Helpers shared by test files (plain functions; fixtures live in conftest.py)."""

import flax
import jax
import jax.numpy as jnp
import numpy as np


def random_params(model, seed=0, h=8, w=8):
  """Params of PyTorch-init magnitude, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn in numpy.

  A jitted `init` of the whole network costs ~15-20 s of XLA compilation on 2 cores (threefry per
  tensor); `init` itself is tested in test_layers. `h`, `w`: the LR size used to trace shapes.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))['params']
  rng = np.random.default_rng(seed)
  flat = flax.traverse_util.flatten_dict(shapes)
  out = {}
  for path, v in flat.items():
    fan_in = int(np.prod(v.shape[:-1])) if len(v.shape) > 1 else v.shape[0]
    out[path] = jnp.asarray(rng.uniform(-1, 1, v.shape) / np.sqrt(fan_in), jnp.float32)
  return flax.traverse_util.unflatten_dict(out)


def param_count(params) -> int:
  """The number of parameters in a tree of arrays or of their shapes."""
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))


# A network small enough to compile in seconds, for end-to-end tests of eval and inference.
TINY = dict(scale=2, channels=8, struct_blocks=1, recon_blocks=1, num_steps=2)


# XLA flags for child processes that run tiny networks: XLA's lowest code-generation effort takes
# compiles from tens of seconds to seconds on two cores; what is computed does not change.
FAST_XLA = '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'

# The start of a child script that runs training jobs: the repo (argv[1]) on sys.path, absl at
# INFO, and every log line collected in `messages` (the child reports them with its results).
CHILD_PREAMBLE = r"""
import hashlib, json, logging as pylogging, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from absl import logging
logging.set_verbosity(logging.INFO)
from configs import smoke
from dssr_jax import train_lib, train_loop
import jax
messages = []
class Collect(pylogging.Handler):
  def emit(self, record):
    messages.append(record.getMessage())
pylogging.getLogger().addHandler(Collect())
"""
