r"""`make demo`: a small DSSR trained on the photos inside the scikit-image wheel (no download).

  python train.py --config=configs/demo.py --workdir=workdirs/demo
  python -m dssr_jax.demo_report --workdir=workdirs/demo

x2, isotropic Gaussian blur (sigma 0.2-2.0) + MATLAB bicubic down, as the paper's setting 1
(docs/design.md section 3.1). Two photos (input_pipeline.EMBEDDED_HOLDOUT) are held out; the report
prints bicubic vs DSSR Y-PSNR on them under Gaussian8 blur and saves a comparison image.

Sized for about five minutes on 2 CPU cores: a quarter of the paper's width (C = 32), 4 + 2 blocks,
T = 3, LR patches of 16, and a learning rate five times the paper's (1e-3), halved once (at step
1,050), because it trains for 1,400 steps instead of 480k.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.update(dict(scale=2, channels=32, struct_blocks=4, recon_blocks=2, num_steps=3))
  config.data.source = 'embedded'
  config.data.patch_size = 16
  config.train.update(dict(
      num_steps=1400, batch_size=8, learning_rate=1e-3, lr_boundaries=(1050,), log_every=100,
      checkpoint_every=500, keep_checkpoints=2))
  return config
