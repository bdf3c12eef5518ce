"""A picture of a run's curves from its metrics.jsonl, drawn with Pillow (no plotting stack).

Three panels: the plain cross-entropy and the loss minimised (log scale: the first steps are an order of
magnitude above the rest), and the validation J&F with the copy-first-mask baseline of the same videos as a
dashed line (`baseline.json` beside the metrics). TensorBoard shows the same scalars interactively; this gives a
PNG to put beside a result in `experiments/README.md`. `compare_runs` draws one metric of several runs on one
panel (an ablation beside its main run; `experiments/compare_runs.py`).
"""

import json
import math
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_PANEL_HW = (220, 760)
_MARGIN = (28, 70, 30, 16)  # top, left, bottom, right
_BLUE, _GREY, _ORANGE = (31, 119, 180), (225, 225, 225), (230, 120, 20)

PANELS = (  # (metrics key, title, log scale)
    ("cross_entropy", "cross-entropy per pixel (log scale)", True),
    ("loss", "loss minimised (bootstrapped: the hardest pixels only, once its schedule starts; log scale)", True),
    ("val/j_and_f", "validation J&F (held-out videos); dashed: copy the first-frame mask", False),
)


def read_series(metrics_path: str, key: str) -> list[tuple[int, float]]:
  """[(step, value)] of `key` in a metrics.jsonl file, in file order."""
  with open(metrics_path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [(r["step"], float(r[key])) for r in records if key in r]


def _ticks(low: float, high: float, log: bool) -> list[float]:
  """Values for gridlines: 1-2-5 steps per decade on a log axis, five even steps otherwise."""
  if not log:
    return [low + (high - low) * i / 4 for i in range(5)]
  ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
           for m in (1, 2, 5)]
  return [t for t in ticks if low <= t <= high] or [low, high]


# Colours of the curves of `compare_runs`, in order (the first is the single run's blue).
_COLOURS = (_BLUE, (214, 39, 40), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
            (188, 189, 34), (23, 190, 207))
Series = tuple[str | None, list[tuple[int, float]], tuple[int, int, int]]  # (legend label, points, colour)


def _panel(series: Sequence[Series], title: str, log: bool = False, reference: float | None = None) -> Image.Image:
  """Curves with a title, gridlines, the step range and a legend of the labelled ones; `reference` draws a dashed
  horizontal line."""
  h, w = _PANEL_HW
  top, left, bottom, right = _MARGIN
  image = Image.new("RGB", (w, h), "white")
  draw, font = ImageDraw.Draw(image), ImageFont.load_default()
  draw.text((left, 6), title, fill="black", font=font)
  points = [p for _, curve, _ in series for p in curve]
  log = log and all(v > 0 for _, v in points)
  if not points:
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    draw.text((left + 10, top + 10), "no data", fill="gray", font=font)
    return image
  steps = [s for s, _ in points]
  values = [v for _, v in points] + ([reference] if reference is not None else [])
  low, high = min(values), max(values)
  high = high if high > low else low + (0.1 * low if log else 1.0)
  scale = math.log10 if log else (lambda v: v)
  first, last = min(steps), max(max(steps), min(steps) + 1)
  to_x = lambda s: left + (s - first) / (last - first) * (w - left - right)  # noqa: E731
  to_y = lambda v: h - bottom - (scale(v) - scale(low)) / (scale(high) - scale(low)) * (h - top - bottom)  # noqa: E731
  for tick in _ticks(low, high, log):
    draw.line([(left, to_y(tick)), (w - right, to_y(tick))], fill=_GREY)
    draw.text((4, to_y(tick) - 6), f"{tick:.3g}", fill="black", font=font)
  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  if reference is not None:
    y = to_y(reference)
    for x in range(left, w - right, 12):
      draw.line([(x, y), (min(x + 6, w - right), y)], fill=_ORANGE, width=2)
  for index, (label, curve, colour) in enumerate(series):
    xy = [(to_x(s), to_y(v)) for s, v in curve]
    if len(xy) > 1:
      draw.line(xy, fill=colour, width=2)
    for x, y in xy if len(xy) < 30 else []:
      draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    if label is not None:  # the legend, top left inside the plot area
      y = top + 6 + 14 * index
      draw.line([(left + 8, y + 6), (left + 28, y + 6)], fill=colour, width=3)
      draw.text((left + 34, y), label, fill="black", font=font)
  draw.text((left, h - bottom + 4), f"step {first}", fill="black", font=font)
  draw.text((w - right - 70, h - bottom + 4), f"step {last}", fill="black", font=font)
  return image


def _baseline(metrics_path: str) -> float | None:
  """The copy-first-mask J&F that `jaxvos train` writes to baseline.json beside the metrics, if any."""
  path = os.path.join(os.path.dirname(metrics_path), "baseline.json")
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("copy_first_mask", {}).get("j_and_f")


def plot_curves(metrics_path: str, out_path: str,
                panels: Sequence[tuple[str, str, bool]] = PANELS) -> None:
  """Writes a PNG with one panel per (metrics key, title, log scale), stacked."""
  baseline = _baseline(metrics_path)
  images = [_panel([(None, read_series(metrics_path, key), _BLUE)], title, log,
                   baseline if key == "val/j_and_f" else None)
            for key, title, log in panels]
  picture = Image.new("RGB", (_PANEL_HW[1], _PANEL_HW[0] * len(images)), "white")
  for index, panel in enumerate(images):
    picture.paste(panel, (0, index * _PANEL_HW[0]))
  picture.save(out_path)


def compare_runs(runs: Sequence[tuple[str, str]], out_path: str, key: str = "val/j_and_f",
                 title: str = "validation J&F (held-out videos); dashed: copy the first-frame mask") -> None:
  """Writes a PNG of one metric of several runs on one panel: runs are (legend label, metrics.jsonl path), drawn
  in `_COLOURS` order; the first run's copy-first-mask baseline is the dashed line (for `val/j_and_f`)."""
  if not 1 <= len(runs) <= len(_COLOURS):
    raise ValueError(f"compare_runs draws 1 to {len(_COLOURS)} runs, got {len(runs)}")
  series = [(label, read_series(path, key), colour) for (label, path), colour in zip(runs, _COLOURS)]
  reference = _baseline(runs[0][1]) if key == "val/j_and_f" else None
  _panel(series, title, reference=reference).save(out_path)
