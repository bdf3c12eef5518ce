"""The command-line contract: every command is listed, and unbuilt ones say so without a traceback."""

import subprocess
import sys

from jaxvos.cli import main as cli_main

CONTRACT = ("segment", "evaluate", "train", "convert", "bench")


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jaxvos", *args], capture_output=True, text=True,
                        cwd=cli_main.__file__.rsplit("/jaxvos/", 1)[0], timeout=300)


def test_help_lists_the_contract_commands():
  result = run_cli("--help")
  assert result.returncode == 0
  for command in CONTRACT:
    assert f"    {command} " in result.stdout
