"""One inference engine for every family: whole videos under `lax.scan`, or one jitted `step` per frame.

`Segmenter(family, variables)` compiles once and is reused across videos: a video of a new model size (see
`jaxvos.inference.frames`) compiles `step` once more; input sizes only recompile the cheap resizes.

- `Segmenter.segment_video(frames, annotations)` reads frames lazily from any iterable, runs `step` under
  `lax.scan` over fixed-length chunks with the memory as the carry (the tail shorter than a chunk goes frame by
  frame, so two compilations serve every length), and yields label maps one chunk behind: the next chunk is
  queued on the device before a chunk's maps are fetched, so reading frames and using the maps on the host
  overlap the device's work. Device memory is bounded by two chunks and the fixed-capacity memory, whatever the
  video length.
- `Segmenter.stream(object_ids)` returns a `Stream`: call it with each frame as it arrives (live video); each
  call is one jitted `step` (the same scan body, over one frame).

Both give identical masks (tested). The family's per-frame aux outputs (`StepOutput.aux`) are collected per
video as host statistics (`Stream.aux_stats`: mean, min and max of each key over the frames), which
`segment --stats` prints. Objects may first appear at any frame: `annotations` maps a frame index to
an id map; ids not seen before are new objects, written into memory at that frame. `compute_dtype=jnp.bfloat16`
runs the network in bfloat16 (variables cast once, frames as they come; attention and aggregation stay float32:
`jaxvos.precision`).
"""

import functools
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvos import precision
from jaxvos.export import geometry as geometry_lib
from jaxvos.inference import frames as frames_lib
from jaxvos.models.family import Family


class Segmenter:
  """Compiled inference of one family with fixed variables (see module docstring)."""

  def __init__(self, family: Family, variables, *, size: int = 480, chunk: int = 16,
               compute_dtype: jnp.dtype = jnp.float32):
    self.family, self.size, self.chunk = family, size, chunk
    self.variables = precision.cast_floats(variables, compute_dtype)
    self._init_memory = jax.jit(family.init_memory)
    self._scan = jax.jit(functools.partial(_scan_chunk, family), donate_argnums=1)  # state updated in place
    self._preprocess = jax.jit(lambda x, geometry: frames_lib.preprocess(x, geometry).astype(compute_dtype),
                               static_argnums=1)
    self._postprocess = jax.jit(_labels, static_argnums=2)

  def segment_video(self, frames: Iterable[np.ndarray], annotations: Mapping[int, np.ndarray],
                    stats: dict | None = None) -> Iterator[np.ndarray]:
    """Yields uint8 [H W] id maps, one per frame in order; frames before the first annotation are all 0.

    Pipelined by one chunk: chunk k + 1 is read and queued on the device before chunk k's maps are fetched and
    yielded, so the host's work (decoding the next frames, whatever the caller does with the maps) overlaps the
    device's. If reading a frame fails, the maps of the chunks already queued are yielded before the error is
    raised (the frames of a chunk not yet full are not segmented).
    `stats`, if given, receives the family's aux statistics of the video (`Stream.aux_stats`) once the last
    frame has been yielded.
    """
    slot_ids = geometry_lib.object_ids_of(annotations)
    stream, pending, in_flight = Stream(self, slot_ids), [], None
    try:
      for t, frame in enumerate(frames):
        if not stream.started:
          if t in annotations:
            yield stream(frame, annotations[t])
          else:
            yield np.zeros(frame.shape[:2], np.uint8)
          continue
        pending.append((frame, annotations.get(t)))
        if len(pending) == self.chunk:
          queued, pending = stream.queue_chunk(pending), []
          if in_flight is not None:
            yield from stream.fetch(in_flight)
          in_flight = queued
    except Exception:
      if in_flight is not None:
        yield from stream.fetch(in_flight)
      raise
    if in_flight is not None:
      yield from stream.fetch(in_flight)
    for frame, annotation in pending:  # the tail, shorter than a chunk: as a stream, no new compilation
      yield stream(frame, annotation)
    if stats is not None:
      stats.update(stream.aux_stats())

  def stream(self, object_ids: Iterable[int]) -> "Stream":
    return Stream(self, np.asarray(sorted(object_ids), np.int64))


class Queued(NamedTuple):
  """A chunk on its way through the device (`Stream.queue_chunk`): id maps uint8 [T H W], aux {key: [T ...]}."""
  labels: jax.Array
  aux: dict[str, jax.Array]


