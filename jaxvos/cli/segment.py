"""`jaxvos segment`: segment a video, or every sequence of a DAVIS root, from its objects' first masks.

    jaxvos segment --model stcn-r18 --example judo --out judo_masks --overlay judo.mp4
    jaxvos segment --model stcn-r18 --frames clip.mp4 --masks masks/ --out clip_masks/
    jaxvos segment --checkpoint ckpt/ --frames frames/ --masks 00000.png --out masks/
    jaxvos segment --backend torch --checkpoint stcn.pth --frames frames/ --masks 00000.png --out masks/
    jaxvos segment --backend onnx --checkpoint stcn_onnx/ --frames frames/ --masks 00000.png --out masks/
    jaxvos segment --checkpoint ckpt/ --davis-root DAVIS --resolution 480p --imageset ImageSets/2017/val.txt \\
        --out results/          (every sequence: results/<seq>/<frame>.png)

Inputs are read and checked first (every frame decoded once, every mask read; `jaxvos.cli.clips`), then the
memory the run needs is estimated against what the device has (`jaxvos.inference.budget`), and only then is the
model built. Masks are written to a hidden folder beside --out and moved into --out when a clip is complete, so
a failed or interrupted run leaves no partial output.

`--backend` chooses what runs the model, through the same inputs, outputs and object handling: `jax` (jaxvos
itself, the default), `torch` (the family's PyTorch twin from a `.pth` that `convert to-torch` writes;
`jaxvos.export.torch_runner`) or `onnx` (the graphs that `convert to-onnx` writes, through onnxruntime;
`jaxvos.export.onnx_runner`). Checkpoints of another backend are refused with one line saying which to use.
"""

import os
import shutil
import sys
import time

import numpy as np

from data_pipelines import image_io, video_io
from data_pipelines.errors import DataError, warn
from jaxvos.cli import clips as clips_lib

DESCRIPTION = """Segment a video (a folder of frames or a video file), or every sequence of a DAVIS root, from the
masks of its objects where they first appear. Writes one indexed palette PNG per frame, named like the frame, at
its size, with the objects' ids (and optionally an mp4 or gif overlay). Inputs are checked before the model is
built; nothing is written until a clip is complete.

Frames: a folder of images (ordered by the numbers in their names) or a video file (mp4, mov, avi, mkv, webm; its
frames are named 00000, 00001, ...). Masks: one PNG for the first frame, or a folder of PNGs named like their
frames; ids are object ids (0 background, 255 ignored), and an object appears where its id is first seen. A grey
0/255 mask is one object (id 1)."""
# Progress lines are printed at most this often (seconds); on a terminal one line is updated in place.
PROGRESS_SECONDS = 2.0
# A pause this long (seconds) between two masks ends a burst of masks (see `Progress`).
BURST_PAUSE_SECONDS = 0.2
# Frames per compiled call of the engine on a CPU (see `make_segmenter`); accelerators use the engine's default.
CPU_CHUNK = 4
ENGINE_CHUNK = 16
DEFAULT_SIZE = 480
BACKENDS = ("jax", "torch", "onnx")
# What each backend's --checkpoint is, for messages.
CHECKPOINT_KINDS = {"jax": "a jaxvos checkpoint directory", "torch": "a PyTorch twin checkpoint (.pth, written by "
                    "`jaxvos convert to-torch`)", "onnx": "an exported ONNX folder (written by `jaxvos convert "
                    "to-onnx`)"}
Clip = clips_lib.Clip


class UsageError(Exception):
  """Options that do not fit together, or a run that cannot fit; reported as one line, exit status 2."""


