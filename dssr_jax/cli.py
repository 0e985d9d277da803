"""What every dssr-jax command does the same way: progress, the compile cache."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar('T')

CACHE_DIR = os.path.join('~', '.cache', 'dssr_jax', 'xla')


def use_compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache in `directory` ('' leaves it off): every new image size
  compiles once, and later runs load it."""
  if directory:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(directory))


def progress(items: Iterable[T], total: int | None = None, desc: str = '',
             unit: str = 'it') -> Iterable[T]:
  """A tqdm bar on a terminal; elsewhere (logs, pipes) the items as they are, without `\\r` frames."""
  if not sys.stderr.isatty():
    return items
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
