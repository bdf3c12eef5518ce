"""STCN, static-image stage: 3-frame pseudo-clips made from one image + mask by random affine transforms.

Images: ECSSD, PASCAL-S and the DAVIS 2017 first frames of `../shared/data/static-images`, plus every 5th
annotated frame of the DAVIS 2016 training sequences (the held-out validation sequences excluded) used as single
images. Validation (J&F on video) on three held-out DAVIS 2016 training sequences. The recipe is
`experiments/common.py`'s `static`; this file sets STCN's read-out.

- `cpu` (default): `stcn-tiny` from random weights, 96x96 pseudo-clips, batch 4, 2000 steps (2-core CPU):

    python -m jaxvos train --config experiments/stcn/static.py --workdir /tmp/jaxvos-runs/stcn-static-cpu

  then the video stage from it: `--config experiments/stcn/video.py --config.train.init_from=<this workdir>`.

- `full`: STCN's static stage at its sizes (ResNet-50 key encoder, 384x384, batch 16, Adam lr 1e-5 decayed x0.1
  at 150k of 300k steps, bootstrapped CE from 20k to 70k as in every STCN stage), for a GPU or TPU host, from
  ImageNet encoders as STCN starts (torchvision weights imported with `jaxvos convert from-torch --family
  resnet50` and `--family resnet18`; the value encoder's mask channels keep their random initialisation):

    python -m jaxvos train --config experiments/stcn/static.py:full --workdir RUNS/stcn-static \
        --config.train.init_from=key_encoder=ckpt/resnet50,value_encoder=ckpt/resnet18

Hardware and result: not yet run.
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.static("stcn", variant)
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.eval_model.top_k = 20
  return c
