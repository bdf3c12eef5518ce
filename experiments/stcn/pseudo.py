"""STCN, multi-object pseudo-video stage (`experiments/common.py`'s `pseudo_video`): objects cut out of the static
images and pasted over other images with their own motion, occlusion, scale change and unannotated look-alikes,
up to 3 objects per clip. Validation on three held-out DAVIS 2016 training sequences.

- `cpu` (default): `stcn-tiny` from random weights (or from the static stage with `--config.train.init_from`),
  96x96 clips of 3 frames, batch 4, 2000 steps:

    python -m jaxvos train --config experiments/stcn/pseudo.py --workdir /tmp/jaxvos-runs/stcn-pseudo-cpu

  then the video stage from it: `--config experiments/stcn/video.py --config.train.init_from=<this workdir>`.

- `full`: at STCN's sizes (ResNet-50, 384x384, batch 16) for a GPU or TPU host.

Hardware and result: not yet run to the end. A first run on the 2-core CPU (shared with other jobs, 0.2-0.4
steps/s) was stopped at step 675 of 2000; validation J&F at step 500: 0.119 (copy-first-mask 0.134), which says
nothing yet (experiments/recipe/README.md).
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.pseudo_video("stcn", variant)
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.eval_model.top_k = 20
  return c
