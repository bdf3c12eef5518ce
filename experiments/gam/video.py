"""GAM, main training stage: clips of the DAVIS 2016 training sequences, longer than the baselines' so that the
running-mean context and the mask embedding module (the three previous masks) see history.

The paper trains on 10-frame clips, skipping 0 to 10 frames between them (a maximum gap of 11 in jaxvos's
terms, where gap 1 is the next frame). The recipe is `experiments/common.py`'s `video`; this file sets GAM's clip
length and gap schedule, and no memory sizing (the context takes every frame, in training and at test time).

- `cpu` (default): `gam-tiny` from random weights on the 2-core CPU, 6-frame 128x128 clips (10-frame clips cost
  about twice as much per step again), batch 4, 4000 steps, maximum gap 3 -> 5 -> 8 -> 11 -> 3; 27 of the 30
  training sequences of `../shared/data/davis2016-240p`, dog-agility, motorbike and soccerball held out for
  validation at a shorter side of 96:

    python -m jaxvos train --config experiments/gam/video.py --workdir /tmp/jaxvos-runs/gam-davis-cpu

- `full`: the paper's model and clips (ResNet-50 frame encoder, 10-frame 384x384 clips, gaps up to 11, Adam lr
  1e-5), batch 16 and 150k steps as the STCN recipe, for a GPU or TPU host, from the static stage:

    python -m jaxvos train --config experiments/gam/video.py:full --workdir RUNS/gam-video \
        --config.train.init_from=RUNS/gam-static

Result (`cpu`, the 2-core CPU, session 7, from the static stage): stopped at step ~1700 of 4000 when the
session ended (held-out J&F 0.384 / 0.366 / 0.396 at steps 500-1500; the run's files were lost with the machine).
Video only with the baselines' 3-frame clips (`--config.data.num_frames=3 '--config.data.gaps=(3,5,8,10,3)'`,
session 12): held-out 0.508 at step 3500, 0.463 at 4000; val 0.411 at 96, 0.565 at 160 (final);
`experiments/README.md`. `full`: not yet run.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")

# The paper's ablations, for training and test time alike: `--config.model_overrides.use_cam=False`,
# `--config.model_overrides.use_mem=False`, `--config.model_overrides.memory.normalization=raw` (or `mean`, `livos`).
ABLATIONS = dict(use_cam=True, use_mem=True, memory=dict(normalization="efficient"))


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.video("gam", variant)
  c.train_model = {}  # the global context has no slots to size: every frame goes into the running mean
  c.model_overrides = ABLATIONS
  steps = c.train.steps
  if variant == "cpu":
    c.data.num_frames = 6
    c.data.gaps = (3, 5, 8, 11, 3)
    c.data.gap_boundaries = tuple(int(f * steps) for f in (0.1, 0.3, 0.5, 0.9))
  else:
    c.data.num_frames = 10
    c.data.gaps = (3, 6, 11)
    c.data.gap_boundaries = tuple(int(f * steps) for f in (0.1, 0.3))
  return c
