"""Segment a video with an exported model (`jaxvos.export.to_onnx`) through onnxruntime and NumPy alone.

    runner = OnnxSegmenter("exported/")                       # init.onnx, step.onnx, onnx.json
    for ids in runner.segment_video(frames, annotations):     # the same contract as jaxvos's Segmenter
        ...
    stream = runner.stream([1, 2]); ids = stream(frame, annotation)   # frame by frame (live video)

Objects and late objects are handled as `jaxvos.inference.engine` does: `annotations` maps a frame index to an id
map; ids not seen before are new objects whose masks are given to the step at that frame (and written into
memory); objects occupy the exported object slots in sorted id order (fewer objects than slots is fine: the
other slots stay invalid and change nothing). Frames before the first annotation are all background. Frames are
resized and padded exactly as the JAX engine does (`jaxvos.export.geometry`); the exported graphs are fixed to one
model size, so a video whose model size differs is refused with the size to export for.

No JAX is imported on this path (a test checks it).
"""

import json
import os
from typing import Iterable, Iterator, Mapping

import numpy as np

from data_pipelines.errors import DataError
from jaxvos.export import geometry as geometry_lib

META_FILE, INIT_FILE, STEP_FILE = "onnx.json", "init.onnx", "step.onnx"
ONNXRUNTIME_PIN = "onnxruntime==1.31.1"
NEXT = "next_"


