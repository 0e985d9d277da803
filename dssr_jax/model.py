"""DSSR: a head conv, then T weight-shared detail-structure modulation steps run by `nn.scan`.

DESIGN.md section 1 is the specification; defaults reproduce the authors' released network.
"""

import contextlib
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dssr_jax import layers
from dssr_jax import resize

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
AFFINE_ON = ('both', 'hr', 'lr')


class Step(nn.Module):
  """One recurrent step. carry = (f, hidden); returns the new carry and (sr_t, detail_t).

  `bic` (the bicubic-upscaled input, float32) and `f_in` (= conv1(x), used by the paper-text
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
  up_impl: str = 'phases'
  down_impl: str = 'strided'
  bicubic_dense: bool | None = None
  fold_detail_conv: bool | None = None

  @nn.compact
  def __call__(self, carry, bic, f_in):
    c, dt, s = self.channels, DTYPES[self.dtype], self.scale
    f, hidden = carry
    # P1: the paper compresses [hidden, F_in] each step; the code feeds back last step's f.
    pair = [hidden, f_in] if self.paper_text else [f, hidden]
    f = layers.Conv(c, 1, dt, name='compress_in')(jnp.concatenate(pair, -1))
    feat = layers.Cascade(c, self.struct_blocks, dt, name='feat_ext')(f)
    up_f = layers.Up(s, c, dt, self.up_impl, name='up')(feat)
    # The 3-channel images stay float32 whatever the compute dtype.
    detail = layers.Conv(3, dtype=dt, name='conv_recon')(up_f).astype(jnp.float32) - bic

    hr_on = self.modulation != 'none' and self.affine_on in ('both', 'hr')
    lr_on = self.modulation != 'none' and self.affine_on in ('both', 'lr')
    if hr_on or (lr_on and not self.paper_text):
      conv2 = layers.Conv(c, dtype=dt, name='conv2')
      d_f = conv2(detail)
    up_st = up_f
    if hr_on:  # its first conv may read `detail` through conv2 (layers.conv_of_conv)
      fold = self.fold_detail_conv
      if fold is None:
        fold = jax.default_backend() == 'cpu'
      after = ((detail, conv2.variables['params']['kernel'], conv2.variables['params']['bias'])
               if fold else None)
      up_st = layers.Modulation(c, self.modulation, True, dt, name='spatial_trans1')(
          up_f, d_f, after)
    y = layers.Down(s, c, dt, self.down_impl, name='down')(up_st)
    if lr_on:
      if self.paper_text:  # P2: own 3->C conv on the bicubic-downsampled 3-channel detail map
        d_lr = layers.Conv(c, dtype=dt, name='conv2_lr')(
            resize.torch_bicubic_down(detail, s, self.bicubic_dense))
      else:
        d_lr = resize.torch_bicubic_down(d_f, s, self.bicubic_dense)
      y = layers.Modulation(c, self.modulation, False, dt, name='spatial_trans2')(y, d_lr)
    hidden = y + (f_in if self.paper_text else feat)  # P3: paper adds F_in, code adds feat
    out = layers.Tail(s, c, dt, name='UPNet')(
        layers.Cascade(c, self.recon_blocks, dt, name='feat_refine')(hidden))
    sr = out.astype(jnp.float32) + bic
    return (f, hidden), (sr, detail)


class DSSR(nn.Module):
  """The DSSR network. `apply({'params': p}, lr)` with lr f32[B,h,w,3] in [0, 1] returns
  {'sr': f32[B,sh,sw,3] (mean of the steps), 'steps': f32[T,B,sh,sw,3], 'details': same}.

  Fields: see `configs/default.py` (get_model_config). Extra, for speed studies only:
  `unroll` runs the steps as a Python loop over the same module (same params) instead of nn.scan;
  `scan_unroll` (default True) lets nn.scan emit its T steps unrolled (`unroll=T`): the carry, the
  shared params and the stacked outputs are the scan's, but XLA:CPU no longer runs the backward
  pass as a rolled while loop, which measured 25x slower (small network, 2 CPU cores); with
  `remat` the loop stays rolled, the only form in which XLA honoured the rematerialisation;
  `up_impl` / `down_impl` pick the evaluation of the learned resamplers (same params);
  `bicubic_dense` the form of the in-network bicubic downsampling (None: by backend, see
  `resize.resize_with`); `fold_detail_conv` whether the HR modulation's first conv reads the
  3-channel detail map through `conv2` (`layers.conv_of_conv`; None: on the CPU only).
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
  unroll: bool = False
  scan_unroll: bool = True
  up_impl: str = 'phases'
  down_impl: str = 'strided'
  bicubic_dense: bool | None = None
  fold_detail_conv: bool | None = None

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
    super().__post_init__()

  @nn.compact
  def __call__(self, lr):
    if lr.ndim != 4:
      raise ValueError(f'DSSR: lr must be NHWC [B, h, w, 3] (rank 4), got shape {lr.shape}')
    if lr.shape[-1] != 3:
      raise ValueError(f'DSSR: lr must have 3 (RGB) channels in the last axis, got shape {lr.shape}')
    x = lr.astype(jnp.float32)
    bic = resize.torch_bicubic_up(x, self.scale)
    f_in = layers.Conv(self.channels, dtype=DTYPES[self.dtype], name='conv1')(x)
    kw = dict(scale=self.scale, channels=self.channels, struct_blocks=self.struct_blocks,
              recon_blocks=self.recon_blocks, dtype=self.dtype, modulation=self.modulation,
              affine_on=self.affine_on, paper_text=self.paper_text, up_impl=self.up_impl,
              down_impl=self.down_impl, bicubic_dense=self.bicubic_dense,
              fold_detail_conv=self.fold_detail_conv, name='step')
    carry = (f_in, f_in)  # the hidden state starts as the head features
    if self.unroll:
      step_cls = nn.remat(Step) if self.remat else Step
      step = step_cls(**kw)
      outs = []
      for _ in range(self.num_steps):
        carry, out = step(carry, bic, f_in)
        outs.append(out)
      steps, details = (jnp.stack(o) for o in zip(*outs))
    else:
      # remat keeps the loop rolled: unrolled (nn.scan's unroll or a Python loop), XLA:CPU kept
      # every step's activations anyway (compiled temp memory unchanged by remat; x4 batch 8 ran
      # out of 24 GB). A rolled loop already blocks CSE, so remat needs no barrier of its own.
      step_cls = nn.remat(Step, prevent_cse=False) if self.remat else Step
      unroll = self.num_steps if (self.scan_unroll and not self.remat) else 1
      scan = nn.scan(step_cls, variable_broadcast='params', split_rngs={'params': False},
                     in_axes=(nn.broadcast, nn.broadcast), length=self.num_steps,
                     unroll=unroll)
      # Rolled (remat, or scan_unroll off): the convs' CPU gradients take the loop-safe form.
      with layers.rolled_loop() if unroll < self.num_steps else contextlib.nullcontext():
        carry, (steps, details) = scan(**kw)(carry, bic, f_in)
    return {'sr': jnp.mean(steps, axis=0), 'steps': steps, 'details': details}