def add_arguments(parser) -> None:
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  parser.epilog = "models (--model):\n\n" + "\n".join("  " + line for line in registry.describe().splitlines())
  parser.add_argument("--model", metavar="NAME", help="the model to build with random weights (see the list "
                      "below), or, with --checkpoint, the family it must hold; without --model and --checkpoint "
                      "the default model shipped with jaxvos runs (trained by jaxvos; see the README)")
  parser.add_argument("--checkpoint", metavar="DIR", help="a jaxvos checkpoint directory (`jaxvos convert` "
                      "and `jaxvos train` write them; without it the weights are random); with --backend torch the "
                      ".pth FILE that `convert to-torch` writes, with --backend onnx the folder that `convert "
                      "to-onnx` writes")
  parser.add_argument("--backend", default="jax", choices=BACKENDS, help="what runs the model: jax (jaxvos), "
                      "torch (its PyTorch twin) or onnx (onnxruntime); the same inputs, outputs and object "
                      "handling (default: jax)")
  parser.add_argument("--frames", metavar="DIR|VIDEO", help="a folder of frames or a video file")
  parser.add_argument("--masks", metavar="DIR|PNG", help="a folder of PNG masks named like the frames, or one PNG "
                      "for the first frame")
  parser.add_argument("--example", metavar="NAME", help="segment a clip bundled with jaxvos instead of --frames "
                      f"and --masks: {', '.join(clips_lib.EXAMPLES)}")
  parser.add_argument("--davis-root", metavar="DIR", help="segment every sequence of a DAVIS root instead "
                      "(with --imageset)")
  parser.add_argument("--resolution", default="480p", metavar="NAME",
                      help="the DAVIS resolution folder (default: 480p)")
  parser.add_argument("--imageset", metavar="FILE", help="the DAVIS ImageSets file listing the sequences, e.g. "
                      "ImageSets/2016/val.txt (relative to the root)")
  parser.add_argument("--out", required=True, metavar="DIR", help="the output folder (new or empty, unless "
                      "--overwrite)")
  parser.add_argument("--size", type=int, metavar="N", help="the model sees frames with this shorter side; -1 "
                      "keeps the frame size; outputs are always at the frame size (default: the size a checkpoint was "
                      "trained for, from its model.json, else 480; with --backend onnx, the size the graphs were "
                      "exported for)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="the network's compute dtype; bfloat16 is for GPUs and TPUs (default: float32)")
  parser.add_argument("--overlay", metavar="FILE", help="also write the frames with coloured masks to FILE.mp4 "
                      "or FILE.gif (at the video's frame rate; 24 frames per second for a folder of frames)")
  parser.add_argument("--stats", action="store_true", help="print the model's per-video statistics after each "
                      "clip: mean, min and max over the frames of what its family reports (memory fill, trigger "
                      "decisions, executed fraction of gated layers ...)")
  parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (files of the same "
                      "names are replaced) and replace an existing --overlay file")


def run(args) -> int:
  try:
    _check_options(args)
    _check_checkpoint(args.checkpoint, args.backend)
    clips = _read_clips(args)
    _check_outputs(args, clips)
    segmenter = _backend_segmenter(args, clips)
  except UsageError as error:
    print(f"error: segment: {error}", file=sys.stderr)
    return 2
  progress = Progress(sum(len(c.frame_names) for c in clips), len(clips))
  staging = staging_path(args.out)  # beside --out: a failed run never creates --out
  try:
    for clip in clips:
      out_dir = os.path.join(args.out, clip.name) if clip.name else args.out
      segment_clip(segmenter, clip, out_dir, staging=os.path.join(staging, clip.name), overlay_path=args.overlay,
                   progress=progress, stats=args.stats)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  progress.finish(args.out)
  return 0


def _check_options(args) -> None:
  """Refuses option combinations that cannot work, before anything is read."""
  if bool(args.frames or args.example) == bool(args.davis_root) or (args.frames and args.example):
    raise UsageError("give one of --frames (with --masks), --example or --davis-root (with --imageset)")
  if args.frames and not args.masks:
    raise UsageError("--frames needs --masks (a folder of PNG masks, or one PNG for the first frame)")
  if (args.davis_root or args.example) and args.masks:
    raise UsageError("--masks goes with --frames; a DAVIS root or an example has its own masks")
  if args.davis_root and args.overlay:
    raise UsageError("--overlay is for one video (--frames or --example), not a DAVIS root")
  if args.davis_root and not args.imageset:
    raise UsageError("--davis-root needs --imageset (e.g. ImageSets/2016/val.txt)")
  if args.size is not None and args.size != -1 and args.size < 16:
    raise UsageError(f"--size {args.size}: give a shorter side of at least 16 pixels, or -1 for the frame size")
  if args.backend != "jax" and not args.checkpoint:
    raise UsageError(f"--backend {args.backend} needs --checkpoint: {CHECKPOINT_KINDS[args.backend]}")
  if args.backend != "jax" and args.dtype != "float32":
    raise UsageError(f"--dtype {args.dtype} is for --backend jax; the {args.backend} backend runs float32")


def checkpoint_kind(path: str) -> str | None:
  """The backend a --checkpoint is for: a file is a PyTorch twin (torch), a folder with onnx.json an ONNX export
  (onnx), any other folder a jaxvos checkpoint (jax); None if nothing is there."""
  if os.path.isfile(path):
    return "torch"
  if os.path.isdir(path):
    return "onnx" if os.path.isfile(os.path.join(path, "onnx.json")) else "jax"
  return None


def _check_checkpoint(path: str | None, backend: str) -> None:
  """Refuses a missing --checkpoint, or one for another backend (saying which), before any input is read."""
  if not path:
    return
  kind = checkpoint_kind(path)
  if kind is None:
    raise DataError(path, f"not found (--checkpoint of --backend {backend}: {CHECKPOINT_KINDS[backend]})")
  if kind == backend:
    return
  fixes = {"torch": "run it with --backend torch, or import it with `jaxvos convert from-torch`",
           "onnx": "run it with --backend onnx",
           "jax": f"run it with --backend jax, or export it with `jaxvos convert to-{backend}`"}
  raise DataError(path, f"is {CHECKPOINT_KINDS[kind]}, not {CHECKPOINT_KINDS[backend]}: {fixes[kind]}")


def _backend_segmenter(args, clips: list[Clip]):
  """What segments the clips for --backend: anything with `segment_video(frames, annotations, stats)`."""
  if args.backend == "onnx":
    return _onnx_segmenter(args, clips)
  if args.backend == "jax" and not args.model and not args.checkpoint:
    from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
    args.checkpoint = convert_io.default_model()
    print(f"segment: the default model ({convert_io.read_meta(args.checkpoint)['family']}, trained by jaxvos; "
          "--model or --checkpoint for another)", file=sys.stderr)
  if args.size is None and args.backend == "jax" and args.checkpoint:
    from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
    args.size = convert_io.working_size(args.checkpoint)
  size = DEFAULT_SIZE if args.size is None else args.size
  if args.backend == "torch":
    from jaxvos.export import torch_runner  # pylint: disable=g-import-not-at-top
    runner = torch_runner.TorchSegmenter(args.checkpoint, size=size)
    _check_family(args.model, runner.family, args.checkpoint)
    return runner
  family, variables = load_model(args.model, args.checkpoint)
  check_memory(family, variables, clips, size, args.dtype)
  if variables is None:
    variables = random_variables(family)
  return make_segmenter(family, variables, size, args.dtype)


def _onnx_segmenter(args, clips: list[Clip]):
  """The ONNX runner, refusing up front a --size or a clip (frame size, object count) its graphs do not take."""
  from jaxvos.export import onnx_runner  # pylint: disable=g-import-not-at-top
  runner = onnx_runner.OnnxSegmenter(args.checkpoint)
  _check_family(args.model, runner.model.family, args.checkpoint)
  if args.size is not None and args.size != runner.model.size:
    raise UsageError(f"--size {args.size}: {args.checkpoint} was exported for --size {runner.model.size}; leave "
                     "--size out, or export again with `jaxvos convert to-onnx --size`")
  for clip in clips:
    try:
      runner.check(clip.frame_hw, clip.annotations)
    except ValueError as error:  # a video the exported graphs do not take (frame size, object count)
      raise DataError(args.checkpoint, f"{clip.name + ': ' if clip.name else ''}{error}") from None
  return runner


def _check_model_name(name: str | None) -> None:
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  if name and name not in registry.names():
    raise DataError("--model", f"unknown model {name!r}; choose one of {', '.join(registry.names())}")


def _check_family(name: str | None, family: str, checkpoint: str) -> None:
  """--model, where given, must be a known model of the checkpoint's family (`stcn` takes a file of `stcn-r18`)."""
  _check_model_name(name)
  if name and family.split("-")[0] != name.split("-")[0]:
    raise DataError(checkpoint, f"holds a {family} model, not {name} (--model)")


def _read_clips(args) -> list[Clip]:
  """Every clip of the run, read and checked (see `jaxvos.cli.clips`)."""
  if args.davis_root:
    return clips_lib.davis_clips(args.davis_root, args.resolution, args.imageset)
  frames, masks = clips_lib.example_paths(args.example) if args.example else (args.frames, args.masks)
  return [clips_lib.read_clip(frames, masks)]


def _check_outputs(args, clips: list[Clip]) -> None:
  """Refuses to write where user data could be lost: a non-empty --out, an input folder, an existing overlay."""
  out = os.path.realpath(args.out)
  inputs = [c.source for c in clips] + [args.masks or ""]
  if any(path and os.path.realpath(path) == out for path in inputs):
    raise DataError(args.out, "is an input folder; write the masks to a new folder")
  if os.path.exists(args.out) and not os.path.isdir(args.out):
    raise DataError(args.out, "exists and is not a folder")
  if os.path.isdir(args.out) and os.listdir(args.out) and not args.overwrite:
    raise DataError(args.out, "folder is not empty; choose a new folder, or pass --overwrite to replace the files "
                    "of the same names")
  if args.overlay:
    if not args.overlay.lower().endswith(video_io.OVERLAY_EXTENSIONS):
      raise DataError(args.overlay, "the overlay must be an .mp4 or a .gif file")
    if os.path.exists(args.overlay) and not args.overwrite:
      raise DataError(args.overlay, "exists; choose another name, or pass --overwrite to replace it")


def load_model(name: str | None, checkpoint: str | None):
  """(family, variables) of a checkpoint directory, or (family of `name`, None): random weights come later."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  _check_model_name(name)
  if checkpoint:
    from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
    family, variables = convert_io.load_model(checkpoint)
    _check_family(name, family.name, checkpoint)
    return family, variables
  return registry.build(name), None


def random_variables(family):
  """Random variables of `family`, with the warning that says what they are worth."""
  import jax  # pylint: disable=g-import-not-at-top
  print(f"warning: no --checkpoint: {family.name} runs with random weights (no trained weights exist on this "
        "machine), so its masks are meaningless except as a check of the pipeline", file=sys.stderr)
  start = time.monotonic()
  variables = family.init(jax.random.PRNGKey(0))
  print(f"segment: {family.name} initialised in {time.monotonic() - start:.1f} s", file=sys.stderr)
  return variables


def check_memory(family, variables, clips: list[Clip], size: int, dtype: str) -> None:
  """Refuses a run whose estimated memory exceeds what the device has, naming a --size that should fit."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import budget  # pylint: disable=g-import-not-at-top
  if variables is None:
    variables = jax.eval_shape(family.init, jax.random.PRNGKey(0))
  clip = max(clips, key=lambda c: c.frame_hw[0] * c.frame_hw[1])
  objects = max(c.num_objects for c in clips)
  chunk = CPU_CHUNK if jax.default_backend() == "cpu" else ENGINE_CHUNK
  plan = budget.plan(family, variables, clip.frame_hw, size, objects, chunk=chunk,
                     compute_dtype=precision.compute_dtype(dtype))
  if plan.fits:
    return
  h, w = clip.frame_hw
  way_out = f"--size {plan.suggested_size} or smaller" if plan.suggested_size else "a smaller model"
  raise UsageError(f"{family.name} needs about {plan.needed / 2**30:.1f} GB for {w}x{h} frames at --size {size} "
                   f"with {objects} object(s), but {plan.device} has {plan.available / 2**30:.1f} GB free; try "
                   f"{way_out}, or a family whose memory does not grow with the frame size (gam)")


class Progress:
  """Frames done / total, frames per second and time left, on stderr. The rate includes compilation; the time
  left does not, after the first line: it is the rate since that line's frame (the first burst carries the
  compilation, which the frames left will not pay again).

  Engines may return masks in bursts (a chunk of frames per compiled call), so a line is printed when a burst
  has ended (the next mask comes after a pause), describing the state at its end, not in the middle of one.
  """

  def __init__(self, total_frames: int, num_clips: int):
    self.total, self.num_clips, self.done, self.clip = total_frames, num_clips, 0, ""
    self.start = self.previous = self.printed = self.burst_start = time.monotonic()
    self.tty, self.shown = sys.stderr.isatty(), False
    self.first_line = None  # (frames done, time) of the first line printed

  def start_clip(self, name: str) -> None:
    self.clip = name

  def update(self) -> None:
    """Counts one written mask; prints a progress line at the end of a burst, at most every few seconds."""
    now = time.monotonic()
    burst_ended = now - self.previous >= BURST_PAUSE_SECONDS
    # Masks that keep coming without pauses (a fast engine) are a burst too long to wait for: print now and then.
    long_burst = not burst_ended and self.previous - self.burst_start >= 5 * PROGRESS_SECONDS
    if self.done and self.previous - self.printed >= PROGRESS_SECONDS and (burst_ended or long_burst):
      self._print(self.done, self.previous)
    if burst_ended or long_burst:
      self.burst_start = now
    self.done += 1
    self.previous = now

  def _print(self, done: int, at: float) -> None:
    self.printed, self.shown = at, True
    rate = done / max(at - self.start, 1e-9)
    steady = rate
    if self.first_line is None:
      self.first_line = (done, at)
    elif done > self.first_line[0] and at > self.first_line[1]:
      steady = (done - self.first_line[0]) / (at - self.first_line[1])
    where = f" {self.clip}" if self.clip and self.num_clips > 1 else ""
    line = f"segment:{where} {done}/{self.total} frames, {rate:.2f} frames/s, ETA {(self.total - done) / steady:.0f} s"
    print(f"\r{line:79s}" if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

  def finish(self, out: str) -> None:
    seconds = time.monotonic() - self.start
    if self.tty and self.shown:
      print(file=sys.stderr)
    print(f"segment: {self.done} frames in {seconds:.1f} s ({self.done / max(seconds, 1e-9):.2f} frames/s, "
          f"compilation included); masks written to {out}", file=sys.stderr)


def make_segmenter(family, variables, size: int, dtype: str = "float32"):
  """`jaxvos.inference.Segmenter`, compiled once and reused for every clip of a run.

  On a CPU a 480p frame takes seconds, so the engine's chunks (masks come a chunk at a time) are kept short
  there, for progress every few frames; accelerators keep the engine's default chunk.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import inference, precision  # pylint: disable=g-import-not-at-top
  chunk = CPU_CHUNK if jax.default_backend() == "cpu" else ENGINE_CHUNK
  return inference.Segmenter(family, variables, size=size, compute_dtype=precision.compute_dtype(dtype),
                             chunk=chunk)


def segment_clip(segmenter, clip: Clip, out_dir: str, *, staging: str, overlay_path: str | None,
                 progress: Progress, stats: bool = False) -> None:
  """Segments one clip into `<out_dir>/<frame>.png` (and the overlay, if asked), moved into place when complete.

  The masks are written as they arrive to the folder `staging` (the overlay to a hidden file beside it); if
  anything fails or the run is interrupted, those are removed and `out_dir` is left as it was. With `stats`, the
  family's aux statistics of the clip are printed after it (`print_stats`).
  """
  h, w = clip.frame_hw
  objects = " ".join(f"{object_id}@{clip.frame_names[index]}" for index, ids in sorted(clip.annotations.items())
                     for object_id in np.unique(ids)[1:].tolist())
  for note in clip.notes:
    print(note, file=sys.stderr)
  print(f"segment: {clip.source}: {len(clip.frame_names)} frames of {w}x{h}, objects (id@first frame): {objects}",
        file=sys.stderr)
  staged_overlay = staging_path(overlay_path) if overlay_path else None
  try:
    aux_stats = {}
    labels = segmenter.segment_video(clip.read_frames(), clip.annotations, stats=aux_stats)
    written = _write_masks(labels, clip, staging, progress)
    if overlay_path:
      frames = clip.read_frames()
      count = video_io.write_video(staged_overlay, (video_io.overlay(f, ids) for ids, f in zip(written, frames)),
                                   fps=clip.fps)
    else:
      for _ in written:
        pass
    _move_into(staging, out_dir)
    if stats:
      print_stats(clip.name or clip.source, aux_stats)
    if overlay_path:
      os.replace(staged_overlay, overlay_path)
      print(f"wrote {overlay_path} ({count} frames)", file=sys.stderr)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
    if staged_overlay and os.path.exists(staged_overlay):
      os.remove(staged_overlay)


def print_stats(name: str, stats: dict[str, dict[str, float]]) -> None:
  """One line per statistic of a clip: `stats: NAME: KEY mean M (min A, max B)`."""
  if not stats:
    print(f"stats: {name}: the model reports no per-frame statistics")
  for key, value in sorted(stats.items()):
    print(f"stats: {name}: {key} mean {value['mean']:.4g} (min {value['min']:.4g}, max {value['max']:.4g})")


def staging_path(path: str) -> str:
  """A hidden name beside `path` for this process (same folder, so a rename moves it): `.<name>.partial-<pid>`,
  keeping a file's extension (an overlay's format follows it)."""
  folder, name = os.path.split(os.path.abspath(path))
  stem, extension = os.path.splitext(name) if name.lower().endswith(video_io.OVERLAY_EXTENSIONS) else (name, "")
  return os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")


def _move_into(staging: str, out_dir: str) -> None:
  """Moves the files of `staging` into `out_dir` (created if needed), replacing files of the same names."""
  os.makedirs(out_dir, exist_ok=True)
  for name in sorted(os.listdir(staging)):
    os.replace(os.path.join(staging, name), os.path.join(out_dir, name))


def _write_masks(labels, clip: Clip, out_dir: str, progress: Progress):
  """Writes each label map as `<out_dir>/<frame name>.png` and passes it on."""
  progress.start_clip(clip.name)
  count = 0
  for ids in labels:  # to the end of `labels`, which then finishes its video (its statistics, say)
    if count == len(clip.frame_names):
      raise RuntimeError(f"the engine returned more masks than the {count} frames")
    name = clip.frame_names[count]
    if ids.shape != clip.frame_hw:
      raise RuntimeError(f"the engine returned a {ids.shape} mask for a frame of size {clip.frame_hw}")
    image_io.write_mask(os.path.join(out_dir, f"{name}.png"), ids)
    count += 1
    progress.update()
    yield ids
  if count < len(clip.frame_names):
    warn(clip.source, f"only {count} of {len(clip.frame_names)} frames were segmented")
