"""Validation during training: segment held-out videos with the inference engine, score them with the jaxvos J&F.

Protocol (DAVIS semi-supervised, first-frame form): the objects of frame 0 are given by their ground truth and
segmented in every later frame; objects that only appear later are not scored (the metric counts the objects
of frame 0). The same numbers as `jaxvos segment` followed by `jaxvos evaluate`, without writing PNGs.
The "copy the first-frame mask" baseline (every frame predicted as frame 0's mask) is the floor a model that
learned anything must beat.
"""

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipelines.errors import DataError
from jaxvos.inference.engine import Segmenter
from jaxvos.metrics.results import EvaluationResults, evaluate_arrays
from jaxvos.models.family import Family


@dataclasses.dataclass(frozen=True)
class ValidationVideo:
  """A held-out video in memory: frames uint8 [T H W 3], ground-truth ids uint8 [T H W] (every frame)."""
  name: str
  frames: np.ndarray
  labels: np.ndarray


def load_videos(sequences: Sequence[Any], max_frames: int | None = None) -> list[ValidationVideo]:
  """Reads annotated videos (`VideoSequence`, `SyntheticSequence`: every frame annotated) into memory once.

  Raises:
    DataError: a sequence lacks the mask of a frame read (scoring needs every frame's ground truth).
  """
  videos = []
  for sequence in sequences:
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    masks = getattr(sequence, "mask_paths", None)
    unannotated = [] if masks is None else [i for i in range(count) if i not in masks]
    if unannotated:
      where = os.path.dirname(next(iter(masks.values()))) if masks else os.path.dirname(sequence.frame_paths[0])
      raise DataError(where, f"frame {unannotated[0]} of {sequence.name} has no mask ({len(unannotated)} of "
                      f"{count} frames): scoring needs every frame annotated (`jaxvos segment` takes such videos)")
    frames = np.stack([sequence.frame(i) for i in range(count)])
    labels = np.stack([sequence.mask(i, frames.shape[1:3]) for i in range(count)])
    videos.append(ValidationVideo(sequence.name, frames, labels))
  return videos


def first_frame_objects(video: ValidationVideo) -> np.ndarray:
  """Frame 0's ground truth restricted to the scored objects (ids 1 .. max id of frame 0; void dropped)."""
  first = video.labels[0]
  return np.where(first == 255, 0, first).astype(np.uint8)


def predict(family: Family, variables: Any, videos: Sequence[ValidationVideo], *, size: int = -1,
            chunk: int = 16) -> dict[str, np.ndarray]:
  """Predicted ids uint8 [T H W] per video, from the first frame's objects."""
  segmenter = Segmenter(family, variables, size=size, chunk=chunk)
  return {v.name: np.stack(list(segmenter.segment_video(v.frames, {0: first_frame_objects(v)})))
          for v in videos}


def copy_first_mask(videos: Sequence[ValidationVideo]) -> dict[str, np.ndarray]:
  """The baseline: frame 0's objects repeated on every frame."""
  return {v.name: np.broadcast_to(first_frame_objects(v), v.labels.shape).copy() for v in videos}


def score(videos: Sequence[ValidationVideo], predictions: dict[str, np.ndarray]) -> EvaluationResults:
  """The jaxvos DAVIS J&F (`evaluate_arrays`) of predictions against the videos' ground truth."""
  return evaluate_arrays({v.name: (v.labels, predictions[v.name]) for v in videos})


def summary(results: EvaluationResults) -> dict[str, float]:
  """`j_and_f`, `j_mean`, `f_mean` (fractions in [0, 1]) of a results table."""
  row = results.global_results()
  return {"j_and_f": float(row["J&F-Mean"]), "j_mean": float(row["J-Mean"]), "f_mean": float(row["F-Mean"])}


def validate(family: Family, variables: Any, videos: Sequence[ValidationVideo], *, size: int = -1
             ) -> dict[str, float]:
  """J&F of the model on the videos (see `summary`)."""
  return summary(score(videos, predict(family, variables, videos, size=size)))
