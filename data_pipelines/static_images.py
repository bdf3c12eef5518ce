"""Static image + mask folders (salient-object datasets), for pseudo-clip pretraining.

Two layouts, both with `images/` and `masks/` side by side under a root:
- flat: `images/<id>.jpg` and `masks/<id>.png`;
- one sub-folder per sequence: `images/<seq>/<frame>.jpg` and `masks/<seq>/<frame>.png`.
Masks are binary (grey 0/255: one object, id 1) or hold object ids (indexed or grey PNGs). Images without a mask
are skipped with one warning; a mask without an image is an error.
"""

import dataclasses
import os

import numpy as np

from data_pipelines import image_io
from data_pipelines.errors import DataError, warn


@dataclasses.dataclass(frozen=True)
class StaticImage:
  """One image and its mask, read lazily."""
  image_path: str
  mask_path: str

  def load(self) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8 [h w 3], object ids uint8 [h w]) with the mask fitted to the image."""
    frame = image_io.read_frame(self.image_path)
    binary = image_io.binary_mask_values(self.mask_path)
    ids = image_io.read_mask(self.mask_path, binary=binary)
    return frame, image_io.fit_mask_to_frame(ids, frame.shape[:2], self.mask_path)


def _pairs_in(images_dir: str, masks_dir: str) -> tuple[list[StaticImage], int]:
  """Pairs of one folder level; returns (pairs, number of images that have no mask)."""
  images = {image_io.stem(n): n for n in sorted(os.listdir(images_dir))
            if n.lower().endswith(image_io.FRAME_EXTENSIONS)}
  masks = {image_io.stem(n): n for n in sorted(os.listdir(masks_dir)) if n.lower().endswith(".png")}
  for key, name in masks.items():
    if key not in images:
      raise DataError(os.path.join(masks_dir, name), f"mask has no image ({key}.* missing in {images_dir})")
  pairs = [StaticImage(os.path.join(images_dir, images[k]), os.path.join(masks_dir, masks[k]))
           for k in sorted(masks)]
  return pairs, len(images) - len(pairs)


def list_static_images(root: str) -> list[StaticImage]:
  """All image/mask pairs under `root` (flat or one sub-folder per sequence), in a stable order."""
  images_dir, masks_dir = os.path.join(root, "images"), os.path.join(root, "masks")
  for folder in (images_dir, masks_dir):
    if not os.path.isdir(folder):
      raise DataError(folder, "folder not found: a static-image root holds images/ and masks/")
  sub_folders = sorted(d for d in os.listdir(masks_dir) if os.path.isdir(os.path.join(masks_dir, d)))
  groups = [(images_dir, masks_dir)] + [(os.path.join(images_dir, d), os.path.join(masks_dir, d))
                                        for d in sub_folders]
  pairs, unmatched = [], 0
  for image_folder, mask_folder in groups:
    if not os.path.isdir(image_folder):
      raise DataError(image_folder, f"folder not found (its masks are in {mask_folder})")
    found, missing = _pairs_in(image_folder, mask_folder)
    pairs += found
    unmatched += missing
  if not pairs:
    raise DataError(root, "no image/mask pairs found")
  if unmatched:
    warn(images_dir, f"{unmatched} images have no mask and are skipped")
  return pairs