class Stream:
  """Per-video state for streaming: call with each frame (and its id map where objects first appear)."""

  def __init__(self, segmenter: Segmenter, slot_ids: np.ndarray):
    if len(slot_ids) == 0 or slot_ids.min() < 1 or slot_ids.max() > 255:
      raise ValueError(f"object ids must be in 1..255, got {slot_ids.tolist()}")
    self.segmenter, self.slot_ids = segmenter, slot_ids
    self._ids = jnp.asarray(np.concatenate([[0], slot_ids]).astype(np.uint8))  # slot index -> the user's id
    self.known = np.zeros(len(slot_ids), bool)
    self.state, self.geometry = None, None
    self._aux: dict[str, list[float]] = {}  # key -> [sum, count, min, max] of its per-frame means

  @property
  def started(self) -> bool:
    return self.state is not None

  def aux_stats(self) -> dict[str, dict[str, float]]:
    """Per aux key of the family: mean, min and max over the frames segmented so far (and the batch axes)."""
    return {key: {"mean": total / count, "min": low, "max": high}
            for key, (total, count, low, high) in self._aux.items()}

  def _add_aux(self, aux: dict[str, Any]) -> None:
    """Folds a chunk's aux outputs ([T ...] per key) into running statistics: constant memory however long the
    video (a stream of 10 000 frames keeps four numbers per key, not 10 000 arrays)."""
    for key, value in aux.items():
      means = np.asarray(value, np.float64).reshape(np.shape(value)[0], -1).mean(axis=1)
      total, count, low, high = self._aux.get(key, (0.0, 0, np.inf, -np.inf))
      self._aux[key] = [total + float(means.sum()), count + len(means), min(low, float(means.min())),
                        max(high, float(means.max()))]

  def __call__(self, frame: np.ndarray, annotation: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H W 3] (+ optional id map [H W]) -> uint8 [H W] id map."""
    seg = self.segmenter
    if not self.started:
      if annotation is None:
        raise ValueError("the first frame of a stream needs an annotation")
      self.geometry = frames_lib.plan_geometry(frame.shape[:2], seg.size)
      slot_map, valid = self._new_objects(annotation)
      x = seg._preprocess(jnp.asarray(frame[None]), self.geometry)
      masks = frames_lib.one_hot_slots(jnp.asarray(slot_map[None]), len(self.slot_ids))
      self.state = seg._init_memory(seg.variables, x, masks, jnp.asarray(valid[None]))
      return np.where(np.isin(annotation, self.slot_ids[valid]), annotation, 0).astype(np.uint8)
    return self.run_chunk([(frame, annotation)])[0]

  def run_chunk(self, items: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
    """Segments frames (with their annotations or None) in one `lax.scan` of `step`: `fetch(queue_chunk(items))`.

    Streaming calls this with one frame, so both paths run the same compiled per-frame program and give
    identical masks; a separately jitted `step` is the same maths, but XLA may fuse it differently and a pixel
    at a near-tie could flip.
    """
    return self.fetch(self.queue_chunk(items))

  def queue_chunk(self, items: list[tuple[np.ndarray, np.ndarray | None]]) -> Queued:
    """Queues the chunk's `lax.scan` and its postprocessing on the device and returns at once (JAX dispatches
    asynchronously); the memory moves on, so the next chunk can be queued before this one is fetched."""
    seg = self.segmenter
    for frame, _ in items:
      self._check_size(frame)
    slot_maps, valid = zip(*[self._new_objects(annotation) for _, annotation in items])
    x = seg._preprocess(jnp.asarray(np.stack([frame for frame, _ in items])), self.geometry)
    self.state, (logits, aux) = seg._scan(seg.variables, self.state, x, jnp.asarray(np.stack(slot_maps)),
                                          jnp.asarray(np.stack(valid)))
    return Queued(seg._postprocess(logits, self._ids, self.geometry), aux)

  def fetch(self, queued: Queued) -> list[np.ndarray]:
    """Waits for a queued chunk: its uint8 [H W] id maps; its aux outputs join `aux_stats`."""
    self._add_aux(queued.aux)
    return list(np.asarray(queued.labels))

  def _new_objects(self, annotation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(slot map uint8 [h w] at the model size holding only objects new at this frame, new_valid bool [o])."""
    if annotation is None:
      return np.zeros(self.geometry.model_hw, np.uint8), np.zeros(len(self.slot_ids), bool)
    present = np.isin(self.slot_ids, np.unique(annotation))
    unknown = np.setdiff1d(np.unique(annotation), np.concatenate([[0], self.slot_ids]))
    if unknown.size:
      raise ValueError(f"annotation holds ids {unknown.tolist()} not among the stream's {self.slot_ids.tolist()}")
    new = present & ~self.known
    self.known |= new
    slot_map = frames_lib.masks_at_model_size(annotation, self.slot_ids[new], self.geometry)
    # Slot numbers of the new objects among all objects, not among the new ones only.
    slot_map = np.concatenate([[0], np.flatnonzero(new) + 1]).astype(np.uint8)[slot_map]
    return slot_map, new

  def _check_size(self, frame: np.ndarray) -> None:
    if frame.shape[:2] != self.geometry.input_hw:
      raise ValueError(f"frame size {frame.shape[:2]} differs from the video's {self.geometry.input_hw}")


def _labels(logits: jax.Array, ids: jax.Array, geometry: geometry_lib.Geometry) -> jax.Array:
  """logits [t o+1 h w] -> uint8 [t H W] id maps at the input size: the slot argmax mapped to the user's ids
  on the device (at 2K a NumPy lookup on the host took 7 ms of a 27 ms frame on a GPU machine)."""
  return ids[frames_lib.postprocess(logits, geometry)]


def _scan_chunk(family: Family, variables, state, frames: jax.Array, slot_maps: jax.Array, new_valid: jax.Array):
  """`step` over frames [T h w 3] under `lax.scan`, with slot maps [T h w] and new_valid [T o] of new objects;
  -> (state, (logits [T o+1 h w], aux {key: [T ...]})).

  No padding frames: a `lax.cond` to skip them made every frame about 1.5x slower on the CPU.
  """
  num_objects = new_valid.shape[-1]

  def body(state, inputs):
    frame, slot_map, valid = inputs
    masks = frames_lib.one_hot_slots(slot_map[None], num_objects)
    state, output = family.step(variables, state, frame[None], masks, valid[None])
    return state, (output.logits[0], jax.tree.map(lambda x: x[0], output.aux))

  return jax.lax.scan(body, state, (frames, slot_maps, new_valid))


def segment_video(family: Family, variables, frames: Iterable[np.ndarray],
                  annotations: Mapping[int, np.ndarray], *, size: int = 480, chunk: int = 16
                  ) -> Iterator[np.ndarray]:
  """`Segmenter(family, variables, size=size, chunk=chunk).segment_video(frames, annotations)`."""
  return Segmenter(family, variables, size=size, chunk=chunk).segment_video(frames, annotations)
