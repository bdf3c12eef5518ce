"""The GAM twin ("Real-time High-Resolution Video Object Segmentation", Wang, Chen, Yang, Wu), written from the
paper, METHODS.md and `jaxvos.models.gam` / `jaxvos.nn.gam_blocks`; the streaming side (global context, mask
history) is `jaxvos.torch.gam_processor`.

Frame encoder F_E (a ResNet to layer3, torchvision's layer names) once per frame: `key16 = key_proj(feats16)`
(the query key L_F, reused as the memory key K_T) and `value16 = value_proj(feats16)`. Mask encoder M_E: a
ResNet-18 on [mask, clamped sum of the other objects' masks] per object, fused with F_E's feats16 by
`FrameMaskFusion` (STCN's fusion block with its first ResBlock's kernels split into a per-object and a per-frame
part). Decoder input f_in = D + value16 (`combine="sum"`) or their concatenation, then CAM (`ChannelAttention`),
then MEM's gain g on the three previous soft masks: f * (1 + g); decoder: STM's (`jaxvos.torch.stm.Decoder`),
one logit per object. NCHW, objects flattened into the batch axis as [(b o) c h w] where per object.

Parameter names are jaxvos's (`frame_encoder.layer1.0.conv1.weight`, `mask_encoder.fuser.conv1_mask.weight`,
`cam.alpha`, `mem.conv1.weight`, `decoder.convFM.weight` ...): there is no public reference code to mirror.
"""

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from jaxvos.torch import layers
from jaxvos.torch import stm as stm_lib

HISTORY = 3  # previous masks MEM sees
NORMALIZATIONS = ("efficient", "raw", "mean", "livos")


@dataclasses.dataclass(frozen=True)
class ContextConfig:
  """`jaxvos.memory.global_context.ContextConfig`: the key normalisation and the update interval (a checkpoint's
  `memory` field)."""
  normalization: str = "efficient"
  every: int = 1                    # memorise every k-th frame (and every frame where objects are given)

  def __post_init__(self):
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
    if self.every < 1:
      raise ValueError(f"every must be >= 1, got {self.every}")


class ChannelAttention(nn.Module):
  """CAM, eqs. (4)-(7): f_out = max(alpha, 0) X softmax_i(X^T X / n) + f_in, X = f_in as [n c] per object.

  The mean over positions (not the paper's sum) as in `jaxvos.nn.gam_blocks.ChannelAttention`; alpha starts at 0
  (the identity).
  """

  def __init__(self):
    super().__init__()
    self.alpha = nn.Parameter(torch.zeros(()))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """x [n c h w] -> [n c h w]."""
    f = x.flatten(2)                                                   # [n c p]
    r = torch.bmm(f, f.transpose(1, 2)) / f.shape[2]                   # R(i, j) [n c c]
    attention = torch.softmax(r, dim=1)                                # over the channels i
    f_r = torch.bmm(attention.transpose(1, 2), f)                      # f_R(j) = sum_i R'(i, j) X(i)
    return torch.clamp(self.alpha, min=0.0) * f_r.reshape(x.shape) + x


def position_channels(h: int, w: int, device=None) -> torch.Tensor:
  """MEM's position encoding [3 h w]: x and y of each pixel centre in [-1, 1], and the distance to the frame's
  centre divided by sqrt(2), in [0, 1]."""
  ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h * 2.0 - 1.0
  xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w * 2.0 - 1.0
  y, x = torch.meshgrid(ys, xs, indexing="ij")
  return torch.stack([x, y, torch.sqrt(x * x + y * y) / math.sqrt(2.0)])


class MaskEmbedding(nn.Module):
  """MEM, eq. (8): [E^{t-3}, E^{t-2}, E^{t-1}, P] -> four 3x3 convolutions with ReLUs -> g >= 0 at stride 16.

  E^i is (the object's soft mask, the clamped sum of the other objects'); the first `downsamples` convolutions
  have stride 2 (2 for a history at stride 4).
  """

  def __init__(self, features: int, out_features: int, downsamples: int):
    super().__init__()
    widths = [2 * HISTORY + 3, features, features, features, out_features]
    for i in range(4):
      setattr(self, f"conv{i + 1}", layers.conv(widths[i], widths[i + 1], 3, 2 if i < downsamples else 1))

  def forward(self, history: torch.Tensor) -> torch.Tensor:
    """history [b 3 o h w] (oldest first) -> g [(b o) c h' w']."""
    b, t, o, h, w = history.shape
    others = torch.clamp(history.sum(dim=2, keepdim=True) - history, 0.0, 1.0)
    pairs = torch.stack([history, others], dim=2)                       # [b 3 2 o h w]
    masks = pairs.permute(0, 3, 1, 2, 4, 5).reshape(b * o, 2 * t, h, w)  # channel 2 i + (mask, others)
    position = position_channels(h, w, history.device).expand(b * o, 3, h, w)
    x = torch.cat([masks, position], dim=1)
    for i in range(4):
      x = F.relu(getattr(self, f"conv{i + 1}")(x))
    return x


