"""DAVIS 2016 / 2017 folders: read a root at any resolution, write predictions in the DAVIS layout.

Layout (the resolution is a folder name: `480p`, `240p`, `Full-Resolution`, ...):

  <root>/JPEGImages/<resolution>/<sequence>/00000.jpg ...
  <root>/Annotations/<resolution>/<sequence>/00000.png ...   (every frame, or only some: objects may appear late)
  <root>/ImageSets/<year>/<set>.txt                           (one sequence per line)

Masks: DAVIS 2016 masks are grey 0/255 images of one object; DAVIS 2017 masks are indexed (palette) PNGs of object
ids. `single_object=None` decides per sequence from its first mask (grey and only 0/255 means 2016-style).
"""

import os
from collections.abc import Sequence

import numpy as np

from data_pipelines import image_io
from data_pipelines.errors import DataError
from data_pipelines.video import VideoSequence, pair_masks_with_frames


def read_imageset(path: str) -> list[str]:
  """Sequence names of an ImageSets file: one per line (the old 2016 form, one frame path pair per line, works)."""
  if not os.path.isfile(path):
    raise DataError(path, "image set file not found")
  names: list[str] = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      # The 2016 release lists "/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/00000.png" pairs.
      name = line.split()[0].strip("/").split("/")[-2] if "/" in line else line
      if name not in names:
        names.append(name)
  if not names:
    raise DataError(path, "image set file lists no sequences")
  return names


class DavisDataset:
  """A DAVIS root at one resolution; sequences are read lazily.

  Args:
    root: the folder holding `JPEGImages/` and `Annotations/`.
    resolution: the resolution folder name.
    imageset: an ImageSets file (absolute, or relative to `root`); default every sequence folder.
    single_object: True for DAVIS 2016 (any non-zero mask value is the object), False for object-id masks,
      None to decide per sequence.
    contiguous: refuse numbered frames with gaps (a missing frame). DAVIS frames are contiguous.
  """

  def __init__(self, root: str, resolution: str = "480p", imageset: str | None = None,
               single_object: bool | None = None, contiguous: bool = True):
    self.root = root
    self.resolution = resolution
    self.frames_dir = os.path.join(root, "JPEGImages", resolution)
    self.masks_dir = os.path.join(root, "Annotations", resolution)
    self.single_object = single_object
    self.contiguous = contiguous
    for folder in (self.frames_dir, self.masks_dir):
      if not os.path.isdir(folder):
        raise DataError(folder, f"folder not found: is {root} a DAVIS root with resolution {resolution}?")
    if imageset is not None:
      imageset = imageset if os.path.isabs(imageset) else os.path.join(root, imageset)
      self.sequences = read_imageset(imageset)
    else:
      self.sequences = sorted(d for d in os.listdir(self.frames_dir)
                              if os.path.isdir(os.path.join(self.frames_dir, d)))
      if not self.sequences:
        raise DataError(self.frames_dir, "no sequence folders")

  def __len__(self) -> int:
    return len(self.sequences)

  def __iter__(self):
    return (self.sequence(name) for name in self.sequences)

  def sequence(self, name: str) -> VideoSequence:
    """Lists a sequence's frames and annotations and checks they pair up; reads no pixels but one mask."""
    frame_paths = image_io.list_frame_files(os.path.join(self.frames_dir, name))
    if self.contiguous:
      check_contiguous(frame_paths)
    mask_paths = image_io.list_frame_files(os.path.join(self.masks_dir, name), image_io.MASK_EXTENSIONS)
    annotations = pair_masks_with_frames(frame_paths, mask_paths)
    first_mask = annotations[min(annotations)]
    if self.single_object and min(annotations) != 0:
      raise DataError(first_mask, "the first annotation of a single-object sequence is not on the first frame")
    binary = self.single_object
    if binary is None:
      binary = image_io.binary_mask_values(first_mask)
    return VideoSequence(name, tuple(frame_paths), annotations, binary=binary)


def check_contiguous(frame_paths: Sequence[str]) -> None:
  """Refuses numbered frames with a gap (a missing frame), naming the frames on both sides of the gap."""
  numbers = [image_io.frame_sort_key(os.path.basename(p)) for p in frame_paths]
  for i in range(1, len(numbers)):
    before, after = numbers[i - 1], numbers[i]
    if before[:-1] == after[:-1] and after[-1] != before[-1] + 1:
      raise DataError(frame_paths[i], f"missing frame: the numbering jumps from "
                      f"{os.path.basename(frame_paths[i - 1])} to {os.path.basename(frame_paths[i])}")


def write_sequence(out_dir: str, frame_names: Sequence[str], masks: Sequence[np.ndarray] | np.ndarray) -> list[str]:
  """Writes one sequence's predictions as `<out_dir>/<frame name>.png` indexed PNGs with the DAVIS palette.

  Masks must already be at their frames' size (uint8 [h w] object ids). Returns the written paths.
  """
  if len(frame_names) != len(masks):
    raise ValueError(f"{out_dir}: {len(masks)} masks for {len(frame_names)} frames")
  paths = []
  for name, ids in zip(frame_names, masks):
    path = os.path.join(out_dir, f"{name}.png")
    image_io.write_mask(path, ids)
    paths.append(path)
  return paths
