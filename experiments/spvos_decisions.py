"""What a trained SpVOS checkpoint's gates decide, layer by layer and frame by frame, on a DAVIS sequence.

Streams the sequence from its annotated first frame as `jaxvos segment` does (`jaxvos.inference.Segmenter`, one
frame per chunk) and prints, per gated layer, the fraction of its output computed on each frame (the family's
`executed/<layer>` aux outputs; 1.00 on dense frames). Gates that adapt to the video move from frame to frame
and between sequences; session 21 found the 10-frame gates' fractions the same on nearly every frame of
soccerball, blackswan and motorbike (`experiments/README.md`):

    python experiments/spvos_decisions.py --checkpoint RUNS/spvos-gates-10f-cpu/export/final --sequence soccerball \
        --size 160
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.convert import io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.inference import Segmenter  # noqa: E402  pylint: disable=g-import-not-at-top


def decisions(checkpoint: str, davis_root: str, resolution: str, sequence: str, frames: int, size: int
              ) -> list[dict[str, float]]:
  """Per frame after the first (the first, annotated, frame has no aux outputs): {layer path: fraction of its
  outputs computed}."""
  family, variables = io.load_model(checkpoint)
  segmenter = Segmenter(family, variables, size=size or io.working_size(checkpoint), chunk=1)
  stream = segmenter.stream([1])
  recorded = []
  fold = stream._add_aux  # pylint: disable=protected-access  (every chunk's aux passes through it)

  def record(aux):
    recorded.append({key.removeprefix("executed/"): float(np.mean(np.asarray(value)))
                     for key, value in aux.items() if key.startswith("executed/")})
    fold(aux)

  stream._add_aux = record  # pylint: disable=protected-access
  images = os.path.join(davis_root, "JPEGImages", resolution, sequence)
  first = np.array(Image.open(os.path.join(davis_root, "Annotations", resolution, sequence, "00000.png")))
  names = sorted(os.listdir(images))[:frames]
  for t, name in enumerate(names):
    frame = np.array(Image.open(os.path.join(images, name)).convert("RGB"))
    stream(frame, (first > 0).astype(np.uint8) if t == 0 else None)
  return recorded


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="a trained SpVOS checkpoint directory")
  parser.add_argument("--davis-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                           "davis2016-240p"))
  parser.add_argument("--resolution", default="240p")
  parser.add_argument("--sequence", default="soccerball")
  parser.add_argument("--frames", type=int, default=12)
  parser.add_argument("--size", type=int, default=0, help="shorter side (default: the checkpoint's working size)")
  args = parser.parse_args()
  rows = decisions(args.checkpoint, args.davis_root, args.resolution, args.sequence, args.frames, args.size)
  if not rows or not rows[0]:
    sys.exit(f"error: {args.checkpoint}: no gated layers (not an SpVOS checkpoint?)")
  print(f"{'layer / frame':<40s}", " ".join(f"{t:>4d}" for t in range(1, len(rows) + 1)))
  for layer in sorted(rows[-1]):
    print(f"{layer:<40s}", " ".join(f"{row.get(layer, float('nan')):4.2f}" for row in rows))


if __name__ == "__main__":
  main()
