"""STM (tiny) on synthetic video, on a CPU: checks that training learns, end to end, in minutes.

Command (from the repository root):

  python -m jaxvos train --config experiments/stm/smoke.py --workdir /tmp/jaxvos-runs/stm-smoke

Hardware: the 2-core CPU build machine (no GPU). Trains `stm-tiny` (ResNet-18 encoders at a quarter width) from
random weights on 64 generated videos (96x128, 12 frames; textured moving objects, occlusions, distractors), 3-frame
96x96 clips (batch 4, 1000 steps), and validates every 250 steps on 4 held-out generated videos (the jaxvos J&F,
first-frame protocol) against the copy-the-first-frame-mask baseline. The trained model is exported to
`<workdir>/export/{final,best}` for `jaxvos segment --checkpoint`. Everything but the loss is the STCN smoke
config's (`experiments/common.py`, `smoke`).

Result: 9.8 minutes on the 2-core CPU (585 s of training, 1.7 steps/s); J&F 0.662 (J 0.629, F 0.694) on the 4
held-out videos at step 1000 against 0.559 for copying the first-frame mask (`experiments/README.md`).
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config() -> ml_collections.ConfigDict:
  c = common.smoke("stm")  # STM at test time (eval_model): every 5th frame and the previous one
  c.loss = common.PLAIN_LOSS  # STM trains with plain cross-entropy
  return c
