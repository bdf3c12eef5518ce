"""Multi-object pseudo-videos: objects cut out of annotated still images, pasted over another image, moving.

STM's pre-training on images (Oh et al., ICCV 2019: COCO and saliency datasets) at the scale of our data: each
object of an annotated image (a salient-object mask, every id of a DAVIS 2017 multi-object mask, the object of a
DAVIS 2016 frame) is a cut-out; a clip pastes a few of them over a background image with independent smooth
motion (translation with a little acceleration, rotation, scale change), a slowly panning and zooming camera,
occlusion (layers are drawn back to front in a random order, and the labels are what is visible), look-alike
distractors that are not annotated (a second, differently coloured copy of a target, or another object of the
target's own image, e.g. the other dancer of a DAVIS frame), and optionally objects that enter after frame 0.

A clip follows `jaxvos.types.ClipBatch` (without the batch axis): frames uint8 [t h w 3], labels uint8 [t h w]
(targets 1..k, k <= max_objects, at least one visible in frame 0), object_valid bool [max_objects], frame_indices
int32 [t] (0..t-1). With `annotate_late_entries` a clip also has first_frame int32 [max_objects]: the frame where
each object is first annotated (labels hold no pixel of it before), where the training unroll gives it to the
model (`jaxvos.training.step`); by default objects that enter later are unannotated distractors instead.

`PseudoVideoSampler` is a grain `RandomMap`: with `sampling.clip_dataset` element i is a pure function of
(seed, i); the element's item gives the first target and the others are drawn from the whole `pool` with the
element's random generator.
"""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from PIL import Image

from data_pipelines import augment, image_io
from data_pipelines.errors import DataError
from data_pipelines.sampling import ClipSpec


