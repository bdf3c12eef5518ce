"""STM, static-image stage: 3-frame pseudo-clips made from one image + mask by random affine transforms.

Images: ECSSD, PASCAL-S and the DAVIS 2017 first frames of `../shared/data/static-images`, plus every 5th
annotated frame of the DAVIS 2016 training sequences (the held-out validation sequences excluded) used as single
images. Validation (J&F on video) on three held-out DAVIS 2016 training sequences. The recipe is
`experiments/common.py`'s `static`; STM differs from it only by its plain cross-entropy.

- `cpu` (default): `stm-tiny` from random weights, 96x96 pseudo-clips, batch 4, 2000 steps (2-core CPU):

    python -m jaxvos train --config experiments/stm/static.py --workdir /tmp/jaxvos-runs/stm-static-cpu

  then the video stage from it: `--config experiments/stm/video.py --config.train.init_from=<this workdir>`.

- `full`: STM's pre-training at its sizes (ResNet-50 query and memory encoders, 384x384, Adam lr 1e-5, plain
  cross-entropy; STM does not publish its step counts: 300k steps with a x0.1 decay at 150k as STCN), for a GPU
  or TPU host, from ImageNet encoders (`jaxvos convert from-torch --family resnet50`; both encoders take it, the
  memory encoder's mask convolutions stay random):

    python -m jaxvos train --config experiments/stm/static.py:full --workdir RUNS/stm-static \
        --config.train.init_from=ckpt/resnet50

Hardware and result: not yet run.
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.static("stm", variant)  # STM at test time (eval_model): every 5th frame and the previous one
  c.loss = common.PLAIN_LOSS
  return c
