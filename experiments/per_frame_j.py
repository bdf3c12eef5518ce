"""Per-frame region similarity J of trained models on DAVIS 2016 sequences at several working sizes.

`bench davis` scores whole sequences; this says *when* a model loses an object: at once (the first frames after
the annotated one: what the model reads from a memory holding only that frame) or by drift (later frames). It
prints, per model, size and sequence, the mean J over frames 1-5, 6-20 and 21 on, and writes every frame's J
to `--out` (JSON: "label/size/sequence" -> [J of frame 0, 1, ...]). Single-object sequences (DAVIS 2016).

    python experiments/per_frame_j.py --models swiftnet=RUNS/swiftnet-static-video-cpu/export/final,stcn=default \
        --sizes 96,160 --sequences dog-agility,motorbike,soccerball,blackswan,bmx-trees --out per-frame.json
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.convert import io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.training import data as data_lib, validation  # noqa: E402  pylint: disable=g-import-not-at-top


def frame_j(labels: np.ndarray, predicted: np.ndarray) -> list[float]:
  """J (intersection over union) of object 1 on every frame; 1 where both are empty."""
  truth, ours = labels == 1, predicted == 1
  union = np.logical_or(truth, ours).sum(axis=(1, 2))
  inter = np.logical_and(truth, ours).sum(axis=(1, 2))
  return [float(i / u) if u else 1.0 for i, u in zip(inter, union)]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", required=True, metavar="LABEL=DIR,...", help="`default`: the packaged model")
  parser.add_argument("--sizes", default="96,160")
  parser.add_argument("--sequences", default="dog-agility,motorbike,soccerball,blackswan,bmx-trees")
  parser.add_argument("--davis-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                           "data", "davis2016-240p"))
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  by_name = {s.name: s for s in data_lib.davis_videos(args.davis_root, "240p")}
  videos = validation.load_videos([by_name[name] for name in args.sequences.split(",")])
  results = {}
  for item in args.models.split(","):
    label, path = item.split("=", 1)
    family, variables = io.load_model(io.DEFAULT_MODEL if path == "default" else path)
    for size in (int(s) for s in args.sizes.split(",")):
      predictions = validation.predict(family, variables, videos, size=size)
      for video in videos:
        j = frame_j(video.labels, predictions[video.name])
        results[f"{label}/{size}/{video.name}"] = j
        print(f"{label:<12} {size:>4} {video.name:<14} J frames 1-5 {np.mean(j[1:6]):.3f}  6-20 "
              f"{np.mean(j[6:21]):.3f}  21- {np.mean(j[21:]):.3f}", flush=True)
  with open(args.out, "w") as f:
    json.dump(results, f)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
