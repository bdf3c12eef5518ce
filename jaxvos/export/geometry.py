"""Frame geometry in NumPy alone: the half of `jaxvos.inference.frames` that runners without JAX (ONNX, PyTorch) use.

The same conventions as the JAX engine: a frame of input size H x W is seen at its *model size* (the shorter side
resized to `size`, aspect kept; -1 keeps it, then zero padding, split evenly, to multiples of 16), normalised
with the ImageNet mean and std; probabilities come back unpadded and resized (PyTorch's bilinear) to H x W.
The resizes replicate the JAX ones: `jax.image.resize(..., "linear", antialias=True)` into the model (a triangle
filter widened when downsampling, as a weight matrix per axis) and `jaxvos.ops.resize.resize_bilinear` out of it.
"""

from collections.abc import Mapping
import dataclasses
import functools

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclasses.dataclass(frozen=True)
class Geometry:
  input_hw: tuple[int, int]
  resized_hw: tuple[int, int]
  pads: tuple[int, int, int, int]  # top, bottom, left, right

  @property
  def model_hw(self) -> tuple[int, int]:
    top, bottom, left, right = self.pads
    return self.resized_hw[0] + top + bottom, self.resized_hw[1] + left + right


def plan_geometry(input_hw: tuple[int, int], size: int = 480, multiple: int = 16) -> Geometry:
  """Shorter side to `size` (-1 keeps it), then even zero padding to multiples of `multiple`."""
  h, w = input_hw
  if size == -1:
    resized = (h, w)
  else:
    scale = size / min(h, w)
    resized = (size, max(1, round(w * scale))) if h <= w else (max(1, round(h * scale)), size)
  pad_h, pad_w = (-resized[0]) % multiple, (-resized[1]) % multiple
  return Geometry((int(h), int(w)), resized, (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2))


def object_ids_of(annotations: Mapping[int, np.ndarray]) -> np.ndarray:
  """Sorted object ids (1..255) found in the annotations."""
  ids = np.unique(np.concatenate([np.unique(a) for a in annotations.values()])) if annotations else np.zeros(0)
  ids = ids[ids != 0].astype(np.int64)
  if ids.size == 0:
    raise ValueError("the annotations hold no object")
  return ids


def normalize(frames: np.ndarray) -> np.ndarray:
  """uint8 RGB [... h w 3] -> float32 normalised with the ImageNet mean and std."""
  return (frames.astype(np.float32) / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD


@functools.lru_cache(maxsize=32)
def _antialiased_weights(in_size: int, out_size: int) -> np.ndarray:
  """float32 [in out]: `jax.image.resize`'s linear (triangle) weights, widened by 1/scale when downsampling."""
  inv_scale = np.float32(1.0 / (out_size / in_size))  # JAX: a Python float, rounded once to float32
  kernel_scale = max(inv_scale, np.float32(1.0))
  sample = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * inv_scale - np.float32(0.5)
  x = np.abs(sample[None, :] - np.arange(in_size, dtype=np.float32)[:, None]) / kernel_scale
  weights = np.maximum(np.float32(0.0), np.float32(1.0) - np.abs(x))
  total = np.sum(weights, axis=0, keepdims=True)
  weights = np.where(np.abs(total) > 1000.0 * np.finfo(np.float32).eps,
                     weights / np.where(total != 0, total, 1), 0)
  inside = (sample >= -0.5) & (sample <= in_size - 0.5)
  return np.where(inside[None, :], weights, 0).astype(np.float32)


def resize_antialiased(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """[... h w c] float32 -> [... H W c]: `jax.image.resize(x, ..., "linear", antialias=True)`."""
  h, w = x.shape[-3:-1]
  if out_hw[0] != h:
    x = np.einsum("...hwc,hH->...Hwc", x, _antialiased_weights(h, out_hw[0]))
  if out_hw[1] != w:
    x = np.einsum("...hwc,wW->...hWc", x, _antialiased_weights(w, out_hw[1]))
  return x.astype(np.float32)


def preprocess(frame: np.ndarray, geometry: Geometry) -> np.ndarray:
  """uint8 [H W 3] -> float32 [h w 3] at the model size (antialiased resize, normalised, zero-padded)."""
  x = normalize(frame)
  if geometry.resized_hw != geometry.input_hw:
    x = resize_antialiased(x, geometry.resized_hw)
  top, bottom, left, right = geometry.pads
  return np.pad(x, ((top, bottom), (left, right), (0, 0)))


@functools.lru_cache(maxsize=32)
def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """PyTorch's half-pixel bilinear taps (align_corners=False) along one axis, for an explicit output size."""
  ratio = in_size / out_size
  source = np.maximum((np.arange(out_size) + 0.5) * ratio - 0.5, 0.0)
  lower = np.minimum(np.floor(source).astype(np.int32), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  return lower, upper, (source - lower).astype(np.float32)


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """[h w c] -> [H W c]: `F.interpolate(..., size=out_hw, mode="bilinear", align_corners=False)`."""
  for axis, size in ((0, out_hw[0]), (1, out_hw[1])):
    if x.shape[axis] == size:
      continue
    lower, upper, frac = _bilinear_taps(x.shape[axis], size)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    x = np.take(x, lower, axis=axis) * (1 - frac) + np.take(x, upper, axis=axis) * frac
  return x


def postprocess(probs: np.ndarray, geometry: Geometry) -> np.ndarray:
  """Probabilities [o+1 h w] at the model size -> int32 [H W] slot indices (0 background) at the input size."""
  top, bottom, left, right = geometry.pads
  h, w = probs.shape[-2:]
  probs = np.moveaxis(probs[:, top:h - bottom, left:w - right], 0, -1)
  return np.argmax(resize_bilinear(probs, geometry.input_hw), axis=-1).astype(np.int32)


def masks_at_model_size(ids: np.ndarray, slot_ids: np.ndarray, geometry: Geometry) -> np.ndarray:
  """Id map [H W] -> slot map uint8 [h w] at the padded model size (nearest; 0 in the padding and elsewhere).

  Pixel value i + 1 marks object slot i (`slot_ids[i]` in the user's ids).
  """
  from data_pipelines.image_io import resize_nearest  # pylint: disable=g-import-not-at-top  (NumPy and PIL)
  lookup = np.zeros(256, np.uint8)
  lookup[np.asarray(slot_ids, np.int64)] = np.arange(1, len(slot_ids) + 1, dtype=np.uint8)
  slots = lookup[ids]
  if geometry.resized_hw != geometry.input_hw:
    slots = resize_nearest(slots, geometry.resized_hw)
  top, bottom, left, right = geometry.pads
  return np.pad(slots, ((top, bottom), (left, right)))


def one_hot_slots(slot_map: np.ndarray, num_objects: int) -> np.ndarray:
  """uint8 [h w] slot map -> float32 [o h w] masks."""
  return (slot_map[None] == np.arange(1, num_objects + 1, dtype=slot_map.dtype)[:, None, None]).astype(np.float32)
