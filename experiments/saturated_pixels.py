"""How much of a model's output is saturated beyond soft aggregation's clamp, where no gradient passes.

Soft aggregation (`jaxvos.ops.attention.aggregate`, STM's) clamps every probability to [1e-7, 1 - 1e-7] before its
logit, so a pixel whose object probability rounds past the clamp passes no gradient to the model, right or
wrong. A model whose every pixel is saturated trains no more: its gradient is exactly zero (session 18's GAM with
the raw-product context, issue 12). This segments DAVIS sequences with a checkpoint and prints, per sequence,
the fraction of pixels (frames 1 on, at the model's working size) where both the object's and the background's
logits sit at the clamp (the background's or the object's probability below 1e-13: logits within the clamp,
[-16.1, 16.1], get there only when both are at or next to it), how many of those pixels are wrong, and the
fraction of pixels whose probabilities are not finite (counted apart: NaN is neither saturated nor not).

    python experiments/saturated_pixels.py --checkpoint RUNS/gam-norm-raw-cpu/export/final \
        --sequences dog-agility,motorbike,soccerball --size 96
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jaxvos  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.training import data as data_lib, validation  # noqa: E402  pylint: disable=g-import-not-at-top

BOTH_CLAMPED = 1e-13  # the softmax of the clamp's logits, -16.1 against 16.1, is 1e-14


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint", required=True, help="a model directory (`default`: the packaged model)")
  parser.add_argument("--sequences", default="dog-agility,motorbike,soccerball")
  parser.add_argument("--size", type=int, default=96)
  parser.add_argument("--davis-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                           "data", "davis2016-240p"))
  args = parser.parse_args()
  model = jaxvos.load(None if args.checkpoint == "default" else args.checkpoint, size=args.size)
  by_name = {s.name: s for s in data_lib.davis_videos(args.davis_root, "240p")}
  for video in validation.load_videos([by_name[name] for name in args.sequences.split(",")]):
    processor = model.processor(max_objects=1)
    saturated, wrong, non_finite, total = 0, 0, 0, 0
    for index, frame in enumerate(video.frames):
      ids, probs = processor.step(frame, video.labels[0] if index == 0 else None, return_probs=True)
      if index == 0:
        continue
      clamped = np.minimum(probs[0], probs[1]) < BOTH_CLAMPED
      saturated += int(clamped.sum())
      wrong += int((clamped & ((ids == 1) != (video.labels[index] == 1))).sum())
      non_finite += int((~np.isfinite(probs).all(axis=0)).sum())
      total += clamped.size
    print(f"{video.name:<14} saturated {saturated / total:.3f} of the pixels, wrong {wrong / total:.3f}, "
          f"not finite {non_finite / total:.3f}", flush=True)


if __name__ == "__main__":
  main()
