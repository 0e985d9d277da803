r"""Setting 2 (anisotropic Gaussian blur, direct down; DIV2KRK-style), x4: the paper's recipe.

  python train.py --config=configs/aniso_x4.py --workdir=workdirs/aniso_x4

480k steps, batch 8, LR patch 64, Adam(0.9, 0.99), 2e-4 halved every 80k, alpha 1, T 4.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.scale = 4
  return config
