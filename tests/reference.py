"""A direct numpy (float64) reference of DSSR's forward pass, written from the design's equations.

docs/design.md section 1 ("Forward", "Ablation variants", "Paper text vs. code") is the source;
nothing here imports the model or its layers. Convolutions, the transposed convolution and the
pixel shuffle are written out here as loops over kernel taps; the only library piece reused is
`torch_bicubic.bicubic_matrix` (PyTorch's bicubic weights, tested on its own in
test_torch_bicubic.py against hand-derived values). Meant for tiny networks (a few channels, LR images of a few pixels).

`params` is the Flax parameter tree of `model.DSSR` (names and layouts as in the design: HWIO
kernels; `up` as the HWIO correlation kernel over the input dilated by s).
"""

import numpy as np

from dssr_jax import torch_bicubic

# Kernel, stride and padding of `up` / `down` per scale (design section 1).
RESAMPLE = {2: (4, 2, 1), 3: (5, 3, 1), 4: (4, 4, 0)}


def _np(tree):
  if isinstance(tree, dict):
    return {k: _np(v) for k, v in tree.items()}
  return np.asarray(tree, np.float64)


def conv(x, p, k=3, stride=1, pad=None):
  """Correlation of NHWC x with p['kernel'] [k, k, I, O] plus p['bias'], zero padding `pad`
  (default (k - 1) // 2, i.e. 'same' for odd k), stride `stride`. The kernel size is the design's,
  checked against the stored kernel."""
  w, b = p['kernel'], p['bias']
  kh, kw = w.shape[:2]
  assert (kh, kw) == (k, k) and w.shape[2] == x.shape[-1], (w.shape, k, x.shape)
  if pad is None:
    pad = (kh - 1) // 2
  n, h, wd, _ = x.shape
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (h + 2 * pad - kh) // stride + 1
  wo = (wd + 2 * pad - kw) // stride + 1
  # im2col: every output pixel's window as one row, then a single matrix product.
  cols = np.concatenate(
      [xp[:, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
       for ky in range(kh) for kx in range(kw)], axis=-1)
  out = cols.reshape(-1, cols.shape[-1]) @ w.reshape(-1, w.shape[3])
  return out.reshape(n, ho, wo, w.shape[3]) + b


def conv_transpose(x, p, scale):
  """PyTorch's ConvTranspose2d by its definition: input pixel (y, x) adds x * W[i, o, ky, kx] at
  output (y s - pad + ky, x s - pad + kx). The stored kernel is K[ky, kx, i, o] = W[i, o, k-1-ky,
  k-1-kx] (design section 1, weight layouts)."""
  k, s, pad = RESAMPLE[scale]
  assert p['kernel'].shape[:2] == (k, k), p['kernel'].shape
  wt = p['kernel'][::-1, ::-1]  # wt[ky, kx, i, o] = W[i, o, ky, kx]
  n, h, w, _ = x.shape
  full = np.zeros((n, (h - 1) * s + k, (w - 1) * s + k, wt.shape[3]))
  for ky in range(k):
    for kx in range(k):
      full[:, ky:ky + (h - 1) * s + 1:s, kx:kx + (w - 1) * s + 1:s] += x @ wt[ky, kx]
  return full[:, pad:pad + s * h, pad:pad + s * w] + p['bias']


def pixel_shuffle(x, r):
  """Output channel c at (h r + i, w r + j) is input channel c r^2 + i r + j at (h, w)."""
  n, h, w, c = x.shape
  out = np.zeros((n, h * r, w * r, c // (r * r)))
  for co in range(c // (r * r)):
    for i in range(r):
      for j in range(r):
        out[:, i::r, j::r, co] = x[:, :, :, co * r * r + i * r + j]
  return out


def lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def bicubic_up(x, s):
  """PyTorch bicubic, align_corners=False, scale_factor s."""
  _, h, w, _ = x.shape
  mh = torch_bicubic.bicubic_matrix(h, h * s, False, s).astype(np.float64)
  mw = torch_bicubic.bicubic_matrix(w, w * s, False, s).astype(np.float64)
  return np.einsum('Hh,nhwc,Ww->nHWc', mh, x, mw)


def bicubic_down(x, s):
  """PyTorch bicubic, align_corners=True, to floor(size / s)."""
  _, h, w, _ = x.shape
  mh = torch_bicubic.bicubic_matrix(h, h // s, True).astype(np.float64)
  mw = torch_bicubic.bicubic_matrix(w, w // s, True).astype(np.float64)
  return np.einsum('Hh,nhwc,Ww->nHWc', mh, x, mw)


def cascade(x, p, n):
  """x + ResBlock_n(...ResBlock_1(x)), ResBlock(y) = y + 0.2 conv(lrelu(conv(y)))."""
  y = x
  for i in range(n):
    blk = p[f'block_{i}']
    y = y + 0.2 * conv(lrelu(conv(y, blk['conv1'])), blk['conv2'])
  return x + y


def trunk(d, p):
  """The 4-conv trunk of an Affine stack: h = lrelu(conv4(lrelu(conv3(lrelu(conv2(lrelu(conv1)))))))."""
  h = d
  for i in range(1, 5):
    h = lrelu(conv(h, p[f'conv{i}']))
  return h


def attention(h, p, kind):
  """The per-channel (RCAN CA) or per-pixel attention map a of a trunk output h."""
  if kind == 'channel_attention':
    a = h.mean(axis=(1, 2), keepdims=True)
    assert p['conv_squeeze']['kernel'].shape[3] == max(h.shape[-1] // 16, 1)  # reduction 16
    return sigmoid(conv(np.maximum(conv(a, p['conv_squeeze'], 1), 0.0), p['conv_excite'], 1))
  return sigmoid(conv(h, p['conv_att']))  # spatial: one channel, 3x3


def hr_modulation(up_f, d, p, kind):
  """up_st from the HR structure features up_f and the HR detail features d."""
  h = trunk(d, p)
  if kind == 'affine':
    return up_f * sigmoid(conv(h, p['conv_gama'], 1)) + conv(h, p['conv_beta'], 1) + up_f
  if kind == 'add':
    return up_f + h
  if kind == 'concat':
    return conv(np.concatenate([up_f, h], -1), p['conv_fuse'], 1)
  return up_f * attention(h, p, kind) + up_f


def lr_modulation(y, d, p, kind):
  """The LR-side term that `feat` (code) or F_in (paper) is added to; y = down(up_st)."""
  h = trunk(d, p)
  if kind == 'affine':
    return y * sigmoid(conv(h, p['conv_gama'], 1)) + conv(h, p['conv_beta'], 1)
  if kind == 'add':
    return y + h
  if kind == 'concat':
    return conv(np.concatenate([y, h], -1), p['conv_fuse'], 1)
  return y * attention(h, p, kind)


def tail(x, p, s):
  """UPNet: conv(C -> C s^2), shuffle(s), conv(C -> 3); x4: two (conv, shuffle(2)) stages."""
  factors = (2, 2) if s == 4 else (s,)
  for n, r in enumerate(factors):
    x = pixel_shuffle(conv(x, p[f'conv_{2 * n}']), r)
  return conv(x, p[f'conv_{2 * len(factors)}'])


def dssr_forward(params, lr, *, scale, struct_blocks, recon_blocks, num_steps,
                 modulation='affine', affine_on='both', paper_text=False):
  """{'sr', 'steps', 'details'} of DSSR for NHWC `lr`, in float64 (design section 1)."""
  params = _np(params)
  st = params['step']
  s = scale
  x = np.asarray(lr, np.float64)
  bic = bicubic_up(x, s)
  f_in = conv(x, params['conv1'])
  f, hidden = f_in, f_in
  hr_on = modulation != 'none' and affine_on in ('both', 'hr')
  lr_on = modulation != 'none' and affine_on in ('both', 'lr')
  k, _, pad = RESAMPLE[s]
  steps, details = [], []
  for _ in range(num_steps):
    if paper_text:  # P1: compress [hidden, F_in]; only `hidden` is carried
      f = conv(np.concatenate([hidden, f_in], -1), st['compress_in'], 1)
    else:
      f = conv(np.concatenate([f, hidden], -1), st['compress_in'], 1)
    feat = cascade(f, st['feat_ext'], struct_blocks)
    up_f = conv_transpose(feat, st['up'], s)
    detail = conv(up_f, st['conv_recon']) - bic
    up_st = up_f
    if hr_on:
      up_st = hr_modulation(up_f, conv(detail, st['conv2']), st['spatial_trans1'], modulation)
    y = conv(up_st, st['down'], k, stride=s, pad=pad)
    if lr_on:
      if paper_text:  # P2: the 3-channel detail map, shrunk, through its own conv
        d_lr = conv(bicubic_down(detail, s), st['conv2_lr'])
      else:
        d_lr = bicubic_down(conv(detail, st['conv2']), s)
      y = lr_modulation(y, d_lr, st['spatial_trans2'], modulation)
    hidden = y + (f_in if paper_text else feat)  # P3
    sr = tail(cascade(hidden, st['feat_refine'], recon_blocks), st['UPNet'], s) + bic
    steps.append(sr)
    details.append(detail)
  steps, details = np.stack(steps), np.stack(details)
  return {'sr': steps.mean(0), 'steps': steps, 'details': details}