@dataclasses.dataclass(frozen=True)
class PseudoVideoConfig:
  """How pseudo-videos are composed. Sizes are fractions of the canvas's shorter side; angles in degrees."""
  min_objects: int = 1                # annotated objects per clip: uniform in [min_objects, spec.max_objects]
  same_source_probability: float = 0.5  # an extra target comes from the first target's image if it has others
  max_distractors: int = 2            # unannotated look-alikes per clip: uniform in [0, max_distractors]
  twin_probability: float = 0.6       # a distractor is a recoloured copy of a target (else a sibling object of
                                      # the target's image, else an object of a random image)
  late_entry_probability: float = 0.0  # chance that a target other than the first enters after frame 0
  annotate_late_entries: bool = False  # True: entering objects keep their id (and clips get `first_frame`);
                                       # False: they become unannotated distractors
  object_size: tuple[float, float] = (0.15, 0.45)  # sqrt(object area) in the first frame, log-uniform
  max_speed: float = 0.06             # centre displacement per frame
  max_acceleration: float = 0.01      # change of that displacement per frame
  max_rotation: float = 20.0          # initial angle
  max_spin: float = 4.0               # per frame
  max_zoom: float = 0.05              # log-scale change per frame
  camera_speed: float = 0.02          # background pan per frame, fraction of the visible window
  camera_zoom: float = 0.02           # background log-zoom per frame
  background_area: tuple[float, float] = (0.4, 1.0)  # area fraction of the background image in view
  min_source_pixels: int = 400        # objects smaller than this in their (size-capped) image are never cut out
  min_visible_pixels: int = 40        # a target with fewer visible pixels in its first frame is not annotated
  max_source_side: int = 512          # images are downscaled to this longest side when loaded
  cache_size: int = 128               # decoded source images kept per process

  def __post_init__(self):
    lo, hi = self.object_size
    if self.min_objects < 1 or self.max_distractors < 0 or not 0 < lo <= hi:
      raise ValueError(f"PseudoVideoConfig needs min_objects >= 1, max_distractors >= 0 and 0 < object_size[0] "
                       f"<= object_size[1], got {self}")
    for name in ("same_source_probability", "twin_probability", "late_entry_probability"):
      if not 0 <= getattr(self, name) <= 1:
        raise ValueError(f"PseudoVideoConfig's {name} must be in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Cutout:
  """One object of an image: its bounding box (with a margin) and a 0/255 alpha of the object alone."""
  rgba: np.ndarray        # uint8 [h w 4]
  area: int               # object pixels
  source: str             # the image it comes from (for inspection)


@dataclasses.dataclass(frozen=True)
class Layer:
  """One pasted object: where it is in every frame (`forwards[t]` maps cut-out pixels to canvas pixels)."""
  cutout: Cutout
  forwards: np.ndarray    # [t 3 3]
  label: int              # its id, 0 for an unannotated distractor
  enter: int = 0          # first frame where it is drawn


@dataclasses.dataclass(frozen=True)
class Scene:
  """A clip before rendering: a background seen through a moving camera and layers drawn back to front."""
  background: np.ndarray  # uint8 [h w 3]
  camera: np.ndarray      # [t 3 3] background pixels -> canvas pixels
  layers: tuple[Layer, ...]
  out_hw: tuple[int, int]


# ---------------------------------------------------------------------------------------------------------------
# Cut-outs.


def cut_objects(frame: np.ndarray, ids: np.ndarray, source: str = "", min_pixels: int = 1,
                margin: int = 2) -> list[Cutout]:
  """One cut-out per object id of `ids` (a multi-object mask is split per object; void 255 is not an object).

  The alpha of object k is 255 on `ids == k` only: pixels of other objects inside its box are transparent.
  Objects with fewer than `min_pixels` pixels are skipped.
  """
  values, counts = np.unique(ids, return_counts=True)
  cutouts = []
  for value, count in zip(values.tolist(), counts.tolist()):
    if value in (0, image_io.VOID_ID) or count < min_pixels:
      continue
    inside = ids == value
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    y0, y1 = max(0, rows[0] - margin), min(ids.shape[0], rows[-1] + 1 + margin)
    x0, x1 = max(0, cols[0] - margin), min(ids.shape[1], cols[-1] + 1 + margin)
    alpha = np.where(inside[y0:y1, x0:x1], 255, 0).astype(np.uint8)
    rgba = np.concatenate([frame[y0:y1, x0:x1], alpha[..., None]], axis=-1)
    cutouts.append(Cutout(np.ascontiguousarray(rgba), count, f"{source}#{value}"))
  return cutouts


def _source_key(item: Any) -> str:
  if hasattr(item, "image_path"):
    return item.image_path
  video, index = getattr(item, "video", None), getattr(item, "index", None)
  if video is not None and hasattr(video, "frame_paths"):
    return video.frame_paths[index]
  return getattr(item, "name", repr(item))


def _capped(frame: np.ndarray, ids: np.ndarray | None, max_side: int):
  scale = max_side / max(frame.shape[:2]) if max_side else 1.0
  if scale >= 1.0:
    return frame, ids
  size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
  frame = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
  return frame, None if ids is None else image_io.resize_nearest(ids, size[::-1])


class _Keyed:
  """An item hashed by the path of its image, so loads can be cached (video sequences are not hashable)."""

  def __init__(self, item: Any):
    self.item, self.key = item, _source_key(item)

  def __hash__(self):
    return hash(self.key)

  def __eq__(self, other):
    return self.key == other.key


def _load_cutouts(keyed: _Keyed, min_pixels: int, max_side: int) -> tuple[Cutout, ...]:
  frame, ids = keyed.item.load()
  frame, ids = _capped(frame, ids, max_side)
  return tuple(cut_objects(frame, ids, keyed.key, min_pixels))


def _load_background(keyed: _Keyed, max_side: int) -> np.ndarray:
  item = keyed.item
  if hasattr(item, "image_path"):
    frame = image_io.read_frame(item.image_path)
  elif hasattr(item, "video"):
    frame = item.video.frame(item.index)
  else:
    frame = item.load()[0]
  return _capped(frame, None, max_side)[0]


# ---------------------------------------------------------------------------------------------------------------
# Motion.


def _matrix(tx=0.0, ty=0.0, scale=1.0, angle=0.0, flip=False) -> np.ndarray:
  """translate(tx, ty) @ rotate(angle, radians) @ scale @ (horizontal flip)."""
  cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
  sign = -1.0 if flip else 1.0
  return np.array([[sign * cos, -sin, tx], [sign * sin, cos, ty], [0.0, 0.0, 1.0]])


def random_trajectory(rng: np.random.Generator, config: PseudoVideoConfig, num_frames: int,
                      out_hw: tuple[int, int], enter: int = 0) -> np.ndarray:
  """Object centres (x, y) in canvas pixels, [t 2]: constant velocity plus a little acceleration from `enter`.

  An object present from frame 0 starts inside the canvas and is turned back (per axis) if it would leave it by
  the last frame; one that enters later starts on a border and moves inwards (or appears in place).
  """
  h, w = out_hw
  side = min(h, w)
  direction = rng.uniform(0, 2 * np.pi)
  speed = rng.uniform(0.0, config.max_speed) * side
  start = rng.uniform(0.2, 0.8, 2) * (w, h)
  if enter > 0 and rng.uniform() < 0.7:  # Enter through a border, moving inwards.
    edge = int(rng.integers(4))
    along = rng.uniform(0.25, 0.75)
    start = np.array([[along, 0.0], [along, 1.0], [0.0, along], [1.0, along]][edge]) * (w, h)
    direction = [np.pi / 2, -np.pi / 2, 0.0, np.pi][edge] + rng.uniform(-0.5, 0.5)
    speed = max(speed, 0.5 * config.max_speed * side)
  velocity = speed * np.array([np.cos(direction), np.sin(direction)])
  acceleration = rng.normal(0.0, config.max_acceleration * side, 2)
  steps = np.maximum(np.arange(num_frames) - enter, 0)[:, None]
  if enter == 0:
    end = start + velocity * steps[-1] + 0.5 * acceleration * steps[-1] ** 2
    leaves = (end < 0.05 * np.array([w, h])) | (end > 0.95 * np.array([w, h]))
    velocity, acceleration = np.where(leaves, -velocity, velocity), np.where(leaves, -acceleration, acceleration)
  return start + velocity * steps + 0.5 * acceleration * steps ** 2


def random_layer(rng: np.random.Generator, config: PseudoVideoConfig, cutout: Cutout, num_frames: int,
                 out_hw: tuple[int, int], *, label: int, enter: int = 0, flip_probability: float = 0.5,
                 size: float | None = None) -> Layer:
  """Places a cut-out with a random smooth motion: trajectory, rotation and scale change from frame `enter`."""
  lo, hi = config.object_size
  size = np.exp(rng.uniform(np.log(lo), np.log(hi))) if size is None else size
  scale0 = size * min(out_hw) / np.sqrt(cutout.area)
  centres = random_trajectory(rng, config, num_frames, out_hw, enter)
  steps = np.maximum(np.arange(num_frames) - enter, 0)
  angles = np.deg2rad(rng.uniform(-config.max_rotation, config.max_rotation)
                      + rng.uniform(-config.max_spin, config.max_spin) * steps)
  scales = scale0 * np.exp(rng.uniform(-config.max_zoom, config.max_zoom) * steps)
  flip = bool(rng.uniform() < flip_probability)
  h, w = cutout.rgba.shape[:2]
  centre = _matrix(-w / 2, -h / 2)
  forwards = np.stack([_matrix(x, y, s, a, flip) @ centre for (x, y), s, a in zip(centres, scales, angles)])
  return Layer(cutout, forwards, label, enter)


def random_camera(rng: np.random.Generator, config: PseudoVideoConfig, background_hw: tuple[int, int],
                  out_hw: tuple[int, int], num_frames: int, flip: bool) -> np.ndarray:
  """[t 3 3] background -> canvas: a window of the background with the canvas's aspect, panning and zooming."""
  bh, bw = background_hw
  h, w = out_hw
  fit = min(bw / w, bh / h)  # The largest window of the canvas's aspect that fits the background.
  zoom0 = np.sqrt(rng.uniform(*config.background_area))
  log_zoom = rng.uniform(-config.camera_zoom, config.camera_zoom)
  pan = rng.uniform(-config.camera_speed, config.camera_speed, 2)
  start = rng.uniform(0, 1, 2)
  cameras = []
  for t in range(num_frames):
    window = min(1.0, zoom0 * np.exp(log_zoom * t)) * fit  # background pixels per canvas pixel
    room = np.array([bw - window * w, bh - window * h])
    x0, y0 = np.clip(start * room + pan * t * window * np.array([w, h]), 0, room)
    forward = np.linalg.inv(np.array([[window, 0, x0], [0, window, y0], [0, 0, 1]]))
    if flip:
      forward = np.array([[-1.0, 0, w], [0, 1, 0], [0, 0, 1]]) @ forward
    cameras.append(forward)
  return np.stack(cameras)


# ---------------------------------------------------------------------------------------------------------------
# Rendering.


def _paste(canvas: np.ndarray, labels: np.ndarray, rgba: Image.Image, forward: np.ndarray, label: int) -> None:
  """Alpha-composites a warped RGBA cut-out over float32 `canvas` [h w 3] in place; its alpha >= 1/2 -> label.

  Only the canvas window that the cut-out's corners can reach is warped and blended.
  """
  w, h = rgba.size
  corners = forward @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], np.float64)
  x0, y0 = np.maximum(np.floor(corners[:2].min(axis=1)).astype(int) - 1, 0)
  x1, y1 = np.minimum(np.ceil(corners[:2].max(axis=1)).astype(int) + 1, (canvas.shape[1], canvas.shape[0]))
  if x1 <= x0 or y1 <= y0:
    return
  inverse = np.linalg.inv(_matrix(-x0, -y0) @ forward)
  window = np.asarray(rgba.transform((int(x1 - x0), int(y1 - y0)), Image.Transform.AFFINE,
                                     tuple(inverse[:2].reshape(-1)), resample=Image.Resampling.BILINEAR))
  alpha = window[..., 3:].astype(np.float32) * (1 / 255)
  region = canvas[y0:y1, x0:x1]
  region += alpha * (window[..., :3] - region)
  labels[y0:y1, x0:x1][window[..., 3] >= 128] = label


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
  """Draws a scene: (frames uint8 [t h w 3], labels uint8 [t h w]); later layers cover earlier ones."""
  h, w = scene.out_hw
  background = Image.fromarray(scene.background)
  images = [Image.fromarray(layer.cutout.rgba) for layer in scene.layers]
  frames, labels = [], []
  for t, camera in enumerate(scene.camera):
    inverse = np.linalg.inv(camera)
    canvas = np.asarray(background.transform((w, h), Image.Transform.AFFINE, tuple(inverse[:2].reshape(-1)),
                                             resample=Image.Resampling.BILINEAR), np.float32).copy()
    ids = np.zeros((h, w), np.uint8)
    for layer, image in zip(scene.layers, images):
      if t >= layer.enter:
        _paste(canvas, ids, image, layer.forwards[t], layer.label)
    frames.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    labels.append(ids)
  return np.stack(frames), np.stack(labels)