class FrameMaskFusion(nn.Module):
  """STCN's value fusion (concat -> ResBlock -> CBAM residual -> ResBlock) with the first ResBlock's two
  convolutions split into a mask part (per object, with the bias) and a frame part (once per frame, no bias)."""

  def __init__(self, mask_channels: int, frame_channels: int, out_channels: int):
    super().__init__()
    self.conv1_mask = layers.conv(mask_channels, out_channels, 3)
    self.conv1_frame = layers.conv(frame_channels, out_channels, 3, bias=False)
    self.downsample_mask = layers.conv(mask_channels, out_channels, 3)
    self.downsample_frame = layers.conv(frame_channels, out_channels, 3, bias=False)
    self.conv2 = layers.conv(out_channels, out_channels, 3)
    self.attention = layers.CBAM(out_channels)
    self.block2 = layers.ResBlock(out_channels, out_channels)

  def forward(self, x: torch.Tensor, feats16: torch.Tensor) -> torch.Tensor:
    """x [(b o) c h w] per object, feats16 [b c' h w] of the frame -> [(b o) out h w]."""
    o = x.shape[0] // feats16.shape[0]
    hidden = self.conv1_mask(F.relu(x)) + layers.per_object(self.conv1_frame(F.relu(feats16)), o)
    y = self.downsample_mask(x) + layers.per_object(self.downsample_frame(feats16), o)
    y = y + self.conv2(F.relu(hidden))
    return self.block2(y + self.attention(y))


class MaskEncoder(layers.Trunk):
  """M_E: a ResNet on [mask, other objects] per object (no RGB), fused with F_E's feats16 into V_T."""

  def __init__(self, depth: int, width: int, frame_channels: int, value_dim: int):
    super().__init__(depth, width, in_channels=2)
    self.fuser = FrameMaskFusion(layers.trunk_channels(depth, width)["feats16"], frame_channels, value_dim)

  def forward(self, feats16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """feats16 [b c h/16 w/16], masks [b o h w] -> V_T [b o cv h/16 w/16]."""
    b, o = masks.shape[:2]
    others = torch.clamp(masks.sum(dim=1, keepdim=True) - masks, 0.0, 1.0)
    x = self.features(torch.stack([masks, others], dim=2).flatten(0, 1))["feats16"]
    return self.fuser(x, feats16).unflatten(0, (b, o))


class GAM(nn.Module):
  """The network; `jaxvos.torch.gam_processor.GAMProcessor` drives it through the methods below."""
  memory_config = ContextConfig  # what `jaxvos.torch.checkpoint.build` makes of the config's `memory`

  def __init__(self, *, frame_depth: int = 50, mask_depth: int = 18, width: int = 64, key_dim: int = 128,
               value_dim: int = 512, decoder_dim: int = 256, combine: str = "sum", use_cam: bool = True,
               use_mem: bool = True, mem_dim: int = 64, mem_stride: int = 4):
    super().__init__()
    if combine not in ("sum", "concat"):
      raise ValueError(f"combine must be sum or concat, got {combine!r}")
    if mem_stride not in (4, 8, 16):
      raise ValueError(f"mem_stride must be 4, 8 or 16, got {mem_stride}")
    channels = layers.trunk_channels(frame_depth, width)
    self.combine, self.mem_stride = combine, mem_stride
    decoder_in = value_dim * (2 if combine == "concat" else 1)
    self.frame_encoder = layers.Trunk(frame_depth, width)
    self.mask_encoder = MaskEncoder(mask_depth, width, channels["feats16"], value_dim)
    self.key_proj = layers.conv(channels["feats16"], key_dim, 3)
    self.value_proj = layers.conv(channels["feats16"], value_dim, 3)
    self.cam = ChannelAttention() if use_cam else None
    self.mem = MaskEmbedding(mem_dim, decoder_in, {4: 2, 8: 1, 16: 0}[mem_stride]) if use_mem else None
    self.decoder = stm_lib.Decoder(decoder_in, channels, decoder_dim)

  def encode_query(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """frame [b 3 h w] -> key16 [b ck h/16 w/16] (L_F, and K_T when memorised), value16 [b cv ...], feats16/8/4."""
    feats = self.frame_encoder.features(frame)
    return {"key16": self.key_proj(feats["feats16"]), "value16": self.value_proj(feats["feats16"]),
            "feats16": feats["feats16"], "feats8": feats["feats8"], "feats4": feats["feats4"]}

  def encode_memory(self, query: dict[str, torch.Tensor], probs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The memorised frame's keys K_T [b ck h w] (its query key) and values V_T [b o cv h w] from probs
    [b o H W] (soft, detached)."""
    return query["key16"], self.mask_encoder(query["feats16"], probs)

  def decode(self, readout: torch.Tensor, query: dict[str, torch.Tensor], history: torch.Tensor | None
             ) -> torch.Tensor:
    """D [b o cv h/16 w/16] and the mask history [b 3 o H/s W/s] (None without MEM) -> logits [b o H W]."""
    b, o = readout.shape[:2]
    d = readout.flatten(0, 1)
    value16 = layers.per_object(query["value16"], o)
    f = d + value16 if self.combine == "sum" else torch.cat([d, value16], dim=1)
    if self.cam is not None:
      f = self.cam(f)
    if self.mem is not None:
      f = f * (1.0 + self.mem(history))
    return self.decoder(f, query["feats8"], query["feats4"]).unflatten(0, (b, o))
