"""`python -m jaxvos segment`: segment a video, or every sequence of a DAVIS root, from its objects' first masks.

    python -m jaxvos segment --model stcn-r18 --frames examples/judo/judo.mp4 --masks examples/judo/masks \\
        --out judo_masks --overlay judo.mp4
    python -m jaxvos segment --model stcn --checkpoint ckpt/ --frames frames/ --masks 00000.png --out masks/
    python -m jaxvos segment --model stcn --checkpoint ckpt/ --davis-root DAVIS --resolution 480p \\
        --imageset ImageSets/2017/val.txt --out results/          (every sequence: results/<seq>/<frame>.png)

Frames: a folder of images (ordered by the numbers in their names) or a video file (mp4, mov, avi, mkv, webm;
its frames are named 00000, 00001, ...). Masks: one indexed PNG for the first frame, or a folder of PNGs named
like their frames; an object appears where its id is first seen (objects may enter late). Writes one indexed
palette PNG per frame, named like the frame, at the frame's size, with the objects' ids. Nothing is overwritten
unless --overwrite is given.
"""

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from data_pipelines import davis, image_io, video_io
from data_pipelines.errors import DataError, warn
from data_pipelines.video import pair_masks_with_frames

DESCRIPTION = ("Segment a video (a folder of frames or a video file), or every sequence of a DAVIS root, from the "
               "masks of its objects where they first appear; writes indexed palette PNGs named like the frames, at "
               "their size, with the objects' ids, and optionally an mp4 or gif overlay.")
# Progress lines are printed at most this often (seconds); on a terminal one line is updated in place.
PROGRESS_SECONDS = 2.0
# A pause this long (seconds) between two masks ends a burst of masks (see `Progress`).
BURST_PAUSE_SECONDS = 0.2
# Frames per compiled call of the engine on a CPU (see `make_segmenter`).
CPU_CHUNK = 4


class UsageError(Exception):
  """Options that do not fit together; reported as one line, exit status 2."""


def add_arguments(parser) -> None:
  parser.add_argument("--model", required=True, metavar="NAME", help="model name: stcn, stcn-r18, stcn-tiny, stm, "
                      "stm-r18, stm-tiny (an unknown name lists the current ones); with --checkpoint, its family")
  parser.add_argument("--checkpoint", metavar="DIR", help="a jaxvos checkpoint directory (`jaxvos convert` writes "
                      "them); without it the weights are random")
  parser.add_argument("--frames", metavar="DIR|VIDEO", help="a folder of frames or a video file")
  parser.add_argument("--masks", metavar="DIR|PNG", help="a folder of PNG masks named like the frames, or one PNG "
                      "for the first frame")
  parser.add_argument("--davis-root", metavar="ROOT", help="segment every sequence of a DAVIS root instead")
  parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default 480p)")
  parser.add_argument("--imageset", metavar="FILE", help="DAVIS ImageSets file listing the sequences, e.g. "
                      "ImageSets/2016/val.txt (relative to the root)")
  parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty, unless --overwrite)")
  parser.add_argument("--size", type=int, default=480, help="the model sees frames with this shorter side "
                      "(default 480; -1 keeps the frame size); outputs are always at the frame size")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="the network's compute dtype (default float32; bfloat16 for GPUs and TPUs: attention "
                      "and aggregation stay float32)")
  parser.add_argument("--overlay", metavar="FILE", help="also write the frames with coloured masks to FILE.mp4 "
                      "or FILE.gif (at the video's frame rate; 24 frames per second for a folder of frames)")
  parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (same-named files "
                      "are replaced) and replace an existing --overlay file")


@dataclasses.dataclass
class Clip:
  """One video to segment: its frames, read lazily (possibly several times), and its objects' first masks.

  Attributes:
    name: the sequence name (the output sub-folder in the DAVIS form), or "" for a single video.
    source: the frames' folder or video file (for messages).
    frame_names: one name per frame; outputs are `<name>.png`.
    frame_hw: (height, width) of every frame.
    fps: frames per second of the overlay video.
    read_frames: a fresh iterator over the frames, uint8 [h w 3] RGB, each time it is called.
    annotations: frame index -> uint8 [h w] ids of the objects that first appear there (others 0).
  """
  name: str
  source: str
  frame_names: list[str]
  frame_hw: tuple[int, int]
  fps: float
  read_frames: Callable[[], Iterator[np.ndarray]]
  annotations: dict[int, np.ndarray]


