"""Official DAVIS statistics: Mean, Recall and Decay per object, and the global results (METRIC.md rules 9-10).

All on the host in numpy float64, with the same numpy reductions as the official code, so the values are identical
(not merely close) for up to 255 scored frames per sequence (see `decay_bin_bounds` beyond).
"""

import dataclasses

import numpy as np

# Recall counts the frames whose score is strictly above this threshold.
RECALL_THRESHOLD = 0.5
DECAY_BINS = 4
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def decay_bin_bounds(num_frames: int) -> list[tuple[int, int]]:
  """The official quarter bins over `num_frames` scored frames, as `[start, stop)` index pairs.

  `ids = round_half_up(linspace(1, T, 5)) - 1` and bin i is `values[ids[i] : ids[i + 1] + 1]`: the bins overlap
  by one frame and the last one ends at the last frame. The official code stores `ids` as uint8: from 256 scored
  frames on, `ids[4] + 1` or the ids themselves wrap around and its Decay is NaN or wrong; these bounds are the
  intended ones (identical to the official ones up to 255 scored frames).
  """
  # `+ 1e-10` turns numpy's round-half-to-even into round-half-up, as in the official code.
  ids = (np.round(np.linspace(1, num_frames, DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
  return [(int(ids[i]), int(ids[i + 1]) + 1) for i in range(DECAY_BINS)]


def mean_recall_decay(values: np.ndarray) -> tuple[float, float, float]:
  """(Mean, Recall, Decay) of one object's per-frame scores (float64 [t], t >= 1), as the official statistics.

  Mean is the mean score; Recall the fraction of scores strictly above 0.5; Decay the mean of the first quarter
  bin minus the mean of the last one (`decay_bin_bounds`). Fractions in [0, 1].
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f"expected a non-empty 1-D array of per-frame scores, got shape {values.shape}")
  bins = [values[start:stop] for start, stop in decay_bin_bounds(values.size)]
  return (float(np.mean(values)), float(np.mean(values > RECALL_THRESHOLD)),
          float(np.mean(bins[0]) - np.mean(bins[-1])))


@dataclasses.dataclass(frozen=True)
class ObjectStatistics:
  """Mean, Recall and Decay of J and F for one object of one sequence (fractions in [0, 1])."""
  sequence: str
  object_id: int
  j_mean: float
  j_recall: float
  j_decay: float
  f_mean: float
  f_recall: float
  f_decay: float

  @property
  def name(self) -> str:
    """The official per-object name, `<sequence>_<id>`."""
    return f"{self.sequence}_{self.object_id}"


def object_statistics(sequence: str, object_id: int, j: np.ndarray, f: np.ndarray) -> ObjectStatistics:
  """Statistics of one object from its per-frame J and F (float64 [t] each)."""
  return ObjectStatistics(sequence, object_id, *mean_recall_decay(j), *mean_recall_decay(f))


def global_results(objects: list[ObjectStatistics]) -> dict[str, float]:
  """The global row: means over all objects of all sequences, and J&F-Mean = (J-Mean + F-Mean) / 2.

  A sequence with 5 objects weighs 5 times (the official aggregation). Keys are `GLOBAL_COLUMNS`.
  """
  if not objects:
    raise ValueError("no objects to aggregate")
  column = lambda field: np.mean([getattr(o, field) for o in objects])  # noqa: E731
  j_mean, f_mean = column("j_mean"), column("f_mean")
  row = {
      "J&F-Mean": (j_mean + f_mean) / 2.0,
      "J-Mean": j_mean, "J-Recall": column("j_recall"), "J-Decay": column("j_decay"),
      "F-Mean": f_mean, "F-Recall": column("f_recall"), "F-Decay": column("f_decay"),
  }
  return {name: float(value) for name, value in row.items()}
