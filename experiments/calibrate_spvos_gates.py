"""Calibrates a trained SpVOS model's inference compute threshold on DAVIS 2016 training sequences.

Training samples each gate's action from its softmax, so the sparsity objective is met by how often compute is
*sampled*; inference by argmax computes wherever compute is the likeliest action, far more often (session 6,
`experiments/README.md`). `compute_threshold` (`jaxvos.nn.gated_conv.decide`) computes where compute's
probability reaches the threshold instead. This script measures, for each threshold, the executed fraction of
the gated layers' MACs over every frame after the first (dense refresh frames included: what inference pays),
on training sequences the model saw (never the held-out or val ones), and picks the threshold closest to the
model's sparsity target rho*. It writes one model directory per threshold (`OUT/threshold-0.60`, ...) and
`OUT/calibrated` (the chosen one), each with the working size in its model.json, for `jaxvos bench davis`:

    python experiments/calibrate_spvos_gates.py RUNS/spvos-davis-cpu/export/final --size 160 --out RUNS/spvos-gates
"""

import argparse
import os
import shutil
import sys


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.cli.train import config_module  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.convert import families, io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.inference import Segmenter  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.training import data as data_lib, validation  # noqa: E402  pylint: disable=g-import-not-at-top

common = config_module(__file__, "common.py")  # the recipe's data paths and held-out sequences


def executed_fraction(family, variables, videos, size: int) -> float:
  """Executed MACs of the gated layers over their dense MACs, frames after the first of every video."""
  segmenter = Segmenter(family, variables, size=size)
  executed = dense = 0.0
  for video in videos:
    stats = {}
    for _ in segmenter.segment_video(video.frames, {0: validation.first_frame_objects(video)}, stats=stats):
      pass
    steps = len(video.frames) - 1
    executed += sum(s["mean"] for k, s in stats.items() if k.startswith("executed_macs/")) * steps
    dense += sum(s["mean"] for k, s in stats.items() if k.startswith("macs/")) * steps
  return executed / dense


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("checkpoint", help="a trained SpVOS model directory")
  parser.add_argument("--out", required=True, help="a new folder for the model directories")
  parser.add_argument("--size", type=int, default=160, help="shorter side the model sees (default 160)")
  parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9", help="comma-separated thresholds")
  parser.add_argument("--sequences", type=int, default=6, help="training sequences used (the first N by name)")
  parser.add_argument("--frames", type=int, default=40, help="frames per sequence")
  parser.add_argument("--davis-root", default=common.DAVIS)
  args = parser.parse_args()
  if os.path.exists(args.out):
    parser.error(f"{args.out} exists; nothing is overwritten")
  meta = io.read_meta(args.checkpoint)
  _, variables = io.load_model(args.checkpoint)
  target = float(meta["config"]["target"])
  sequences = data_lib.davis_videos(args.davis_root, "240p", "ImageSets/2016/train.txt", exclude=common.HELD_OUT)
  videos = validation.load_videos(sequences[:args.sequences], args.frames)
  print(f"{len(videos)} training sequences ({', '.join(v.name for v in videos)}), {args.frames} frames each, "
        f"shorter side {args.size}; target executed fraction {target:.2f}", flush=True)
  results = {}
  for threshold in [None] + [float(t) for t in args.thresholds.split(",")]:
    family = families.build(meta["family"], {**meta["config"], "compute_threshold": threshold})
    results[threshold] = executed_fraction(family, variables, videos, args.size)
    print(f"threshold {'argmax' if threshold is None else f'{threshold:.2f}':>7}: gated layers execute "
          f"{results[threshold]:.3f} of their MACs", flush=True)
    if threshold is not None:
      _save(os.path.join(args.out, f"threshold-{threshold:.2f}"), family, variables, args, threshold)
  chosen = min((t for t in results if t is not None), key=lambda t: abs(results[t] - target))
  shutil.copytree(os.path.join(args.out, f"threshold-{chosen:.2f}"), os.path.join(args.out, "calibrated"))
  print(f"calibrated: threshold {chosen:.2f} ({results[chosen]:.3f} executed) -> {args.out}/calibrated")
  return 0


def _save(path: str, family, variables, args, threshold: float) -> None:
  import json  # pylint: disable=g-import-not-at-top
  io.save_model(path, family, variables, source=f"{args.checkpoint} with compute_threshold {threshold:.2f} "
                "(experiments/calibrate_spvos_gates.py)")
  meta_path = os.path.join(path, io.MODEL_FILE)
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  meta["inference"] = {"size": args.size}
  with open(meta_path, "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")


if __name__ == "__main__":
  sys.exit(main())
