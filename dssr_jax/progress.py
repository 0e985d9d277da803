"""Progress bars that show on a terminal and stay out of logs and pipes."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar('T')


def progress(items: Iterable[T], total: int | None = None, desc: str = '',
             unit: str = 'it') -> Iterable[T]:
  """A tqdm bar on a terminal; elsewhere (logs, pipes) the items as they are, without `\\r` frames."""
  if not sys.stderr.isatty():
    return items
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
