"""STCN, main training stage: video clips of the DAVIS 2016 training sequences with a growing frame gap.

Two variants (`--config experiments/stcn/video.py[:VARIANT]`; the recipe is `experiments/common.py`'s `video`,
this file sets STCN's read-out):

- `cpu` (default): the run that shows training learns on real video on the 2-core CPU build machine, from
  random weights: `stcn-tiny`, 3-frame 128x128 clips, batch 4, 4000 steps. 27 of the 30 training sequences of
  `../shared/data/davis2016-240p` are trained on; dog-agility, motorbike and soccerball are held out for the
  periodic validation J&F (the best checkpoint is kept in `<workdir>/best`). The DAVIS 2016 val sequences
  (blackswan, bmx-trees) are never seen: evaluate them afterwards with `jaxvos segment` + `jaxvos evaluate`
  (`experiments/README.md`). Validation and evaluation resize frames to a shorter side of 96: the random crops
  (36-100% of a 240p frame resized to 128x128) train at 0.4-0.67 of the 240p scale, and after 400 steps the
  held-out J&F was 0.39 at 96, 0.22 at 128 and 0.19 at 240.

    python -m jaxvos train --config experiments/stcn/video.py --workdir /tmp/jaxvos-runs/stcn-davis-cpu

- `full`: STCN's main-training recipe at its sizes (ResNet-50 key encoder, 3-frame 384x384 clips, batch 16,
  Adam lr 1e-5 decayed x0.1 at 125k of 150k steps, bootstrapped CE from 20k to 70k, max frame gap 10 -> 25 then
  5), for a GPU or TPU host; start it from the static stage with `--config.train.init_from=<static workdir>` or
  from imported weights (a `jaxvos convert` model directory).

    python -m jaxvos train --config experiments/stcn/video.py:full --workdir RUNS/stcn-video \
        --config.train.init_from=RUNS/stcn-static

Hardware and result (`cpu`): the 2-core CPU, 45 minutes (2689 s of training); J&F 0.409 on blackswan + bmx-trees
(the best checkpoint, step 2000; 0.417 for the final one) against 0.306 for copying the first-frame mask
(`experiments/README.md`, with the loss curve). `full`: not yet run.
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.video("stcn", variant)
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.eval_model.top_k = 20
  return c
