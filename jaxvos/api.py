"""The Python API: load a model, then segment frames as they arrive, or a whole video in one call.

    import jaxvos

    model = jaxvos.load("stcn-r18")                  # a model name (random weights) or a checkpoint directory
    processor = model.processor()
    for index, frame in enumerate(frames):           # uint8 [H W 3] RGB arrays (or PIL images), as they arrive
      ids = processor.step(frame, masks.get(index))  # uint8 [H W] object ids, 0 background
    ids, probs = processor.step(frame, return_probs=True)   # probs float32 [n+1 H W], n = len(processor.object_ids)
    processor.drop(3)                                # stop segmenting object 3

    ids = jaxvos.segment_video(model, frames, {0: first_mask, 12: mask_with_a_new_object})   # uint8 [T H W]

Conventions, as on the command line: a mask is a uint8 [H W] map of object ids (1 to 254; 0 is background and
255 "void", treated as background) at the frame's size. An object is segmented from the first frame whose mask
holds its id; ids need not be declared in advance, and a mask given later adds the objects that are new in it
(the others keep being segmented from memory). Frames are segmented at `size` (the shorter side; -1 keeps the
frame size) and masks come back at the frame's size.

A processor keeps its objects in a padded axis of slots (`max_objects`): by default it starts with room for the
first mask's objects rounded up to a power of two and doubles it when a new object does not fit, which compiles
the model's step once more (seconds on a CPU, from the compilation cache after the first time). An object added
after such a growth reads empty memory for the frames before it joined. Give `max_objects` to fix the room
instead: no growth, the same masks as `segment_video`, and a `ValueError` when one object too many arrives.

`load` turns on JAX's persistent compilation cache and quiets XLA's own logs (`configure_jax`, as the command line
does), so a second program that builds the same model at the same size starts in seconds.
"""

import dataclasses
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def cache_dir() -> str | None:
  """The folder of JAX's persistent compilation cache, or None when it is turned off (see `configure_jax`)."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return os.environ["JAX_COMPILATION_CACHE_DIR"] or None
  if "JAXVOS_CACHE_DIR" in os.environ:
    root = os.environ["JAXVOS_CACHE_DIR"]
    return os.path.join(root, "xla") if root else None
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache_home, "jaxvos", "xla")


def configure_jax() -> None:
  """Quiet native logs and the persistent compilation cache; the command line and `load` call it first.

  XLA's C++ logs ("E... Constant folding an instruction is taking > 1s ...") are internal notices, not errors of
  the run (real errors arrive as Python exceptions): `TF_CPP_MIN_LOG_LEVEL` defaults to 3 (set it to 0 to see
  them). Compiled programs are cached in `cache_dir()` when they took over a second to compile. Settings the user
  made (environment variables) win. Works before or after JAX is imported (and after it compiled something).
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  folder = cache_dir()
  os.environ["JAX_COMPILATION_CACHE_DIR"] = folder or ""
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
  if "jax" not in sys.modules:  # JAX reads these variables when it is imported
    return
  jax = sys.modules["jax"]
  if jax.config.jax_compilation_cache_dir != folder:
    jax.config.update("jax_compilation_cache_dir", folder)
    from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.reset_cache()  # a program compiled before this call may have settled on no cache
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
  try:  # XLA read TF_CPP_MIN_LOG_LEVEL when it was loaded; set its level directly (a private hook, if present)
    from jax._src.lib import utils  # pylint: disable=g-import-not-at-top
    utils.absl_set_min_log_level(int(os.environ["TF_CPP_MIN_LOG_LEVEL"]))
  except (ImportError, AttributeError, ValueError):
    pass


@dataclasses.dataclass
class Model:
  """A family with its variables, ready to segment at `size` in `dtype` (from `load`).

  Attributes:
    name: the family's registry name (`stcn-r18`, ...).
    family: the family (the pure functions of `jaxvos.models.family`).
    variables: its parameters and statistics, cast to the compute dtype.
    size: the shorter side frames are segmented at (-1: their own size).
    dtype: the compute dtype's name, "float32" or "bfloat16".
  """
  name: str
  family: Any
  variables: Any
  size: int = 480
  dtype: str = "float32"
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  def processor(self, max_objects: int | None = None) -> "Processor":
    """A new per-video processor (see `Processor`); processors of one model share its compiled programs."""
    return Processor(self, max_objects=max_objects)

  def segmenter(self):
    """The `jaxvos.inference.Segmenter` of this model (whole videos under `lax.scan`), built once."""
    if "segmenter" not in self._compiled:
      import jax  # pylint: disable=g-import-not-at-top
      from jaxvos import inference, precision  # pylint: disable=g-import-not-at-top
      chunk = {"chunk": 4} if jax.default_backend() == "cpu" else {}
      self._compiled["segmenter"] = inference.Segmenter(
          self.family, self.variables, size=self.size, compute_dtype=precision.compute_dtype(self.dtype), **chunk)
    return self._compiled["segmenter"]


