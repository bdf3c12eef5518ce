"""GAM, static-image stage: 3-frame pseudo-clips made from one image + mask by random affine transforms (the
paper's pre-training: "a video sequence composed of three frames is generated" from each image).

Images: ECSSD, PASCAL-S and the DAVIS 2017 first frames of `../shared/data/static-images`, plus every 5th
annotated frame of the DAVIS 2016 training sequences (the held-out validation sequences excluded). Validation
(J&F on video) on three held-out DAVIS 2016 training sequences. The recipe is `experiments/common.py`'s `static`;
GAM's context takes every frame, so there is no memory to size.

- `cpu` (default): `gam-tiny` from random weights, 96x96 pseudo-clips, batch 4, 2000 steps (2-core CPU):

    python -m jaxvos train --config experiments/gam/static.py --workdir /tmp/jaxvos-runs/gam-static-cpu

  then the video stage from it: `--config experiments/gam/video.py --config.train.init_from=<this workdir>`.

- `full`: the paper's sizes (ResNet-50 frame encoder, ResNet-18 mask encoder, C_N 128, C_M 512; 384x384, Adam
  lr 1e-5), batch 16 and 300k steps as the STCN recipe, for a GPU or TPU host, from an ImageNet ResNet-50
  frame encoder (`jaxvos convert from-torch --family resnet50`; the mask encoder sees two mask channels, no RGB,
  so its first convolution starts random):

    python -m jaxvos train --config experiments/gam/static.py:full --workdir RUNS/gam-static \
        --config.train.init_from=frame_encoder=ckpt/resnet50

Result (`cpu`, the 2-core CPU, session 7): held-out J&F 0.139 / 0.258 / 0.296 / 0.350 at steps 500-2000
(STCN's static stage: 0.201 / 0.327 / 0.236 / 0.310); `experiments/README.md`. `full`: not yet run.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")

# The paper's ablations, for training and test time alike: `--config.model_overrides.use_cam=False`,
# `--config.model_overrides.use_mem=False`, `--config.model_overrides.memory.normalization=raw` (or `mean`, `livos`).
ABLATIONS = dict(use_cam=True, use_mem=True, memory=dict(normalization="efficient"))


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.static("gam", variant)
  c.train_model = {}  # the global context has no slots to size: every frame goes into the running mean
  c.model_overrides = ABLATIONS
  return c
