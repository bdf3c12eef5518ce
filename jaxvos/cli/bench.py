"""`python -m jaxvos bench`: not built yet (the metric, substrate and training issues)."""

from jaxvos.cli import not_built

DESCRIPTION = "Not built yet (the metric, substrate and training issues)."


ACCEPTS_EXTRA = True


def add_arguments(parser):
  del parser


def run(args):
  del args
  return not_built.report("bench", "the metric, substrate and training issues")
