"""`jaxvos <command> ...` (also `python -m jaxvos`): one sub-command per module in `jaxvos/cli/`.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`; a module that sets
`ACCEPTS_EXTRA = True` receives unparsed arguments in `args.extra` (e.g. `--config.KEY=VALUE`). Bad input
(`DataError`) ends the command with one line on stderr and exit status 2, never a traceback; running out of
memory is one line too (exit status 1).

Before anything imports JAX, `jaxvos.api.configure_jax` quiets XLA's C++ logs and turns on the persistent
compilation cache (`~/.cache/jaxvos/xla`; README, "Compilation cache"), so a second run of a command on the same
model and frame size starts in seconds instead of recompiling.
"""

import argparse
import importlib
import os
import sys
import textwrap
import warnings

from data_pipelines.errors import DataError, DataWarning
from jaxvos import api

# name -> (module in jaxvos.cli, one-line help). Modules are imported when the parser is built.
COMMANDS = {
    "segment": ("segment", "segment a video (or every sequence of a DAVIS root) from its objects' first masks"),
    "evaluate": ("evaluate", "DAVIS J&F of predicted masks against ground truth, with the official CSV files"),
    "train": ("train", "train a model from an experiments/<family>/<stage>.py config"),
    "convert": ("convert", "import and export checkpoints (PyTorch <-> jaxvos)"),
    "bench": ("bench", "speed and memory benchmarks"),
    "data": ("data", "inspect datasets, write synthetic videos, preview training clips"),
}
DESCRIPTION = ("Semi-supervised video object segmentation in JAX/Flax: segment the objects of a video from their "
               "first masks, score predictions with the DAVIS protocol, train and convert models. "
               "`jaxvos <command> --help` describes each command.")


def _format_warning(message, category, filename, lineno, line=None):
  """Warnings on one line: `warning: <message>` for bad input that was repaired, else `<Category>: <message>`."""
  del filename, lineno, line
  text = " ".join(str(message).split())
  return f"warning: {text}\n" if issubclass(category, DataWarning) else f"{category.__name__}: {text}\n"


class HelpFormatter(argparse.HelpFormatter):
  """Descriptions and epilogs keep their paragraphs: text paragraphs are re-wrapped to the terminal, indented
  ones (examples, tables) are kept as written."""

  def _fill_text(self, text, width, indent):
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    filled = [paragraph if paragraph.startswith(" ") else
              textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent)
              for paragraph in paragraphs]
    return "\n\n".join(filled)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxvos", description=DESCRIPTION, formatter_class=HelpFormatter)
  commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
  for name, (module_name, help_text) in COMMANDS.items():
    module = importlib.import_module(f"jaxvos.cli.{module_name}")
    sub = commands.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text),
                              formatter_class=HelpFormatter)
    module.add_arguments(sub)
    sub.set_defaults(run=module.run, accepts_extra=getattr(module, "ACCEPTS_EXTRA", False))
  return parser


def _out_of_memory(error: BaseException) -> str | None:
  """The one-line message for an out-of-memory error (host or device), or None for any other error."""
  if isinstance(error, MemoryError):
    return "out of host memory"
  text = str(error)
  if type(error).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and (
      "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text):
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"out of memory ({first[:200]})"
  return None


def main(argv: list[str] | None = None) -> int:
  api.configure_jax()
  warnings.formatwarning = _format_warning
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
  except Exception as error:  # pylint: disable=broad-except  (only out-of-memory is turned into one line)
    message = _out_of_memory(error)
    if message is None:
      raise
    print(f"error: {args.command}: {message}; try a smaller --size, fewer objects or frames per call, or a "
          "family with a fixed-size memory (gam)", file=sys.stderr)
    return 1


def run() -> None:
  """The `jaxvos` command: `main`, then exit with its status.

  A failed command may leave data-loading threads running; it leaves without the interpreter's teardown, which
  could crash in them and turn the one-line error into a segmentation fault.
  """
  code = main()
  if code:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  raise SystemExit(code)
