"""Frames, masks and frame folders: strict readers and the DAVIS palette writer.

Conventions shared by every dataset reader:
- a frame is uint8 [h w 3] RGB;
- a mask is uint8 [h w] of object ids, 0 background; in DAVIS 2017 / YouTube-VOS masks 255 is "void";
- frames of a video are ordered by the numbers in their names (`1.jpg` before `10.jpg`), never by string order;
- a mask is checked against its frame's size and repaired (nearest neighbour, with a warning) only when the
  repair is safe.
"""

import io
import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from data_pipelines.errors import DataError, warn

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MASK_EXTENSIONS = (".png",)
VOID_ID = 255
# Off by at most this many pixels per side, a mask is a rounding slip and is resized (nearest) with a warning.
MAX_REPAIR_PIXELS = 4
# Masks with more distinct object ids than this are anti-aliased or colour-converted, not id maps.
MAX_DISTINCT_IDS = 32


def davis_palette() -> np.ndarray:
  """The DAVIS / PASCAL VOC colour map, uint8 [256 3]: id 1 is (128, 0, 0), id 2 (0, 128, 0), ..."""
  palette = np.zeros((256, 3), np.uint8)
  for index in range(256):
    value, red, green, blue = index, 0, 0, 0
    for bit in range(8):
      red |= ((value >> 0) & 1) << (7 - bit)
      green |= ((value >> 1) & 1) << (7 - bit)
      blue |= ((value >> 2) & 1) << (7 - bit)
      value >>= 3
    palette[index] = (red, green, blue)
  return palette


DAVIS_PALETTE = davis_palette()


def _open(path: str, data: bytes | None = None) -> Image.Image:
  """Opens and fully decodes an image (from `data` if given), so a corrupt or truncated file fails here."""
  try:
    image = Image.open(io.BytesIO(data) if data is not None else path)
    image.load()
  except FileNotFoundError:
    raise DataError(path, "file not found") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    raise DataError(path, f"cannot be decoded as an image (corrupt or truncated file?): {error}") from None
  return image


def read_frame(path: str, data: bytes | None = None) -> np.ndarray:
  """Reads an RGB frame as uint8 [h w 3] (from encoded `data` if given); grey and RGBA images are converted."""
  image = _open(path, data)
  if image.mode != "RGB":
    image = image.convert("RGB")
  return np.asarray(image)


def read_mask(path: str, *, binary: bool = False, data: bytes | None = None) -> np.ndarray:
  """Reads a mask PNG as uint8 [h w] object ids.

  Args:
    path: an indexed (`P`) or grey (`L`, `1`, `I`) PNG whose pixel values are object ids.
    binary: DAVIS 2016 convention: one object, any value of at least 128 is the object (id 1). Anti-aliased
      binary masks are thresholded with a warning.
    data: the encoded file, when it is not read from `path` (packed datasets); `path` still names it.

  Raises:
    DataError: an RGB mask, values that are not object ids (anti-aliasing, a colour mask saved as grey), or an
      undecodable file.
  """
  return _mask_values(_open(path, data), path, binary=binary)


def _mask_values(image: Image.Image, path: str, *, binary: bool = False) -> np.ndarray:
  """The object ids of a decoded mask image (see `read_mask`)."""
  if image.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
    raise DataError(path, f"is a colour ({image.mode}) image; expected an indexed (P) or grey (L) PNG whose "
                    "pixel values are object ids")
  values = np.asarray(image)
  if values.dtype == bool:
    values = values.astype(np.uint8)
  if values.max(initial=0) > 255:
    raise DataError(path, f"has values up to {values.max()}; object ids must be below 256")
  values = values.astype(np.uint8)
  distinct = np.unique(values)
  if binary:
    if not set(distinct.tolist()) <= {0, 1, 255}:
      warn(path, f"binary mask has {len(distinct)} distinct values (anti-aliased?); thresholded at 128")
      return (values >= 128).astype(np.uint8)
    return (values > 0).astype(np.uint8)
  ids = distinct[(distinct != 0) & (distinct != VOID_ID)]
  looks_antialiased = image.mode == "L" and VOID_ID in distinct and len(ids) > 0
  if looks_antialiased or len(ids) > MAX_DISTINCT_IDS:
    raise DataError(path, f"values {_shown(ids)} are not object ids (an anti-aliased or colour-converted mask?); "
                    "save masks with nearest-neighbour resampling as indexed PNGs")
  edge_values = edge_only_values(values)
  if edge_values.size:
    warn(path, f"values {_shown(edge_values)} occur only on the edges between other ids (an anti-aliased mask?); "
         "each such pixel was given the nearest id around it")
    return repair_edge_values(values, edge_values)
  return values


