"""Evaluation results: the official CSV files, a per-frame CSV, and printable tables (METRIC.md rule 11).

`global_results-<set>.csv` and `per-sequence_results-<set>.csv` are byte-compatible with the official
`evaluation_method.py` output (pandas `to_csv(index=False, float_format="%.3f")`): same headers, one row per
object named `<sequence>_<id>`, values as fractions with 3 decimals, `\\n` line ends.
"""

import csv
import dataclasses
import io
import os
from collections.abc import Mapping

import numpy as np

from jaxvos.metrics import davis, statistics

PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
PER_FRAME_COLUMNS = ("Sequence", "Object", "Frame", "J", "F")


@dataclasses.dataclass(frozen=True)
class SequenceResult:
  """One evaluated sequence: its name, the names of its scored frames [t], and J and F float64 [o t]."""
  name: str
  frame_names: tuple[str, ...]
  scores: davis.SequenceScores


@dataclasses.dataclass(frozen=True)
class EvaluationResults:
  """All evaluated sequences, in evaluation order; statistics and files are derived from the per-frame scores."""
  sequences: tuple[SequenceResult, ...]

  def objects(self) -> list[statistics.ObjectStatistics]:
    """Per-object statistics, sequence by sequence, objects in id order (the official row order)."""
    return [statistics.object_statistics(s.name, index + 1, s.scores.j[index], s.scores.f[index])
            for s in self.sequences for index in range(s.scores.num_objects)]

  def global_results(self) -> dict[str, float]:
    """The global row (`statistics.GLOBAL_COLUMNS`), fractions in [0, 1]."""
    return statistics.global_results(self.objects())

  def write_csv_files(self, out_dir: str, set_name: str = "val") -> list[str]:
    """Writes the two official CSV files and `per-frame_results-<set>.csv`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    texts = {
        f"global_results-{set_name}.csv": global_csv(self.global_results()),
        f"per-sequence_results-{set_name}.csv": per_sequence_csv(self.objects()),
        f"per-frame_results-{set_name}.csv": per_frame_csv(self.sequences),
    }
    paths = []
    for file_name, text in texts.items():
      path = os.path.join(out_dir, file_name)
      with open(path, "w", newline="") as file:
        file.write(text)
      paths.append(path)
    return paths


def evaluate_arrays(sequences: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                    single_object: bool = False) -> EvaluationResults:
  """Evaluates id maps held in memory (e.g. during training), with the same numbers as `jaxvos evaluate`.

  Args:
    sequences: name -> (ground truth uint8 [T h w], prediction uint8 [T h w]) for all T annotated frames in the
      official frame order; the predictions of the first and last frame are not scored.
    single_object: DAVIS 2016 convention (any non-zero value is the object).

  Returns:
    Results whose frame names are the frame indices `"1" .. "T-2"` (the scored frames).

  Raises:
    ValueError: input that `davis.evaluate_sequence` refuses (e.g. a predicted id above the number of objects).
  """
  results = []
  for name, (gt_ids, pred_ids) in sequences.items():
    scores = davis.evaluate_sequence(gt_ids, pred_ids, single_object=single_object)
    frame_names = tuple(str(index) for index in range(1, len(gt_ids) - 1))
    results.append(SequenceResult(name, frame_names, scores))
  return EvaluationResults(tuple(results))


def _csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
  """CSV with minimal quoting and `\\n` line ends, as pandas writes it."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  return buffer.getvalue()


def _fraction(value: float) -> str:
  return "" if np.isnan(value) else "%.3f" % value


def global_csv(row: Mapping[str, float]) -> str:
  """Text of `global_results-<set>.csv`."""
  return _csv_text(statistics.GLOBAL_COLUMNS, [[_fraction(row[c]) for c in statistics.GLOBAL_COLUMNS]])


def per_sequence_csv(objects: list[statistics.ObjectStatistics]) -> str:
  """Text of `per-sequence_results-<set>.csv` (one row per object, `<sequence>_<id>`)."""
  return _csv_text(PER_SEQUENCE_COLUMNS, [[o.name, _fraction(o.j_mean), _fraction(o.f_mean)] for o in objects])


def per_frame_csv(sequences: tuple[SequenceResult, ...]) -> str:
  """Text of `per-frame_results-<set>.csv`: J and F of every scored frame and object, at full precision."""
  rows = []
  for sequence in sequences:
    for index in range(sequence.scores.num_objects):
      for frame, j, f in zip(sequence.frame_names, sequence.scores.j[index], sequence.scores.f[index]):
        rows.append([sequence.name, str(index + 1), frame, repr(float(j)), repr(float(f))])
  return _csv_text(PER_FRAME_COLUMNS, rows)


def format_tables(results: EvaluationResults, set_name: str = "val") -> str:
  """The global and per-sequence tables as printed by `jaxvos evaluate` (values as fractions, 3 decimals)."""
  row = results.global_results()
  lines = [f" Global results for {set_name} ".center(80, "-"),
           "  ".join(f"{c:>9}" for c in statistics.GLOBAL_COLUMNS),
           "  ".join(f"{row[c]:>9.3f}" for c in statistics.GLOBAL_COLUMNS), "",
           f" Per-sequence results for {set_name} ".center(80, "-")]
  objects = results.objects()
  width = max([len("Sequence")] + [len(o.name) for o in objects])
  lines.append(f"{'Sequence':<{width}}  {'J-Mean':>7}  {'F-Mean':>7}")
  lines += [f"{o.name:<{width}}  {o.j_mean:>7.3f}  {o.f_mean:>7.3f}" for o in objects]
  return "\n".join(lines)
