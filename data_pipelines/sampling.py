"""Training clips with grain: deterministic, resumable, sharded over hosts.

A clip dataset is a grain `MapDataset` whose element i is a function of (seed, i) only:

  items (videos or static images) -> shuffle per epoch -> repeat -> (global index, item)
    -> random_map(sampler)  # load frames, pick frames and objects, augment: one clip
    -> [shard_index::shard_count] -> batch(global_batch_size / shard_count)

Because element i depends only on the seed and i, a resumed iterator (`get_state` / `set_state`) continues on
exactly the same data, and the hosts of a multi-host run read disjoint shards whose batches, taken together, are
the same global batches a single host would read. The global index also gives the training step
(`index // global_batch_size`), which drives the frame-gap schedule without any shared mutable state.

Each clip follows the contract of `jaxvos.types.ClipBatch` (without the batch axis):
`frames` uint8 [t h w 3], `labels` uint8 [t h w] (0 background, objects 1..k re-indexed, k <= max_objects),
`object_valid` bool [max_objects], `frame_indices` int32 [t] (the source frames, for inspection).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import grain
import numpy as np

from data_pipelines import augment
from data_pipelines.errors import DataError
from data_pipelines.image_io import VOID_ID


class AnnotatedVideo(Protocol):
  """What the video sampler needs of a sequence (`VideoSequence`, `SyntheticSequence`)."""
  name: str

  def __len__(self) -> int: ...
  @property
  def annotated_indices(self) -> list[int]: ...
  @property
  def first_appearance(self) -> dict[int, int]: ...
  def frame(self, index: int) -> np.ndarray: ...
  def mask(self, index: int, frame_hw: tuple[int, int] | None = None) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class GapSchedule:
  """Maximum gap between consecutive clip frames, piecewise constant in the training step.

  `gaps[i]` holds from `boundaries[i - 1]` (or step 0) up to `boundaries[i]`; e.g. STCN's curriculum grows the
  gap, then shrinks it for the last part of training.
  """
  gaps: tuple[int, ...] = (1,)
  boundaries: tuple[int, ...] = ()

  def __post_init__(self):
    if len(self.boundaries) != len(self.gaps) - 1 or min(self.gaps) < 1:
      raise ValueError(f"GapSchedule needs len(gaps) - 1 boundaries and gaps >= 1, got {self}")

  def __call__(self, step: int) -> int:
    return self.gaps[int(np.searchsorted(self.boundaries, step, side="right"))]


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """What one training clip looks like."""
  num_frames: int = 3
  crop_hw: tuple[int, int] = (384, 384)
  max_objects: int = 3
  gap_schedule: GapSchedule = GapSchedule()
  augmentation: augment.ClipAugmentation = augment.ClipAugmentation()
  min_object_pixels: int = 1   # an object counts as present in the first frame from this many pixels
  max_tries: int = 10          # random crops tried before falling back to the whole frame


def choose_frames(rng: np.random.Generator, available: Sequence[int], num_frames: int, max_gap: int) -> list[int]:
  """Picks `num_frames` increasing entries of `available` with random gaps in [1, max_gap] between them.

  The gap is counted in entries of `available` (annotated frames: every frame in DAVIS, every 5th in
  YouTube-VOS) and shrinks when the video is too short for it. Videos shorter than the clip repeat frames.
  """
  count = len(available)
  if count < num_frames:
    return [available[min(i, count - 1)] for i in range(num_frames)]
  max_gap = max(1, min(max_gap, (count - 1) // max(1, num_frames - 1)))
  gaps = rng.integers(1, max_gap + 1, num_frames - 1)
  start = int(rng.integers(0, count - int(gaps.sum())))
  positions = start + np.concatenate([[0], np.cumsum(gaps)])
  return [available[int(p)] for p in positions]


def select_objects(rng: np.random.Generator, labels: np.ndarray, spec: ClipSpec) -> dict[str, np.ndarray] | None:
  """Keeps up to `max_objects` objects of the first frame, re-indexed 1..k in random order; None if there is none.

  Objects absent from the first frame, and void (255) pixels, become background.
  """
  ids, counts = np.unique(labels[0], return_counts=True)
  present = ids[(ids != 0) & (ids != VOID_ID) & (counts >= spec.min_object_pixels)]
  if not len(present):
    return None
  kept = rng.permutation(present)[:spec.max_objects]
  relabel = np.zeros(256, np.uint8)
  relabel[kept] = np.arange(1, len(kept) + 1)
  return {"labels": relabel[labels], "object_valid": np.arange(spec.max_objects) < len(kept)}


class _ClipSampler(grain.transforms.RandomMap):
  """Shared retry logic: draw a candidate clip until its first frame keeps at least one object."""

  def __init__(self, spec: ClipSpec, global_batch_size: int):
    self.spec = spec
    self.global_batch_size = global_batch_size

  def random_map(self, element: tuple[int, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    index, item = element
    max_gap = self.spec.gap_schedule(index // self.global_batch_size)
    for attempt in range(self.spec.max_tries + 1):
      frames, masks, frame_indices, forwards = self.load(item, rng, max_gap, fallback=attempt == self.spec.max_tries)
      in_hw = frames[0].shape[:2]
      if attempt < self.spec.max_tries:
        transform = augment.sample_clip_transform(rng, in_hw, self.spec.crop_hw, self.spec.augmentation)
      else:  # Every random crop lost the objects: take the whole frame.
        transform, forwards = augment.resize_transform(in_hw, self.spec.crop_hw), None
      clip_frames, clip_masks = augment.apply_clip_transform(transform, frames, masks, forwards)
      selected = select_objects(rng, clip_masks, self.spec)
      if selected is not None:
        return {"frames": clip_frames, **selected, "frame_indices": np.asarray(frame_indices, np.int32)}
    where = getattr(item, "name", None) or getattr(item, "mask_path", str(item))
    raise DataError(where, "no annotated object in any frame a clip can start from")

  def load(self, item, rng, max_gap, fallback):
    raise NotImplementedError


class VideoClipSampler(_ClipSampler):
  """Clips of consecutive-in-time frames of one annotated video."""

  def load(self, item: AnnotatedVideo, rng, max_gap, fallback):
    available = item.annotated_indices
    if fallback:  # Start exactly where the first object appears, so the first frame surely holds an object.
      if not item.first_appearance:
        raise DataError(item.name, "no annotated object in any frame")
      after = available[available.index(min(item.first_appearance.values())):]
      frame_indices = [after[min(k, len(after) - 1)] for k in range(self.spec.num_frames)]
    else:
      frame_indices = choose_frames(rng, available, self.spec.num_frames, max_gap)
    frames = [item.frame(i) for i in frame_indices]
    masks = [item.mask(i, f.shape[:2]) for i, f in zip(frame_indices, frames)]
    return frames, masks, frame_indices, None


class PseudoClipSampler(_ClipSampler):
  """Pseudo-clips of one static image: a different random affine per frame, then the clip augmentation."""

  def __init__(self, spec: ClipSpec, global_batch_size: int,
               frame_affine: augment.AffineRange = augment.PSEUDO_CLIP_AFFINE):
    super().__init__(spec, global_batch_size)
    self.frame_affine = frame_affine

  def load(self, item, rng, max_gap, fallback):
    del max_gap
    frame, mask = item.load()
    t = self.spec.num_frames
    identity = np.eye(3)
    forwards = [identity if fallback else augment.random_affine(rng, self.frame_affine, frame.shape[:2])
                for _ in range(t)]
    return [frame] * t, [mask] * t, [0] * t, forwards


def _with_index(index: int, item: Any) -> tuple[int, Any]:
  return index, item


def clip_dataset(items: Sequence[Any], sampler: _ClipSampler, *, seed: int, shard_index: int = 0,
                 shard_count: int = 1, num_epochs: int | None = None) -> grain.MapDataset:
  """Batches of clips for one host: a deterministic, random-access grain dataset (see the module docstring).

  Args:
    items: videos (`AnnotatedVideo`) for a `VideoClipSampler`, `StaticImage`s for a `PseudoClipSampler`.
    sampler: makes one clip of an item; its `global_batch_size` is the batch over all hosts.
    seed: the only source of randomness: shuffling and every clip.
    shard_index, shard_count: this host's shard (`jax.process_index()`, `jax.process_count()`).
    num_epochs: passes over `items`; None repeats forever.
  """
  if sampler.global_batch_size % shard_count:
    raise ValueError(f"global batch {sampler.global_batch_size} is not divisible by {shard_count} shards")
  dataset = grain.MapDataset.source(list(items)).shuffle(seed=seed).repeat(num_epochs)
  dataset = dataset.map_with_index(_with_index).random_map(sampler, seed=seed)
  dataset = dataset[shard_index::shard_count]
  return dataset.batch(sampler.global_batch_size // shard_count, drop_remainder=True)


def clip_iterator(dataset: grain.MapDataset, num_threads: int = 4, prefetch: int = 8) -> grain.DatasetIterator:
  """A prefetching iterator over a clip dataset; `get_state()` / `set_state()` save and restore its position."""
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  return iter(dataset.to_iter_dataset(options))
