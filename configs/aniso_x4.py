r"""Setting 2 (anisotropic Gaussian blur, direct down; DIV2KRK-style), x4: the paper's recipe.

  python train.py --config=configs/aniso_x4.py --workdir=workdirs/aniso_x4

Expects DIV2K train + Flickr2K HR images in data/DIV2K_train_HR and data/Flickr2K_HR (relative to
the working directory; override with --config.data.folders). Validation during training is
Gaussian8 (isotropic), which does not fit this setting: it is off; score with eval.py on DIV2KRK.

480k steps, batch 8, LR patch 64, Adam(0.9, 0.99), 2e-4 halved every 80k, alpha 1, T 4.
"""

from configs import default


def get_config():
  return default.get_paper_config(4, 'aniso')
