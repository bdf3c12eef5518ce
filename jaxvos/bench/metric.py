"""`jaxvos bench metric`: J&F speed of jaxvos against the official DAVIS functions, side by side.

Workload: shared DAVIS sequences at 854x480 (default blackswan and bmx-trees, 130 frames). Each ground-truth mask
is split into `--objects` objects (vertical bands of the first frame's object), and the prediction is a perturbed
copy (each object shifted by its own drifting offset, every other object eroded, sparse noise of other ids).
Both implementations score the same id maps held in memory (no PNG decoding): the official flow calls
`segmetric.metrics.db_eval_iou` and `db_eval_boundary` per object, as `davis2017/evaluation.py` does; jaxvos calls
`jaxvos.metrics.evaluate_sequence`. The per-frame values are compared (they must be equal) and frames per second
are printed for both, with the ratio.
"""

import os
import time
import warnings

import numpy as np

DESCRIPTION = __doc__.split("\n\n")[0].split(": ", 1)[1]
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "davis-examples-480p",
                            "Annotations", "480p")


def add_arguments(parser):
  parser.add_argument("--gt", default=os.path.normpath(DEFAULT_DATA), metavar="DIR",
                      help="a folder of DAVIS sequence folders of masks (default: ../shared/data/davis-examples-480p/"
                      "Annotations/480p beside the checkout)")
  parser.add_argument("--sequences", default="blackswan,bmx-trees", metavar="LIST",
                      help="comma-separated sequence names (default: blackswan,bmx-trees)")
  parser.add_argument("--objects", type=int, default=3, metavar="N", help="objects per sequence (default: 3)")
  parser.add_argument("--repeats", type=int, default=3, metavar="N", help="timed jaxvos runs after the warm-up; "
                      "the best is kept (default: 3)")


def run(args) -> int:
  from jaxvos.metrics import davis  # pylint: disable=g-import-not-at-top  (JAX starts only when benchmarking)
  official = _official_functions()
  workload = {name: make_workload(os.path.join(args.gt, name), args.objects, seed=index)
              for index, name in enumerate(args.sequences.split(","))}
  scored = sum(len(gt) - 2 for gt, _ in workload.values())
  shape = next(iter(workload.values()))[0].shape[1:]
  print(f"workload: {len(workload)} sequences, {scored} scored frames, {args.objects} objects, "
        f"{shape[1]}x{shape[0]}, {os.cpu_count()} CPU cores")

  start = time.perf_counter()
  reference = {name: official_scores(official, gt, pred) for name, (gt, pred) in workload.items()}
  official_seconds = time.perf_counter() - start

  start = time.perf_counter()
  ours = {name: davis.evaluate_sequence(gt, pred) for name, (gt, pred) in workload.items()}
  first_seconds = time.perf_counter() - start
  timings = []
  for _ in range(max(1, args.repeats)):
    start = time.perf_counter()
    ours = {name: davis.evaluate_sequence(gt, pred) for name, (gt, pred) in workload.items()}
    timings.append(time.perf_counter() - start)
  jaxvos_seconds = min(timings)

  j_diff = max(float(np.abs(ours[n].j - reference[n][0]).max()) for n in workload)
  f_diff = max(float(np.abs(ours[n].f - reference[n][1]).max()) for n in workload)
  _report(scored, args.objects, official_seconds, jaxvos_seconds, first_seconds, j_diff, f_diff)
  return 0 if max(j_diff, f_diff) <= 1e-9 else 1


def _report(scored, objects, official_seconds, jaxvos_seconds, first_seconds, j_diff, f_diff):
  for label, seconds in (("official (segmetric)", official_seconds), ("jaxvos", jaxvos_seconds)):
    print(f"{label:<22} {seconds:8.3f} s  {scored / seconds:9.1f} frames/s  "
          f"{scored * objects / seconds:9.1f} object-frames/s")
  print(f"{'jaxvos first call':<22} {first_seconds:8.3f} s  (includes compilation)")
  print(f"speed-up: {official_seconds / jaxvos_seconds:.1f}x (warm), {official_seconds / first_seconds:.1f}x "
        "(first call)")
  print(f"max |jaxvos - official|: J {j_diff:.3g}, F {f_diff:.3g}")


def _official_functions():
  try:
    from segmetric import metrics  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("error: `bench metric` compares with the official DAVIS functions from esdft-segmetric; "
                     "install the test requirements: pip install -r tests/requirements.txt") from None
  return metrics


def official_scores(official, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """J and F [o t] with the official per-frame functions, object by object as the official evaluation does."""
  gt, pred = gt[1:-1], pred[1:-1]
  num_objects = int(gt[0].max()) if gt.size else 0
  j, f = np.zeros((num_objects, len(gt))), np.zeros((num_objects, len(gt)))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    for index in range(num_objects):
      gt_object, pred_object = gt == index + 1, pred == index + 1
      j[index] = official.db_eval_iou(gt_object, pred_object)
      f[index] = official.db_eval_boundary(gt_object, pred_object)
  return j, f


def make_workload(folder: str, num_objects: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(ground truth, prediction), uint8 [T h w] each, from one DAVIS sequence's masks (see the module docstring)."""
  from jaxvos.metrics import folders  # pylint: disable=g-import-not-at-top
  files = folders.ground_truth_files(folder)
  binary = np.stack([folders.read_ids(path, "ground-truth mask") for path in files]) > 0
  columns = np.nonzero(binary[0].any(axis=0))[0]
  left, right = (columns.min(), columns.max() + 1) if columns.size else (0, binary.shape[2])
  band = np.clip((np.arange(binary.shape[2]) - left) * num_objects // max(right - left, 1), 0, num_objects - 1)
  gt = (binary * (band + 1)[None, None, :]).astype(np.uint8)
  return gt, _perturb(gt, num_objects, np.random.default_rng(seed))


def _perturb(gt: np.ndarray, num_objects: int, rng: np.random.Generator) -> np.ndarray:
  pred = np.zeros_like(gt)
  for obj in range(1, num_objects + 1):
    mask = gt == obj
    if obj % 2 == 0:  # erode by one pixel (4-neighbourhood)
      inner = mask.copy()
      inner[:, 1:] &= mask[:, :-1]
      inner[:, :-1] &= mask[:, 1:]
      inner[:, 1:, :] &= mask[:, :-1, :]
      inner[:, :-1, :] &= mask[:, 1:, :]
      mask = inner
    for t in range(len(gt)):
      dy, dx = int(round(3 * np.sin(t / 7 + obj))), int(round(4 * np.cos(t / 5 + obj)))
      pred[t][np.roll(mask[t], (dy, dx), axis=(0, 1))] = obj
  noise = rng.random(gt.shape) < 0.001
  pred[noise] = rng.integers(0, num_objects + 1, int(noise.sum()))
  return pred

