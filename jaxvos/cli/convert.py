"""`jaxvos convert <direction>`: PyTorch checkpoints <-> jaxvos checkpoint directories.

    jaxvos convert from-torch --family stcn --checkpoint stcn.pth --out checkpoints/stcn
    jaxvos convert from-torch --family resnet50 --checkpoint resnet50-19c8e357.pth --out ckpt/r50
    jaxvos convert to-torch --checkpoint checkpoints/stcn --out stcn_from_jaxvos.pth
    jaxvos convert to-onnx --checkpoint checkpoints/stcn --out stcn_onnx --input-hw 480x854 --objects 4
    jaxvos convert run-onnx --model stcn_onnx --frames frames/ --masks 00000.png --out masks/

to-onnx exports every registered family (stcn, stm, swiftnet, gam, spvos); an operation the exporter cannot
lower ends the command with one line naming the family and the primitive.

A jaxvos checkpoint is a directory (model.json + variables.safetensors) that `segment --checkpoint` accepts.
Keys or shapes that do not fit the model end the command with one line naming the first offending keys.
"""

import os
import sys

from data_pipelines.errors import DataError

DESCRIPTION = """Import PyTorch checkpoints (official STCN, torchvision ResNet-18/50 ImageNet weights) as jaxvos
checkpoint directories, and export jaxvos checkpoints as PyTorch state dicts. Needs PyTorch:
pip install 'jaxvos[torch]'.

  jaxvos convert from-torch --family stcn --checkpoint stcn.pth --out checkpoints/stcn
  jaxvos convert to-torch --checkpoint checkpoints/stcn --out stcn_from_jaxvos.pth"""


def add_arguments(parser):
  directions = parser.add_subparsers(dest="direction", metavar="<direction>", required=True)
  sub = directions.add_parser("from-torch", help="a PyTorch .pth state dict -> a jaxvos checkpoint directory",
                              formatter_class=parser.formatter_class,
                              description="Import a PyTorch state dict (official STCN checkpoints, including the "
                              "single-object variant; torchvision ResNet weights as a backbone).")
  from jaxvos.convert import families  # pylint: disable=g-import-not-at-top  (the registry's names)
  sub.add_argument("--family", choices=families.names(), metavar="NAME",
                   help="what the checkpoint holds: a registered model or a backbone, "
                   f"{', '.join(families.names())} (not needed for a file that to-torch wrote: it names its "
                   "family)")
  sub.add_argument("--checkpoint", required=True, metavar="FILE", help="the PyTorch file (.pth)")
  sub.add_argument("--out", required=True, metavar="DIR", help="the jaxvos checkpoint directory to write (new or "
                   "empty)")
  sub.set_defaults(run_direction=_from_torch)
  sub = directions.add_parser("to-torch", help="a jaxvos checkpoint directory -> a PyTorch .pth state dict",
                              formatter_class=parser.formatter_class,
                              description="Export a jaxvos checkpoint as a PyTorch file: by default (STCN, STM) "
                              "the state dict with its family and config, which jaxvos.torch.load runs and "
                              "from-torch reads back; with --layout official the bare state dict that the "
                              "official code loads with load_state_dict.")
  sub.add_argument("--checkpoint", required=True, metavar="DIR", help="the jaxvos checkpoint directory")
  sub.add_argument("--out", required=True, metavar="FILE", help="the PyTorch file to write (must not exist)")
  sub.add_argument("--layout", choices=("twin", "official"),
                   help="twin (the default for STCN and STM): the state dict with the family name and config, "
                   "for jaxvos.torch.load and from-torch; official: the bare state dict of the official code "
                   "(always, for resnet18/50 backbones)")
  sub.set_defaults(run_direction=_to_torch)
  _add_onnx_directions(directions, parser)


def run(args) -> int:
  return args.run_direction(args)


def _from_torch(args) -> int:
  # Imported here so that `jaxvos --help` does not start JAX.
  from jaxvos.convert import from_torch, io, to_torch_twins  # pylint: disable=g-import-not-at-top
  twin = to_torch_twins.read_twin(args.checkpoint)
  if twin is not None:
    family, variables, notes = to_torch_twins.import_twin(twin, args.family, args.checkpoint)
  elif args.family is None:
    raise DataError(args.checkpoint, "is a bare state dict: say what it holds with --family")
  else:
    family, variables, notes = from_torch.import_torch(args.family, args.checkpoint)
  for note in notes:
    print(f"note: {note}", file=sys.stderr)
  io.save_model(args.out, family, variables, source=args.checkpoint, notes=notes)
  print(f"wrote {args.out}: {family.name} ({_count(variables)})")
  return 0


