"""SwiftNet, static-image stage: 3-frame pseudo-clips made from one image + mask by random affine transforms.

The data, budget and validation of `experiments/stcn/static.py` (`experiments/common.py`'s `static`); this file
sets SwiftNet's memory (the test-time pixel-adaptive memory in training too: frame 0 pinned, the previous frame
in the temporary slot, the trigger and the pixel-wise update active). The loss of the `cpu` variant is plain
cross-entropy, not the recipe's bootstrapped one: with STCN's schedule (the hardest pixels only, down to 15% at
step 1200) `swiftnet-tiny`'s static stage collapsed from step ~1100 (training IoU 0.55 -> 0.2, held-out J&F 0.188
at step 1000 -> 0.039 at 1500), while the same run continued from step 1000 with plain cross-entropy kept
learning (IoU 0.60, J&F 0.249 at step 1500): `experiments/README.md`, session 6. The `full` variant keeps STCN's
loss (the schedule is over 300k steps); watch its curves.

- `cpu` (default): `swiftnet-tiny` from random weights, 96x96 pseudo-clips, batch 4, 2000 steps (2-core CPU):

    python -m jaxvos train --config experiments/swiftnet/static.py --workdir /tmp/jaxvos-runs/swiftnet-static-cpu

  then the video stage from it: `--config experiments/swiftnet/video.py --config.train.init_from=<this workdir>`.

- `full`: `swiftnet` (ResNet-18, the real-time model) at 384x384, batch 16, Adam lr 1e-5 decayed x0.1 at 150k of
  300k steps, for a GPU or TPU host, from an ImageNet ResNet-18 (torchvision weights imported with
  `jaxvos convert from-torch --family resnet18`; the LAE, heads, ASPP and decoder start random):

    python -m jaxvos train --config experiments/swiftnet/static.py:full --workdir RUNS/swiftnet-static \
        --config.train.init_from=Encoder=ckpt/resnet18

Result (`cpu`, the 2-core CPU): `experiments/README.md`, session 6 (the collapse) and session 9 (this config from
random weights: training IoU 0.61 at step 2000, held-out J&F 0.324 at 1000 and 0.185 at 2000; its video stage
reached 0.524).
"""

import ml_collections

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")
video = config_module(__file__, "video.py")  # its `model_options`


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = common.static("swiftnet", variant)
  c.train_model = {}  # the test-time pixel-adaptive memory, trigger and pixel-wise update included
  c.model_overrides = video.model_options()  # lae_norm, the read's key_norm and top_k, overridable
  if variant == "cpu":
    c.loss.bootstrapped = False  # the bootstrapped schedule collapses this stage (module docstring)
  return c
