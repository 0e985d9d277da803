"""The command-line programs of dssr-jax, one module each, apart from the library they call.

A command module holds its usage text (its docstring), its absl flags, defined at import as in any
absl program (a command module is imported only to be run: two commands share flag names), and
`main(argv) -> int | None`. It ends with

  def run() -> None:  # the console script (pyproject.toml)
    commands.run(main)

  if __name__ == '__main__':
    run()

`run` gives every command the same behaviour:

- a mistake of the user's (a bad flag value, a config typo, a missing file, an output that
  exists) is one line `error: ...` on stderr and exit status 2, never a traceback or the whole
  usage text;
- `--help` prints the usage text and the command's own flags, exit status 0;
- the libraries' INFO chatter (orbax's per-checkpoint lines) stays off the console.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Callable, Mapping, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging

Main = Callable[[list[str]], 'int | None']

# JAX's persistent compilation cache: every new image size compiles once, later runs load it.
CACHE_DIR = os.path.join('~', '.cache', 'dssr_jax', 'xla')

# What a user's input can cause. Everything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)

_HELP = ('--help', '-h', '-?', '--helpshort')


def error(message: str) -> None:
  """Prints `error: message` on stderr (a command that goes on after one bad input)."""
  print(f'error: {message}', file=sys.stderr)


def fail(message: str) -> NoReturn:
  """Ends the command with `error: message` and exit status 2."""
  error(message)
  sys.exit(2)


def no_arguments(argv: Sequence[str]) -> None:
  """Refuses positional arguments (for commands that take flags only)."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')


def dispatch(argv: Sequence[str], table: Mapping[str, Callable[[], int | None]]) -> int | None:
  """Runs `table[argv[1]]()`: for commands whose one positional argument says what to do."""
  if len(argv) != 2 or argv[1] not in table:
    got = ' '.join(argv[1:]) or 'nothing'
    raise app.UsageError(f'give one of {", ".join(table)}; got {got}')
  return table[argv[1]]()


def use_compilation_cache(directory: str) -> None:
  """Turns on JAX's persistent compilation cache in `directory` ('' leaves it off)."""
  if directory:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(directory))


def _print_help(main: Main) -> NoReturn:
  module = main.__module__
  # absl files the flags of a module run as __main__ under the program's path.
  key = sys.argv[0] if module == '__main__' else module
  doc = (sys.modules[module].__doc__ or '').strip('\n')
  own = flags.FLAGS.module_help(key).strip().splitlines()[1:]
  print(doc + ('\n\nflags:\n' + '\n'.join(own) if own else ''))
  sys.exit(0)


def _flag_parser(main: Main) -> Callable[[list[str]], list[str]]:
  """absl's flag parsing, with our `--help` and one line for a bad flag or config."""

  def parse(argv: list[str]) -> list[str]:
    options = argv[1:argv.index('--')] if '--' in argv else argv[1:]
    if any(a in _HELP for a in options):
      _print_help(main)
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
      # config file that does not exist) both end up here.
      fail(_flag_error(e, argv))

  return parse


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


# orbax warns, on every checkpoint it opens for reading, that it opened it for reading.
_NOT_NEWS = ('Given directory is read only', 'CheckpointManagerOptions.read_only=True')


class _QuietLibraries(std_logging.Filter):
  """Drops other libraries' INFO records (orbax logs a dozen per checkpoint opened), but for the
  training metrics that clu's logging writer prints."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    # clu's logging writer prints the training metrics: train.py's progress.
    if '/dssr_jax/' in record.pathname or record.pathname.endswith(
        ('train.py', 'eval.py', 'reproduce.py', '/clu/metric_writers/logging_writer.py')):
      return True
    return record.levelno >= std_logging.WARNING and not record.getMessage().startswith(_NOT_NEWS)


def run(main: Main) -> None:
  """Runs an absl `main` with dssr-jax's flag parsing, help, error lines and quiet logging."""

  def wrapped(argv: list[str]) -> int | None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    try:
      return main(argv)
    except (app.UsageError, *USER_ERRORS) as e:
      fail(str(e))

  app.run(wrapped, flags_parser=_flag_parser(main))