# XLA:CPU's own convolution and dot emitters instead of its YNNPACK library fusions, which it keeps
# for reductions only (the default fuses convolutions and reductions). Measured alternating in one
# process on 2 cores (`benchmarks/compiler_options_ab.py`): no YNNPACK at all against the default,
# small-network train step 4.12 -> 3.59 s (8 pairs), paper x2 forward at LR 128 7.75 -> 7.05 s,
# paper x2 train step unchanged (62.4 -> 56.7, 56.6 -> 56.7 s); then YNNPACK's reductions (the
# bias gradients, which XLA's own emitter runs as slow reduce-windows) against none, small step
# 4.44 -> 4.08 s (6 pairs) and 3.89 -> 3.53 s (8 pairs), paper x2 step 52.7 -> 46.4 s (2 pairs).
_CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}


def compiler_options() -> dict[str, str]:
  """XLA options for `jax.jit` of a computation that runs DSSR on this backend ({} off the CPU,
  or with a jax whose XLA lacks the option)."""
  return dict(_CPU_OPTIONS) if jax.default_backend() == 'cpu' and _cpu_options_known() else {}


@functools.cache
def _cpu_options_known() -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(jnp.float32(0)).compile()
  except jax.errors.JaxRuntimeError:  # the option is experimental: another XLA may not know it
    return False
  return True


def param_count(params) -> int:
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
