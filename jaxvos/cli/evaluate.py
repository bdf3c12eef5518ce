"""`python -m jaxvos evaluate`: not built yet (the J&F metric issue)."""

from jaxvos.cli import not_built

DESCRIPTION = "Not built yet (the J&F metric issue)."


ACCEPTS_EXTRA = True


def add_arguments(parser):
  del parser


def run(args):
  del args
  return not_built.report("evaluate", "the J&F metric issue")
