"""The STM twin (Oh, Lee, Xu, Kim, ICCV 2019), written from the paper and `jaxvos.models.stm`.

A query encoder (ResNet to layer3) on the frame; a memory encoder (a second ResNet) on the frame, with the
object's mask and the union of the other objects' masks added after conv1 (7x7/2 convolutions `conv1_m`,
`conv1_o`). 3x3 key/value heads on both; memory keys are per object (g = o). The read is
`jaxvos.torch.memory.dot_affinity` over all of memory; the read-out and the query's own value go to the
decoder (3x3 conv + ResBlock at /16, refine with the /8 and /4 skips, 3x3 conv to two logits, bilinear x4; the
foreground logit is their difference). Parameter names are those of `jaxvos.models.stm`.
"""

import torch
from torch import nn

from jaxvos.torch import layers

_LAYERS = ("res2", "res3", "res4")


class MemoryEncoder(layers.Trunk):
  def __init__(self, depth: int, width: int):
    super().__init__(depth, width, layer_names=_LAYERS)
    self.conv1_m = layers.conv(1, width, 7, 2, bias=False)
    self.conv1_o = layers.conv(1, width, 7, 2, bias=False)

  def forward(self, frame: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """frame [b 3 h w], masks [b o h w] -> feats16 [(b o) c h/16 w/16]."""
    b, o = masks.shape[:2]
    others = torch.clamp(masks.sum(dim=1, keepdim=True) - masks, 0.0, 1.0)
    extra = self.conv1_m(masks.flatten(0, 1)[:, None]) + self.conv1_o(others.flatten(0, 1)[:, None])
    frames = frame[:, None].expand(b, o, *frame.shape[1:]).flatten(0, 1)
    return self.features(frames, conv1_extra=extra)["feats16"]


class QueryEncoder(layers.Trunk):
  def __init__(self, depth: int, width: int):
    super().__init__(depth, width, layer_names=_LAYERS)


class KeyValue(nn.Module):
  def __init__(self, in_channels: int, key_dim: int, value_dim: int):
    super().__init__()
    self.Key = layers.conv(in_channels, key_dim, 3)  # pylint: disable=invalid-name  (checkpoint names)
    self.Value = layers.conv(in_channels, value_dim, 3)  # pylint: disable=invalid-name

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return self.Key(x), self.Value(x)


class Decoder(nn.Module):
  def __init__(self, in_channels: int, skips: dict[str, int], dim: int):
    super().__init__()
    self.convFM = layers.conv(in_channels, dim, 3)  # pylint: disable=invalid-name  (checkpoint names)
    self.ResMM = layers.ResBlock(dim, dim)  # pylint: disable=invalid-name
    self.RF3 = layers.Refine(skips["feats8"], dim)  # pylint: disable=invalid-name
    self.RF2 = layers.Refine(skips["feats4"], dim)  # pylint: disable=invalid-name
    self.pred2 = layers.conv(dim, 2, 3)

  def forward(self, x: torch.Tensor, feats8: torch.Tensor, feats4: torch.Tensor) -> torch.Tensor:
    """x [(b o) c h/16 w/16] -> foreground logits [(b o) h w] (softmax over {bg, fg} == sigmoid of this)."""
    x = self.RF2(feats4, self.RF3(feats8, self.ResMM(self.convFM(x))))
    logits = layers.upsample(self.pred2(torch.relu(x)), 4)
    return logits[:, 1] - logits[:, 0]


class STM(nn.Module):
  """The network; `jaxvos.torch.processor.Processor` drives it through the three methods below."""
  affinity = "dot"
  top_k = None

  def __init__(self, *, depth: int = 50, width: int = 64, key_dim: int = 128, value_dim: int = 512,
               decoder_dim: int = 256):
    super().__init__()
    channels = layers.trunk_channels(depth, width)
    self.Encoder_M = MemoryEncoder(depth, width)  # pylint: disable=invalid-name  (checkpoint names)
    self.Encoder_Q = QueryEncoder(depth, width)  # pylint: disable=invalid-name
    self.KV_M_r4 = KeyValue(channels["feats16"], key_dim, value_dim)  # pylint: disable=invalid-name
    self.KV_Q_r4 = KeyValue(channels["feats16"], key_dim, value_dim)  # pylint: disable=invalid-name
    self.Decoder = Decoder(2 * value_dim, channels, decoder_dim)  # pylint: disable=invalid-name

  def encode_query(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
    feats = self.Encoder_Q.features(frame)
    key16, value16 = self.KV_Q_r4(feats["feats16"])
    return {"key16": key16, "value16": value16, "feats8": feats["feats8"], "feats4": feats["feats4"]}

  def encode_memory(self, frame: torch.Tensor, query: dict[str, torch.Tensor], probs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-object keys [b o ck h w] and values [b o cv h w]; the query features are not used."""
    del query
    b, o = probs.shape[:2]
    keys, values = self.KV_M_r4(self.Encoder_M(frame, probs))
    return keys.unflatten(0, (b, o)), values.unflatten(0, (b, o))

  def decode(self, readout: torch.Tensor, query: dict[str, torch.Tensor]) -> torch.Tensor:
    b, o = readout.shape[:2]
    x = torch.cat([readout.flatten(0, 1), layers.per_object(query["value16"], o)], dim=1)
    return self.Decoder(x, query["feats8"], query["feats4"]).unflatten(0, (b, o))