class OnnxModel:
  """The two sessions of an exported model and its description (onnx.json)."""

  def __init__(self, model_dir: str | os.PathLike, providers: list[str] | None = None,
               session_config: dict[str, str] | None = None):
    """`session_config`: onnxruntime session config entries (e.g. {"session.intra_op.allow_spinning": "0"} where
    other runtimes share the process, as in `jaxvos.bench.backends`)."""
    model_dir = os.fspath(model_dir)
    meta_path = os.path.join(model_dir, META_FILE)
    if not os.path.isfile(meta_path):
      raise DataError(model_dir, f"not an exported ONNX model ({META_FILE} not found); write one with "
                      "`python -m jaxvos convert to-onnx`")
    with open(meta_path, encoding="utf-8") as f:
      self.meta = json.load(f)
    try:
      import onnxruntime  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise DataError(model_dir, f"running ONNX models needs onnxruntime: pip install {ONNXRUNTIME_PIN}") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the exporter leaves unused shape constants, which onnxruntime reports
    for key, value in (session_config or {}).items():
      options.add_session_config_entry(key, value)
    providers = providers or ["CPUExecutionProvider"]
    self.init = onnxruntime.InferenceSession(os.path.join(model_dir, INIT_FILE), options, providers=providers)
    self.step = onnxruntime.InferenceSession(os.path.join(model_dir, STEP_FILE), options, providers=providers)
    self.model_hw = tuple(self.meta["model_hw"])
    self.objects = int(self.meta["objects"])
    self.size = int(self.meta["size"])
    self.family = self.meta["family"]

  def run_init(self, frame: np.ndarray, masks: np.ndarray, object_valid: np.ndarray
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """frame [h w 3] normalised, masks [o h w], object_valid [o] -> (probs [o+1 h w], state)."""
    return self._run(self.init, {"frame": frame[None], "masks": masks[None], "object_valid": object_valid[None]})

  def run_step(self, state: dict[str, np.ndarray], frame: np.ndarray, new_masks: np.ndarray,
               new_object_valid: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One frame from `state`; new_masks [o h w] / new_object_valid [o] of objects given at this frame."""
    feeds = {"frame": frame[None], "new_masks": new_masks[None], "new_object_valid": new_object_valid[None], **state}
    return self._run(self.step, feeds)

  @staticmethod
  def _run(session, feeds) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(names, feeds)
    state = {name[len(NEXT):]: value for name, value in zip(names[1:], outputs[1:])}
    return outputs[0][0], state


class OnnxSegmenter:
  """`segment_video` / `stream` of `jaxvos.inference.engine.Segmenter`, on an exported model."""

  def __init__(self, model: OnnxModel | str | os.PathLike, *, providers: list[str] | None = None,
               session_config: dict[str, str] | None = None):
    self.model = model if isinstance(model, OnnxModel) else OnnxModel(model, providers, session_config)

  def segment_video(self, frames: Iterable[np.ndarray], annotations: Mapping[int, np.ndarray],
                    stats: dict | None = None) -> Iterator[np.ndarray]:
    """Yields uint8 [H W] id maps, one per frame in order; frames before the first annotation are all 0.

    Like `jaxvos.inference.Segmenter.segment_video`; the exported graphs carry no aux outputs, so `stats` stays
    empty.
    """
    stream = OnnxStream(self.model, geometry_lib.object_ids_of(annotations))
    for t, frame in enumerate(frames):
      if not stream.started and t not in annotations:
        yield np.zeros(frame.shape[:2], np.uint8)
        continue
      yield stream(frame, annotations.get(t))

  def stream(self, object_ids: Iterable[int]) -> "OnnxStream":
    return OnnxStream(self.model, np.asarray(sorted(object_ids), np.int64))

  def check(self, input_hw: tuple[int, int], annotations: Mapping[int, np.ndarray]) -> None:
    """Raises the ValueError that segmenting a video of this size and these objects would raise, up front."""
    OnnxStream(self.model, geometry_lib.object_ids_of(annotations))._plan(input_hw)  # pylint: disable=protected-access


class OnnxStream:
  """Per-video state: call with each frame (and its id map where objects first appear); see the module docstring.

  After each call `probs` holds the frame's probabilities at the model size, [slots+1 h w], background first.
  """

  def __init__(self, model: OnnxModel, slot_ids: np.ndarray):
    if len(slot_ids) == 0 or slot_ids.min() < 1 or slot_ids.max() > 255:
      raise ValueError(f"object ids must be in 1..255, got {slot_ids.tolist()}")
    if len(slot_ids) > model.objects:
      raise ValueError(f"{len(slot_ids)} objects ({slot_ids.tolist()}) but the model was exported for at most "
                       f"{model.objects}; export again with --objects {len(slot_ids)}")
    self.model, self.slot_ids = model, slot_ids
    self.known = np.zeros(model.objects, bool)
    self.state, self.geometry, self.probs = None, None, None

  @property
  def started(self) -> bool:
    return self.state is not None

  def __call__(self, frame: np.ndarray, annotation: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H W 3] (+ optional id map [H W]) -> uint8 [H W] id map."""
    if not self.started:
      if annotation is None:
        raise ValueError("the first frame of a stream needs an annotation")
      self.geometry = self._plan(frame.shape[:2])
    elif frame.shape[:2] != self.geometry.input_hw:
      raise ValueError(f"frame size {frame.shape[:2]} differs from the video's {self.geometry.input_hw}")
    slot_map, new = self._new_objects(annotation)
    x = geometry_lib.preprocess(frame, self.geometry)
    masks = geometry_lib.one_hot_slots(slot_map, self.model.objects)
    if not self.started:
      self.probs, self.state = self.model.run_init(x, masks, new)
      return np.where(np.isin(annotation, self.slot_ids[new[:len(self.slot_ids)]]), annotation, 0).astype(np.uint8)
    self.probs, self.state = self.model.run_step(self.state, x, masks, new)
    slots = geometry_lib.postprocess(self.probs, self.geometry)
    return np.concatenate([[0], self.slot_ids, np.zeros(self.model.objects - len(self.slot_ids), np.int64)]
                          ).astype(np.uint8)[slots]

  def _plan(self, input_hw: tuple[int, int]) -> geometry_lib.Geometry:
    plan = geometry_lib.plan_geometry(input_hw, self.model.size)
    if plan.model_hw != self.model.model_hw:
      h, w = input_hw
      raise ValueError(f"a {w}x{h} video is segmented at {plan.model_hw[1]}x{plan.model_hw[0]} (shorter side "
                       f"{self.model.size}, padded to 16) but the model was exported for "
                       f"{self.model.model_hw[1]}x{self.model.model_hw[0]}; export again with --input-hw {h}x{w}")
    return plan

  def _new_objects(self, annotation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(slot map uint8 [h w] of the objects new at this frame, new_valid bool [slots])."""
    new = np.zeros(self.model.objects, bool)
    if annotation is None:
      return np.zeros(self.geometry.model_hw, np.uint8), new
    present = np.unique(annotation)
    unknown = np.setdiff1d(present, np.concatenate([[0], self.slot_ids]))
    if unknown.size:
      raise ValueError(f"annotation holds ids {unknown.tolist()} not among the stream's {self.slot_ids.tolist()}")
    new[:len(self.slot_ids)] = np.isin(self.slot_ids, present) & ~self.known[:len(self.slot_ids)]
    self.known |= new
    new_ids = self.slot_ids[new[:len(self.slot_ids)]]
    slot_map = geometry_lib.masks_at_model_size(annotation, new_ids, self.geometry)
    # Slot numbers of the new objects among all objects, not among the new ones only.
    slot_map = np.concatenate([[0], np.flatnonzero(new) + 1]).astype(np.uint8)[slot_map]
    return slot_map, new


def segment_video(model_dir: str | os.PathLike, frames: Iterable[np.ndarray],
                  annotations: Mapping[int, np.ndarray]) -> Iterator[np.ndarray]:
  """`OnnxSegmenter(model_dir).segment_video(frames, annotations)`."""
  return OnnxSegmenter(model_dir).segment_video(frames, annotations)
