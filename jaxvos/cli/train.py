"""`python -m jaxvos train`: not built yet (the training issue)."""

from jaxvos.cli import not_built

DESCRIPTION = "Not built yet (the training issue)."


ACCEPTS_EXTRA = True


def add_arguments(parser):
  del parser


def run(args):
  del args
  return not_built.report("train", "the training issue")
