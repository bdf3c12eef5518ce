"""GAM (tiny) on synthetic video, on a CPU: checks that training learns, end to end, with clips long enough for
the running-mean context and the mask embedding module to see history.

Command (from the repository root):

  python -m jaxvos train --config experiments/gam/smoke.py --workdir /tmp/jaxvos-runs/gam-smoke

Hardware: the 2-core CPU build machine (no GPU). Trains `gam-tiny` (ResNet-18 frame and mask encoders at a
quarter width, context 16 x 32, CAM and MEM on) from random weights on 64 generated videos (96x128, 24 frames),
6-frame 96x96 clips (batch 4, 1000 steps; STCN's smoke run uses 3-frame clips: with 6 the context averages up to
5 frames and MEM sees three predictions of its own from the fourth frame on), maximum frame gap 1 -> 2 -> 3, and
validates every 250 steps on 4 held-out generated videos against the copy-the-first-frame-mask baseline. The
context takes every frame (`memory.every = 1`) in training and at test time alike.

Result: the whole run not yet made. A short check (`--config.train.steps=200 --config.train.log_every=10
--config.val.every=0 --config.optimizer.warmup_steps=20`, stopped at step 50; the CPU shared by ~8 jobs at a load
of 12, 0.17 steps/s): cross-entropy 1.143, 0.451, 0.409, 0.383, 0.363 at steps 10 .. 50, the clip IoU still
near 0 (0.01): the first steps learn the background prior, as every family does from random weights.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config() -> ml_collections.ConfigDict:
  c = common.smoke("gam")
  c.train_model = {}  # the global context has no slots to size: every frame goes into the running mean
  c.data.update(num_frames=6, synthetic_frames=24)
  return c
