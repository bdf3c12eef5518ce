"""Frame geometry shared by inference and training: resize to a working size, normalise, pad to 16, and back.

A video of input size H x W is segmented at a *model size*: the shorter side resized to `size` (aspect kept;
-1 keeps the input size) and then zero-padded (evenly, as STM/STCN) to multiples of 16. Videos whose model sizes
agree share one compiled `step`; resizing in and out is compiled per input size and is cheap. The NumPy half
(`Geometry`, `plan_geometry`, the ImageNet statistics) lives in `jaxvos.export.geometry`, which the runners
that must not import JAX (ONNX, PyTorch) share.
"""

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.image_io import resize_nearest
from jaxvos.export.geometry import IMAGENET_MEAN, IMAGENET_STD, Geometry, plan_geometry  # the NumPy half
from jaxvos.ops.resize import pad_to_multiple, resize_bilinear, unpad


def normalize(frames: jax.Array) -> jax.Array:
  """uint8 RGB [... h w 3] -> float32 normalised with the ImageNet mean and std."""
  return (frames.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def preprocess(frames: jax.Array, geometry: Geometry) -> jax.Array:
  """uint8 [t H W 3] -> float32 [t h w 3] at the model size (antialiased resize, normalised, zero-padded)."""
  x = normalize(frames)
  if geometry.resized_hw != geometry.input_hw:
    x = jax.image.resize(x, (x.shape[0], *geometry.resized_hw, 3), "linear", antialias=True)
  return pad_to_multiple(x)[0]


def postprocess(logits: jax.Array, geometry: Geometry) -> jax.Array:
  """logits [t o+1 h w] at the model size -> labels int32 [t H W] (slot index, 0 background).

  Probabilities, not logits, are resized back to the input size (bilinear, as STCN does), then argmax.
  """
  return jnp.argmax(probabilities(logits, geometry), axis=-1).astype(jnp.int32)


def probabilities(logits: jax.Array, geometry: Geometry) -> jax.Array:
  """logits [t o+1 h w] at the model size -> float32 [t H W o+1] probabilities at the input size.

  Softmax over the background and the object slots, unpadded and resized bilinearly; they sum to 1 per pixel.
  """
  probs = jnp.moveaxis(jax.nn.softmax(logits.astype(jnp.float32), axis=1), 1, -1)  # [t h w o+1]
  return resize_bilinear(unpad(probs, geometry.pads), geometry.input_hw)


def masks_at_model_size(ids: np.ndarray, slot_ids: np.ndarray, geometry: Geometry) -> np.ndarray:
  """Id map [H W] (input size) -> slot map uint8 [h w] at the padded model size (nearest, 0 in padding).

  Pixel value i + 1 marks object slot i (`slot_ids[i]` in the user's ids); ids not in `slot_ids` are 0.
  """
  lookup = np.zeros(256, np.uint8)
  lookup[slot_ids] = np.arange(1, len(slot_ids) + 1, dtype=np.uint8)
  slots = lookup[ids]
  if geometry.resized_hw != geometry.input_hw:
    slots = resize_nearest(slots, geometry.resized_hw)
  top, bottom, left, right = geometry.pads
  return np.pad(slots, ((top, bottom), (left, right)))


def one_hot_slots(slot_map: jax.Array, num_objects: int) -> jax.Array:
  """uint8 [... h w] slot map -> float32 [... o h w] masks."""
  return (slot_map[..., None, :, :] == jnp.arange(1, num_objects + 1, dtype=slot_map.dtype)[:, None, None]
          ).astype(jnp.float32)
