"""The DAVIS J&F metric in JAX, exactly equal to the official evaluation (`../shared/METRIC.md`).

- `davis`: per-frame, per-object J and F (pixel counts jit-compiled on the device, divisions in float64 on the
  host) and the semi-supervised protocol for one sequence (`evaluate_sequence`).
- `statistics`: Mean, Recall, Decay per object and the global results.
- `results`: the official CSV files, a per-frame CSV, tables, and `evaluate_arrays` for id maps in memory.
- `folders`: reading DAVIS-layout folders with strict checks (used by `jaxvos evaluate`).

    from jaxvos import metrics
    evaluation = metrics.evaluate_arrays({"blackswan": (gt_ids, pred_ids)})  # uint8 [T h w] each
    evaluation.global_results()["J&F-Mean"]
"""

from jaxvos.metrics.davis import SequenceScores, boundary_radius, evaluate_sequence, frame_counts
from jaxvos.metrics.results import EvaluationResults, SequenceResult, evaluate_arrays
from jaxvos.metrics.statistics import ObjectStatistics, decay_bin_bounds, global_results, mean_recall_decay

__all__ = [
    "EvaluationResults",
    "ObjectStatistics",
    "SequenceResult",
    "SequenceScores",
    "boundary_radius",
    "decay_bin_bounds",
    "evaluate_arrays",
    "evaluate_sequence",
    "frame_counts",
    "global_results",
    "mean_recall_decay",
]