def load(name_or_checkpoint: str | os.PathLike | None = None, *, size: int | None = None, dtype: str = "float32",
         seed: int = 0) -> Model:
  """A model from a checkpoint directory (`jaxvos convert` and `jaxvos train` write them) or a model name.

  Without an argument, the default model shipped with jaxvos (trained by jaxvos on the DAVIS data; the README says
  on what and how well). A name (`stcn`, `stcn-r18`, `stcn-tiny`, `stm`, ...; `jaxvos.models.registry.names()`)
  gives random weights from `seed`, with a warning: useful to check a pipeline, meaningless as masks. `size`
  (the shorter side frames are segmented at) defaults to the checkpoint's working size (its model.json), else 480.

  Raises:
    ValueError: neither a checkpoint directory nor a known name, a size below 16 (other than -1), an unknown dtype;
      `data_pipelines.errors.DataError` (a ValueError) for a checkpoint that cannot be read.
  """
  configure_jax()
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
  if size is not None and size != -1 and size < 16:
    raise ValueError(f"size {size}: give a shorter side of at least 16 pixels, or -1 for the frame size")
  compute_dtype = precision.compute_dtype(dtype)
  path = convert_io.default_model() if name_or_checkpoint is None else os.fspath(name_or_checkpoint)
  if os.path.isdir(path):
    family, variables = convert_io.load_model(path)
    size = convert_io.working_size(path) if size is None else size
  elif path in registry.names():
    warnings.warn(f"jaxvos.load({path!r}): random weights (no checkpoint given), so masks are meaningless except "
                  "as a check of a pipeline", stacklevel=2)
    family = registry.build(path)
    variables = family.init(jax.random.PRNGKey(seed))
    size = convert_io.DEFAULT_SIZE if size is None else size
  else:
    raise ValueError(f"{path!r} is neither a checkpoint directory nor a model name ({', '.join(registry.names())})")
  variables = precision.cast_floats(jax.tree.map(jax.numpy.asarray, variables), compute_dtype)
  return Model(family.name, family, variables, size=size, dtype=dtype)


def segment_video(model: Model, frames: Iterable[Any] | str | os.PathLike,
                  masks: Mapping[int, Any] | Any | str | os.PathLike) -> np.ndarray:
  """Segments a whole video in one call: uint8 [T H W] object ids, one map per frame.

  Args:
    model: from `load`.
    frames: uint8 [H W 3] RGB arrays (or PIL images) of one size, in order; or a folder of frames or a video file,
      read as `jaxvos segment --frames` reads them.
    masks: {frame index: uint8 [H W] id map}, where objects first appear (a map may repeat known objects; only
      new ids count); one id map for the first frame; or a folder of PNG masks / one PNG, as `--masks`.

  Frames before the first mask come back all 0. Runs the engine's `lax.scan` over chunks of frames.
  """
  if isinstance(frames, (str, os.PathLike)):
    from jaxvos.cli import clips  # pylint: disable=g-import-not-at-top
    clip = clips.read_clip(os.fspath(frames), os.fspath(masks))
    frame_iter, annotations = clip.read_frames(), clip.annotations
  else:
    frame_list = [as_frame(frame) for frame in frames]
    if not frame_list:
      raise ValueError("no frames")
    hw = frame_list[0].shape[:2]
    masks = masks if isinstance(masks, Mapping) else {0: masks}
    annotations = {int(index): as_ids(mask, hw) for index, mask in masks.items()}
    frame_iter = iter(frame_list)
  labels = list(model.segmenter().segment_video(frame_iter, annotations))
  return np.stack(labels).astype(np.uint8)


