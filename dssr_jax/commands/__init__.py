"""The command-line programs of dssr-jax, one module each, apart from the library they call.

A command module defines its absl flags at import and a `main(argv) -> int | None`; its
`if __name__ == '__main__':` line is `commands.run(main)`. `run` gives every command the same
behaviour:

- a mistake of the user's (a bad flag value, a config typo, a missing file, an output that
  exists) is one line `error: ...` on stderr and exit status 2, never a traceback or the whole
  usage text;
- the libraries' INFO chatter (orbax's per-checkpoint lines) stays off the console.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

# JAX's persistent compilation cache: every new image size compiles once, later runs load it.
CACHE_DIR = os.path.join('~', '.cache', 'dssr_jax', 'xla')

# What a user's input can cause. Everything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def fail(message: str) -> None:
  """Ends the command with `error: message` and exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: Sequence[str]) -> list[str]:
  try:
    rest = flags.FLAGS(argv)
    for name in flags.FLAGS:
      value = getattr(flags.FLAGS, name)
      # ml_collections keeps a config file that failed to load as a stand-in that raises its
      # error when first used: use it now, before main.
      if type(value).__name__ == '_ErrorConfig':
        value.to_dict()
    return rest
  except Exception as e:  # pylint: disable=broad-except
    # absl's own flag errors and ml_collections' config errors (a typo in --config.x.y, a
    # config file that does not exist) both end up here; their last lines say what is wrong.
    text = str(e).replace('\\n', '\n').replace("\\'", "'").strip('\'"')
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    fail(' '.join(lines[-3:]) if lines else type(e).__name__)
  raise AssertionError('unreachable')


class _QuietLibraries(std_logging.Filter):
  """Drops other libraries' INFO records (orbax logs a dozen per checkpoint opened)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/dssr_jax/' in record.pathname or (
        record.pathname.endswith(('train.py', 'eval.py')))


def run(main: Callable[[list[str]], int | None]) -> None:
  """Runs an absl `main` with dssr-jax's flag parsing, error lines and quiet logging."""

  def wrapped(argv: list[str]) -> int | None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    try:
      return main(argv)
    except app.UsageError as e:
      fail(str(e))
    except USER_ERRORS as e:
      fail(str(e))
    return None

  app.run(wrapped, flags_parser=_parse_flags)


def use_compilation_cache(directory: str) -> None:
  """Turns on JAX's persistent compilation cache in `directory` ('' leaves it off)."""
  if directory:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(directory))
