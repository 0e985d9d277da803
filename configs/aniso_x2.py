r"""Setting 2 (anisotropic Gaussian blur, direct down; DIV2KRK-style), x2: the paper's recipe.

  python train.py --config=configs/aniso_x2.py --workdir=workdirs/aniso_x2

Expects DIV2K train + Flickr2K HR images in data/DIV2K_train_HR and data/Flickr2K_HR and Set5 HR in
data/benchmark/Set5 (relative to the working directory); point elsewhere with e.g.
`--config.data.folders="('/x/DIV2K_train_HR', '/x/Flickr2K_HR')" --config.train.val_dir=/x/Set5`.

480k steps, batch 8, LR patch 64, Adam(0.9, 0.99), 2e-4 halved every 80k, alpha 1, T 4.
Validation: a DIV2KRK-style set made from Set5 (seed 0, one anisotropic kernel per image, the
images `python -m dssr_jax.testsets div2krk --hr_dir=data/benchmark/Set5 --seed=0` writes), on
its first two images every checkpoint; its PSNR picks the best checkpoint, which is kept. Score the
result with eval.py on DIV2KRK.
"""

from configs import default


def get_config():
  return default.get_paper_config(2, 'aniso')
