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
  # The steps then run as a rolled loop (unrolled, XLA kept all activations), slow on XLA:CPU.
  m.remat = False
  # Structure modulation (paper Table II): 'affine' (default), 'none', 'add', 'concat',
  # 'channel_attention', 'spatial_attention'.
  m.modulation = 'affine'
  # Where the modulation acts (paper Table III): 'both' (default), 'hr' (HR side only), 'lr' (LR only).
  m.affine_on = 'both'
  # Follow the paper's text instead of the released code where they differ (docs/design.md section 1,
  # rows P1-P3): feed conv1(x) to every step, an LR detail branch from the bicubic-downsampled
  # 3-channel detail map, and `+ F_in` in the LR modulation. False reproduces the released code.
  m.paper_text = False
  return m


def get_train_config() -> ml_collections.ConfigDict:
  """The training recipe (docs/design.md section 2; train.py). Owned by the training code."""
  t = ml_collections.ConfigDict()
  t.num_steps = 480_000  # Optimiser steps (paper: 480k).
  t.batch_size = 8  # Global batch over all processes and devices; must divide by the device count.
  t.learning_rate = 2e-4
  t.lr_boundaries = (80_000, 160_000, 240_000, 320_000, 400_000)  # 0-based first step of each decay.
  t.lr_decay_factor = 0.5
  t.adam_b1 = 0.9
  t.adam_b2 = 0.99
  t.adam_eps = 1e-8
  t.alpha = 1.0  # Weight of the per-step detail loss.
  t.seed = 0  # Parameter init and data order.
  t.log_every = 100  # Steps between logged training metrics.
  t.checkpoint_every = 5_000  # Steps between checkpoints (one is also written at the end).
  t.keep_checkpoints = 3  # The last K checkpoints are kept, plus the best by validation PSNR.
  # Validation at every checkpoint on the first `val_images` HR images of `val_dir` ('' turns it
  # off), degraded as the setting's test set (Gaussian8 or DIV2KRK-style) at the training scale;
  # its Y-PSNR picks the best checkpoint, which is kept.
  # A relative path is relative to the working directory; a URL (gs://...) works too.
  t.val_dir = ''
  t.val_images = 2
  t.val_sigmas = 2  # How many of the eight Gaussian8 kernel widths (spread over the range).
  # Start from these weights instead of a random init ('' = random): a workdir (its latest
  # checkpoint), a checkpoints/<step> folder, or the output of `python -m dssr_jax.convert`. The
  # network must be the same (model fields); the run gets a fresh optimizer state, step 0 and its
  # own workdir. A run resuming from its own checkpoint ignores it. Local path or URL (gs://...).
  t.init_from = ''
  t.max_bad_steps = 20  # Stop after this many consecutive steps with a non-finite loss or gradient.
  t.profile_steps = 0  # >0: capture a profiler trace of this many steps once, after warm-up.
  return t


def get_data_config() -> ml_collections.ConfigDict:
  """Training data and its on-the-fly degradation (docs/design.md sections 2-3; dssr_jax/input_pipeline.py)."""
  d = ml_collections.ConfigDict()
  # Where HR images come from: 'embedded' (the photos in the scikit-image wheel, no download;
  # demo/tests), 'folders' (image files under `folders`, recursive) or 'tfds' (a TFDS dataset
  # prepared in array_record format, read with random access).
  d.source = 'embedded'
  d.embedded_holdout = True  # Leave input_pipeline.EMBEDDED_HOLDOUT out of embedded training.
  # One or more folders, mixed (e.g. ('DIV2K_train_HR', 'Flickr2K_HR') for the paper), local or
  # URLs (gs://bucket/DIV2K_train_HR). A missing folder is an error naming it.
  d.folders = ()
  d.tfds_name = 'div2k/bicubic_x2'  # DIV2K; its 'hr' images are the same at every bicubic_xN.
  d.tfds_split = 'train'
  d.tfds_data_dir = ''  # '' = TFDS's default data dir.
  d.tfds_image_key = 'hr'
  d.patch_size = 64  # LR patch side; the HR crop is patch_size * scale.
  # 'iso': 21x21 isotropic Gaussian + MATLAB bicubic down (paper's main setting); 'aniso': the
  # KernelGAN/DIV2KRK anisotropic kernels + subsampling (x2, x4 only), centred half a pixel off
  # so that the kept pixel is the centre of its s x s block, as in DIV2KRK.
  d.degradation = 'iso'
  # Isotropic sigma range (lo, hi); None -> the scale's training range (0.2 to 2.0/3.0/4.0).
  d.sigma_range = None
  d.noise_std = 0.0  # Std of additive Gaussian noise on the LR, on the [0, 1] scale (paper: 0).
  d.shuffle = True  # A new permutation of the images each epoch (False: images in order).
  # Crops cut from each decoded image (one visit of it). Decoding a 2K PNG costs ~60 ms of CPU,
  # cropping and degrading a patch 1-5 ms, so one crop per decode feeds ~35 patches/s on two cores
  # and 16 feed 240-440 (docs/data.md). The visits of a block of `image_window` (rounded up to a
  # multiple of the global batch) give their crops in k rounds: a batch mixes the images of B
  # visits, and the k crops of a visit fall within image_window * k / B steps. Memory grows
  # with image_window * patches_per_image (crops waiting their round). 16 crops per image per epoch
  # against the ~40 that 480x480 sub-images at stride 240 give a 2K image (docs/data.md).
  d.patches_per_image = 16
  d.image_window = 32
  d.num_parallel_calls = -1  # Examples decoded/degraded in parallel (-1: tf.data AUTOTUNE).
  d.prefetch = 2  # Batches prefetched (-1: AUTOTUNE, 0: none).
  return d


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = get_model_config()
  config.train = get_train_config()
  config.data = get_data_config()
  return config


def get_paper_config(scale: int, degradation: str) -> ml_collections.ConfigDict:
  """The paper's recipe for one scale and setting ('iso': setting 1, 'aniso': setting 2).

  HR training images: DIV2K train + Flickr2K under data/ (relative to the working directory).
  Both validate at each checkpoint on Set5 under data/benchmark: setting 1 under Gaussian8,
  setting 2 on a DIV2KRK-style set made from it (docs/design.md section 2.4).
  """
  config = get_config()
  config.model.scale = scale
  config.data.source = 'folders'
  config.data.folders = ('data/DIV2K_train_HR', 'data/Flickr2K_HR')
  config.data.degradation = degradation
  config.train.val_dir = 'data/benchmark/Set5'
  return config