def _shown(values: np.ndarray, limit: int = 6) -> str:
  """`1, 2, 3, ...`: the first few of a list of pixel values, for messages."""
  return ", ".join(str(v) for v in values[:limit]) + (", ..." if len(values) > limit else "")


def _neighbourhood(values: np.ndarray, radius: int, reduce) -> np.ndarray:
  """`reduce` (np.minimum, np.maximum) of each pixel's (2 radius + 1)^2 window, edges replicated; [h w]."""
  padded = np.pad(values, radius, mode="edge")
  h, w = values.shape
  rows = padded[:, :w]
  for dx in range(1, 2 * radius + 1):
    rows = reduce(rows, padded[:, dx:dx + w])
  out = rows[:h]
  for dy in range(1, 2 * radius + 1):
    out = reduce(out, rows[dy:dy + h])
  return out


def edge_only_values(values: np.ndarray) -> np.ndarray:
  """Pixel values that look like anti-aliasing rather than objects: sorted uint8 [k] (often empty).

  Resizing an id map with bilinear (or any smoothing) resampling leaves, on the boundary between ids a < b, thin
  bands of values in between. A value is taken for such a band when no pixel of it has its whole 3x3
  neighbourhood of that value (no interior: a band is at most two pixels wide) and every pixel of it has, within
  two pixels, a smaller and a larger value that do have an interior (it lies between two real ids). Real objects
  have an interior; a thin object (a rope) borders the background only, not a larger id as well.
  """
  h, w = values.shape
  core = values[1:-1, 1:-1]
  interior = np.ones(core.shape, bool)
  for dy, dx in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
    interior &= values[dy:dy + h - 2, dx:dx + w - 2] == core
  solid = _value_counts(core[interior]) > 0  # [256] values with an interior
  candidates = (_value_counts(values) > 0) & ~solid
  if not candidates.any() or not solid.any():
    return np.zeros(0, np.uint8)
  on_solid = solid[values]
  lower = _neighbourhood(np.where(on_solid, values, 255).astype(np.uint8), 2, np.minimum)
  higher = _neighbourhood(np.where(on_solid, values, 0).astype(np.uint8), 2, np.maximum)
  between = (lower < values) & (higher > values)
  candidates &= _value_counts(values[candidates[values] & ~between]) == 0
  return np.flatnonzero(candidates).astype(np.uint8)


def _value_counts(values: np.ndarray) -> np.ndarray:
  """How many pixels hold each value 0..255: int [256]."""
  return np.bincount(values.reshape(-1), minlength=256)


def repair_edge_values(values: np.ndarray, edge_values: np.ndarray) -> np.ndarray:
  """Gives each pixel of `edge_values` the id, among the other values within two pixels, nearest to its value.

  For a band between ids a and b this is the id the value is closer to (a 0/255 soft edge is thresholded at
  128); a pixel with no other id within two pixels takes the nearest id of the whole mask.
  """
  ids = np.setdiff1d(np.unique(values), edge_values)
  is_edge = np.isin(values, edge_values)
  distance = np.abs(values[None].astype(np.int16) - ids[:, None, None].astype(np.int16)).astype(np.float32)
  near = np.stack([_neighbourhood((values == i).astype(np.uint8), 2, np.maximum) > 0 for i in ids])
  nearest_around = ids[np.argmin(np.where(near, distance, np.inf), axis=0)]
  nearest_overall = ids[np.argmin(distance, axis=0)]
  choice = np.where(near.any(axis=0), nearest_around, nearest_overall)
  return np.where(is_edge, choice, values).astype(np.uint8)


def binary_mask_values(path: str) -> bool:
  """True for a DAVIS 2016-style single-object mask: a 1-bit image, or a grey one holding only 0 and 255.

  A grey 0/255 mask with soft (anti-aliased) edges counts too: `read_mask(path, binary=True)` thresholds it at
  128 with a warning.
  """
  image = _open(path)
  if image.mode == "1":
    return True
  if image.mode != "L":
    return False
  values = np.asarray(image)
  distinct = set(np.unique(values).tolist())
  if distinct <= {0, 255}:
    return True
  return 255 in distinct and distinct - set(edge_only_values(values).tolist()) <= {0, 255}


