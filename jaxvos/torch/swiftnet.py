"""The SwiftNet twin (Wang, Jiang, Ren, Hu, Bai, CVPR 2021), written from the paper and `jaxvos.models.swiftnet`.

    import jaxvos.torch
    processor = jaxvos.torch.load("swiftnet.pth")          # a SwiftNetProcessor for a swiftnet file
    probs = processor.step(image, mask)                     # as `jaxvos.torch.Processor`

Query encoder: a ResNet (18 as released, or 50) cut after layer3, returning conv1 after BatchNorm and before
the ReLU (/2), res2 (/4), res3 (/8) and res4 (/16), then the 3x3 query key/value heads `KV_Q_r4`. Memory
encoding runs no backbone: the light aggregation encoder (`LAE`) adds the soft masks to the same frame's query
features (7x7/2 convolutions at /2, reversed sub-pixel at /16) and the memory heads `KV_M_r4` give per-object
keys and values (g = o). The read is `k_m . k_q / sqrt(ck)` with a softmax over the valid memory; [read-out,
query value] -> ASPP (1x1 and 3x3 dilated 2, 4, 8, concat, 1x1) -> STM's decoder (`jaxvos.torch.stm.Decoder`).
What is memorised is decided by the pixel-adaptive memory (`jaxvos.torch.swiftnet_memory`), which
`SwiftNetProcessor` drives with jaxvos's policy.

Parameter names are jaxvos's, which mirror the released R18 model's (haochenheheda/SwiftNet `swiftnet.py`,
nothing but names taken from it): a twin state dict is that model's keys, less the encoder's ImageNet `mean` and
`std` buffers (`jaxvos.convert.swiftnet_torch` says what else differs).
"""

import torch
from torch import nn
from torch.nn import functional as F

from jaxvos.torch import layers
from jaxvos.torch import memory as memory_lib
from jaxvos.torch import processor as processor_lib
from jaxvos.torch import stm as stm_lib
from jaxvos.torch import swiftnet_memory as pam

RSP_FACTOR = 16  # reversed sub-pixel: a full-size mask -> 256 channels at /16


