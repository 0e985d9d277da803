"""Every faster form equals the plain one it replaces: values and gradients, layer and network."""

import dataclasses
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers

from dssr_jax import fast
from dssr_jax import layers
from dssr_jax import losses
from dssr_jax import model as model_lib
from dssr_jax import torch_bicubic


def _value_and_grads(module, x, seed):
  """Output and the gradients of <output, ct> w.r.t. the params and the input."""
  params = module.init(jax.random.key(seed), x)
  y = module.apply(params, x)
  ct = jnp.asarray(np.random.default_rng(seed).standard_normal(y.shape), jnp.float32)
  grads = jax.grad(lambda p, x: jnp.vdot(module.apply(p, x), ct), argnums=(0, 1))(params, x)
  return y, grads


def _assert_trees_close(a, b, tol):
  for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(v, u, rtol=tol, atol=tol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('k', [1, 3])
def test_conv_as_matmul_equals_plain_conv(k):
  x = jnp.asarray(np.random.default_rng(k).standard_normal((2, 5, 7, 6)), jnp.float32)
  y0, g0 = _value_and_grads(layers.Conv(4, k), x, seed=k)
  y1, g1 = _value_and_grads(fast.Conv(4, k), x, seed=k)
  np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
  _assert_trees_close(g0, g1, 1e-4)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_phase_up_equals_plain_transposed_conv(scale):
  x = jnp.asarray(np.random.default_rng(scale).standard_normal((2, 3, 4, 5)), jnp.float32)
  y0, g0 = _value_and_grads(layers.Up(scale, 6), x, seed=scale)
  y1, g1 = _value_and_grads(fast.Up(scale, 6), x, seed=scale)
  assert y0.shape == (2, 3 * scale, 4 * scale, 6)
  np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
  _assert_trees_close(g0, g1, 1e-4)


@pytest.mark.parametrize('h,w', [(7, 9), (2, 9), (16, 3)])
def test_banded_bicubic_equals_dense_matrices(h, w):
  """Values, and gradients: the custom VJP is the transposed banded sum."""
  rng = np.random.default_rng(h * w)
  x = jnp.asarray(rng.standard_normal((2, h, w, 3)), jnp.float32)
  for scale in (2, 3, 4):  # one jit per case: eager dispatch of the banded sums is slow
    for mats in (torch_bicubic.up_matrices(x.shape, scale),
                 torch_bicubic.down_matrices(x.shape, scale) if min(h, w) >= scale else None):
      if mats is None:
        continue
      dense = jax.jit(lambda x, m=mats: torch_bicubic.resize_with(x, *m))
      banded = jax.jit(lambda x, m=mats: fast.banded_resize(x, *m))
      np.testing.assert_allclose(banded(x), dense(x), rtol=1e-5, atol=1e-6)
      ct = jnp.asarray(rng.standard_normal(dense(x).shape), jnp.float32)
      g_dense = jax.grad(lambda x: jnp.vdot(dense(x), ct))(x)
      g_banded = jax.grad(lambda x: jnp.vdot(banded(x), ct))(x)
      np.testing.assert_allclose(g_banded, g_dense, rtol=1e-5, atol=1e-5)


def test_best_execution_per_backend():
  assert fast.best('cpu') == fast.CPU and fast.best('gpu') == fast.best('tpu') == fast.ACCELERATOR
  assert fast.PLAIN.conv is layers.Conv and fast.PLAIN.up is layers.Up
  assert fast.CPU.conv is fast.Conv and fast.CPU.up is fast.Up


@pytest.mark.parametrize('scale', [3])
def test_every_execution_computes_the_same_network(scale):
  """PLAIN, each single form switched on, and the per-backend bests: same outputs and the same
  gradient of the training loss (remat, which keeps the loop rolled, too). The layer tests above
  cover every scale; x3 has the odd phases."""
  model = model_lib.DSSR(scale, channels=8, struct_blocks=1, recon_blocks=1, num_steps=2,
                         execution=fast.PLAIN)
  params = helpers.random_params(model, seed=scale, h=6, w=5)
  rng = np.random.default_rng(scale)
  lr = jnp.asarray(rng.random((2, 6, 5, 3)), jnp.float32)
  hr = jnp.asarray(rng.random((2, 6 * scale, 5 * scale, 3)), jnp.float32)

  def run(m):
    def loss(p):
      out = m.apply({'params': p}, lr)
      return losses.dssr_loss(out, lr, hr, scale=scale)[0], out
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

  (ref_loss, ref_out), ref_grads = run(model)
  singles = [fast.Execution(**{f.name: True}) for f in dataclasses.fields(fast.Execution)]
  # ACCELERATOR's forms are a subset of CPU's, each also on its own among the singles.
  for ex, remat in [(ex, False) for ex in singles] + [(fast.CPU, False), (fast.CPU, True)]:
    (loss, out), grads = run(model.clone(execution=ex, remat=remat))
    for k in ('sr', 'steps', 'details'):
      np.testing.assert_allclose(out[k], ref_out[k], atol=1e-5, err_msg=f'{ex} {remat} {k}')
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for path, a in flax.traverse_util.flatten_dict(ref_grads).items():
      b = flax.traverse_util.flatten_dict(grads)[path]
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=f'{ex} {remat} {path}')


def test_execution_none_means_the_best_for_the_backend():
  model = model_lib.DSSR(2, channels=4, struct_blocks=0, recon_blocks=0, num_steps=2)
  lr = jnp.zeros((1, 4, 4, 3))
  params = jax.eval_shape(model.init, jax.random.key(0), lr)
  lower = lambda m: jax.jit(m.apply).lower(params, lr).as_text()
  # The CPU's unrolled steps: no while loop in the program.
  assert 'while' not in lower(model)
  assert 'while' in lower(model.clone(execution=fast.PLAIN))
  with pytest.raises(ValueError, match='DSSR: execution must be'):
    model_lib.DSSR(2, execution='cpu')


def test_cpu_compiler_options_keep_ynnpack_for_reductions_only_and_keep_values():
  """On the CPU, DSSR compiles with XLA's own convolutions and YNNPACK's reductions only; a conv's
  values and gradients are those of XLA's default compile."""
  opts = fast.compiler_options('cpu')
  assert opts == {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}
  assert fast.compiler_options('gpu') == {}
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((2, 16, 12, 32)), jnp.float32)  # big enough for YNNPACK
  w = jnp.asarray(rng.standard_normal((3, 3, 32, 32)), jnp.float32)
  b = jnp.asarray(rng.standard_normal((32,)), jnp.float32)
  ct = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
  f = lambda x, w, b, ct: jax.vjp(
      lambda x, w, b: layers.conv(x, w, padding=((1, 1), (1, 1))) + b, x, w, b)[1](ct)
  default = jax.jit(f).lower(x, w, b, ct).compile()
  ours = jax.jit(f, compiler_options=opts).lower(x, w, b, ct).compile()

  def ynn_ops(compiled):  # the ops that YNNPACK fusions were made of (None: no metadata)
    ops = set()
    for line in compiled.as_text().splitlines():
      if re.search(r'%ynn_fusion\S* = ', line):
        op = re.search(r'op_name="[^"]*/([a-z_]+)"', line)
        ops.add(op.group(1) if op else None)
    return ops

  assert 'conv_general_dilated' in ynn_ops(default)
  assert ynn_ops(ours) == {'reduce_sum'}  # the bias gradient
  for u, v in zip(jax.tree_util.tree_leaves(default(x, w, b, ct)),
                  jax.tree_util.tree_leaves(ours(x, w, b, ct))):
    np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-4)
