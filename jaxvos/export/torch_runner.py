"""Segment a video with a PyTorch twin checkpoint (`jaxvos.torch`) through the contract of jaxvos's Segmenter.

    runner = TorchSegmenter("stcn.pth")                       # `jaxvos convert to-torch` writes the file
    for ids in runner.segment_video(frames, annotations):     # uint8 [H W] id maps, one per frame
        ...

The twin's streaming `Processor.step(image, mask)` runs each frame. Around it, the frame geometry is jaxvos's
(`jaxvos.export.geometry`): the frame is resized (shorter side `size`, antialiased) and normalised in NumPy, the
twin pads it to multiples of 16 as the engine does and crops its probabilities back, which are then resized
(PyTorch's bilinear) to the frame size. Masks are resized with nearest neighbours, as the engine's. Objects and
late objects as in `jaxvos.inference.engine`: `annotations` maps a frame index to the ids that first appear
there; the processor holds as many object slots as the video has objects; frames before the first annotation
are all background; the annotated first frame's output is its annotation.

No JAX is imported on this path: torch and NumPy only.
"""

import os
from typing import Iterable, Iterator, Mapping

import numpy as np

from data_pipelines.errors import DataError
from jaxvos.export import geometry as geometry_lib


class TorchSegmenter:
  """`segment_video` of `jaxvos.inference.engine.Segmenter`, on a twin checkpoint (`.pth`)."""

  def __init__(self, path: str | os.PathLike, *, size: int = 480, device: str | None = None):
    self.path = os.fspath(path)
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise DataError(self.path, "running PyTorch twins needs torch: pip install 'jaxvos[torch]'") from None
    if not os.path.isfile(self.path):
      raise DataError(self.path, "not found (expected a PyTorch twin checkpoint, .pth)")
    self.size = size
    self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if self.device != "cpu":  # float32 maths as jaxvos's (parity): no TF32 on NVIDIA GPUs
      torch.backends.cuda.matmul.allow_tf32 = False
      torch.backends.cudnn.allow_tf32 = False
    self.processor, self.family = _load_twin(self.path, self.device)

  def segment_video(self, frames: Iterable[np.ndarray], annotations: Mapping[int, np.ndarray],
                    stats: dict | None = None) -> Iterator[np.ndarray]:
    """Yields uint8 [H W] id maps, one per frame in order (see the module docstring); the twin reports no
    per-frame statistics, so `stats` stays empty."""
    del stats
    stream = self.stream(geometry_lib.object_ids_of(annotations))
    for t, frame in enumerate(frames):
      if not stream.started and t not in annotations:
        yield np.zeros(frame.shape[:2], np.uint8)
        continue
      yield stream(frame, annotations.get(t))

  def stream(self, object_ids: Iterable[int]) -> "TorchStream":
    return TorchStream(self, np.asarray(sorted(object_ids), np.int64))


class TorchStream:
  """Per-video state: call with each frame (and its id map where objects first appear).

  After each call `probs` holds the frame's probabilities at the resized size, [1+n h w] float32 (background,
  then the objects in the processor's order, `processor.object_ids`).
  """

  def __init__(self, segmenter: TorchSegmenter, slot_ids: np.ndarray):
    if len(slot_ids) == 0 or slot_ids.min() < 1 or slot_ids.max() > 255:
      raise ValueError(f"object ids must be in 1..255, got {slot_ids.tolist()}")
    self.segmenter, self.slot_ids = segmenter, slot_ids
    # The segmenter's processor, for a new video with a slot for every object (objects may appear late).
    self.processor = segmenter.processor
    self.processor.max_objects = len(slot_ids)
    self.processor.reset()
    self.geometry, self.probs = None, None

  @property
  def started(self) -> bool:
    return self.geometry is not None

  def __call__(self, frame: np.ndarray, annotation: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H W 3] (+ optional id map [H W]) -> uint8 [H W] id map."""
    import torch  # pylint: disable=g-import-not-at-top
    if not self.started:
      if annotation is None:
        raise ValueError("the first frame of a stream needs an annotation")
      self.geometry = geometry_lib.plan_geometry(frame.shape[:2], self.segmenter.size)
    elif frame.shape[:2] != self.geometry.input_hw:
      raise ValueError(f"frame size {frame.shape[:2]} differs from the video's {self.geometry.input_hw}")
    first = not self.processor.object_ids
    image = torch.from_numpy(np.ascontiguousarray(np.moveaxis(self._resized(frame), -1, 0)))
    probs = self.processor.step(image, None if annotation is None else self._mask(annotation))
    self.probs = probs.float().cpu().numpy()
    if first:
      return np.where(np.isin(annotation, self.slot_ids), annotation, 0).astype(np.uint8)
    ids = np.asarray([0, *self.processor.object_ids], np.uint8)
    resized = geometry_lib.resize_bilinear(np.moveaxis(self.probs, 0, -1), self.geometry.input_hw)
    return ids[np.argmax(resized, axis=-1)]

  def _resized(self, frame: np.ndarray) -> np.ndarray:
    """float32 [h w 3] at the resized size, normalised, not padded (the twin pads as the engine does)."""
    top, bottom, left, right = self.geometry.pads
    x = geometry_lib.preprocess(frame, self.geometry)
    return x[top:x.shape[0] - bottom, left:x.shape[1] - right]

  def _mask(self, annotation: np.ndarray) -> np.ndarray:
    """The id map at the resized size (nearest), ids not among the stream's refused as the engine does."""
    from data_pipelines.image_io import resize_nearest  # pylint: disable=g-import-not-at-top
    unknown = np.setdiff1d(np.unique(annotation), np.concatenate([[0], self.slot_ids]))
    if unknown.size:
      raise ValueError(f"annotation holds ids {unknown.tolist()} not among the stream's {self.slot_ids.tolist()}")
    ids = np.array(annotation, np.uint8)  # a writable copy: torch takes it as it is
    if self.geometry.resized_hw == self.geometry.input_hw:
      return ids
    return np.array(resize_nearest(ids, self.geometry.resized_hw))


def _load_twin(path: str, device: str):
  """(`jaxvos.torch.load(path)`'s processor, its family name); anything wrong is one DataError line."""
  import pickle  # pylint: disable=g-import-not-at-top
  import jaxvos.torch  # pylint: disable=g-import-not-at-top
  try:
    payload = jaxvos.torch.read(path)
  except ValueError as error:  # not a twin checkpoint, or a newer format
    raise DataError(path, _one_line(error).removeprefix(path + ": ")) from None
  except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
    raise DataError(path, f"cannot be read as a PyTorch file ({_one_line(error)[:200]})") from None
  try:
    return jaxvos.torch.load(path, device=device), str(payload["family"])
  except (ValueError, TypeError) as error:  # no twin for the family, or a config it does not take
    raise DataError(path, _one_line(error)) from None
  except RuntimeError as error:  # load_state_dict: keys or shapes that do not fit
    raise DataError(path, f"its weights do not fit the {payload['family']} twin ({_one_line(error)[:300]})") from None


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())