class Encoder(layers.Trunk):
  """The query encoder; `features` also returns conv1 after BatchNorm, before the ReLU (what the LAE adds to)."""

  def __init__(self, depth: int, width: int):
    super().__init__(depth, width, layer_names=("res2", "res3", "res4"))

  def features(self, x: torch.Tensor, conv1_extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    del conv1_extra
    conv1 = self.bn1(self.conv1(x))
    feats = {"conv1": conv1, "feats2": F.relu(conv1)}
    x = F.max_pool2d(feats["feats2"], 3, stride=2, padding=1)
    for stage, name in enumerate(self.layer_names):
      x = getattr(self, name)(x)
      feats[f"feats{4 * 2**stage}"] = x
    return feats


class LAE(nn.Module):
  """The light aggregation encoder (`jaxvos.nn.swiftnet_blocks.LightAggregationEncoder`, whose docstring has the
  equations); convolutions without bias, `rsp_kernel` the channel-adjusting kernel after reversed sub-pixel."""

  def __init__(self, channels: dict[str, int], width: int, rsp_kernel: int):
    super().__init__()
    c16 = channels["feats16"]
    self.conv1_m = layers.conv(1, width, 7, 2, bias=False)
    self.conv1_o = layers.conv(1, width, 7, 2, bias=False)
    self.conv2_m = layers.conv(RSP_FACTOR**2, c16, rsp_kernel, bias=False)
    self.conv2_o = layers.conv(RSP_FACTOR**2, c16, rsp_kernel, bias=False)
    self.conv_fusion1 = layers.conv(width, channels["feats4"], 3, 2, bias=False)
    self.conv_fusion2 = layers.conv(channels["feats4"], channels["feats8"], 3, 2, bias=False)
    self.conv_fusion3 = layers.conv(channels["feats8"], c16, 3, 2, bias=False)
    self.conv_fusion4 = layers.conv(c16, c16, 3, bias=False)
    self.conv_fusion5 = layers.conv(c16, c16, 3, bias=False)

  def forward(self, feats: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """feats: conv1, feats4/8/16 [1 c h/s w/s]; masks [o H W] -> [o c16 H/16 W/16]."""
    others = torch.clamp(masks.sum(dim=0, keepdim=True) - masks, 0.0, 1.0)
    m, o = masks[:, None], others[:, None]
    x = F.relu(feats["conv1"] + self.conv1_m(m) + self.conv1_o(o))
    x = F.relu(feats["feats4"] + self.conv_fusion1(x))
    x = F.relu(feats["feats8"] + self.conv_fusion2(x))
    x = (feats["feats16"] + self.conv2_m(F.pixel_unshuffle(m, RSP_FACTOR))
         + self.conv2_o(F.pixel_unshuffle(o, RSP_FACTOR)) + self.conv_fusion3(x))
    x = F.relu(self.conv_fusion4(F.relu(x)))
    return F.relu(self.conv_fusion5(x))


class ASPPBranch(nn.Module):
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
    super().__init__()
    self.atrous_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                                 dilation=dilation, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.relu(self.atrous_conv(x))


class ASPP(nn.Module):
  """Branches `aspp1` (1x1) and `aspp2..4` (3x3, dilation 2, 4, 8) with ReLU, concatenated, fused by the 1x1
  `conv1`, ReLU (dropout is for training only: the twin is for inference)."""

  def __init__(self, in_channels: int, features: int, dilations: tuple[int, ...] = (1, 2, 4, 8)):
    super().__init__()
    for i, d in enumerate(dilations):
      setattr(self, f"aspp{i + 1}", ASPPBranch(in_channels, features, 1 if d == 1 else 3, d))
    self.num_branches = len(dilations)
    self.conv1 = layers.conv(features * len(dilations), features, 1, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    branches = [getattr(self, f"aspp{i + 1}")(x) for i in range(self.num_branches)]
    return F.relu(self.conv1(torch.cat(branches, dim=1)))


class SwiftNet(nn.Module):
  """The network (`jaxvos.models.swiftnet.SwiftNetConfig` fields as arguments); `SwiftNetProcessor` drives it."""
  affinity = "dot"
  top_k = None
  memory_config = pam.PixelMemoryConfig  # the memory policy's config class (`jaxvos.torch.checkpoint.build`)

  def __init__(self, *, depth: int = 18, width: int = 64, key_dim: int = 32, value_dim: int = 128,
               aspp_dim: int = 128, decoder_dim: int = 64, rsp_kernel: int = 3, dropout: float = 0.5,
               variation_stride: int = 4, lae_norm: float | None = None):
    super().__init__()
    del dropout  # training only
    if 16 % variation_stride:
      raise ValueError(f"variation_stride must divide 16, got {variation_stride}")
    channels = layers.trunk_channels(depth, width)
    self.variation_stride = variation_stride
    self.lae_norm = lae_norm
    self.Encoder = Encoder(depth, width)  # pylint: disable=invalid-name  (checkpoint names)
    self.LAE = LAE(channels, width, rsp_kernel)  # pylint: disable=invalid-name
    self.KV_M_r4 = stm_lib.KeyValue(channels["feats16"], key_dim, value_dim)  # pylint: disable=invalid-name
    self.KV_Q_r4 = stm_lib.KeyValue(channels["feats16"], key_dim, value_dim)  # pylint: disable=invalid-name
    self.aspp = ASPP(2 * value_dim, aspp_dim)
    self.Decoder = stm_lib.Decoder(aspp_dim, channels, decoder_dim)  # pylint: disable=invalid-name

  def encode_query(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """frame [1 3 H W] (normalised) -> key16/value16 [1 c h w], conv1, feats4/8/16, and frame_small [3 H/s W/s]
    (intensities in [0, 1] at `variation_stride`, for the trigger and the pixel-wise match)."""
    feats = self.Encoder.features(frame)
    key16, value16 = self.KV_Q_r4(feats["feats16"])
    small = pam.frame_small(frame[0], self.variation_stride, processor_lib.IMAGENET_MEAN, processor_lib.IMAGENET_STD)
    return {"key16": key16, "value16": value16, "frame_small": small,
            **{name: feats[name] for name in ("conv1", "feats4", "feats8", "feats16")}}

  def encode_memory(self, query: dict[str, torch.Tensor], probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """From the query features and soft probs [o H W] (the LAE: no backbone pass): per-object keys [o n ck],
    values [o n cv] and the masks at the variation stride [o H/s W/s]."""
    encoded = self.LAE(query, probs)
    if self.lae_norm is not None:
      encoded = pam.rescale_norm(encoded, self.lae_norm, dim=1)
    keys, values = self.KV_M_r4(encoded)
    return {"keys": keys.flatten(2).transpose(1, 2), "values": values.flatten(2).transpose(1, 2),
            "masks_small": pam.pool_masks(probs, self.variation_stride)}

  def decode(self, readout: torch.Tensor, query: dict[str, torch.Tensor]) -> torch.Tensor:
    """readout [o cv h w] -> per-object foreground logits [o H W]."""
    o = readout.shape[0]
    x = self.aspp(torch.cat([readout, layers.per_object(query["value16"], o)], dim=1))
    return self.Decoder(x, query["feats8"], query["feats4"])


class SwiftNetProcessor(processor_lib.Processor):
  """`jaxvos.torch.Processor` for SwiftNet: the same `step` / `ids_of` / `reset` / `object_ids`, with the
  pixel-adaptive memory (`self.memory`, a `jaxvos.torch.swiftnet_memory.PixelMemory`) in place of the slots.

  Per frame, as `jaxvos.models.skeleton.MemoryFamily.step`: encode the query, read (full or pixel-wise match),
  decode, give objects that appear their masks, soft-aggregate, then the memory's `update` (trigger, pixel-wise
  update or pinning, temporary slot), encoded from the detached soft probabilities. `self.triggers` lists the
  frames written as updates (the first frame included).
  """

  def __init__(self, network: SwiftNet, memory_config: pam.PixelMemoryConfig, *, max_objects: int | None = None,
               device: str | torch.device | None = None):
    super().__init__(network, memory_config, max_objects=max_objects, device=device)

  def reset(self) -> None:
    super().reset()
    self.triggers: list[int] = []

  def _first_frame(self, frame, masks, valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    logits = memory_lib.aggregate(masks, valid)
    encoded = self.network.encode_memory(query, torch.softmax(logits, dim=0)[1:])
    key16 = query["key16"][0].flatten(1).T
    self.memory = pam.PixelMemory(self.memory_config, encoded, key16, query["frame_small"], valid)
    self.object_valid = valid
    self.triggers = [0]
    return logits

  def _next_frame(self, frame, new_masks, new_valid) -> torch.Tensor:
    query = self.network.encode_query(frame[None])
    key16 = query["key16"][0]  # [ck h w]
    h, w = key16.shape[1:]
    readout = self.memory.read(key16.flatten(1).T, query["frame_small"], (h, w))  # [o n cv]
    readout = readout.transpose(1, 2).reshape(readout.shape[0], -1, h, w)
    object_logits = self.network.decode(readout, query)
    probs = memory_lib.merge_new_objects(torch.sigmoid(object_logits.float()), new_masks, new_valid)
    self.object_valid = self.object_valid | new_valid
    self.memory.note_objects(new_valid)
    logits = memory_lib.aggregate(probs, self.object_valid)
    soft = torch.softmax(logits, dim=0)[1:]
    t = self.memory.num_frames
    if self.memory.update(lambda: self.network.encode_memory(query, soft), query["frame_small"], soft,
                          bool(new_valid.any()), self.object_valid):
      self.triggers.append(t)
    return logits

