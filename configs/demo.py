r"""`make demo`: a small DSSR trained on the photos inside the scikit-image wheel (no download).

  python train.py --config=configs/demo.py --workdir=workdirs/demo

x2, isotropic Gaussian blur (sigma 0.2-2.0) + MATLAB bicubic down, as the paper's setting 1. Two
photos (input_pipeline.EMBEDDED_HOLDOUT) are held out; at the end the demo prints bicubic vs DSSR
Y-PSNR on them under Gaussian8 blur and saves a comparison image (dssr_jax/demo_report.py).
Sized to finish in about 10 minutes on 2 CPU cores; a higher learning rate than the paper's
because it trains for a few hundred steps, not 480k.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.update(dict(scale=2, channels=16, struct_blocks=2, recon_blocks=1, num_steps=2))
  config.data.source = 'embedded'
  config.data.patch_size = 16
  config.train.update(dict(
      num_steps=400, batch_size=8, learning_rate=1e-3, lr_boundaries=(300,), log_every=50,
      checkpoint_every=100, keep_checkpoints=2))
  return config
