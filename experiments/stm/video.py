"""STM, main training stage: video clips of the DAVIS 2016 training sequences with a growing frame gap.

Two variants (`--config experiments/stm/video.py[:VARIANT]`; the recipe is `experiments/common.py`'s `video`,
STM differs by its plain cross-entropy and, in `full`, its frame-gap schedule):

- `cpu` (default): the STCN `cpu` run's data and schedule for `stm-tiny` from random weights on the 2-core CPU:
  3-frame 128x128 clips, batch 4, 4000 steps on 27 of the 30 training sequences of
  `../shared/data/davis2016-240p`; dog-agility, motorbike and soccerball are held out for the periodic
  validation J&F (the best checkpoint is kept in `<workdir>/best`); validation resizes frames to a shorter side
  of 96, the scale the random crops train at (for STCN this gave 0.39 held-out J&F at 96 against 0.22 at 128
  and 0.19 at 240 after 400 steps; not measured for STM). Evaluate blackswan and bmx-trees afterwards with
  `jaxvos segment` + `jaxvos evaluate` as for STCN (`experiments/README.md`).

    python -m jaxvos train --config experiments/stm/video.py --workdir /tmp/jaxvos-runs/stm-davis-cpu

- `full`: STM's main training at its sizes (ResNet-50 encoders, 3-frame 384x384 clips, Adam lr 1e-5, plain
  cross-entropy, the maximum frame gap grown from 1 to 25 over training), batch 16 and 150k steps as the STCN
  config, for a GPU or TPU host; start it from the static stage with `--config.train.init_from=<static workdir>`
  or from imported weights (a `jaxvos convert` model directory).

    python -m jaxvos train --config experiments/stm/video.py:full --workdir RUNS/stm-video \
        --config.train.init_from=RUNS/stm-static

Hardware and result (`cpu`): the 2-core CPU (2.5-3x slower than in session 2, when STCN's run was made), 4349 s of
training over sessions 13-14 (resumed from step 1250). Held-out validation J&F 0.289 / 0.343 / 0.288 / 0.455 /
**0.473** / 0.456 / 0.463 / 0.453 at steps 500-4000 (STCN's run: peak 0.533, final 0.465); DAVIS 2016 val at 96
0.452 (`final`) / 0.434 (`best`, step 2500) against STCN's 0.417 / 0.409; at 160 held-out 0.446, val 0.393
(`experiments/README.md`, session 14). `full`: not yet run.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.video("stm", variant)  # STM at test time (eval_model): every 5th frame and the previous one
  c.loss = common.PLAIN_LOSS
  if variant == "full":
    c.data.gaps = (1, 5, 10, 15, 20, 25)
  return c