def _to_torch(args) -> int:
  from jaxvos.convert import io, to_torch_twins  # pylint: disable=g-import-not-at-top
  family, variables = io.load_model(args.checkpoint)
  layout, num_keys = to_torch_twins.write(args.out, family, variables, args.layout, args.checkpoint)
  print(f"wrote {args.out}: {family.name}, {layout} layout, {num_keys} keys ({_count(variables)})")
  return 0


def _count(variables) -> str:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.rules import flatten_variables  # pylint: disable=g-import-not-at-top
  sizes = {}
  for path, value in flatten_variables(variables).items():
    sizes[path[0]] = sizes.get(path[0], 0) + int(np.size(value))
  return ", ".join(f"{size:,} {collection}" for collection, size in sorted(sizes.items(), reverse=True))


def _add_onnx_directions(directions, parser) -> None:
  sub = directions.add_parser("to-onnx", help="a jaxvos checkpoint directory -> ONNX graphs (init, step)",
                              formatter_class=parser.formatter_class,
                              description="Export the first-frame memory initialisation and the per-frame step "
                              "(state in, state out) of any registered family as ONNX graphs at a fixed model size "
                              "and object count, with jax2onnx (pip install 'jaxvos[onnx]'); run them with "
                              "`convert run-onnx` or `segment --backend onnx`.")
  sub.add_argument("--checkpoint", required=True, metavar="DIR", help="the jaxvos checkpoint directory")
  sub.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
  sub.add_argument("--input-hw", default="480x854", metavar="HxW", help="the videos' frame size (default "
                   "480x854, DAVIS 480p); with --size it fixes the model size the graphs take")
  sub.add_argument("--size", type=int, default=480, help="the shorter side frames are resized to (default 480; "
                   "-1 keeps the frame size), then padded to multiples of 16, as in segment")
  sub.add_argument("--objects", type=int, default=4, help="object slots of the graphs (default 4): videos with "
                   "up to this many objects run; unused slots change nothing")
  sub.set_defaults(run_direction=_to_onnx)
  sub = directions.add_parser("run-onnx", help="segment a video with exported ONNX graphs (onnxruntime, NumPy)",
                              formatter_class=parser.formatter_class,
                              description="Segment a video with a model exported by `convert to-onnx`, through "
                              "onnxruntime and NumPy alone; inputs, outputs and object handling as in segment.")
  sub.add_argument("--model", required=True, metavar="DIR", help="the folder that to-onnx wrote")
  sub.add_argument("--frames", required=True, metavar="DIR|VIDEO", help="a folder of frames or a video file")
  sub.add_argument("--masks", required=True, metavar="DIR|PNG", help="a folder of PNG masks named like the "
                   "frames, or one PNG for the first frame")
  sub.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty, unless --overwrite)")
  sub.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
  sub.set_defaults(run_direction=_run_onnx)


def _to_onnx(args) -> int:
  try:
    h, w = (int(n) for n in args.input_hw.lower().split("x"))
  except ValueError:
    raise DataError("--input-hw", f"{args.input_hw!r}: give the frame size as HEIGHTxWIDTH, e.g. 480x854") from None
  from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
  from jaxvos.export import geometry, to_onnx  # pylint: disable=g-import-not-at-top
  family, variables = io.load_model(args.checkpoint)
  try:
    spec = to_onnx.ExportSpec(geometry.plan_geometry((h, w), args.size).model_hw, args.objects, args.size)
  except ValueError as error:
    raise DataError(args.checkpoint, str(error)) from None
  to_onnx.export(family, variables, args.out, spec, source=args.checkpoint)
  mh, mw = spec.model_hw
  print(f"wrote {args.out}: {family.name} at {mw}x{mh} with {spec.objects} object slots (init.onnx, step.onnx)")
  return 0


def _run_onnx(args) -> int:
  from jaxvos.cli import clips, segment  # pylint: disable=g-import-not-at-top
  from jaxvos.export import onnx_runner  # pylint: disable=g-import-not-at-top
  clip = clips.read_clip(args.frames, args.masks)
  if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
    raise DataError(args.out, "folder is not empty; choose a new folder, or pass --overwrite")
  runner = onnx_runner.OnnxSegmenter(args.model)
  try:
    runner.check(clip.frame_hw, clip.annotations)
  except ValueError as error:  # the video does not fit the exported graphs (size, object count)
    raise DataError(args.model, str(error)) from None
  progress = segment.Progress(len(clip.frame_names), 1)
  staging = segment.staging_path(args.out)  # beside --out: a failed run leaves nothing behind
  segment.segment_clip(runner, clip, args.out, staging=staging, overlay_path=None, progress=progress)
  progress.finish(args.out)
  return 0
