"""Shared behaviour of commands that are part of the command-line contract but not built yet."""

import sys


def report(command: str, issue: str) -> int:
  print(f"error: `jaxvos {command}` is not built yet ({issue}); see README.md for what works today",
        file=sys.stderr)
  return 2
