"""The recipe table's rows at the working size on one picture: J&F on DAVIS 2016 val (blackswan, bmx-trees) and on
the held-out training sequences (dog-agility, motorbike, soccerball), each sequence a small dot, so a row's
difference can be read against the spread of its sequences.

    python experiments/recipe/plot_rows.py --out experiments/recipe/rows-160-cpu.png

Reads the `bench davis` JSONs the table names (experiments/stcn/davis-<stem>-{val,heldout}-160-cpu.json); a row
whose JSONs are not there yet is listed as not run. Prints the table it draws.
"""

import argparse
import json
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
STCN = os.path.join(os.path.dirname(HERE), "stcn")
# (label, JSON stem, the model's row in it): the last stage's `final` weights.
# static -> video was the default when session 16 benched pseudo-video -> video, so it is that run's `default` row.
ROWS = (
    ("video only", "videoonly", "stcn-video-cpu/export/final"),
    ("static -> video", "pseudovideo", "default"),
    ("pseudo-video -> video (default)", "pseudovideo", "stcn-pseudo-video-cpu/export/final"),
    ("static -> pseudo-video -> video", "staticpseudovideo", "stcn-static-pseudo-video-cpu/export/final"),
    ("... annotated late entries", "pseudolate", "stcn-pseudolate-video-cpu/export/final"),
    ("... no distractors", "pseudo-nodistractors", "stcn-pseudo-nodistractors-video-cpu/export/final"),
    ("... one object per clip", "pseudo-oneobject", "stcn-pseudo-oneobject-video-cpu/export/final"),
    ("... no object motion", "pseudo-nomotion", "stcn-pseudo-nomotion-video-cpu/export/final"),
)
SPLITS = (("val", (31, 119, 180), "val (blackswan, bmx-trees)"),
          ("heldout", (230, 120, 20), "held-out (dog-agility, motorbike, soccerball)"))
ROW_HEIGHT, LEFT, WIDTH, RIGHT, TOP, BOTTOM = 36, 250, 980, 100, 46, 44


def load_row(stem: str, model: str, split: str, size: int) -> dict | None:
  """The bench row of `model` in experiments/stcn/davis-<stem>-<split>-<size>-cpu.json, or None if not run."""
  path = os.path.join(STCN, f"davis-{stem}-{split}-{size}-cpu.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    rows = [row for row in json.load(f)["rows"] if row["model"] == model]
  if not rows:
    raise SystemExit(f"error: {path}: no row for {model}")
  return rows[0]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--size", type=int, default=160, help="the working size benched (default: 160)")
  args = parser.parse_args()
  height = TOP + ROW_HEIGHT * len(ROWS) + BOTTOM
  picture = Image.new("RGB", (WIDTH, height), "white")
  draw = ImageDraw.Draw(picture)
  to_x = lambda score: LEFT + score * (WIDTH - LEFT - RIGHT)  # noqa: E731
  draw.text((8, 8), f"stcn-tiny on the 2-core CPU, one budget per stage: J&F at the working size {args.size}",
            fill="black")
  for i, (_, colour, name) in enumerate(SPLITS):
    draw.rectangle([8 + 330 * i, 28, 16 + 330 * i, 36], fill=colour)
    draw.text((22 + 330 * i, 25), name, fill="black")
  for tick in range(11):
    x = to_x(tick / 10)
    draw.line([(x, TOP), (x, height - BOTTOM)], fill=(225, 225, 225))
    draw.text((x - 8, height - BOTTOM + 6), f"{tick / 10:.1f}", fill="black")
  draw.text((LEFT, height - 20), "J&F (bars: the mean; dots: one sequence each)", fill="black")
  print(f"{'recipe':<34} {'val':>6} {'held-out':>9}")
  for index, (label, stem, model) in enumerate(ROWS):
    found = [load_row(stem, model, split, args.size) for split, _, _ in SPLITS]
    y = TOP + ROW_HEIGHT * index + 6
    draw.text((8, y + 6), label if all(found) else f"{label} (not yet run)", fill="black")
    for row, (_, colour, _), top in zip(found, SPLITS, (y, y + 12)):
      if row is None:
        continue
      draw.rectangle([to_x(0), top, to_x(row["j_and_f"]), top + 10], fill=colour)
      draw.text((WIDTH - RIGHT + 24, top - 1), f"{row['j_and_f']:.3f}", fill=colour)
      for score in row["per_object"].values():
        x = to_x(score)
        draw.ellipse([x - 3, top + 2, x + 3, top + 8], fill="black")
    print(f"{label:<34} " + " ".join(f"{row['j_and_f']:.3f}".rjust(width) if row else "-".rjust(width)
                                     for row, width in zip(found, (6, 9))))
  picture.save(args.out)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
