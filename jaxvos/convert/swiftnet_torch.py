"""SwiftNet <-> PyTorch: the rule table, the sizes a state dict decides, and the released model's extra keys.

jaxvos's SwiftNet names its modules after the released R18 model (haochenheheda/SwiftNet `swiftnet.py`; that
repository has no licence and only its parameter names were read), so its state dict and the twin's
(`jaxvos.torch.swiftnet`) are one layout, which the generic rules of `jaxvos.convert.rules` produce with the
table `SWIFTNET`: the encoder's stages are `res2`..`res4` (`Encoder.res2.0.conv1.weight`), and `LAE.*`,
`KV_M_r4.Key.*`, `KV_Q_r4.*`, `aspp.aspp1.atrous_conv.weight`, `aspp.conv1.weight`, `Decoder.convFM.*`,
`Decoder.RF3.ResFS.conv1.*`, `Decoder.pred2.*` are the released keys.

What matches the release and what does not:

- Keys: the released model's state dict is the twin's plus `Encoder.mean` and `Encoder.std` (its encoder
  normalises its input with ImageNet buffers; jaxvos normalises frames before the network). Import drops them
  with a note; the official layout writes them back (`OFFICIAL_BUFFERS`).
- Shapes: the default `swiftnet` config is the release's (ResNet-18, width 64, key 32, value 128, ASPP 128,
  decoder 64, 3x3 `conv2_m/o`), so its tensors have the released shapes. The release hard-codes those sizes
  (its LAE takes 64 / 128 / 256 channels, its ASPP 256 in); `swiftnet-r50`, `swiftnet-tiny` and `rsp_kernel=1`
  (the paper's 1x1) have the same keys with other shapes, which the release cannot load. `lae_norm` adds no key
  but changes what the network computes, so such a model has the twin layout only.
- Not parameters, so not in any state dict: the memory. The release's evaluation memorises every 5th frame and
  appends its 10% most novel pixels without a bound; jaxvos's (and the twin's) pixel-adaptive memory has the
  variation-aware trigger, a fixed capacity with first-in-first-out eviction of pixel updates, and an optional
  pixel-wise match (`jaxvos.memory.pixel_adaptive`). A file's `config["memory"]` carries that policy; a bare
  state dict imports with the default one.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxvos.convert.rules import SWIFTNET  # noqa: F401  (the rule table, with the others)

# The released encoder's normalisation buffers ([1 3 1 1]), written back in the official layout.
OFFICIAL_BUFFERS = {"Encoder.mean": [0.485, 0.456, 0.406], "Encoder.std": [0.229, 0.224, 0.225]}

# Config fields that a state dict decides: field -> (key, axis of its shape). The release gives the defaults.
_SIZES = {
    "width": ("Encoder.conv1.weight", 0),
    "key_dim": ("KV_Q_r4.Key.weight", 0),
    "value_dim": ("KV_Q_r4.Value.weight", 0),
    "aspp_dim": ("aspp.conv1.weight", 0),
    "decoder_dim": ("Decoder.convFM.weight", 0),
    "rsp_kernel": ("LAE.conv2_m.weight", 3),
}


def config_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """SwiftNet sizes from a state dict (keys absent: the defaults); Bottleneck blocks mean a ResNet-50."""
  config = {field: int(np.shape(state_dict[key])[axis]) for field, (key, axis) in _SIZES.items()
            if key in state_dict}
  if "Encoder.res2.0.conv1.weight" in state_dict:
    config["depth"] = 50 if "Encoder.res2.0.conv3.weight" in state_dict else 18
  return config


def official_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A twin state dict in the released layout: with the encoder's normalisation buffers."""
  buffers = {key: np.asarray(values, np.float32).reshape(1, 3, 1, 1) for key, values in OFFICIAL_BUFFERS.items()}
  return {**state_dict, **buffers}
