"""Array contracts shared by data, models and training, and the axis alphabet used in names and einsums.

Axes: `b` videos in a batch, `t` frames, `o` objects (a padded axis with a validity mask), `h w` spatial,
`c` channels (`ck` key, `cv` value), `n` query positions, `m` memory positions, `s` memory slots, `k` a top-k
budget. Feature names carry their stride: `feats16`, `key16`, `logits4`.
"""

from typing import NotRequired, TypedDict

import numpy as np


class ClipBatch(TypedDict):
  """A batch of training clips as produced by `data_pipelines.sampling` (NumPy, host memory).

  Frames stay uint8 until they are on the device (a quarter of the transfer of float32); models normalise them.
  Object k (1-based) of video b is `labels[b, :] == k` and exists iff `object_valid[b, k - 1]`; the first frame
  of every clip holds at least one valid object. Objects that first appear later in a clip are background, unless
  the batch has `first_frame`: then object k is annotated from frame `first_frame[b, k - 1]` on (none of its
  pixels before), and the training unroll gives it to the model there (`jaxvos.training.step`).
  """
  frames: np.ndarray                      # uint8 [b t h w 3] RGB
  labels: np.ndarray                      # uint8 [b t h w] 0 background, 1..o objects
  object_valid: np.ndarray                # bool [b o]
  frame_indices: np.ndarray               # int32 [b t] source frame of each clip frame (for inspection)
  first_frame: NotRequired[np.ndarray]    # int32 [b o] the frame where each object is first annotated


def check_clip_batch(batch: ClipBatch, *, num_frames: int, crop_hw: tuple[int, int], max_objects: int) -> None:
  """Raises ValueError if `batch` breaks the `ClipBatch` contract (keys, dtypes, shapes, id range)."""
  b = batch["frames"].shape[0]
  expected = {
      "frames": (np.uint8, (b, num_frames, *crop_hw, 3)),
      "labels": (np.uint8, (b, num_frames, *crop_hw)),
      "object_valid": (np.bool_, (b, max_objects)),
      "frame_indices": (np.int32, (b, num_frames)),
  }
  if "first_frame" in batch:
    expected["first_frame"] = (np.int32, (b, max_objects))
  if set(batch) != set(expected):
    raise ValueError(f"clip batch keys {sorted(batch)} != {sorted(expected)}")
  for key, (dtype, shape) in expected.items():
    if batch[key].dtype != dtype or batch[key].shape != shape:
      raise ValueError(f"{key}: {batch[key].dtype}{batch[key].shape}, expected {np.dtype(dtype)}{shape}")
  num_valid = batch["object_valid"].sum(axis=1)
  if (batch["labels"].reshape(b, -1).max(axis=1) > num_valid).any():
    raise ValueError("labels hold ids above the number of valid objects")
  if not batch["object_valid"][:, 0].all():
    raise ValueError("a clip without any valid object")
  if "first_frame" in batch:
    _check_first_frames(batch["labels"], batch["object_valid"], batch["first_frame"])


def _check_first_frames(labels: np.ndarray, object_valid: np.ndarray, first_frame: np.ndarray) -> None:
  t = labels.shape[1]
  if ((first_frame < 0) | (first_frame >= t)).any():
    raise ValueError(f"first_frame outside the clip's {t} frames")
  if not (object_valid & (first_frame == 0)).any(axis=1).all():
    raise ValueError("a clip without any object annotated in its first frame")
  for b, k in zip(*np.nonzero(object_valid)):
    first = first_frame[b, k]
    if (labels[b, :first] == k + 1).any() or not (labels[b, first] == k + 1).any():
      raise ValueError(f"clip {b}: object {k + 1} is not first annotated at its first_frame {first}")