def run(args) -> int:
  try:
    _check_options(args)
  except UsageError as error:
    print(f"error: segment: {error}", file=sys.stderr)
    return 2
  clips = _davis_clips(args) if args.davis_root else [_single_clip(args.frames, args.masks)]
  _check_outputs(args, clips)
  segmenter = make_segmenter(*load_model(args.model, args.checkpoint), args.size, args.dtype)
  progress = Progress(sum(len(c.frame_names) for c in clips), len(clips))
  for clip in clips:
    out_dir = os.path.join(args.out, clip.name) if clip.name else args.out
    segment_clip(segmenter, clip, out_dir, overlay_path=args.overlay, progress=progress)
  progress.finish(args.out)
  return 0


def _check_options(args) -> None:
  """Refuses option combinations that cannot work, before anything is read."""
  if bool(args.frames) == bool(args.davis_root):
    raise UsageError("give either --frames (with --masks) or --davis-root (with --imageset)")
  if args.frames and not args.masks:
    raise UsageError("--frames needs --masks (a folder of PNG masks, or one PNG for the first frame)")
  if args.davis_root and (args.masks or args.overlay):
    raise UsageError("--masks and --overlay go with --frames; a DAVIS root has its own masks")
  if args.davis_root and not args.imageset:
    raise UsageError("--davis-root needs --imageset (e.g. ImageSets/2016/val.txt)")
  if args.size != -1 and args.size < 16:
    raise UsageError(f"--size {args.size}: give a shorter side of at least 16 pixels, or -1 for the frame size")


def _single_clip(frames: str, masks: str) -> Clip:
  """The clip of `--frames` (folder or video file) with the masks of `--masks` (folder or one PNG)."""
  if not os.path.exists(frames):
    raise DataError(frames, "not found (expected a folder of frames or a video file)")
  if os.path.isdir(frames):
    frame_paths = image_io.list_frame_files(frames)
    clip = _folder_clip("", frame_paths, frames)
    mask_paths = _mask_paths(masks, lambda paths: pair_masks_with_frames(frame_paths, paths))
  else:
    if frames.lower().endswith(image_io.FRAME_EXTENSIONS):
      raise DataError(frames, "is one image; --frames takes a folder of frames or a video file")
    reader = video_io.VideoReader(frames)
    clip = Clip("", frames, reader.frame_names, reader.frame_hw, reader.fps, reader.__iter__, {})
    mask_paths = _mask_paths(masks, lambda paths: _pair_masks_by_index(paths, len(reader)))
  clip.annotations = read_annotations(mask_paths, clip.frame_names, clip.frame_hw)
  return clip


def _folder_clip(name: str, frame_paths: list[str], source: str, fps: float = 24.0) -> Clip:
  """A clip of image files; a gap in their numbering is worth a warning (a missing frame?), not an error."""
  try:
    davis.check_contiguous(frame_paths)
  except DataError as error:
    warn(error.path, f"{error.message}; segmenting the frames that are there")
  frame_hw = image_io.read_frame(frame_paths[0]).shape[:2]
  for path in frame_paths[1:]:
    _check_frame_size(path, _header_size(path), frame_hw)
  return Clip(name, source, [image_io.stem(p) for p in frame_paths], frame_hw, fps,
              lambda: _read_folder_frames(frame_paths, frame_hw), {})


def _header_size(path: str) -> tuple[int, int]:
  """(height, width) of an image from its header; an unreadable header raises the DataError naming the file."""
  try:
    with Image.open(path) as image:
      return image.height, image.width
  except (OSError, SyntaxError, ValueError):
    return image_io.read_frame(path).shape[:2]


def _check_frame_size(path: str, frame_hw: tuple[int, int], first_hw: tuple[int, int]) -> None:
  if frame_hw != first_hw:
    raise DataError(path, f"frame is {frame_hw[1]}x{frame_hw[0]} but the first frame is {first_hw[1]}x"
                    f"{first_hw[0]}; all frames of a video must have one size")


