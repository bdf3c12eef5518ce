"""A deterministic generator of synthetic annotated videos, for tests and smoke training.

Each video shows textured objects moving over a textured background: several target objects, occlusions
(objects are drawn in a random depth order and cross each other), scale and rotation change, objects that enter
after the first frame, and distractors that share a target's shape family and texture but are not annotated.
Everything is a pure function of `(seed, config)`: the same seed gives the same bytes on every machine.

Shapes and textures are analytic (a star-shaped contour `r(theta)` and sums of sinusoids in object coordinates),
so every frame is rendered exactly, with no resampling of a sprite.
"""

import dataclasses
import functools
import os

import numpy as np
from PIL import Image

from data_pipelines import davis


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Sizes and difficulty of the generated videos. Lengths in pixels, speeds in pixels (radians) per frame."""
  height: int = 240
  width: int = 432
  num_frames: int = 24
  min_objects: int = 1
  max_objects: int = 3
  max_distractors: int = 2
  late_entry_probability: float = 0.3  # chance that a target (other than the first) enters after frame 0
  min_radius: float = 0.08             # object size as a fraction of the shorter side
  max_radius: float = 0.18
  max_speed: float = 0.015             # fraction of the shorter side per frame
  max_spin: float = 0.05               # radians per frame
  max_zoom: float = 0.015              # relative scale change per frame


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
  frames: np.ndarray                 # uint8 [t h w 3]
  labels: np.ndarray                 # uint8 [t h w], object ids 1..n, 0 background
  first_appearance: dict[int, int]   # object id -> first frame where it is visible
  distractors: np.ndarray            # uint8 [t h w], the id of the target a visible distractor imitates, else 0


@dataclasses.dataclass(frozen=True)
class _Texture:
  colours: np.ndarray     # [2 3] float
  waves: np.ndarray       # [k 3]: frequency u, frequency v, phase

  def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    mix = sum(np.sin(fu * u + fv * v + phase) for fu, fv, phase in self.waves) / len(self.waves)
    mix = (0.5 + 0.5 * mix)[..., None]
    return mix * self.colours[0] + (1 - mix) * self.colours[1]


@dataclasses.dataclass(frozen=True)
class _Sprite:
  texture: _Texture
  harmonics: np.ndarray   # [k 3]: order, amplitude, phase of the contour r(theta)
  radius: float
  start: np.ndarray       # [2] centre (y, x) at its first frame
  velocity: np.ndarray    # [2]
  angle: float
  spin: float
  zoom: float
  enter: int              # first frame where it is drawn

  def coverage(self, t: int, grid_y: np.ndarray, grid_x: np.ndarray):
    """(inside mask [h w] bool, object coordinates u, v) at frame t."""
    dt = t - self.enter
    centre = self.start + dt * self.velocity
    angle = self.angle + dt * self.spin
    scale = self.radius * np.exp(dt * self.zoom)
    dy, dx = grid_y - centre[0], grid_x - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / scale
    v = (-sin * dx + cos * dy) / scale
    theta = np.arctan2(v, u)
    contour = 1 + sum(a * np.cos(k * theta + p) for k, a, p in self.harmonics)
    return (u * u + v * v) <= contour * contour, u, v


def _random_texture(rng: np.random.Generator, base: np.ndarray | None = None) -> _Texture:
  colours = rng.uniform(0, 255, (2, 3)) if base is None else np.clip(base + rng.normal(0, 12, (2, 3)), 0, 255)
  waves = np.stack([rng.uniform(-9, 9, 3), rng.uniform(-9, 9, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1)
  return _Texture(colours, waves)


def _random_sprite(rng, config: SyntheticConfig, texture: _Texture, harmonics: np.ndarray | None,
                   enter: int) -> _Sprite:
  side = min(config.height, config.width)
  if harmonics is None:
    orders = rng.choice(np.arange(2, 7), 3, replace=False)
    harmonics = np.stack([orders, rng.uniform(0.05, 0.25, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1)
  radius = rng.uniform(config.min_radius, config.max_radius) * side
  if enter == 0:
    start = rng.uniform([0.2, 0.2], [0.8, 0.8]) * (config.height, config.width)
    direction = rng.uniform(0, 2 * np.pi)
  else:  # Enter from a border, moving inwards.
    edge = rng.integers(4)
    along = rng.uniform(0.25, 0.75)
    start = np.array([[0.0, along], [1.0, along], [along, 0.0], [along, 1.0]][edge]) * (config.height, config.width)
    direction = [np.pi / 2, -np.pi / 2, 0.0, np.pi][edge] + rng.uniform(-0.5, 0.5)
  speed = rng.uniform(0.3, 1.0) * config.max_speed * side
  velocity = speed * np.array([np.sin(direction), np.cos(direction)])
  return _Sprite(texture, harmonics, radius, start, velocity, rng.uniform(0, 2 * np.pi),
                 rng.uniform(-1, 1) * config.max_spin, rng.uniform(-1, 1) * config.max_zoom, enter)


def generate_video(seed: int, config: SyntheticConfig = SyntheticConfig()) -> SyntheticVideo:
  """Renders one video; a pure function of `(seed, config)`."""
  rng = np.random.default_rng(seed)
  num_targets = int(rng.integers(config.min_objects, config.max_objects + 1))
  targets = []
  for i in range(num_targets):
    late = i > 0 and rng.uniform() < config.late_entry_probability
    enter = int(rng.integers(1, max(2, config.num_frames // 2))) if late else 0
    targets.append(_random_sprite(rng, config, _random_texture(rng), None, enter))
  distractors = []
  for _ in range(int(rng.integers(0, config.max_distractors + 1))):
    twin = int(rng.integers(num_targets))  # Looks like this target, but is not annotated.
    texture = _random_texture(rng, targets[twin].texture.colours)
    distractors.append((_random_sprite(rng, config, texture, targets[twin].harmonics, 0), twin + 1))
  # Depth order, back to front: (sprite, label, imitated target); distractors carry label 0.
  layers = [(s, i + 1, 0) for i, s in enumerate(targets)] + [(s, 0, twin) for s, twin in distractors]
  layers = [layers[i] for i in rng.permutation(len(layers))]
  background = _random_texture(rng)
  grid_y, grid_x = np.mgrid[0:config.height, 0:config.width].astype(np.float64)
  pan = rng.uniform(-0.01, 0.01, 2)  # Slow background drift, so the background is not static.
  frames = np.empty((config.num_frames, config.height, config.width, 3), np.uint8)
  labels = np.zeros((config.num_frames, config.height, config.width), np.uint8)
  imitated = np.zeros_like(labels)
  for t in range(config.num_frames):
    image = background((grid_x / config.width + pan[1] * t) * 4, (grid_y / config.height + pan[0] * t) * 4)
    for sprite, label, twin in layers:
      if t < sprite.enter:
        continue
      inside, u, v = sprite.coverage(t, grid_y, grid_x)
      image[inside] = sprite.texture(u[inside], v[inside])
      labels[t][inside] = label
      imitated[t][inside] = twin
    noise = rng.normal(0, 3, image.shape)
    frames[t] = np.clip(image + noise, 0, 255).astype(np.uint8)
  first = {}
  for object_id in range(1, num_targets + 1):
    visible = np.flatnonzero((labels == object_id).any(axis=(1, 2)))
    if len(visible):
      first[object_id] = int(visible[0])
  return SyntheticVideo(frames, labels, first, imitated)


@functools.lru_cache(maxsize=8)
def _cached_video(seed: int, config: SyntheticConfig) -> SyntheticVideo:
  return generate_video(seed, config)


@dataclasses.dataclass(frozen=True)
class SyntheticSequence:
  """A generated video in memory, with the interface of `VideoSequence` (every frame annotated).

  Rendering happens on first access and the last few videos are cached per process.
  """
  seed: int
  config: SyntheticConfig = SyntheticConfig()

  @property
  def name(self) -> str:
    return f"synth-{self.seed:04d}"

  def __len__(self) -> int:
    return self.config.num_frames

  @property
  def annotated_indices(self) -> list[int]:
    return list(range(self.config.num_frames))

  @property
  def first_appearance(self) -> dict[int, int]:
    return _cached_video(self.seed, self.config).first_appearance

  def frame(self, index: int) -> np.ndarray:
    return _cached_video(self.seed, self.config).frames[index]

  def mask(self, index: int, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    del frame_hw  # Generated masks always match their frames.
    return _cached_video(self.seed, self.config).labels[index]


def write_davis(root: str, num_videos: int, seed: int = 0, config: SyntheticConfig = SyntheticConfig(),
                resolution: str = "480p", val_fraction: float = 0.2, prefix: str = "synth") -> list[str]:
  """Writes `num_videos` videos in the DAVIS 2017 layout (JPEG frames, indexed PNG masks on every frame).

  Video i is `generate_video(seed + i, config)`, named `<prefix>-<i:04d>`. The last `val_fraction` of the videos
  are listed in `ImageSets/2017/val.txt`, the others in `train.txt`. Returns the sequence names.
  """
  names = [f"{prefix}-{i:04d}" for i in range(num_videos)]
  for i, name in enumerate(names):
    video = generate_video(seed + i, config)
    frame_names = [f"{t:05d}" for t in range(config.num_frames)]
    for frame_name, frame in zip(frame_names, video.frames):
      path = os.path.join(root, "JPEGImages", resolution, name, f"{frame_name}.jpg")
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(frame).save(path, quality=95)
    davis.write_sequence(os.path.join(root, "Annotations", resolution, name), frame_names, video.labels)
  num_val = int(round(num_videos * val_fraction))
  sets = {"train": names[:num_videos - num_val], "val": names[num_videos - num_val:]}
  os.makedirs(os.path.join(root, "ImageSets", "2017"), exist_ok=True)
  for set_name, members in sets.items():
    with open(os.path.join(root, "ImageSets", "2017", f"{set_name}.txt"), "w", encoding="utf-8") as f:
      f.writelines(f"{m}\n" for m in members)
  return names

