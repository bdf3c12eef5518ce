"""`python -m jaxvos segment`: not built yet (the substrate and baselines issue)."""

from jaxvos.cli import not_built

DESCRIPTION = "Not built yet (the substrate and baselines issue)."


ACCEPTS_EXTRA = True


def add_arguments(parser):
  del parser


def run(args):
  del args
  return not_built.report("segment", "the substrate and baselines issue")
