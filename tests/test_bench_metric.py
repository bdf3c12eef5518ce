"""`jaxvos bench metric` runs both implementations on one workload and reports equal values (no timing asserts)."""

import io
import sys

import numpy as np
import pytest

from jaxvos.bench import metric
from jaxvos.cli import main as cli_main

pytest.importorskip("segmetric")


def test_workload_has_the_requested_objects(shared_data):
  gt, pred = metric.make_workload(
      str(shared_data / "davis-examples-480p" / "Annotations" / "480p" / "blackswan"), 3, seed=0)
  assert gt.shape == pred.shape == (50, 480, 854) and gt.dtype == np.uint8
  assert set(np.unique(gt[0]).tolist()) == {0, 1, 2, 3}
  assert 0 < (gt == pred).mean() < 1 and pred.max() <= 3


def test_bench_metric_prints_both_speeds_and_equal_values(shared_data):
  out = io.StringIO()
  saved, sys.stdout = sys.stdout, out
  try:
    status = cli_main.main(["bench", "metric", "--gt", str(shared_data / "davis-examples-480p" / "Annotations" /
                                                           "480p"), "--sequences", "blackswan", "--objects", "2",
                            "--repeats", "1"])
  finally:
    sys.stdout = saved
  text = out.getvalue()
  assert status == 0, text
  assert "48 scored frames, 2 objects, 854x480" in text
  assert "official (segmetric)" in text and "speed-up:" in text
  assert "max |jaxvos - official|: J 0, F 0" in text
