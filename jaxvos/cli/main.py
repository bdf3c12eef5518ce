"""`python -m jaxvos <command> ...`: one sub-command per module in `jaxvos/cli/`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; a module that sets
`ACCEPTS_EXTRA = True` receives unparsed arguments in `args.extra` (e.g. `--config.key=value`). Bad input (`DataError`) ends the
command with one line on stderr and exit status 2, never a traceback.

Compiled XLA programs are cached on disk (`~/.cache/jaxvos/xla`, or `$JAX_COMPILATION_CACHE_DIR`), so a second
run of a command on the same model and frame size starts in seconds instead of recompiling.
"""

import argparse
import importlib
import os
import sys
import warnings

from data_pipelines.errors import DataError, DataWarning

# name -> (module in jaxvos.cli, one-line help). Modules are imported lazily so `--help` stays fast.
COMMANDS = {
    "segment": ("segment", "segment a video (or every sequence of a DAVIS root) from its first-frame masks"),
    "evaluate": ("evaluate", "DAVIS J&F of predicted masks against ground truth, with the official CSV files"),
    "train": ("train", "train a model from an experiments/<family>/<stage>.py config"),
    "convert": ("convert", "import and export checkpoints (PyTorch <-> jaxvos)"),
    "bench": ("bench", "speed and memory benchmarks"),
    "data": ("data", "inspect datasets, write synthetic videos, preview training clips"),
}


def _format_warning(message, category, filename, lineno, line=None):
  del filename, lineno, line
  return f"warning: {message}\n" if issubclass(category, DataWarning) else f"{category.__name__}: {message}\n"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m jaxvos", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
  for name, (module_name, help_text) in COMMANDS.items():
    module = importlib.import_module(f"jaxvos.cli.{module_name}")
    sub = commands.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text))
    module.add_arguments(sub)
    sub.set_defaults(run=module.run, accepts_extra=getattr(module, "ACCEPTS_EXTRA", False))
  return parser


def _enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, unless the user chose a directory (an empty value turns it off)."""
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache_home, "jaxvos", "xla"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
  if "jax" in sys.modules:  # config flags read their environment variables when JAX is imported
    jax = sys.modules["jax"]
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"] or None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def main(argv: list[str] | None = None) -> int:
  warnings.formatwarning = _format_warning
  _enable_compilation_cache()
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  if extra and not getattr(args, "accepts_extra", False):
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  args.extra = extra
  try:
    return args.run(args)
  except DataError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
