"""Per-frame, per-object DAVIS region similarity J and boundary F-measure (`../shared/METRIC.md`, rules 1-8).

Split in two so the numbers equal the official evaluation bit for bit:
- `frame_counts` (jit-compiled stages, device): integer pixel counts for every frame and object, from id maps, using the
  bit-packed boundary and disk-dilation ops of `jaxvos.ops.masks`;
- `region_similarity` / `boundary_f_measure` (host, numpy float64): the divisions, in the official order, with the
  official special cases.

`evaluate_sequence` applies the semi-supervised protocol to the id maps of a whole sequence (void removal, objects
`1 .. max(first frame)`, first and last frame not scored) and is what both the CLI and training validation call.
"""

import dataclasses

import jax
import numpy as np

from jaxvos.ops import masks

VOID_ID = 255
# Relative boundary tolerance of the official F-measure (fraction of the image diagonal).
BOUNDARY_TOLERANCE = 0.008
# Most frames per device call: bounds device memory; shorter sequences use the next power of two.
FRAMES_PER_CALL = 16


# The pixel counts of `frame_counts`: |P and G|, |P or G|, |B_P|, |B_G|, |B_P and dil(B_G)|, |B_G and dil(B_P)|.
COUNT_NAMES = ("intersection", "union", "pred_boundary", "gt_boundary", "pred_matched", "gt_matched")


def boundary_radius(height: int, width: int) -> int:
  """Tolerance radius in pixels, `ceil(0.008 * sqrt(h^2 + w^2))` in float64 (8 at 854x480, 3 at 300x225).

  Float32 gives a different radius for some sizes (4 at 300x225), so this stays on the host in float64.
  """
  return int(np.ceil(BOUNDARY_TOLERANCE * np.sqrt(np.float64(height * height + width * width))))


def frame_counts(gt_ids: jax.Array, pred_ids: jax.Array, object_ids: jax.Array, *, radius: int) -> dict:
  """Pixel counts of J and F for every frame and object, on the device.

  A few small jitted stages (pack, boundary map, dilation, counts), each called once per map. Their outputs are
  materialised on purpose: in one jit, XLA's CPU fusion re-computes the packing and the boundary maps inside
  each of their many consumers and merges the two dilations into slow multi-output loops (optimisation barriers
  do not stop it); one jit was 4 to 10 times slower on CPU.

  Args:
    gt_ids: uint8 [t h w] ground-truth ids (void already removed).
    pred_ids: uint8 [t h w] predicted ids.
    object_ids: uint8 [o] the ids to score; an id that appears nowhere gives empty masks.
    radius: static boundary tolerance in pixels (`boundary_radius`).

  Returns:
    A dict of int32 [t o] arrays named as in `COUNT_NAMES`.
  """
  width = gt_ids.shape[-1]
  gt, pred = _pack_objects(gt_ids, object_ids), _pack_objects(pred_ids, object_ids)
  gt_boundary, pred_boundary = _boundary_map(gt, width=width), _boundary_map(pred, width=width)
  gt_dilated, pred_dilated = _dilate(gt_boundary, radius=radius), _dilate(pred_boundary, radius=radius)
  return _counts(gt, pred, gt_boundary, pred_boundary, gt_dilated, pred_dilated)


@jax.jit
def _pack_objects(ids: jax.Array, object_ids: jax.Array) -> jax.Array:
  """uint8 [t h w] id maps, uint8 [o] ids -> packed uint32 [t o h q] masks of each object."""
  return masks.pack_bits(ids[:, None] == object_ids[None, :, None, None])


_boundary_map = jax.jit(masks.packed_boundary_map, static_argnames=("width",))
_dilate = jax.jit(masks.packed_dilate_disk, static_argnames=("radius",))


@jax.jit
def _counts(gt, pred, gt_boundary, pred_boundary, gt_dilated, pred_dilated) -> dict:
  """Packed uint32 [t o h q] masks, boundaries and dilated boundaries -> dict of int32 [t o] counts."""
  return {
      "intersection": masks.packed_count(gt & pred),
      "union": masks.packed_count(gt | pred),
      "pred_boundary": masks.packed_count(pred_boundary),
      "gt_boundary": masks.packed_count(gt_boundary),
      "pred_matched": masks.packed_count(pred_boundary & gt_dilated),
      "gt_matched": masks.packed_count(gt_boundary & pred_dilated),
  }


def region_similarity(counts: dict) -> np.ndarray:
  """J = |P and G| / |P or G| in float64, 1 where the union is empty. Returns float64 [t o]."""
  intersection = np.asarray(counts["intersection"], np.float64)
  union = np.asarray(counts["union"], np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union == 0, 1.0, intersection / union)


