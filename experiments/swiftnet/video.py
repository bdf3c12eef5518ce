"""SwiftNet, main training stage: video clips of the DAVIS 2016 training sequences with a growing frame gap.

The data, budget and validation of `experiments/stcn/video.py` (`experiments/common.py`'s `video`): 27 training
sequences of `../shared/data/davis2016-240p`, dog-agility, motorbike and soccerball held out for validation.
This file sets SwiftNet's memory (the test-time pixel-adaptive memory in training too: frame 0 pinned, the
previous frame in the temporary slot, the variation-aware trigger and the pixel-wise update active; with
3-frame clips the trigger fires on frame 1 only when it varies a lot, so most clips train the first frame and
temporary slot); the loss is the recipe's (STCN's bootstrapped
cross-entropy), so the comparison with STCN differs only in the model.

- `cpu` (default): `swiftnet-tiny`, 3-frame 128x128 clips, batch 4, 4000 steps (2-core CPU):

    python -m jaxvos train --config experiments/swiftnet/video.py --workdir /tmp/jaxvos-runs/swiftnet-davis-cpu

- `full`: `swiftnet` (ResNet-18) at 384x384, batch 16, Adam lr 1e-5 decayed x0.1 at 125k of 150k steps, for a
  GPU or TPU host, from the static stage:

    python -m jaxvos train --config experiments/swiftnet/video.py:full --workdir RUNS/swiftnet-video \
        --config.train.init_from=RUNS/swiftnet-static

Result (`cpu` from random weights, the 2-core CPU, session 8): held-out J&F 0.524 at step 2500, 0.513 at 4000;
val 0.417 / 0.386 at size 96, as STCN's video-only run (0.533 / 0.409): `experiments/README.md`. At larger
working sizes it falls behind STCN (session 10: the LAE's memory keys grow at positions farther from the map's
border than 128x128 crops have, and the object's queries stop reading the object). Trained with
`--config.model_overrides.memory.key_norm=13.3` (session 11): the read holds at every size and val at 160 rises
to 0.516 (best), but held-out still peaks at 128 (0.539) and falls to 0.43-0.45 at 160 and 0.31 at 192 (STCN
0.564 / 0.527). Trained with `--config.model_overrides.lae_norm=8` (session 13, the LAE's output at one norm):
the most stable run (best = final), held-out 0.531 / 0.541 / 0.488 / 0.333 and val 0.426 / 0.515 / 0.575 / 0.520
at 96 / 128 / 160 / 192; next: crops as large as the working size. `full`: not yet run.
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def model_options() -> dict:
  """The options that concern working sizes (`SwiftNetConfig.lae_norm`, `PixelMemoryConfig.key_norm` / `top_k`)
  as overridable fields for training and test time alike, at the paper's (None):
  `--config.model_overrides.memory.key_norm=13.3` trains with memory keys rescaled to one L2 norm,
  `--config.model_overrides.lae_norm=8` with the LAE's output rescaled. New placeholders on every call: a
  placeholder is a reference, which an override would set for every config sharing it."""
  return dict(lae_norm=config_dict.placeholder(float),
              memory=dict(key_norm=config_dict.placeholder(float), top_k=config_dict.placeholder(int)))


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.video("swiftnet", variant)
  c.train_model = {}  # the test-time pixel-adaptive memory, trigger and pixel-wise update included
  c.model_overrides = model_options()
  return c
