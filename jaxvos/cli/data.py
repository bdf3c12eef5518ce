"""`python -m jaxvos data ...`: placeholder until the data commands land (this commit builds the readers)."""

from jaxvos.cli import not_built

DESCRIPTION = "Dataset tools."


ACCEPTS_EXTRA = True


def add_arguments(parser):
  del parser


def run(args):
  del args
  return not_built.report("data", "in progress")
