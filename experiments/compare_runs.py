"""Validation J&F (or another metric) of several training runs on one picture, each run a labelled curve.

    python experiments/compare_runs.py --out experiments/gam/ablations-cpu.png \
        main=RUNS/gam-davis3-cpu no-MEM=RUNS/gam-no-mem-cpu no-CAM=RUNS/gam-no-cam-cpu

Each LABEL=RUN is a run's workdir (its `metrics.jsonl`) or a metrics.jsonl file; the first run's copy-first-mask
baseline is the dashed line. Prints each run's values at the steps they share.
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxvos.training import plot  # noqa: E402  pylint: disable=wrong-import-position


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and a workdir or metrics.jsonl")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--key", default="val/j_and_f", help="the metric (default: val/j_and_f)")
  args = parser.parse_args()
  runs = []
  for item in args.runs:
    label, sep, path = item.partition("=")
    metrics = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    if not sep or not label:
      raise SystemExit(f"error: {item}: give LABEL=RUN")
    if not os.path.isfile(metrics):
      raise SystemExit(f"error: {metrics}: no metrics.jsonl there")
    runs.append((label, metrics))
  title = f"{args.key} of {len(runs)} runs"
  if args.key == "val/j_and_f":
    title += "; dashed: copy the first-frame mask"
  plot.compare_runs(runs, args.out, args.key, title)
  series = {label: dict(plot.read_series(path, args.key)) for label, path in runs}
  shared = sorted(set.intersection(*(set(s) for s in series.values())))
  print(f"{args.key} at the steps every run has:")
  print("step    " + "  ".join(f"{label:>10}" for label in series))
  for step in shared:
    print(f"{step:<7} " + "  ".join(f"{series[label][step]:10.3f}" for label in series))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