def _read_folder_frames(frame_paths: list[str], frame_hw: tuple[int, int]) -> Iterator[np.ndarray]:
  """Reads the frames one by one (their headers were checked when the clip was listed; the pixels are now)."""
  for path in frame_paths:
    frame = image_io.read_frame(path)
    _check_frame_size(path, frame.shape[:2], frame_hw)
    yield frame


def _mask_paths(masks: str, pair: Callable[[list[str]], dict[int, str]]) -> dict[int, str]:
  """Frame index -> mask file: one PNG is the first frame's mask; a folder's PNGs are paired by `pair`."""
  if os.path.isdir(masks):
    return pair(image_io.list_frame_files(masks, image_io.MASK_EXTENSIONS))
  if not os.path.exists(masks):
    raise DataError(masks, "not found (expected a folder of PNG masks or one PNG for the first frame)")
  if not masks.lower().endswith(image_io.MASK_EXTENSIONS):
    raise DataError(masks, "is not a PNG; masks are indexed (palette) or grey PNGs of object ids")
  return {0: masks}


def _pair_masks_by_index(mask_paths: list[str], num_frames: int) -> dict[int, str]:
  """Pairs the masks of a video file with its frames by the number in their names (`00005.png` or `5.png`)."""
  paired = {}
  for path in mask_paths:
    name = image_io.stem(path)
    if not name.isdigit():
      raise DataError(path, "cannot tell which frame this mask belongs to: masks of a video file are named by "
                      "frame index, from 0 (00000.png, 00005.png, ...)")
    if int(name) >= num_frames:
      raise DataError(path, f"annotation has no frame: the video has {num_frames} frames "
                      f"({video_io.frame_name(0)} to {video_io.frame_name(num_frames - 1)})")
    paired[int(name)] = path
  return paired


def read_annotations(mask_paths: dict[int, str], frame_names: list[str],
                     frame_hw: tuple[int, int]) -> dict[int, np.ndarray]:
  """Reads the masks and keeps, for each frame where objects first appear, the masks of those new objects.

  Masks are fitted to the frame size (safe repairs warn, others are refused). Grey masks holding only 0 and 255
  (DAVIS 2016 style) are one object, id 1; elsewhere 255 is DAVIS "void" and is treated as background.

  Raises:
    DataError: no mask for the first frame, an empty first mask, or a mask that `image_io.read_mask` refuses.
  """
  if 0 not in mask_paths:
    first = mask_paths[min(mask_paths)]
    raise DataError(first, f"no mask for the first frame {frame_names[0]} (the first mask is for frame "
                    f"{frame_names[min(mask_paths)]}); segmentation starts from an annotated first frame: "
                    "drop the frames before it")
  binary = image_io.binary_mask_values(mask_paths[0])
  if binary:
    print(f"note: {mask_paths[0]}: a 0/255 mask (DAVIS 2016 style): one object, written as id 1",
          file=sys.stderr)
  known: set[int] = set()
  annotations = {}
  for index in sorted(mask_paths):
    path = mask_paths[index]
    ids = image_io.fit_mask_to_frame(image_io.read_mask(path, binary=binary), frame_hw, path)
    ids = np.where(ids == image_io.VOID_ID, 0, ids).astype(np.uint8)
    present = set(np.unique(ids).tolist()) - {0}
    if index == 0 and not present:
      raise DataError(path, "the first frame's mask holds no object (every pixel is background)")
    new = present - known
    if new:
      annotations[index] = np.where(np.isin(ids, sorted(new)), ids, 0).astype(np.uint8)
      known |= new
  return annotations


def _davis_clips(args) -> list[Clip]:
  """One clip per sequence of the image set; every sequence's masks are read now, so bad input fails early."""
  dataset = davis.DavisDataset(args.davis_root, args.resolution, args.imageset)
  clips = []
  for sequence in dataset:
    clip = _folder_clip(sequence.name, list(sequence.frame_paths), os.path.dirname(sequence.frame_paths[0]))
    clip.annotations = read_annotations(sequence.mask_paths, clip.frame_names, clip.frame_hw)
    clips.append(clip)
  return clips


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


