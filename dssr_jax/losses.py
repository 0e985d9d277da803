"""The DSSR training loss (docs/design.md section 2), as the authors' training code computes it."""

from typing import Mapping

import jax
import jax.numpy as jnp

from dssr_jax import torch_bicubic


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean absolute error over every element (PyTorch's `nn.L1Loss()`)."""
  return jnp.mean(jnp.abs(a - b))


def detail_label(lr: jax.Array, hr: jax.Array, scale: int) -> jax.Array:
  """`hr - bic(lr)`, f32: what each step's detail map is pulled towards (docs/design.md section 2).

  `bic` is the network's own PyTorch-bicubic upsampling of `lr` ([B, H, W, C] on the same [0, 1]
  scale as `hr`, [B, sH, sW, C]). The loss and eval's Fig. 9 measurement both use this one.
  """
  return hr.astype(jnp.float32) - torch_bicubic.up(lr.astype(jnp.float32), scale)


def dssr_loss(
    out: Mapping[str, jax.Array],
    lr: jax.Array,
    hr: jax.Array,
    *,
    scale: int,
    alpha: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`sum_t [ L1(sr_t, hr) + alpha * L1(details_t, hr - bic(lr)) ]`.

  Args:
    out: what `DSSR.apply` returns; uses 'steps' and 'details', each f32[T, B, sH, sW, 3].
    lr: the network input, f32[B, H, W, 3].
    hr: the target, f32[B, sH, sW, 3].
    scale: the upscaling factor; `bic` is the network's own PyTorch-bicubic upsampling of `lr`.
    alpha: weight of the detail term.

  Returns:
    The scalar loss and {'pix': f32[T], 'detail': f32[T]}, the unweighted per-step terms.
  """
  steps, details = out['steps'], out['details']
  if hr.ndim != 4 or steps.shape[1:] != hr.shape:
    raise ValueError(f'hr has shape {hr.shape}; the network produced {steps.shape[1:]} per step')
  hr = hr.astype(jnp.float32)
  # The per-step means stay separate: they are the curves of the paper's Fig. 4 and 9.
  pix = jax.vmap(l1, in_axes=(0, None))(steps.astype(jnp.float32), hr)
  detail = jax.vmap(l1, in_axes=(0, None))(details.astype(jnp.float32),
                                          detail_label(lr, hr, scale))
  loss = jnp.sum(pix) + alpha * jnp.sum(detail)
  return loss, {'pix': pix, 'detail': detail}
