"""Defaults shared by every experiment: the paper network, its training recipe and data.

Experiment files import this and override fields. Every field here is documented where it is set.
Usage: `python train.py --config=configs/default.py --workdir=DIR` (override with
`--config.model.scale=4` etc., as ml_collections' config flags allow).
"""

import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
  """The DSSR network. `DSSR(**config.model)` builds it; defaults are the authors' network."""
  m = ml_collections.ConfigDict()
  m.scale = 2  # Upscaling factor: 2, 3 or 4.
  m.channels = 128  # Feature width C.
  m.struct_blocks = 15  # Residual blocks in the structure feature extractor (Stru-FE cascade).
  m.recon_blocks = 5  # Residual blocks in the reconstruction (refinement) cascade.
  m.num_steps = 4  # T, recurrent detail-structure modulation steps; weights shared across steps.
  # Compute dtype of activations and convolutions: 'float32' or 'bfloat16'. Parameters stay
  # float32 and outputs are returned as float32 either way.
  m.dtype = 'float32'
  # Rematerialise each recurrent step in the backward pass (nn.remat): less memory, ~1/3 more compute.
  m.remat = False
  # Structure modulation (paper Table II): 'affine' (default), 'none', 'add', 'concat',
  # 'channel_attention', 'spatial_attention'.
  m.modulation = 'affine'
  # Where the modulation acts (paper Table III): 'both' (default), 'hr' (HR side only), 'lr' (LR only).
  m.affine_on = 'both'
  # Follow the paper's text instead of the released code where they differ (DESIGN.md section 1,
  # rows P1-P3): feed conv1(x) to every step, an LR detail branch from the bicubic-downsampled
  # 3-channel detail map, and `+ F_in` in the LR modulation. False reproduces the released code.
  m.paper_text = False
  return m


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = get_model_config()
  return config