def annotate(labels: np.ndarray, max_objects: int, min_visible_pixels: int, late_entries: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Keeps the targets that are visible enough, re-indexed 1..k in their order: (labels, object_valid, first_frame).

  A target's first frame is the first where it has `min_visible_pixels`; earlier pixels of it become background.
  Without `late_entries` only targets whose first frame is 0 are kept. Dropped targets become background.
  """
  t = labels.shape[0]
  counts = np.stack([np.bincount(frame.reshape(-1), minlength=256) for frame in labels])  # [t 256]
  visible = counts >= max(1, min_visible_pixels)
  relabel = np.zeros((t, 256), np.uint8)
  first_frame = np.zeros(max_objects, np.int32)
  new_id = 0
  for old_id in range(1, 256):
    frames_visible = np.flatnonzero(visible[:, old_id])
    if not len(frames_visible) or (frames_visible[0] > 0 and not late_entries) or new_id == max_objects:
      continue
    first_frame[new_id] = frames_visible[0]
    new_id += 1
    relabel[frames_visible[0]:, old_id] = new_id
  labels = np.take_along_axis(relabel, labels.reshape(t, -1).astype(np.intp), axis=1).reshape(labels.shape)
  return labels, np.arange(max_objects) < new_id, first_frame


# ---------------------------------------------------------------------------------------------------------------
# The sampler.


def _random_jitter(rng: np.random.Generator, spec: augment.ClipAugmentation, strength: float = 1.0) -> np.ndarray:
  """Brightness, contrast and saturation factors and a hue turn (`augment.colour_jitter`), ranges x strength."""
  return np.array([rng.uniform(1 - spec.brightness * strength, 1 + spec.brightness * strength),
                   rng.uniform(1 - spec.contrast * strength, 1 + spec.contrast * strength),
                   rng.uniform(1 - spec.saturation * strength, 1 + spec.saturation * strength),
                   rng.uniform(-spec.hue, spec.hue) * strength])


def _recoloured(rng: np.random.Generator, cutout: Cutout, spec: augment.ClipAugmentation, strength=1.0) -> Cutout:
  """A copy with its own colour jitter (so two copies of one object look alike but not identical)."""
  rgb = augment.colour_jitter(cutout.rgba[..., :3], _random_jitter(rng, spec, strength))
  return dataclasses.replace(cutout, rgba=np.concatenate([rgb, cutout.rgba[..., 3:]], axis=-1))


def _centred(layer: Layer, out_hw: tuple[int, int]) -> Layer:
  """The layer moved so that its cut-out's centre is the canvas centre in every frame."""
  h, w = layer.cutout.rgba.shape[:2]
  forwards = []
  for forward in layer.forwards:
    x, y, _ = forward @ np.array([w / 2, h / 2, 1.0])
    forwards.append(_matrix(out_hw[1] / 2 - x, out_hw[0] / 2 - y) @ forward)
  return dataclasses.replace(layer, forwards=np.stack(forwards))


class PseudoVideoSampler(grain.transforms.RandomMap):
  """Makes one pseudo-video clip per (global index, item); see the module docstring.

  Args:
    spec: clip size (`num_frames`, `crop_hw` is the canvas, `max_objects`), the colour-jitter and flip ranges of
      `augmentation`, and `max_tries` (scenes drawn before the fallback of one large, still object).
    global_batch_size: the batch over all hosts (for `sampling.clip_dataset`).
    pool: every item (`StaticImage`, `VideoFrame`: anything with `load() -> (frame, ids)`), where the other
      objects and the backgrounds are drawn from.
    config: how clips are composed.
    backgrounds: items whose frames are backgrounds (default `pool`).
  """

  def __init__(self, spec: ClipSpec, global_batch_size: int, pool: Sequence[Any],
               config: PseudoVideoConfig = PseudoVideoConfig(), backgrounds: Sequence[Any] | None = None):
    if not pool:
      raise ValueError("a pseudo-video sampler needs a non-empty pool of annotated images")
    self.spec, self.global_batch_size, self.config = spec, global_batch_size, config
    self.pool, self.backgrounds = list(pool), list(backgrounds or pool)
    self._make_caches()

  def _make_caches(self) -> None:
    self._cutouts = functools.lru_cache(max(1, self.config.cache_size))(_load_cutouts)
    self._background = functools.lru_cache(max(1, self.config.cache_size // 4))(_load_background)

  def __getstate__(self):  # Caches stay in their process: a pickled sampler (grain workers) starts empty.
    return {k: v for k, v in self.__dict__.items() if k not in ("_cutouts", "_background")}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._make_caches()

  def cutouts(self, item: Any) -> tuple[Cutout, ...]:
    return self._cutouts(_Keyed(item), self.config.min_source_pixels, self.config.max_source_side)

  def random_map(self, element: tuple[int, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    _, item = element
    spec, config = self.spec, self.config
    for attempt in range(spec.max_tries + 1):
      scene = self.plan(item, rng, fallback=attempt == spec.max_tries)
      frames, labels = render(scene)
      min_pixels = 1 if attempt == spec.max_tries else config.min_visible_pixels
      labels, valid, first = annotate(labels, spec.max_objects, min_pixels, config.annotate_late_entries)
      if (valid & (first == 0)).any():  # At least one object is annotated in frame 0.
        clip = {"frames": frames, "labels": labels, "object_valid": valid,
                "frame_indices": np.arange(spec.num_frames, dtype=np.int32)}
        if config.annotate_late_entries:
          clip["first_frame"] = first
        return clip
    raise DataError(_source_key(item), "no object of this image stays visible in a pseudo-video")

  def _primary(self, item: Any, rng: np.random.Generator) -> tuple[Cutout, ...]:
    """The cut-outs of the element's item, or of a random pool item if it has none big enough."""
    cutouts = self.cutouts(item)
    for _ in range(len(self.pool) if not cutouts else 0):
      cutouts = self.cutouts(self.pool[int(rng.integers(len(self.pool)))])
      if cutouts:
        break
    if not cutouts:
      raise DataError(_source_key(item), f"no object of at least min_source_pixels="
                      f"{self.config.min_source_pixels} pixels in this image or any image of the pool")
    return cutouts

  def plan(self, item: Any, rng: np.random.Generator, fallback: bool = False) -> Scene:
    """Draws a scene: targets (ids in draw order), distractors (label 0), a random depth order, a background."""
    spec, config = self.spec, self.config
    t, out_hw = spec.num_frames, spec.crop_hw
    siblings = self._primary(item, rng)
    first = int(rng.integers(len(siblings)))
    background = self._background(_Keyed(self.backgrounds[int(rng.integers(len(self.backgrounds)))]),
                                  config.max_source_side)
    camera = random_camera(rng, config, background.shape[:2], out_hw, t,
                           bool(rng.uniform() < spec.augmentation.flip_probability))
    background = augment.colour_jitter(background, _random_jitter(rng, spec.augmentation))
    if fallback:  # One large object, still, in the middle.
      still = dataclasses.replace(config, max_speed=0.0, max_acceleration=0.0, max_spin=0.0, max_zoom=0.0)
      layer = random_layer(rng, still, siblings[first], t, out_hw, label=1, size=0.5)
      return Scene(background, camera, (_centred(layer, out_hw),), out_hw)
    targets = [siblings[first]]
    for _ in range(int(rng.integers(min(config.min_objects, spec.max_objects), spec.max_objects + 1)) - 1):
      others = [c for i, c in enumerate(siblings) if i != first]
      if others and rng.uniform() < config.same_source_probability:
        targets.append(others[int(rng.integers(len(others)))])
      else:
        targets.append(self._random_cutout(rng))
    layers = [self._target_layer(rng, cutout, k + 1) for k, cutout in enumerate(targets)]
    for _ in range(int(rng.integers(0, config.max_distractors + 1))):
      layers.append(self._distractor_layer(rng, targets, siblings))
    layers = [layers[i] for i in rng.permutation(len(layers))]
    return Scene(background, camera, tuple(layers), out_hw)

  def _random_cutout(self, rng: np.random.Generator) -> Cutout:
    cutouts = self._primary(self.pool[int(rng.integers(len(self.pool)))], rng)
    return cutouts[int(rng.integers(len(cutouts)))]

  def _target_layer(self, rng: np.random.Generator, cutout: Cutout, label: int) -> Layer:
    spec, config = self.spec, self.config
    late = label > 1 and spec.num_frames > 1 and rng.uniform() < config.late_entry_probability
    enter = int(rng.integers(1, spec.num_frames)) if late else 0
    if late and not config.annotate_late_entries:
      label = 0  # Today's training unroll reads frame 0 only: an object that enters later is background.
    return random_layer(rng, config, _recoloured(rng, cutout, spec.augmentation, 0.5), spec.num_frames,
                        spec.crop_hw, label=label, enter=enter, flip_probability=spec.augmentation.flip_probability)

  def _distractor_layer(self, rng: np.random.Generator, targets: list[Cutout], siblings: tuple[Cutout, ...]
                        ) -> Layer:
    """An unannotated look-alike: a recoloured copy of a target, a sibling of the first target, or any object."""
    unused = [c for c in siblings if all(c is not target for target in targets)]
    if rng.uniform() < self.config.twin_probability:
      cutout = targets[int(rng.integers(len(targets)))]
    elif unused:
      cutout = unused[int(rng.integers(len(unused)))]
    else:
      cutout = self._random_cutout(rng)
    return random_layer(rng, self.config, _recoloured(rng, cutout, self.spec.augmentation), self.spec.num_frames,
                        self.spec.crop_hw, label=0, flip_probability=self.spec.augmentation.flip_probability)

