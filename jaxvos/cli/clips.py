"""The inputs of `jaxvos segment` (and of `jaxvos.segment_video` given paths), read and checked before any model.

A clip is a video (a folder of frames or a video file) with the masks of its objects where they first appear.
Everything that can be wrong with it is found here, up front: every frame is decoded once (a truncated JPEG or
video fails now, naming the file, not after minutes of segmentation), every mask is read and fitted to its
frame. Safe repairs warn (one line each); notes that are not warnings wait in `Clip.notes` until the run starts,
so that a failure is one line.
"""

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np

from data_pipelines import davis, image_io, video_io
from data_pipelines.errors import DataError, warn
from data_pipelines.video import pair_masks_with_frames

# The example clips shipped with jaxvos (`--example NAME`): name -> (frames, masks) inside the clip's folder.
EXAMPLES = {"judo": ("judo.mp4", "masks")}
# Threads that decode frames while checking a folder (PIL releases the GIL while it decodes).
CHECK_THREADS = 4


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
    notes: lines to print when the clip is segmented (how its masks were read).
  """
  name: str
  source: str
  frame_names: list[str]
  frame_hw: tuple[int, int]
  fps: float
  read_frames: Callable[[], Iterator[np.ndarray]]
  annotations: dict[int, np.ndarray]
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_objects(self) -> int:
    return sum(len(np.unique(ids)) - 1 for ids in self.annotations.values())


def example_paths(name: str) -> tuple[str, str]:
  """(frames, masks) of a bundled example clip: in a source checkout `examples/<name>/`, in an installed package
  `<prefix>/share/jaxvos/examples/<name>/` (see pyproject.toml)."""
  import sysconfig  # pylint: disable=g-import-not-at-top
  if name not in EXAMPLES:
    raise DataError("--example", f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
  checkout = os.path.join(os.path.dirname(__file__), "..", "..", "examples")
  installed = os.path.join(sysconfig.get_path("data"), "share", "jaxvos", "examples")
  for root in (checkout, installed):
    folder = os.path.normpath(os.path.join(root, name))
    if os.path.isdir(folder):
      return tuple(os.path.join(folder, part) for part in EXAMPLES[name])
  raise DataError(os.path.normpath(installed), f"the example clip {name!r} is not installed here")


def read_clip(frames: str, masks: str) -> Clip:
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
    mask_paths = _mask_paths(masks, lambda paths: _pair_masks_by_index(paths, len(reader)))
    reader.check()  # decodes every frame once; a truncated file is cut to the frames that decode, with a warning
    for index, path in mask_paths.items():
      if index >= len(reader):
        raise DataError(path, f"annotation has no frame: only {len(reader)} frames of the video can be decoded")
    clip = Clip("", frames, reader.frame_names, reader.frame_hw, reader.fps, reader.__iter__, {})
  clip.annotations, clip.notes = read_annotations(mask_paths, clip.frame_names, clip.frame_hw)
  return clip


def davis_clips(root: str, resolution: str, imageset: str) -> list[Clip]:
  """One clip per sequence of a DAVIS image set; every sequence is checked now, so bad input fails early."""
  clips = []
  for sequence in davis.DavisDataset(root, resolution, imageset):
    clip = _folder_clip(sequence.name, list(sequence.frame_paths), os.path.dirname(sequence.frame_paths[0]))
    clip.annotations, clip.notes = read_annotations(sequence.mask_paths, clip.frame_names, clip.frame_hw)
    clips.append(clip)
  return clips


def _folder_clip(name: str, frame_paths: list[str], source: str, fps: float = 24.0) -> Clip:
  """A clip of image files, each decoded once now; a gap in their numbering is a warning (a missing frame?)."""
  try:
    davis.check_contiguous(frame_paths)
  except DataError as error:
    warn(error.path, f"{error.message}; segmenting the frames that are there")
  frame_hw = image_io.read_frame(frame_paths[0]).shape[:2]
  with concurrent.futures.ThreadPoolExecutor(CHECK_THREADS) as pool:
    for path, size in zip(frame_paths[1:], pool.map(_decoded_size, frame_paths[1:])):
      _check_frame_size(path, size, frame_hw)
  return Clip(name, source, [image_io.stem(p) for p in frame_paths], frame_hw, fps,
              lambda: _read_folder_frames(frame_paths, frame_hw), {})


def _decoded_size(path: str) -> tuple[int, int]:
  """(height, width) of a fully decoded image; an undecodable one raises the DataError naming the file."""
  return image_io.read_frame(path).shape[:2]


def _check_frame_size(path: str, frame_hw: tuple[int, int], first_hw: tuple[int, int]) -> None:
  if frame_hw != first_hw:
    raise DataError(path, f"frame is {frame_hw[1]}x{frame_hw[0]} but the first frame is {first_hw[1]}x"
                    f"{first_hw[0]}; all frames of a video must have one size")


def _read_folder_frames(frame_paths: list[str], frame_hw: tuple[int, int]) -> Iterator[np.ndarray]:
  """Reads the frames one by one (they were all decoded once when the clip was listed)."""
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
                     frame_hw: tuple[int, int]) -> tuple[dict[int, np.ndarray], list[str]]:
  """Reads the masks; returns (the masks of the objects new at each frame where some appear, notes).

  Masks are fitted to the frame size (safe repairs warn, others are refused). Grey masks holding only 0 and 255
  (DAVIS 2016 style, soft edges included) are one object, id 1; elsewhere 255 is DAVIS "void" (background).

  Raises:
    DataError: no mask for the first frame, an empty first mask, or a mask that `image_io.read_mask` refuses.
  """
  if 0 not in mask_paths:
    first = mask_paths[min(mask_paths)]
    raise DataError(first, f"no mask for the first frame {frame_names[0]} (the first mask is for frame "
                    f"{frame_names[min(mask_paths)]}); segmentation starts from an annotated first frame: "
                    "drop the frames before it")
  binary = image_io.binary_mask_values(mask_paths[0])
  notes = [f"note: {mask_paths[0]}: a 0/255 mask (DAVIS 2016 style): one object, written as id 1"] if binary else []
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
  return annotations, notes