def fit_mask_to_frame(mask: np.ndarray, frame_hw: tuple[int, int], path: str) -> np.ndarray:
  """Returns `mask` at `frame_hw`, repairing safe size mismatches by nearest-neighbour resize with a warning.

  Safe: off by at most `MAX_REPAIR_PIXELS` per side (a rounding slip), or the same aspect ratio within 1% (a
  mask saved at another resolution). Anything else is refused: the mask would land on the wrong pixels.
  """
  mask_h, mask_w = mask.shape
  frame_h, frame_w = frame_hw
  if (mask_h, mask_w) == (frame_h, frame_w):
    return mask
  few_pixels = abs(mask_h - frame_h) <= MAX_REPAIR_PIXELS and abs(mask_w - frame_w) <= MAX_REPAIR_PIXELS
  same_aspect = abs((mask_w / mask_h) / (frame_w / frame_h) - 1.0) < 0.01
  if not (few_pixels or same_aspect):
    raise DataError(path, f"mask is {mask_w}x{mask_h} but its frame is {frame_w}x{frame_h} (a different aspect "
                    "ratio); refusing to resize it")
  warn(path, f"mask is {mask_w}x{mask_h} but its frame is {frame_w}x{frame_h}; resized (nearest neighbour)")
  return resize_nearest(mask, (frame_h, frame_w))


def resize_nearest(ids: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of an id map (never mixes ids)."""
  image = Image.fromarray(ids)
  return np.asarray(image.resize((size_hw[1], size_hw[0]), Image.Resampling.NEAREST))


def write_mask(path: str, ids: np.ndarray, palette: np.ndarray = DAVIS_PALETTE) -> None:
  """Writes uint8 [h w] object ids as an indexed (`P`) PNG with the DAVIS palette; parent folders are created."""
  ids = np.asarray(ids)
  if ids.ndim != 2 or ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
    raise ValueError(f"{path}: expected a 2-D map of ids in [0, 255], got shape {ids.shape}")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  image = Image.fromarray(ids.astype(np.uint8), mode="P")
  image.putpalette(palette.reshape(-1).tolist())
  image.save(path)


_NUMBER = re.compile(r"\d+")


def frame_sort_key(name: str) -> tuple[int, ...]:
  """The numbers in a frame name, as a tuple (`clip2_0010.jpg` -> (2, 10))."""
  return tuple(int(n) for n in _NUMBER.findall(os.path.splitext(name)[0]))


def order_frame_names(names: Sequence[str], folder: str) -> list[str]:
  """Orders frame file names by the numbers in them, refusing names that cannot be ordered.

  Raises:
    DataError: two files for one frame (`00001.jpg` and `00001.png`, or `1.jpg` and `01.jpg`), names that follow
      different patterns (`frame_1.jpg`, `img_2.jpg`), or several names that carry no frame number.
  """
  stems: dict[str, str] = {}
  for name in names:
    stem = os.path.splitext(name)[0]
    if stem in stems:
      raise DataError(os.path.join(folder, name), f"duplicate frame: {stems[stem]} is the same frame")
    stems[stem] = name
  if len(names) > 1 and not any(_NUMBER.search(stem) for stem in stems):
    raise DataError(folder, f"cannot order the frames: names carry no frame number ({names[0]}, {names[1]})")
  templates = {_NUMBER.sub("#", stem): name for stem, name in stems.items()}
  if len(templates) > 1:
    first, second = list(templates.values())[:2]
    raise DataError(folder, f"cannot order the frames: names follow different patterns ({first}, {second})")
  by_key: dict[tuple[int, ...], str] = {}
  for name in names:
    key = frame_sort_key(name)
    if key in by_key:
      raise DataError(os.path.join(folder, name), f"duplicate frame: {by_key[key]} has the same frame number")
    by_key[key] = name
  return [by_key[key] for key in sorted(by_key)]


def list_frame_files(folder: str, extensions: Sequence[str] = FRAME_EXTENSIONS) -> list[str]:
  """Lists the image files of a folder (not recursive), ordered by frame number.

  Raises:
    DataError: a missing or empty folder, or names that cannot be ordered (see `order_frame_names`).
  """
  if not os.path.isdir(folder):
    raise DataError(folder, "folder not found")
  names = [n for n in os.listdir(folder)
           if n.lower().endswith(tuple(extensions)) and not n.startswith(".")
           and os.path.isfile(os.path.join(folder, n))]
  if not names:
    raise DataError(folder, f"no {'/'.join(e.lstrip('.') for e in extensions)} files in this folder")
  return [os.path.join(folder, n) for n in order_frame_names(sorted(names), folder)]


def stem(path: str) -> str:
  """The file name without folder and extension (the frame's name, used to pair frames with masks)."""
  return os.path.splitext(os.path.basename(path))[0]
