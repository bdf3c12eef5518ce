"""SwiftNet (tiny) on synthetic video, on a CPU: checks that training learns, end to end, in minutes.

Command (from the repository root):

  python -m jaxvos train --config experiments/swiftnet/smoke.py --workdir /tmp/jaxvos-runs/swiftnet-smoke

Hardware: the 2-core CPU build machine (no GPU). The budget and data of `experiments/stcn/smoke.py`
(`experiments/common.py`'s `smoke`): `swiftnet-tiny` (ResNet-18 at a quarter width) from random weights on 64
generated videos, 3-frame 96x96 clips, batch 4, 1000 steps, validated every 250 steps on 4 held-out videos.

Memory in training is the test-time pixel-adaptive memory (`train_model` overrides nothing): frame 0 pinned,
the previous frame in the temporary slot, and the variation-aware trigger with its pixel-wise update active, so
a 3-frame clip's last frame reads frame 0, frame 1 and, when frame 1 triggered, its most novel pixels.
The loss is the recipe's (STCN's bootstrapped cross-entropy), so the comparison with STCN differs only in
the model; the ASPP's dropout is active in training.

Result: not yet run to the end (the 1000 steps and validation: not yet run). A 2-minute check of training on
the shared 2-core CPU (nice'd, `--config.train.log_every=5`): the loss fell from 0.72 (step 5) to 0.32-0.44
(steps 40-65) at 0.4-0.5 steps/s, after about 3 minutes of compilation and start-up.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config() -> ml_collections.ConfigDict:
  c = common.smoke("swiftnet")
  c.train_model = {}  # the test-time pixel-adaptive memory, trigger and pixel-wise update included
  return c
