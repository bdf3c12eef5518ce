"""Progress of a run: a console line per report, JSON lines in the workdir, TensorBoard event files.

`<workdir>/metrics.jsonl` holds one JSON object per report (`{"step": ..., "loss": ..., ...}`; validation reports
carry `val/` keys); `<workdir>/tensorboard/` the same scalars for TensorBoard (written with tensorboardX: no
TensorFlow needed). Only process 0 writes. On resume, lines past the restored step are dropped, so the file
reads as one uninterrupted run.
"""

import json
import math
import os
import sys
import time
from typing import TextIO


_SHOWN = ("loss", "cross_entropy", "iou", "grad_norm")  # metrics on the console line (all go to the files)


def format_duration(seconds: float) -> str:
  """`1h02m`, `3m05s`, `12s`."""
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class MetricsWriter:
  """Writes reports of one run (see the module docstring); a no-op except on the writing process."""

  def __init__(self, workdir: str, *, total_steps: int, clips_per_step: int, enabled: bool = True,
               console: TextIO | None = None):
    self.enabled, self.total_steps, self.clips_per_step, self.console = enabled, total_steps, clips_per_step, console
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tensorboard = None
    self._clock: tuple[float, int] | None = None  # (time, step) of the last report
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def start(self, step: int) -> None:
    """Starts the clock at `step` and forgets reports past it (a resumed run redoes those steps)."""
    self._clock = (time.perf_counter(), step)
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(self.path, "w", encoding="utf-8") as f:
      f.writelines(kept)

  def train(self, step: int, metrics: dict[str, float]) -> None:
    """A training report at `step` (metrics averaged since the last one), with speed and ETA."""
    now = time.perf_counter()
    last_time, last_step = self._clock or (now, step)
    rate = (step - last_step) / max(now - last_time, 1e-9)
    self._clock = (now, step)
    metrics = {**metrics, "steps_per_s": rate, "clips_per_s": rate * self.clips_per_step}
    self._write(step, metrics)
    eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
    shown = " ".join(f"{k} {metrics[k]:.4g}" for k in _SHOWN if k in metrics)
    self._print(f"step {step}/{self.total_steps}  {shown}  {rate:.2f} steps/s "
                f"({rate * self.clips_per_step:.2f} clips/s)  ETA {format_duration(eta)}")

  def validation(self, step: int, metrics: dict[str, float], seconds: float) -> None:
    self._write(step, {f"val/{k}": v for k, v in metrics.items()})
    shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    self._print(f"validation at step {step}: {shown}  ({seconds:.1f} s)")
    if self._clock is not None:  # Validation time does not count in the training speed.
      self._clock = (self._clock[0] + seconds, self._clock[1])

  def message(self, text: str) -> None:
    self._print(text)

  def _write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": step, **metrics}) + "\n")
    for key, value in metrics.items():
      self._tensorboard.add_scalar(key, value, step)
    self._tensorboard.flush()

  def _print(self, text: str) -> None:
    if self.enabled:
      print(text, file=self.console or sys.stdout, flush=True)

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