def load_model(name: str, checkpoint: str | None):
  """(family, variables) of a checkpoint directory, or of model `name` with random weights (with a warning)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  if name not in registry.names():
    raise DataError("--model", f"unknown model {name!r}; choose one of {', '.join(registry.names())}")
  if checkpoint:
    from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
    family, variables = convert_io.load_model(checkpoint)
    if family.name.split("-")[0] != name.split("-")[0]:
      raise DataError(checkpoint, f"holds a {family.name} model, not {name} (--model)")
    if family.name != name:
      print(f"note: {checkpoint} holds {family.name}; its configuration is used", file=sys.stderr)
    return family, variables
  print(f"warning: no --checkpoint: {name} runs with random weights (no trained weights exist on this machine), "
        "so its masks are meaningless except as a check of the pipeline", file=sys.stderr)
  start = time.monotonic()
  family = registry.build(name)
  variables = family.init(jax.random.PRNGKey(0))
  print(f"segment: {name} initialised in {time.monotonic() - start:.1f} s", file=sys.stderr)
  return family, variables


class Progress:
  """Frames done / total, frames per second and time left, on stderr; the rate includes compilation.

  Engines may return masks in bursts (a chunk of frames per compiled call), so a line is printed when a burst
  has ended (the next mask comes after a pause), describing the state at its end, not in the middle of one.
  """

  def __init__(self, total_frames: int, num_clips: int):
    self.total, self.num_clips, self.done, self.clip = total_frames, num_clips, 0, ""
    self.start = self.previous = self.printed = self.burst_start = time.monotonic()
    self.tty, self.shown = sys.stderr.isatty(), False

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
    where = f" {self.clip}" if self.clip and self.num_clips > 1 else ""
    line = f"segment:{where} {done}/{self.total} frames, {rate:.2f} frames/s, ETA {(self.total - done) / rate:.0f} s"
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
  chunk = {"chunk": CPU_CHUNK} if jax.default_backend() == "cpu" else {}
  return inference.Segmenter(family, variables, size=size, compute_dtype=precision.compute_dtype(dtype), **chunk)


def segment_clip(segmenter, clip: Clip, out_dir: str, *, overlay_path: str | None, progress: Progress) -> None:
  """Segments one clip, writing `<out_dir>/<frame>.png` as each mask arrives (and the overlay, if asked)."""
  os.makedirs(out_dir, exist_ok=True)
  h, w = clip.frame_hw
  objects = " ".join(f"{object_id}@{clip.frame_names[index]}" for index, ids in sorted(clip.annotations.items())
                     for object_id in np.unique(ids)[1:].tolist())
  print(f"segment: {clip.source}: {len(clip.frame_names)} frames of {w}x{h}, objects (id@first frame): {objects}",
        file=sys.stderr)
  labels = segmenter.segment_video(clip.read_frames(), clip.annotations)
  written = _write_masks(labels, clip, out_dir, progress)
  if overlay_path:
    frames = clip.read_frames()
    count = video_io.write_video(overlay_path, (video_io.overlay(f, ids) for ids, f in zip(written, frames)),
                                 fps=clip.fps)
    print(f"wrote {overlay_path} ({count} frames)", file=sys.stderr)
  else:
    for _ in written:
      pass


def _write_masks(labels: Iterator[np.ndarray], clip: Clip, out_dir: str,
                 progress: Progress) -> Iterator[np.ndarray]:
  """Writes each label map as `<out_dir>/<frame name>.png` and passes it on."""
  progress.start_clip(clip.name)
  count = 0
  for name, ids in zip(clip.frame_names, labels):
    if ids.shape != clip.frame_hw:
      raise RuntimeError(f"the engine returned a {ids.shape} mask for a frame of size {clip.frame_hw}")
    image_io.write_mask(os.path.join(out_dir, f"{name}.png"), ids)
    count += 1
    progress.update()
    yield ids
  if count < len(clip.frame_names):
    warn(clip.source, f"only {count} of {len(clip.frame_names)} frames were segmented")