def boundary_f_measure(counts: dict) -> np.ndarray:
  """Boundary F = 2PR / (P + R) in float64, with the official special cases. Returns float64 [t o].

  Precision P = |B_P and dil(B_G)| / |B_P|, recall R = |B_G and dil(B_P)| / |B_G|. No predicted boundary: P = 1,
  R = 0 (F = 0) unless the ground truth has none either (P = R = 1, F = 1); no ground-truth boundary but a
  predicted one: P = 0, R = 1 (F = 0). F = 0 where P + R = 0. Evaluated as `2 * P * R / (P + R)`, left to right,
  as the official code does, so an exact one half stays 0.5000000000000001 where it does there.
  """
  n_pred = np.asarray(counts["pred_boundary"], np.float64)
  n_gt = np.asarray(counts["gt_boundary"], np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.asarray(counts["pred_matched"], np.float64) / n_pred
    recall = np.asarray(counts["gt_matched"], np.float64) / n_gt
    precision = np.where(n_pred == 0, 1.0, np.where(n_gt == 0, 0.0, precision))
    recall = np.where(n_gt == 0, 1.0, np.where(n_pred == 0, 0.0, recall))
    f = 2 * precision * recall / (precision + recall)
  return np.where(precision + recall == 0, 0.0, f)


def score_frames(gt_ids: np.ndarray, pred_ids: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
  """J and F of objects `1 .. num_objects` on every given frame (no protocol: all frames are scored).

  Args:
    gt_ids: uint8 [t h w] ground-truth ids, void already removed.
    pred_ids: uint8 [t h w] predicted ids.
    num_objects: objects to score.

  Returns:
    (j, f), each float64 [o t].
  """
  num_frames, height, width = gt_ids.shape
  radius = boundary_radius(height, width)
  object_ids = np.arange(1, num_objects + 1, dtype=np.uint8)
  chunk = _chunk_size(num_frames)
  pieces = []
  for start in range(0, num_frames, chunk):
    gt_chunk = _pad_frames(gt_ids[start:start + chunk], chunk)
    pred_chunk = _pad_frames(pred_ids[start:start + chunk], chunk)
    pieces.append(frame_counts(gt_chunk, pred_chunk, object_ids, radius=radius))
  counts = {name: np.concatenate([np.asarray(c[name]) for c in pieces])[:num_frames] for name in COUNT_NAMES}
  return region_similarity(counts).T, boundary_f_measure(counts).T


def _chunk_size(num_frames: int) -> int:
  """Frames per device call: a power of two up to `FRAMES_PER_CALL` (few compiled shapes, little padding)."""
  return min(FRAMES_PER_CALL, 1 << max(0, num_frames - 1).bit_length())


def _pad_frames(ids: np.ndarray, size: int) -> np.ndarray:
  """Pads a chunk of frames to `size` frames with empty ones (their counts are dropped)."""
  missing = size - ids.shape[0]
  if missing == 0:
    return ids
  return np.concatenate([ids, np.zeros((missing, *ids.shape[1:]), ids.dtype)])


@dataclasses.dataclass(frozen=True)
class SequenceScores:
  """Scores of one sequence: `j`, `f` float64 [o t] over the scored frames (ground-truth frames 1 .. T-2)."""
  j: np.ndarray
  f: np.ndarray

  @property
  def num_objects(self) -> int:
    return self.j.shape[0]


def ground_truth_ids(gt_ids: np.ndarray, single_object: bool = False) -> tuple[np.ndarray, int]:
  """The protocol's ground truth: (uint8 [t h w] ids with void set to 0, number of objects).

  Multi-object (DAVIS 2017): 255 (void) becomes background and the objects are `1 .. max(first frame)`; larger
  ids are ignored. Single-object (DAVIS 2016): any non-zero value is object 1.
  """
  gt_ids = np.asarray(gt_ids)
  if single_object:
    return (gt_ids != 0).astype(np.uint8), 1
  gt_ids = np.where(gt_ids == VOID_ID, 0, gt_ids).astype(np.uint8)
  return gt_ids, int(gt_ids[0].max(initial=0))


def evaluate_sequence(gt_ids: np.ndarray, pred_ids: np.ndarray, *, single_object: bool = False) -> SequenceScores:
  """J and F of a whole sequence under the official semi-supervised protocol (METRIC.md rules 1-8).

  Args:
    gt_ids: [T h w] ground-truth ids of every annotated frame, in the official (lexicographic) frame order;
      255 is void.
    pred_ids: [T h w] predicted ids for the same frames; the first and last frame are not scored and may hold
      anything (e.g. zeros).
    single_object: DAVIS 2016 convention: any non-zero value (ground truth and prediction) is the object.

  Raises:
    ValueError: fewer than 3 frames, mismatched shapes, no object in the first frame, or a predicted id above
      the number of objects (on a scored frame).
  """
  gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
  if gt_ids.ndim != 3 or gt_ids.shape != pred_ids.shape:
    raise ValueError(f"expected ground truth and prediction of one shape [T h w], got {gt_ids.shape} and "
                     f"{pred_ids.shape}")
  if gt_ids.shape[0] < 3:
    raise ValueError(f"a sequence needs at least 3 frames (first and last are not scored), got {gt_ids.shape[0]}")
  gt_ids, num_objects = ground_truth_ids(gt_ids, single_object)
  if num_objects == 0:
    raise ValueError("the first ground-truth frame has no object (0/255 masks need single_object=True)")
  pred_ids = pred_ids[1:-1]
  if single_object:
    pred_ids = pred_ids != 0
  elif pred_ids.max(initial=0) > num_objects:
    frame = 1 + int(np.argmax(pred_ids.reshape(len(pred_ids), -1).max(axis=1) > num_objects))
    raise ValueError(f"frame {frame}: predicted id {int(pred_ids[frame - 1].max())} but the sequence has "
                     f"{num_objects} object(s)")
  j, f = score_frames(gt_ids[1:-1], pred_ids.astype(np.uint8), num_objects)
  return SequenceScores(j=j, f=f)

