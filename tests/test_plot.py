"""The run picture: three stacked panels from metrics.jsonl, log-scale losses, the baseline on the J&F panel."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxvos.training import plot


def test_curves_png_has_the_three_panels_and_the_baseline(tmp_path):
  with open(tmp_path / "metrics.jsonl", "w", encoding="utf-8") as f:
    for step in range(10, 110, 10):
      f.write(json.dumps({"step": step, "loss": 1.0 / step, "cross_entropy": 0.5 / step}) + "\n")
    for step, score in ((50, 0.4), (100, 0.6)):
      f.write(json.dumps({"step": step, "val/j_and_f": score}) + "\n")
  with open(tmp_path / "baseline.json", "w", encoding="utf-8") as f:
    json.dump({"copy_first_mask": {"j_and_f": 0.2}}, f)
  plot.plot_curves(str(tmp_path / "metrics.jsonl"), str(tmp_path / "curves.png"))
  image = np.asarray(Image.open(tmp_path / "curves.png").convert("RGB")).astype(int)
  panel_h, panel_w = plot._PANEL_HW
  assert image.shape == (3 * panel_h, panel_w, 3)
  blue, orange = np.array(plot._BLUE), np.array(plot._ORANGE)
  for index in range(3):
    panel = image[index * panel_h:(index + 1) * panel_h]
    assert np.any(np.all(panel == blue, axis=-1)), f"panel {index} has no curve"
  # The baseline 0.2 is the J&F panel's lowest value: its dashes lie on the bottom edge of the plot area.
  jf = image[2 * panel_h:]
  orange_rows = np.unique(np.nonzero(np.all(jf == orange, axis=-1))[0])
  assert orange_rows.size and abs(orange_rows.mean() - (panel_h - plot._MARGIN[2])) <= 1.5
  assert not np.any(np.all(image[:2 * panel_h] == orange, axis=-1))  # only on the J&F panel
  # Log scale: 1/step halves from step 10 to 20 and from 50 to 100; equal ratios take equal heights.
  loss_panel = image[panel_h:2 * panel_h]
  width = panel_w - plot._MARGIN[1] - plot._MARGIN[3]

  def row(step):  # mean row of the curve's pixels in the column of `step`
    column = int(round(plot._MARGIN[1] + (step - 10) / 90 * width))
    return np.nonzero(np.all(loss_panel[:, column] == blue, axis=-1))[0].mean()

  assert abs((row(20) - row(10)) - (row(100) - row(50))) <= 3


def test_compare_runs_draws_each_run_in_its_colour_with_a_legend(tmp_path):
  runs = []
  for index, scores in enumerate(((0.2, 0.4, 0.5), (0.3, 0.35))):
    path = tmp_path / f"run{index}.jsonl"
    path.write_text("".join(json.dumps({"step": 500 * (i + 1), "val/j_and_f": v}) + "\n"
                            for i, v in enumerate(scores)), encoding="utf-8")
    runs.append((f"run {index}", str(path)))
  plot.compare_runs(runs, str(tmp_path / "runs.png"))
  image = np.asarray(Image.open(tmp_path / "runs.png").convert("RGB")).astype(int)
  assert image.shape == (*plot._PANEL_HW, 3)
  width = plot._PANEL_HW[1] - plot._MARGIN[1] - plot._MARGIN[3]
  for colour, last_step in zip(plot._COLOURS[:2], (1500, 1000)):
    columns = np.unique(np.nonzero(np.all(image == np.array(colour), axis=-1))[1])
    assert columns.size, f"no curve in {colour}"
    # each curve ends at its last step (the legend's stroke lies left of every curve's end)
    assert abs(columns.max() - (plot._MARGIN[1] + (last_step - 500) / 1000 * width)) <= 3
  with pytest.raises(ValueError, match="1 to 9 runs"):
    plot.compare_runs(runs * 5, str(tmp_path / "too-many.png"))
