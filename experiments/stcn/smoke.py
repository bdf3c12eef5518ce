"""STCN (tiny) on synthetic video, on a CPU: checks that training learns, end to end, in minutes.

Command (from the repository root):

  python -m jaxvos train --config experiments/stcn/smoke.py --workdir /tmp/jaxvos-runs/stcn-smoke

Hardware: the 2-core CPU build machine (no GPU). Trains `stcn-tiny` (ResNet-18 encoders at a quarter width) from
random weights on 64 generated videos (96x128, 12 frames; textured moving objects, occlusions, distractors), 3-frame
96x96 clips (batch 4, 1000 steps), and validates every 250 steps on 4 held-out generated videos (the jaxvos J&F,
first-frame protocol) against the copy-the-first-frame-mask baseline. The trained model is exported to
`<workdir>/export/{final,best}` for `jaxvos segment --checkpoint`.

Crops keep the /16 feature maps near the validation frames' (6x6 against 6x8): trained on 64x64 crops (4x4 maps)
the same model reached a clip IoU of 0.6 on 64x64 crops but J&F 0.02 on the whole 96x128 frames.

Result (measured on the 2-core CPU while other jobs shared it; run with `--config.val.every=200`): 1000 steps in
630 s (1.75 steps/s, 7.0 clips/s; about 11 minutes with start-up and compilation). Validation J&F on the 4
held-out videos: 0.481, 0.568, 0.668, 0.761, 0.775 at steps 200 .. 1000 (J 0.739, F 0.811 at the end), against
0.559 for copying the first-frame mask.
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config() -> ml_collections.ConfigDict:
  c = common.smoke("stcn")
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.eval_model.top_k = 20  # STCN at test time (memory every 5th frame)
  return c
