"""How much a config's training clips ask beyond copying: the IoU of each object's frame-0 mask with its mask in
every later frame of the clip, averaged over objects and frames, on the clips `jaxvos train` would read.

A model whose training IoU stays near this number has learnt little more than to copy the first mask.

    python experiments/clip_copy_iou.py experiments/stcn/pseudo.py experiments/stcn/static.py [--batches 40]

Session 14 (seed 0, 40 batches of 4): pseudo-video 0.516 (612 object-frames), static 0.407 (324), video 0.616 (320).
"""

import argparse

import numpy as np

from jaxvos.cli import train as train_cli


def copy_iou(config_path: str, batches: int) -> tuple[float, int]:
  """(mean IoU of copying frame 0's masks, object-frames counted) over the first `batches` training batches."""
  config = train_cli.load_config(config_path, [])
  items, static = train_cli.build_items(config)
  dataset = train_cli.build_dataset(config, items, static, shard_index=0, shard_count=1)
  ious = []
  for index in range(batches):
    for labels in np.asarray(dataset[index]["labels"]):  # [t h w] per clip
      for obj in range(1, int(labels.max()) + 1):
        first = labels[0] == obj
        for later in labels[1:] == obj:
          union = (first | later).sum()
          if union:
            ious.append((first & later).sum() / union)
  return float(np.mean(ious)), len(ious)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("configs", nargs="+", help="experiments/<family>/<stage>.py files")
  parser.add_argument("--batches", type=int, default=40)
  args = parser.parse_args()
  for path in args.configs:
    iou, count = copy_iou(path, args.batches)
    print(f"{path}: copying frame 0's masks, IoU {iou:.3f} over {count} object-frames")


if __name__ == "__main__":
  main()
