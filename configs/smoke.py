r"""A tiny network on the embedded photos, for tests: seconds per run on a CPU.

  python train.py --config=configs/smoke.py --workdir=/tmp/dssr_smoke
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.update(dict(scale=2, channels=8, struct_blocks=1, recon_blocks=1, num_steps=2))
  config.data.source = 'embedded'
  config.data.patch_size = 8
  config.data.num_parallel_calls = 2
  config.train.update(dict(num_steps=2, batch_size=8, log_every=1, checkpoint_every=100,
                           keep_checkpoints=2))
  return config
