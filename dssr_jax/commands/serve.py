r"""Serves the upscaling page (`dssr_jax.app`) on this machine.

  python -m dssr_jax.app --checkpoint=WORKDIR [--port=7860] [--host=127.0.0.1] \
      [--max_memory_gb=4] [--overlap=32] [--dtype=bfloat16]

Loads the checkpoint and compiles the network once, then serves until Ctrl-C. The page's file is
byte-identical to `python -m dssr_jax.infer` given the same --max_memory_gb and --overlap.
(Not named `commands/app.py`: `commands` binds absl's `app`, which a submodule of that name would
replace.)
"""

from __future__ import annotations

import socket
import tempfile
from typing import Sequence

from absl import flags

from dssr_jax import commands

FLAGS = flags.FLAGS

flags.DEFINE_string('checkpoint', None, 'Workdir, its checkpoints/ folder, or one '
                    'checkpoints/<step> folder.', required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_integer('port', 7860, 'Port to serve on.', lower_bound=1, upper_bound=65535)
flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface; '
                    'the page has no login).')
flags.DEFINE_float('max_memory_gb', None, 'Memory budget of one pass in GB (10^9 bytes); '
                   'default: half the available RAM on CPU, 80% of the device memory on GPU/TPU.')
flags.DEFINE_integer('overlap', 32, 'LR pixels shared by neighbouring tiles.', lower_bound=0)
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], "Compute dtype (default: the "
                  "checkpoint's).")
flags.DEFINE_string('jax_cache_dir', commands.CACHE_DIR, 'JAX persistent compilation cache '
                    '("" to disable).')


def check_port(host: str, port: int) -> None:
  """Raises ValueError when nothing can listen on host:port now: before the minutes of loading
  and compiling, not after them."""
  try:
    with socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET) as s:
      s.bind((host, port))
  except OSError as e:
    raise ValueError(f'cannot listen on {host}:{port}: {e.strerror or e} (another server there? '
                     'pass --port)') from None


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise ValueError(f'unexpected arguments {argv[1:]} (the page takes its images by upload)')
  check_port(FLAGS.host, FLAGS.port)
  from dssr_jax import app  # pylint: disable=g-import-not-at-top
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  commands.use_compilation_cache(FLAGS.jax_cache_dir)
  requested = {'dtype': FLAGS.dtype} if FLAGS.dtype else None
  loaded = checkpoint.load_model(FLAGS.checkpoint, FLAGS.step, requested)
  engine = app.make_engine(loaded, max_memory_gb=FLAGS.max_memory_gb, overlap=FLAGS.overlap)
  with tempfile.TemporaryDirectory(prefix='dssr-app-') as work_dir:
    page = app.build(engine, work_dir)
    # The line tests and scripts wait for; Gradio's own banner follows.
    print(f'Serving DSSR x{engine.scale} (checkpoint step {loaded.step}) on '
          f'http://{FLAGS.host}:{FLAGS.port}', flush=True)
    page.launch(server_name=FLAGS.host, server_port=FLAGS.port, show_error=True,
                allowed_paths=[work_dir])


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
