"""`python -m jaxvos convert <direction>`: PyTorch checkpoints <-> jaxvos checkpoint directories.

    python -m jaxvos convert from-torch --family stcn --checkpoint stcn.pth --out checkpoints/stcn
    python -m jaxvos convert from-torch --family resnet50 --checkpoint resnet50-19c8e357.pth --out ckpt/r50
    python -m jaxvos convert to-torch --checkpoint checkpoints/stcn --out stcn_from_jaxvos.pth

A jaxvos checkpoint is a directory (model.json + variables.safetensors) that `segment --checkpoint` accepts.
Keys or shapes that do not fit the model end the command with one line naming the first offending keys.
"""

import sys

DESCRIPTION = ("Import PyTorch checkpoints (official STCN, torchvision ResNet-18/50 ImageNet weights) as jaxvos "
               "checkpoint directories, and export jaxvos checkpoints as PyTorch state dicts.")


def add_arguments(parser):
  directions = parser.add_subparsers(dest="direction", metavar="<direction>", required=True)
  sub = directions.add_parser("from-torch", help="a PyTorch .pth state dict -> a jaxvos checkpoint directory",
                              description="Import a PyTorch state dict (official STCN checkpoints, including the "
                              "single-object variant; torchvision ResNet weights as a backbone).")
  sub.add_argument("--family", required=True, choices=("stcn", "resnet18", "resnet50"),
                   help="what the checkpoint holds")
  sub.add_argument("--checkpoint", required=True, help="the PyTorch file (.pth)")
  sub.add_argument("--out", required=True, help="the jaxvos checkpoint directory to write (must not exist or "
                   "be empty)")
  sub.set_defaults(run_direction=_from_torch)
  sub = directions.add_parser("to-torch", help="a jaxvos checkpoint directory -> a PyTorch .pth state dict",
                              description="Export a jaxvos checkpoint as a state dict that the PyTorch "
                              "reference model loads with load_state_dict.")
  sub.add_argument("--checkpoint", required=True, help="the jaxvos checkpoint directory")
  sub.add_argument("--out", required=True, help="the PyTorch file to write (must not exist)")
  sub.set_defaults(run_direction=_to_torch)


def run(args) -> int:
  return args.run_direction(args)


def _from_torch(args) -> int:
  # Imported here so that `python -m jaxvos --help` does not start JAX.
  from jaxvos.convert import from_torch, io  # pylint: disable=g-import-not-at-top
  family, variables, notes = from_torch.import_torch(args.family, args.checkpoint)
  for note in notes:
    print(f"note: {note}", file=sys.stderr)
  io.save_model(args.out, family, variables, source=args.checkpoint, notes=notes)
  print(f"wrote {args.out}: {family.name} ({_count(variables)})")
  return 0


def _to_torch(args) -> int:
  from jaxvos.convert import from_torch, io  # pylint: disable=g-import-not-at-top
  family, variables = io.load_model(args.checkpoint)
  state_dict = from_torch.export_state_dict(family, variables, args.checkpoint)
  from_torch.write_state_dict(state_dict, args.out)
  print(f"wrote {args.out}: {family.name}, {len(state_dict)} keys ({_count(variables)})")
  return 0


def _count(variables) -> str:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.rules import flatten_variables  # pylint: disable=g-import-not-at-top
  sizes = {}
  for path, value in flatten_variables(variables).items():
    sizes[path[0]] = sizes.get(path[0], 0) + int(np.size(value))
  return ", ".join(f"{size:,} {collection}" for collection, size in sorted(sizes.items(), reverse=True))
