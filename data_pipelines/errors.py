"""One error and one warning type for bad input: a single line that names the offending file."""

import os
import warnings


class DataError(ValueError):
  """Input that cannot be used as it is. `str(error)` is one line: `<path>: <what is wrong>`."""

  def __init__(self, path: str | os.PathLike, message: str):
    self.path = os.fspath(path)
    self.message = message
    super().__init__(f"{self.path}: {message}")


class DataWarning(UserWarning):
  """Input that was repaired safely (for example a mask a few pixels smaller than its frame)."""


def warn(path: str | os.PathLike, message: str) -> None:
  """Emits a one-line `DataWarning` naming `path`."""
  warnings.warn(f"{os.fspath(path)}: {message}", DataWarning, stacklevel=3)
