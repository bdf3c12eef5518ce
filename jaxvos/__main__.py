"""`python -m jaxvos <command>`: the same as the `jaxvos` command."""

from jaxvos.cli.main import main

if __name__ == "__main__":
  raise SystemExit(main())
