"""Clip augmentation: one random transform shared by every frame of a clip, applied as a single warp per frame.

A clip transform is a 3x3 matrix mapping output pixels to input pixels (random resized crop, horizontal flip and a
small affine, composed) plus colour-jitter factors. Frames are warped bilinearly and masks with nearest
neighbour, so object ids never mix. Pseudo-clips of a static image add a different affine per frame first.
All randomness comes from the `np.random.Generator` passed in, so a clip is a pure function of its seed.
"""

import dataclasses

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class AffineRange:
  """Ranges of a random affine transform about the image centre (degrees; fractions of the image size)."""
  rotation: float = 0.0
  shear: float = 0.0
  scale: tuple[float, float] = (1.0, 1.0)
  translation: float = 0.0


@dataclasses.dataclass(frozen=True)
class ClipAugmentation:
  """The augmentation shared by all frames of a training clip (defaults after STM/STCN practice)."""
  crop_scale: tuple[float, float] = (0.36, 1.0)     # area fraction of the random resized crop
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio (width / height) of the crop
  flip_probability: float = 0.5
  affine: AffineRange = AffineRange(rotation=10.0, shear=5.0, scale=(0.95, 1.05))
  brightness: float = 0.2   # factors drawn from [1 - x, 1 + x]
  contrast: float = 0.2
  saturation: float = 0.2
  hue: float = 0.03         # fraction of a full turn of the hue circle


# The per-frame transforms that turn one static image into a pseudo-video (STCN's static-image stage).
PSEUDO_CLIP_AFFINE = AffineRange(rotation=20.0, shear=10.0, scale=(0.9, 1.1), translation=0.1)


def random_affine(rng: np.random.Generator, spec: AffineRange, hw: tuple[int, int]) -> np.ndarray:
  """A random forward affine matrix (input -> output pixels) about the image centre."""
  h, w = hw
  angle = np.deg2rad(rng.uniform(-spec.rotation, spec.rotation))
  shear = np.deg2rad(rng.uniform(-spec.shear, spec.shear))
  scale = rng.uniform(*spec.scale)
  shift = rng.uniform(-spec.translation, spec.translation, 2) * (w, h)
  centre = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
  rotate = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
  shear_m = np.array([[1, np.tan(shear), 0], [0, 1, 0], [0, 0, 1]])
  move = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]])
  return move @ centre @ rotate @ shear_m @ np.diag([scale, scale, 1]) @ np.linalg.inv(centre)


@dataclasses.dataclass(frozen=True)
class ClipTransform:
  forward: np.ndarray       # [3 3] input pixel (x, y, 1) -> output pixel
  out_hw: tuple[int, int]
  jitter: np.ndarray        # [4] brightness, contrast, saturation factors and hue turn


def sample_clip_transform(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                          spec: ClipAugmentation) -> ClipTransform:
  """Draws one clip transform: affine, then flip, then a random resized crop to `out_hw`."""
  h, w = in_hw
  forward = random_affine(rng, spec.affine, in_hw)
  if rng.uniform() < spec.flip_probability:
    forward = np.array([[-1, 0, w], [0, 1, 0], [0, 0, 1]]) @ forward
  area = rng.uniform(*spec.crop_scale) * h * w
  ratio = np.exp(rng.uniform(*np.log(spec.crop_ratio)))
  crop_w = min(w, np.sqrt(area * ratio))
  crop_h = min(h, np.sqrt(area / ratio))
  x0, y0 = rng.uniform(0, w - crop_w), rng.uniform(0, h - crop_h)
  crop = np.array([[out_hw[1] / crop_w, 0, -x0 * out_hw[1] / crop_w],
                   [0, out_hw[0] / crop_h, -y0 * out_hw[0] / crop_h], [0, 0, 1]])
  jitter = np.array([rng.uniform(1 - spec.brightness, 1 + spec.brightness),
                     rng.uniform(1 - spec.contrast, 1 + spec.contrast),
                     rng.uniform(1 - spec.saturation, 1 + spec.saturation),
                     rng.uniform(-spec.hue, spec.hue)])
  return ClipTransform(crop @ forward, out_hw, jitter)


def resize_transform(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> ClipTransform:
  """The plain resize to `out_hw` with no colour change (the fallback when every random crop loses the objects)."""
  scale = np.diag([out_hw[1] / in_hw[1], out_hw[0] / in_hw[0], 1.0])
  return ClipTransform(scale, out_hw, np.array([1.0, 1.0, 1.0, 0.0]))


def warp(image: np.ndarray, forward: np.ndarray, out_hw: tuple[int, int], *, nearest: bool) -> np.ndarray:
  """Warps uint8 [h w] or [h w 3] by a forward matrix; pixels from outside the input are 0."""
  inverse = np.linalg.inv(forward)
  resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
  out = Image.fromarray(image).transform((out_hw[1], out_hw[0]), Image.Transform.AFFINE,
                                         tuple(inverse[:2].reshape(-1)), resample=resample)
  return np.asarray(out)


# RGB <-> YIQ: a hue change is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def colour_jitter(frame: np.ndarray, jitter: np.ndarray) -> np.ndarray:
  """Brightness, contrast, saturation and hue changes of a uint8 [h w 3] frame (torchvision's order)."""
  brightness, contrast, saturation, hue = jitter
  x = frame.astype(np.float32) * brightness
  grey = x @ _RGB_TO_YIQ[0]
  x = (x - grey.mean()) * contrast + grey.mean()
  grey = x @ _RGB_TO_YIQ[0]
  x = (x - grey[..., None]) * saturation + grey[..., None]
  if hue:
    angle = 2 * np.pi * hue
    rotate = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    x = x @ (_YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ).T.astype(np.float32)
  return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def apply_clip_transform(transform: ClipTransform, frames: list[np.ndarray], masks: list[np.ndarray],
                         frame_forwards: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Applies a clip transform (after optional per-frame forwards) to frames and masks.

  Returns frames uint8 [t h w 3] and masks uint8 [t h w], at `transform.out_hw`.
  """
  out_frames, out_masks = [], []
  for t, (frame, mask) in enumerate(zip(frames, masks)):
    forward = transform.forward if frame_forwards is None else transform.forward @ frame_forwards[t]
    out_frames.append(colour_jitter(warp(frame, forward, transform.out_hw, nearest=False), transform.jitter))
    out_masks.append(warp(mask, forward, transform.out_hw, nearest=True))
  return np.stack(out_frames), np.stack(out_masks)
