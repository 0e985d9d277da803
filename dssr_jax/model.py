"""DSSR: a head conv, then T weight-shared detail-structure modulation steps run by `nn.scan`.

docs/design.md section 1 is the specification; the defaults are the authors' released network.
"""

import flax.linen as nn
import jax.numpy as jnp

from dssr_jax import fast
from dssr_jax import layers

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
AFFINE_ON = ('both', 'hr', 'lr')
# The fields that change the parameters or the function they compute: a checkpoint holds one
# value of each. The others (dtype, remat, execution) only change how it is computed.
STRUCTURAL_FIELDS = ('scale', 'channels', 'struct_blocks', 'recon_blocks', 'num_steps',
                     'modulation', 'affine_on', 'paper_text')


class Step(nn.Module):
  """One recurrent step: carry (f, hidden) -> new carry and (sr_t, detail_t).

  `bic` (the bicubic-upscaled input, float32) and `f_in` (= conv1(x), read by the paper-text
  reading only) are the same for every step.
  """
  scale: int
  channels: int
  struct_blocks: int
  recon_blocks: int
  dtype: str = 'float32'
  modulation: str = 'affine'
  affine_on: str = 'both'
  paper_text: bool = False
  execution: fast.Execution = fast.PLAIN

  @nn.compact
  def __call__(self, carry, bic, f_in):
    c, s, dt, ex = self.channels, self.scale, DTYPES[self.dtype], self.execution
    f, hidden = carry
    # P1: the paper compresses [hidden, F_in] every step; the code feeds back the last step's f.
    pair = [hidden, f_in] if self.paper_text else [f, hidden]
    f = ex.conv(c, 1, dt, name='compress_in')(jnp.concatenate(pair, -1))
    feat = layers.Cascade(c, self.struct_blocks, dt, name='feat_ext')(f)
    up_f = ex.up(s, c, dt, name='up')(feat)
    # The 3-channel images stay float32 whatever the compute dtype.
    detail = layers.Conv(3, dtype=dt, name='conv_recon')(up_f).astype(jnp.float32) - bic

    hr_on = self.modulation != 'none' and self.affine_on in ('both', 'hr')
    lr_on = self.modulation != 'none' and self.affine_on in ('both', 'lr')
    if hr_on or (lr_on and not self.paper_text):
      d_f = layers.Conv(c, dtype=dt, name='conv2')(detail)
    up_st = up_f
    if hr_on:  # eq. 11: up_f * gamma1 + beta1 + up_f
      up_st = layers.Modulation(c, self.modulation, True, dt, ex.conv, name='spatial_trans1')(
          up_f, d_f)
    y = layers.Down(s, c, dt, name='down')(up_st)
    if lr_on:
      if self.paper_text:  # P2: its own 3->C conv of the bicubic-downsampled 3-channel detail
        d_lr = layers.Conv(c, dtype=dt, name='conv2_lr')(ex.bicubic_down(detail, s))
      else:
        d_lr = ex.bicubic_down(d_f, s)
      y = layers.Modulation(c, self.modulation, False, dt, ex.conv, name='spatial_trans2')(y, d_lr)
    hidden = y + (f_in if self.paper_text else feat)  # P3: the paper adds F_in, the code feat
    out = layers.Tail(s, c, dt, name='UPNet')(
        layers.Cascade(c, self.recon_blocks, dt, name='feat_refine')(hidden))
    sr = out.astype(jnp.float32) + bic
    return (f, hidden), (sr, detail)


class DSSR(nn.Module):
  """The DSSR network.

  `apply({'params': p}, lr)` with lr f32[B, h, w, 3] in [0, 1] returns {'sr': f32[B, sh, sw, 3]
  (the mean of the steps), 'steps': f32[T, B, sh, sw, 3], 'details': f32[T, B, sh, sw, 3]}.
  configs/default.py documents the fields; `execution` picks how it is computed
  (`fast.Execution`; None: `fast.best()` for JAX's default backend, chosen when traced).
  """
  scale: int
  channels: int = 128
  struct_blocks: int = 15
  recon_blocks: int = 5
  num_steps: int = 4
  dtype: str = 'float32'
  remat: bool = False
  modulation: str = 'affine'
  affine_on: str = 'both'
  paper_text: bool = False
  execution: fast.Execution | None = None

  def __post_init__(self):
    def bad(field, allowed):
      raise ValueError(f'DSSR: {field} must be {allowed}, got {getattr(self, field)!r}')

    if self.scale not in layers.RESAMPLE:
      bad('scale', '2, 3 or 4')
    for field in ('channels', 'num_steps'):
      if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
        bad(field, 'a positive integer')
    for field in ('struct_blocks', 'recon_blocks'):
      if not isinstance(getattr(self, field), int) or getattr(self, field) < 0:
        bad(field, 'a non-negative integer')
    if self.dtype not in DTYPES:
      bad('dtype', f'one of {tuple(DTYPES)}')
    if self.modulation not in layers.MODULATIONS:
      bad('modulation', f'one of {layers.MODULATIONS}')
    if self.affine_on not in AFFINE_ON:
      bad('affine_on', f'one of {AFFINE_ON}')
    if self.execution is not None and not isinstance(self.execution, fast.Execution):
      bad('execution', 'a fast.Execution or None')
    super().__post_init__()

  @nn.compact
  def __call__(self, lr):
    if lr.ndim != 4:
      raise ValueError(f'DSSR: lr must be NHWC [B, h, w, 3] (rank 4), got shape {lr.shape}')
    if lr.shape[-1] != 3:
      raise ValueError(f'DSSR: lr must have 3 (RGB) channels in the last axis, got shape {lr.shape}')
    ex = self.execution if self.execution is not None else fast.best()
    x = lr.astype(jnp.float32)
    bic = ex.bicubic_up(x, self.scale)
    f_in = layers.Conv(self.channels, dtype=DTYPES[self.dtype], name='conv1')(x)
    # remat keeps the loop rolled: unrolled, XLA kept every step's activations anyway.
    step = nn.remat(Step, prevent_cse=False) if self.remat else Step
    unroll = self.num_steps if (ex.unrolled_steps and not self.remat) else 1
    scan = nn.scan(step, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=(nn.broadcast, nn.broadcast), length=self.num_steps, unroll=unroll)
    carry = (f_in, f_in)  # the hidden state starts as the head features
    _, (steps, details) = scan(
        scale=self.scale, channels=self.channels, struct_blocks=self.struct_blocks,
        recon_blocks=self.recon_blocks, dtype=self.dtype, modulation=self.modulation,
        affine_on=self.affine_on, paper_text=self.paper_text, execution=ex,
        name='step')(carry, bic, f_in)
    return {'sr': jnp.mean(steps, axis=0), 'steps': steps, 'details': details}

