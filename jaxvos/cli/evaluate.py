"""`jaxvos evaluate`: DAVIS J&F of predicted masks, with the official CSV files.

Follows the official DAVIS 2017 semi-supervised protocol (`../shared/METRIC.md`): ground-truth frames in
lexicographic order, first and last frame not scored, void (255) as background, objects `1 .. max(first frame)`,
global means over all objects. Writes `global_results-<set>.csv` and `per-sequence_results-<set>.csv` (byte-
compatible with the official files) and `per-frame_results-<set>.csv` into `--out-dir` (default: a folder
beside the predictions, `<pred>-evaluation`, so that prediction folders hold only predictions).

    jaxvos evaluate --gt DAVIS/Annotations/480p --pred results/ --sequences @val.txt
    jaxvos evaluate --gt DAVIS --resolution 480p --imageset ImageSets/2017/val.txt --pred results/
    jaxvos evaluate --gt davis2016-240p --resolution 240p --single-object --pred results/
"""

import os
import sys
import time

from data_pipelines.errors import DataError

DESCRIPTION = """Score predicted masks against ground truth with the DAVIS 2017 semi-supervised protocol: region
similarity J, contour accuracy F and their mean J&F, per object and sequence. Prints the tables and writes the
official global and per-sequence CSV files, and a per-frame one, to --out-dir.

  jaxvos evaluate --gt DAVIS/Annotations/480p --pred results --sequences @val.txt
  jaxvos evaluate --gt DAVIS --resolution 480p --imageset ImageSets/2017/val.txt --pred results"""
# Progress lines start after this many seconds and repeat at this interval.
PROGRESS_SECONDS = 2.0


def add_arguments(parser):
  parser.add_argument("--gt", required=True, metavar="DIR", help="the ground truth: a folder of sequence folders "
                      "of PNG masks (DIR/<sequence>/*.png), or a DAVIS root with --resolution")
  parser.add_argument("--pred", required=True, metavar="DIR", help="the predictions: DIR/<sequence>/<frame>.png, "
                      "indexed or grey PNGs of object ids (what `jaxvos segment --davis-root` writes)")
  parser.add_argument("--resolution", metavar="NAME", help="read --gt as a DAVIS root, with masks under "
                      "Annotations/NAME (e.g. 480p)")
  parser.add_argument("--sequences", metavar="LIST", help="the sequences to score: a,b,c or @FILE (one name per "
                      "line) (default: those of --imageset, else every ground-truth sequence folder)")
  parser.add_argument("--imageset", metavar="FILE", help="a file listing the sequences, e.g. "
                      "ImageSets/2017/val.txt (a relative path is also looked up under --gt)")
  parser.add_argument("--set", default="val", metavar="NAME", help="the name in the CSV files' names "
                      "(default: val)")
  parser.add_argument("--out-dir", metavar="DIR", help="where to write the CSV files (default: a folder beside "
                      "--pred named <pred>-evaluation)")
  parser.add_argument("--single-object", action="store_true", help="DAVIS 2016: every non-zero pixel is the one "
                      "object (default: values are object ids)")


def default_out_dir(pred: str) -> str:
  """`<pred>-evaluation`: beside the predictions, not inside a folder that holds them."""
  return os.path.normpath(os.path.abspath(pred)) + "-evaluation"


def run(args) -> int:
  # Imported here so that `jaxvos --help` does not start JAX.
  from jaxvos.metrics import davis, folders, results  # pylint: disable=g-import-not-at-top
  gt_dir = _ground_truth_dir(args.gt, args.resolution)
  sequences = _sequences(args, gt_dir)
  gt_files = {name: folders.ground_truth_files(os.path.join(gt_dir, name)) for name in sequences}
  for name in sequences:
    if not os.path.isdir(os.path.join(args.pred, name)):
      raise DataError(os.path.join(args.pred, name), f"prediction folder for sequence {name} not found")
  progress = _Progress(sum(len(files) - 2 for files in gt_files.values()))
  evaluated = []
  for name in sequences:
    gt_ids, pred_ids, frame_names = folders.read_sequence(gt_dir, args.pred, name,
                                                          single_object=args.single_object)
    try:
      scores = davis.evaluate_sequence(gt_ids, pred_ids, single_object=args.single_object)
    except ValueError as error:
      raise DataError(os.path.join(args.pred, name), str(error)) from None
    evaluated.append(results.SequenceResult(name, tuple(frame_names[1:-1]), scores))
    progress.update(len(frame_names) - 2, scores.num_objects)
  progress.finish()
  evaluation = results.EvaluationResults(tuple(evaluated))
  print(results.format_tables(evaluation, args.set))
  for path in evaluation.write_csv_files(args.out_dir or default_out_dir(args.pred), args.set):
    print(f"wrote {path}", file=sys.stderr)
  return 0


def _ground_truth_dir(gt: str, resolution: str | None) -> str:
  """The folder of ground-truth sequence folders (`<gt>/Annotations/<resolution>` for a DAVIS root)."""
  if resolution:
    path = os.path.join(gt, "Annotations", resolution)
    if not os.path.isdir(path):
      raise DataError(path, "not found: --gt with --resolution must be a DAVIS root holding "
                      f"Annotations/{resolution}/<sequence>/")
    return path
  if not os.path.isdir(gt):
    raise DataError(gt, "ground-truth folder not found")
  if os.path.isdir(os.path.join(gt, "Annotations")):
    raise DataError(gt, "looks like a DAVIS root (it has Annotations/); pass --resolution (e.g. 480p)")
  return gt


def _sequences(args, gt_dir: str) -> list[str]:
  """Sequence names in evaluation order; duplicates are refused (they would count twice)."""
  from jaxvos.metrics import folders  # pylint: disable=g-import-not-at-top
  if args.sequences:
    names = folders.read_sequence_list(args.sequences)
  elif args.imageset:
    path = args.imageset
    if not os.path.isfile(path) and not os.path.isabs(path) and os.path.isfile(os.path.join(args.gt, path)):
      path = os.path.join(args.gt, path)
    names = folders.read_sequence_list("@" + path)
  else:
    names = folders.list_sequences(gt_dir)
  seen = set()
  for name in names:
    if name in seen:
      raise DataError(args.sequences or args.imageset, f"sequence {name} is listed twice")
    seen.add(name)
  return names


class _Progress:
  """Frames per second and time left on stderr, for evaluations that take more than a few seconds."""

  def __init__(self, total_frames: int):
    self.total, self.done, self.objects = total_frames, 0, 0
    self.start = self.last = time.monotonic()
    self.shown = False

  def update(self, frames: int, objects: int) -> None:
    self.done += frames
    self.objects += frames * objects
    now = time.monotonic()
    if now - self.start >= PROGRESS_SECONDS and now - self.last >= PROGRESS_SECONDS:
      self.last, self.shown = now, True
      rate = self.done / (now - self.start)
      left = (self.total - self.done) / rate if rate > 0 else float("nan")
      print(f"evaluate: {self.done}/{self.total} scored frames, {rate:.1f} frames/s "
            f"({self.objects / (now - self.start):.1f} object-frames/s), ETA {left:.0f} s", file=sys.stderr)

  def finish(self) -> None:
    elapsed = time.monotonic() - self.start
    if self.shown or elapsed >= PROGRESS_SECONDS:
      print(f"evaluate: {self.done} scored frames in {elapsed:.1f} s ({self.done / max(elapsed, 1e-9):.1f} "
            "frames/s)", file=sys.stderr)
