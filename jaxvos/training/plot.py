"""A picture of a run's curves (cross-entropy, the loss minimised, validation J&F) from its metrics.jsonl, drawn with Pillow.

TensorBoard shows the same scalars interactively; this gives a PNG to put beside a result in
`experiments/README.md` without a plotting stack.
"""

import json
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_PANEL_HW = (220, 760)
_MARGIN = (28, 70, 30, 16)  # top, left, bottom, right


def read_series(metrics_path: str, key: str) -> list[tuple[int, float]]:
  """[(step, value)] of `key` in a metrics.jsonl file, in file order."""
  with open(metrics_path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [(r["step"], float(r[key])) for r in records if key in r]


def _panel(points: list[tuple[int, float]], title: str) -> Image.Image:
  """One curve with its title, value range and step range."""
  h, w = _PANEL_HW
  top, left, bottom, right = _MARGIN
  image = Image.new("RGB", (w, h), "white")
  draw, font = ImageDraw.Draw(image), ImageFont.load_default()
  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  draw.text((left, 6), title, fill="black", font=font)
  if not points:
    draw.text((left + 10, top + 10), "no data", fill="gray", font=font)
    return image
  steps, values = [p[0] for p in points], [p[1] for p in points]
  low, high = min(values), max(values)
  high = high if high > low else low + 1.0
  first, last = min(steps), max(max(steps), min(steps) + 1)
  to_x = lambda s: left + (s - first) / (last - first) * (w - left - right)  # noqa: E731
  to_y = lambda v: h - bottom - (v - low) / (high - low) * (h - top - bottom)  # noqa: E731
  xy = [(to_x(s), to_y(v)) for s, v in points]
  if len(xy) > 1:
    draw.line(xy, fill=(31, 119, 180), width=2)
  for x, y in xy if len(xy) < 30 else []:
    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
  draw.text((4, top - 4), f"{high:.3g}", fill="black", font=font)
  draw.text((4, h - bottom - 8), f"{low:.3g}", fill="black", font=font)
  draw.text((left, h - bottom + 4), f"step {first}", fill="black", font=font)
  draw.text((w - right - 70, h - bottom + 4), f"step {last}", fill="black", font=font)
  return image


def plot_curves(metrics_path: str, out_path: str, keys: Sequence[str] = ("cross_entropy", "loss", "val/j_and_f")) -> None:
  """Writes a PNG with one panel per metric key, stacked."""
  panels = [_panel(read_series(metrics_path, key), key) for key in keys]
  picture = Image.new("RGB", (_PANEL_HW[1], _PANEL_HW[0] * len(panels)), "white")
  for index, panel in enumerate(panels):
    picture.paste(panel, (0, index * _PANEL_HW[0]))
  picture.save(out_path)
