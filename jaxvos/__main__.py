"""`python -m jaxvos <command>`: the same as the `jaxvos` command."""

from jaxvos.cli.main import run

if __name__ == "__main__":
  run()
