r"""Setting 1 (isotropic Gaussian blur, bicubic down), x4: the paper's recipe (DESIGN.md sections 2-3).

  python train.py --config=configs/iso_x4.py --workdir=workdirs/iso_x4

480k steps, batch 8, LR patch 64, Adam(0.9, 0.99), 2e-4 halved every 80k, alpha 1, T 4.
Validation: Set5 under Gaussian8 at x4, on two images at two kernel widths every checkpoint.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.scale = 4
  return config