class Processor:
  """Segments one video frame by frame, as frames arrive (from `Model.processor`; see the module docstring).

  Attributes:
    object_ids: the ids being segmented, in the order of the probabilities' objects (dropped ids removed).
    capacity: object slots allocated (grows by doubling unless `max_objects` was given).
  """

  def __init__(self, model: Model, max_objects: int | None = None):
    if max_objects is not None and not 1 <= max_objects <= 254:
      raise ValueError(f"max_objects must be between 1 and 254, got {max_objects}")
    self.model, self.max_objects = model, max_objects
    self.capacity = max_objects or 0
    self._slot_of: dict[int, int] = {}   # object id -> slot index
    self._used_slots = 0                 # slots ever given (a dropped object's slot is not reused)
    self._state, self._geometry = None, None

  @property
  def object_ids(self) -> list[int]:
    return sorted(self._slot_of, key=self._slot_of.get)

  def step(self, image: Any, mask: Any = None, *, return_probs: bool = False):
    """Segments the next frame: uint8 [H W] object ids (and float32 [n+1 H W] probabilities if asked).

    Args:
      image: uint8 [H W 3] RGB (or a PIL image), the size of the video's first frame.
      mask: optional uint8 [H W] id map; ids not seen before are new objects, segmented from this frame on (the
        mask is their ground truth here). Ids already tracked in it are ignored. Frames before the first mask
        come back all 0.
      return_probs: also return the probabilities, index 0 the background, then `object_ids` in order.
    """
    frame = as_frame(image)
    if self._geometry is None:
      from jaxvos.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
      self._geometry = frames_lib.plan_geometry(frame.shape[:2], self.model.size)
    elif frame.shape[:2] != self._geometry.input_hw:
      raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the video's first frame was "
                       f"{self._geometry.input_hw[1]}x{self._geometry.input_hw[0]}")
    ids = None if mask is None else as_ids(mask, frame.shape[:2])
    new_ids = [] if ids is None else [i for i in np.unique(ids).tolist() if i not in (0, 255)
                                      and i not in self._slot_of]
    if self._state is None and not new_ids:
      labels = np.zeros(frame.shape[:2], np.uint8)
      return (labels, np.ones((1, *labels.shape), np.float32)) if return_probs else labels
    self._make_room(len(new_ids))
    for object_id in new_ids:
      self._slot_of[object_id] = self._used_slots
      self._used_slots += 1
    labels, probs = self._run(frame, ids, new_ids)
    if not return_probs:
      return labels
    order = [0] + [self._slot_of[i] + 1 for i in self.object_ids]
    return labels, np.moveaxis(np.asarray(probs)[..., order], -1, 0)

  def drop(self, object_id: int) -> None:
    """Stops segmenting `object_id` (a KeyError if it is not tracked); its pixels go to the other objects.

    Its memory slot is not reused: an id that returns later is a new object.
    """
    slot = self._slot_of.pop(object_id)
    self._state = self._state.replace(object_valid=self._state.object_valid.at[:, slot].set(False))

  def _slot_ids(self) -> np.ndarray:
    """Slot index + 1 -> object id, uint8 [capacity + 1] (0 for background and unused or dropped slots)."""
    lookup = np.zeros(self.capacity + 1, np.uint8)
    for object_id, slot in self._slot_of.items():
      lookup[slot + 1] = object_id
    return lookup

  def _new_objects(self, ids, new_ids) -> tuple[np.ndarray, np.ndarray]:
    """(slot map uint8 [h w] at the model size of the new objects, their validity bool [capacity])."""
    from jaxvos.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
    valid = np.zeros(self.capacity, bool)
    if not new_ids:
      return np.zeros(self._geometry.model_hw, np.uint8), valid
    lookup = np.zeros(256, np.uint8)
    for object_id in new_ids:
      lookup[object_id] = self._slot_of[object_id] + 1
      valid[self._slot_of[object_id]] = True
    slot_map = frames_lib.masks_at_model_size(lookup[ids], np.arange(1, self.capacity + 1), self._geometry)
    return slot_map, valid

  def _make_room(self, count: int) -> None:
    """Makes sure `count` more objects fit: fixed room refuses, growing room doubles (padding the state)."""
    needed = self._used_slots + count
    if needed <= self.capacity:
      return
    if self.max_objects is not None:
      raise ValueError(f"object {len(self._slot_of) + count} of a processor made with max_objects="
                       f"{self.max_objects}; make it with a larger max_objects")
    if needed > 254:
      raise ValueError("a processor segments at most 254 objects")
    capacity = max(self.capacity, 1)
    while capacity < needed:
      capacity = min(2 * capacity, 254)
    if self._state is not None:
      self._state = _pad_objects(self._state, self._functions(self.capacity), self._functions(capacity),
                                 self.model.variables, self._geometry)
    self.capacity = capacity

  def _functions(self, capacity: int) -> dict:
    """The compiled init and step of this model for `capacity` objects (shared by the model's processors)."""
    key = ("processor", capacity)
    if key not in self.model._compiled:  # pylint: disable=protected-access
      self.model._compiled[key] = _compile_functions(self.model, capacity)  # pylint: disable=protected-access
    return self.model._compiled[key]  # pylint: disable=protected-access

  def _run(self, frame: np.ndarray, ids: np.ndarray | None, new_ids: list[int]):
    """Runs init (first frame) or step; returns (object ids uint8 [H W], probabilities [H W capacity+1]).

    On the first frame the output is the mask itself (its objects, at the frame's size), as in the engine.
    """
    functions = self._functions(self.capacity)
    slot_map, new_valid = self._new_objects(ids, new_ids)
    args = (frame[None], slot_map[None], new_valid[None], self._geometry)
    if self._state is None:
      self._state = functions["init"](self.model.variables, *args)
      labels = np.where(np.isin(ids, new_ids), ids, 0).astype(np.uint8)
      slots = np.zeros(256, np.uint8)
      slots[new_ids] = [self._slot_of[i] + 1 for i in new_ids]
      probs = np.eye(self.capacity + 1, dtype=np.float32)[slots[labels]]
      return labels, probs
    self._state, slots, probs = functions["step"](self.model.variables, self._state, *args)
    return self._slot_ids()[np.asarray(slots[0])], probs[0]


