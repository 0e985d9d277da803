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
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

# What a user's input can cause. Everything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


def fail(message: str) -> None:
  """Ends the command with `error: message` and exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _flag_error(e: Exception, argv: Sequence[str]) -> str:
  """One line for absl's flag errors and ml_collections' config errors (several lines each)."""
  cause = e.__cause__ or e.__context__
  if isinstance(e, AttributeError) and isinstance(cause, KeyError):
    # An override of a field the config does not have: "'num_step'\nDid you mean ...?".
    field, *hint = str(cause.args[0]).splitlines()
    flag = next((a.split('=')[0] for a in argv[1:] if a.startswith('--config')
                 and field.strip("'") in a.split('=')[0].split('.')), '--config')
    hint = ''.join(f'; {h[:1].lower()}{h[1:]}' for h in hint)  # Did you mean ...?
    return f'{flag}: the config has no field {field}{hint}'
  lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
  if isinstance(e, OSError):  # A config file that does not load; the reason is the last line.
    return f'--config: {lines[-1]}'
  return lines[0] if len(lines) == 1 else f'{lines[0]} {lines[-1]}'


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
    fail(_flag_error(e, argv))
  raise AssertionError('unreachable')


class _QuietLibraries(std_logging.Filter):
  """Drops other libraries' INFO records (orbax logs a dozen per checkpoint opened), but for the
  training metrics that clu's logging writer prints."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/dssr_jax/' in record.pathname or (
        record.pathname.endswith(('train.py', 'eval.py', '/clu/metric_writers/logging_writer.py')))


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
