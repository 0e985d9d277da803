"""`python -m dssr_jax.infer` is the upscaling command (dssr_jax/commands/upscale.py, dssr-upscale)."""

import runpy

if __name__ == '__main__':
  runpy.run_module('dssr_jax.commands.upscale', run_name='__main__', alter_sys=True)