def _compile_functions(model: Model, capacity: int) -> dict:
  """Jitted `init(variables, frames, slot_maps, valid, geometry) -> state` and `step(variables, state, ...)`.

  Both take uint8 frames [1 H W 3] and slot maps [1 h w]; `step` returns (state, slot indices uint8 [1 H W],
  probabilities float32 [1 H W capacity+1]) and updates the state in place. The geometry is static.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
  family, compute_dtype = model.family, precision.compute_dtype(model.dtype)

  def inputs(frames, slot_maps, geometry):
    x = frames_lib.preprocess(frames, geometry).astype(compute_dtype)
    return x, frames_lib.one_hot_slots(slot_maps, capacity)

  def init(variables, frames, slot_maps, valid, geometry):
    return family.init_memory(variables, *inputs(frames, slot_maps, geometry), valid)

  def step(variables, state, frames, slot_maps, valid, geometry):
    state, output = family.step(variables, state, *inputs(frames, slot_maps, geometry), valid)
    probs = frames_lib.probabilities(output.logits, geometry)
    return state, jnp.argmax(probs, axis=-1).astype(jnp.uint8), probs

  return {"capacity": capacity, "init": jax.jit(init, static_argnums=4),
          "step": jax.jit(step, static_argnums=5, donate_argnums=1)}


def _pad_objects(state, old: dict, new: dict, variables, geometry):
  """The state with its object axis padded from one capacity to a larger one (new slots zero and invalid).

  The object axis of each array is found by comparing the state's shapes at both capacities, so this works for
  any family's state.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def shapes(functions, capacity):
    h, w = geometry.model_hw
    args = (np.zeros((1, *geometry.input_hw, 3), np.uint8), np.zeros((1, h, w), np.uint8),
            np.zeros((1, capacity), bool))
    return jax.eval_shape(lambda v, f, s, o: functions["init"](v, f, s, o, geometry), variables, *args)

  old_shapes, new_shapes = shapes(old, old["capacity"]), shapes(new, new["capacity"])

  def pad(leaf, before, after):
    widths = [(0, b - a) for a, b in zip(before.shape, after.shape)]
    return jnp.pad(leaf, widths) if any(w for _, w in widths) else leaf

  return jax.tree.map(pad, state, old_shapes, new_shapes)


def as_frame(image: Any) -> np.ndarray:
  """A frame as uint8 [H W 3] RGB: from a PIL image (any mode) or a uint8 array ([H W 3], [H W 4] or grey [H W])."""
  if hasattr(image, "convert") and hasattr(image, "mode"):
    image = image.convert("RGB")
  frame = np.asarray(image)
  if frame.dtype != np.uint8:
    raise ValueError(f"a frame must be uint8 RGB (0..255), got {frame.dtype}; e.g. (x * 255).astype(np.uint8)")
  if frame.ndim == 2:
    frame = np.repeat(frame[..., None], 3, axis=-1)
  if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
    raise ValueError(f"a frame must be [H W 3] RGB, got shape {frame.shape}")
  return np.ascontiguousarray(frame[..., :3])


def as_ids(mask: Any, frame_hw: tuple[int, int]) -> np.ndarray:
  """A mask as uint8 [H W] object ids: from an id array (bool: object 1) or an indexed/grey PIL image."""
  ids = np.asarray(mask)
  if ids.dtype == bool:
    ids = ids.astype(np.uint8)
  if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"a mask must be a 2-D map of integer object ids, got {ids.dtype} {ids.shape}")
  if ids.shape != tuple(frame_hw):
    raise ValueError(f"mask is {ids.shape[1]}x{ids.shape[0]} but its frame is {frame_hw[1]}x{frame_hw[0]}")
  if ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
    raise ValueError(f"object ids must be 0..255, got {ids.min()}..{ids.max()}")
  return ids.astype(np.uint8)
