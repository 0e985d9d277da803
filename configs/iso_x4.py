r"""Setting 1 (isotropic Gaussian blur, bicubic down), x4: the paper's recipe (docs/design.md sections 2-3).

  python train.py --config=configs/iso_x4.py --workdir=workdirs/iso_x4

Expects DIV2K train + Flickr2K HR images in data/DIV2K_train_HR and data/Flickr2K_HR and Set5 HR in
data/benchmark/Set5 (relative to the working directory); point elsewhere with e.g.
`--config.data.folders="('/x/DIV2K_train_HR', '/x/Flickr2K_HR')" --config.train.val_dir=/x/Set5`.

480k steps, batch 8, LR patch 64, Adam(0.9, 0.99), 2e-4 halved every 80k, alpha 1, T 4.
Validation: Set5 under Gaussian8 at x4, on two images at two kernel widths every checkpoint.
"""

from configs import default


def get_config():
  return default.get_paper_config(4, 'iso')
