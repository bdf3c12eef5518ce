"""A lazily loaded annotated video: the one sequence type every dataset reader returns."""

import dataclasses
import functools
import os

import numpy as np
from PIL import Image

from data_pipelines import image_io
from data_pipelines.errors import DataError


@dataclasses.dataclass(frozen=True)
class VideoSequence:
  """A video whose frames and masks are read from disk only when asked for.

  Attributes:
    name: the sequence name (its folder name).
    frame_paths: one image per frame, in frame order.
    mask_paths: frame index -> mask PNG, for the annotated frames only (DAVIS: every frame; DAVIS 2017 demo masks
      or YouTube-VOS: some frames).
    binary: DAVIS 2016 convention: one object (id 1); see `image_io.read_mask`.
    known_first_appearance: object id -> index of the first frame where it is annotated, when known without reading
      masks (YouTube-VOS `meta.json`); otherwise computed from the masks on first use.
  """
  name: str
  frame_paths: tuple[str, ...]
  mask_paths: dict[int, str]
  binary: bool = False
  known_first_appearance: dict[int, int] | None = None

  def __len__(self) -> int:
    return len(self.frame_paths)

  @property
  def frame_names(self) -> list[str]:
    """Frame names without extension (`00000`), used to name predictions."""
    return [image_io.stem(p) for p in self.frame_paths]

  @property
  def annotated_indices(self) -> list[int]:
    return sorted(self.mask_paths)

  def frame(self, index: int) -> np.ndarray:
    """Frame `index` as uint8 [h w 3] RGB."""
    return image_io.read_frame(self.frame_paths[index])

  def frame_size(self, index: int = 0) -> tuple[int, int]:
    """(height, width) of a frame, read from its header only."""
    try:
      with Image.open(self.frame_paths[index]) as image:
        return image.height, image.width
    except OSError:
      return self.frame(index).shape[:2]  # Raises the DataError that names the file.

  def mask(self, index: int, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Mask of annotated frame `index` as uint8 [h w] object ids, fitted to its frame's size.

    Raises:
      KeyError: frame `index` is not annotated.
    """
    path = self.mask_paths[index]
    ids = image_io.read_mask(path, binary=self.binary)
    return image_io.fit_mask_to_frame(ids, frame_hw or self.frame_size(index), path)

  @functools.cached_property
  def first_appearance(self) -> dict[int, int]:
    """Object id -> first annotated frame where it appears (void 255 is not an object)."""
    if self.known_first_appearance is not None:
      return dict(self.known_first_appearance)
    first: dict[int, int] = {}
    for index in self.annotated_indices:
      ids = image_io.read_mask(self.mask_paths[index], binary=self.binary)
      for object_id in np.unique(ids).tolist():
        if object_id not in (0, image_io.VOID_ID):
          first.setdefault(object_id, index)
    return first

  @property
  def object_ids(self) -> list[int]:
    return sorted(self.first_appearance)


def pair_masks_with_frames(frame_paths: list[str], mask_paths: list[str]) -> dict[int, str]:
  """Maps each mask to the index of the frame with the same name.

  Raises:
    DataError: a mask whose frame is missing.
  """
  index_of = {image_io.stem(p): i for i, p in enumerate(frame_paths)}
  paired = {}
  for path in mask_paths:
    index = index_of.get(image_io.stem(path))
    if index is None:
      folder = os.path.dirname(frame_paths[0])
      raise DataError(path, f"annotation has no frame: {image_io.stem(path)}.* missing in {folder}")
    paired[index] = path
  return paired
