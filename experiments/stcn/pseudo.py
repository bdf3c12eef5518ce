"""STCN, multi-object pseudo-video stage (`experiments/common.py`'s `pseudo_video`): objects cut out of the static
images and pasted over other images with their own motion, occlusion, scale change and unannotated look-alikes,
up to 3 objects per clip. Validation on three held-out DAVIS 2016 training sequences.

- `cpu` (default): `stcn-tiny` from random weights (or from the static stage with `--config.train.init_from`),
  96x96 clips of 3 frames, batch 4, 2000 steps:

    python -m jaxvos train --config experiments/stcn/pseudo.py --workdir /tmp/jaxvos-runs/stcn-pseudo-cpu

  then the video stage from it: `--config experiments/stcn/video.py --config.train.init_from=<this workdir>`.

- `full`: at STCN's sizes (ResNet-50, 384x384, batch 16) for a GPU or TPU host.

Hardware and result (`cpu`, from random weights): the 2-core CPU, session 14, 0.58 steps/s alone (about 58 minutes
of the whole CPU; 6657 s wall-clock: niced below the STM run for its first 75 minutes). Held-out validation J&F
0.037 / 0.147 / **0.190** / 0.187 at steps 500-2000 (copy-first-mask 0.134; the static stage: 0.201 / 0.327 / 0.236
/ 0.310); DAVIS 2016 val at 96: 0.259 (`final`), against 0.184 for the static stage alone. Its cross-entropy
stops falling after about 400 steps (0.17), with the training IoU (0.50-0.56) at that of copying frame 0's masks
onto the later frames of these clips (0.516, `experiments/clip_copy_iou.py`; the video stage's clips: 0.616, which
its models pass, ending near 0.7): at this size the tiny model does not get past copying on clips of several
small objects with look-alikes (experiments/recipe/README.md). The video stage from its `final` (session 15):
held-out 0.569 best (step 3000) / 0.560 final at 96, against 0.533 / 0.465 for the video stage alone.
`full`: not yet run.
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
