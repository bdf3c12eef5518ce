"""The STCN twin (Cheng, Tai, Tang, NeurIPS 2021), written from the paper and `jaxvos.models.stcn`.

Key encoder (ResNet-50 or -18 to layer3) on the frame; its projected key (3x3 conv) is the query key and, when
the frame is memorised, the memory key (g = 1). Value encoder: a ResNet-18 on [RGB, the object's mask, the sum of
the other objects' masks] (one channel fewer in the single-object variant), fused with the key encoder's feats16
(ResBlock, CBAM, ResBlock). Decoder: ResBlock on [read-out, key_comp(feats16)], two upsample steps with the /8
and /4 skips, a 3x3 conv to one logit per object, bilinear x4. The read is `jaxvos.torch.memory.l2_affinity`
with top-k. Parameter names are those of `jaxvos.models.stcn` (and so of the official code).
"""

import torch
from torch import nn

from jaxvos.torch import layers


class KeyEncoder(layers.Trunk):
  def __init__(self, depth: int, width: int):
    super().__init__(depth, width, layer_names=("res2", "layer2", "layer3"))


class ValueEncoder(layers.Trunk):
  def __init__(self, depth: int, width: int, key_channels: int, value_dim: int, single_object: bool):
    super().__init__(depth, width, in_channels=4 if single_object else 5, bias=True)
    self.single_object = single_object
    self.fuser = layers.FeatureFusionBlock(layers.trunk_channels(depth, width)["feats16"] + key_channels, value_dim)

  def forward(self, frame: torch.Tensor, feats16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """frame [b 3 h w], feats16 [b c h/16 w/16], masks [b o h w] -> values [b o cv h/16 w/16]."""
    b, o = masks.shape[:2]
    inputs = [frame[:, None].expand(b, o, *frame.shape[1:]), masks[:, :, None]]
    if not self.single_object:
      inputs.append((masks.sum(dim=1, keepdim=True) - masks)[:, :, None])
    x = torch.cat(inputs, dim=2).flatten(0, 1)
    x = self.features(x)["feats16"]
    values = self.fuser(x, layers.per_object(feats16, o))
    return values.unflatten(0, (b, o))


class KeyProjection(nn.Module):
  def __init__(self, in_channels: int, key_dim: int):
    super().__init__()
    self.key_proj = layers.conv(in_channels, key_dim, 3)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.key_proj(x)


class Decoder(nn.Module):
  def __init__(self, in_channels: int, skips: dict[str, int], dims: tuple[int, int, int]):
    super().__init__()
    self.compress = layers.ResBlock(in_channels, dims[0])
    self.up_16_8 = layers.UpsampleBlock(skips["feats8"], dims[0], dims[1])
    self.up_8_4 = layers.UpsampleBlock(skips["feats4"], dims[1], dims[2])
    self.pred = layers.conv(dims[2], 1, 3)

  def forward(self, x: torch.Tensor, feats8: torch.Tensor, feats4: torch.Tensor) -> torch.Tensor:
    """x [(b o) c h/16 w/16] -> per-object logits [(b o) h w]."""
    x = self.up_8_4(feats4, self.up_16_8(feats8, self.compress(x)))
    return layers.upsample(self.pred(torch.relu(x)), 4)[:, 0]


class STCN(nn.Module):
  """The network; `jaxvos.torch.processor.Processor` drives it through the three methods below."""
  affinity = "l2"

  def __init__(self, *, key_depth: int = 50, value_depth: int = 18, width: int = 64, key_dim: int = 64,
               value_dim: int = 512, hidden_dim: int = 512, decoder_dims=(512, 256, 256), single_object: bool = False,
               top_k: int | None = 20):
    super().__init__()
    key_channels = layers.trunk_channels(key_depth, width)
    self.top_k = top_k
    self.key_encoder = KeyEncoder(key_depth, width)
    self.value_encoder = ValueEncoder(value_depth, width, key_channels["feats16"], value_dim, single_object)
    self.key_proj = KeyProjection(key_channels["feats16"], key_dim)
    self.key_comp = layers.conv(key_channels["feats16"], hidden_dim, 3)
    self.decoder = Decoder(value_dim + hidden_dim, key_channels, tuple(decoder_dims))

  def encode_query(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """frame [b 3 h w] -> key16 [b ck h/16 w/16], value16 (key_comp), feats16/8/4."""
    feats = self.key_encoder.features(frame)
    return {"key16": self.key_proj(feats["feats16"]), "value16": self.key_comp(feats["feats16"]),
            "feats16": feats["feats16"], "feats8": feats["feats8"], "feats4": feats["feats4"]}

  def encode_memory(self, frame: torch.Tensor, query: dict[str, torch.Tensor], probs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The query key is the memory key: keys [b 1 ck h w], values [b o cv h w] from probs [b o h w]."""
    return query["key16"][:, None], self.value_encoder(frame, query["feats16"], probs)

  def decode(self, readout: torch.Tensor, query: dict[str, torch.Tensor]) -> torch.Tensor:
    """readout [b o cv h/16 w/16] -> per-object logits [b o h w]."""
    b, o = readout.shape[:2]
    x = torch.cat([readout.flatten(0, 1), layers.per_object(query["value16"], o)], dim=1)
    return self.decoder(x, query["feats8"], query["feats4"]).unflatten(0, (b, o))
