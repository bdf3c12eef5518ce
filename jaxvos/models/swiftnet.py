"""SwiftNet (Wang, Jiang, Ren, Hu, Bai, "SwiftNet: Real-time Video Object Segmentation", CVPR 2021).

- Query encoder: ResNet-18 (the paper's real-time model) or ResNet-50 cut after layer3, returning conv1 (+ BN,
  before the ReLU, /2), res2 (/4), res3 (/8) and res4 (/16, C channels). Query key/value heads `KV_Q_r4` (3x3:
  key C/8, value C/2).
- Memory encoding: the light aggregation encoder (`jaxvos.nn.swiftnet_blocks.LightAggregationEncoder`) on the
  *same frame's query features* and the soft masks, then the memory heads `KV_M_r4`. No backbone runs for
  memory, ever (tested by counting convolutions).
- Read (`jaxvos.memory.pixel_adaptive`): softmax over valid memory positions of `k_m . k_q / sqrt(ck)`; the
  pixel-adaptive memory decides what is stored (variation-aware trigger, pixel-wise update, pixel-wise match).
- Decode: [read-out, query value] -> ASPP (1x1, 3x3 dilated 2/4/8, 1x1, dropout 0.5 in training) -> STM's
  decoder (3x3 conv + ResBlock at /16, refine with res3 and res2, two logits, bilinear x4); the foreground
  logit is their difference. Objects are soft-aggregated by the shared skeleton.

Parameter paths mirror the released model (haochenheheda/SwiftNet `swiftnet.py`: `Encoder/conv1`,
`Encoder/res2_0`, `LAE/conv_fusion1`, `KV_M_r4/Key`, `aspp/aspp1/atrous_conv`, `Decoder/RF3/convFS`); that
repository has no licence, nothing but names is taken from it. Where the release and the paper differ, the
config chooses: `rsp_kernel` (channel-adjusting conv after reversed sub-pixel: 1 in the paper, 3 released).
`lae_norm` (neither paper nor release: None) rescales the LAE's output to one L2 norm at every position before the
memory heads, so that memory keys and values do not grow with the distance from the map's border, which a model
trained on small crops never saw (experiments/README.md, sessions 10-11).
The released R18 sizes are the defaults (key 32, value 128, ASPP 128, decoder 64); the R50 sizes (`swiftnet-r50`:
key 128, value 512, ASPP 256, decoder 256) follow C/8 and C/2 and STM's decoder width: no release to mirror.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.backbones.resnet import resnet_trunk
from jaxvos.inference.frames import IMAGENET_MEAN, IMAGENET_STD
from jaxvos.memory.pixel_adaptive import (PixelAdaptiveMemoryType, PixelMemoryConfig, average_pool, pool_masks,
                                          rescale_norm)
from jaxvos.models.skeleton import MemoryFamily, VOSModule
from jaxvos.models.stm import Decoder, KeyValue
from jaxvos.nn.swiftnet_blocks import ASPP, LightAggregationEncoder


@dataclasses.dataclass(frozen=True)
class SwiftNetConfig:
  """Defaults: the released ResNet-18 model with the pixel-adaptive memory's calibrated trigger."""
  depth: int = 18             # query encoder ResNet depth (18 or 50)
  width: int = 64             # ResNet base width (64 in torchvision; smaller only for tests)
  key_dim: int = 32           # C/8
  value_dim: int = 128        # C/2
  aspp_dim: int = 128         # ASPP branch and output channels
  decoder_dim: int = 64
  rsp_kernel: int = 3         # channel-adjusting conv after reversed sub-pixel (paper 1, released 3)
  dropout: float = 0.5        # after the ASPP, in training
  variation_stride: int = 4   # the trigger and the pixel-wise match see the frame and masks at this stride
  lae_norm: float | None = None  # the LAE's output rescaled to this L2 norm at every position; None: as released
  memory: PixelMemoryConfig = PixelMemoryConfig()

  def __post_init__(self):
    if 16 % self.variation_stride:
      raise ValueError(f"variation_stride must divide 16, got {self.variation_stride}")
    if self.lae_norm is not None and self.lae_norm <= 0:
      raise ValueError(f"lae_norm must be > 0, got {self.lae_norm}")


class Encoder(nn.Module):
  """The query encoder: a ResNet trunk with the released names (conv1, bn1, res2, res3, res4)."""
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array) -> dict[str, jax.Array]:
    return resnet_trunk(frame, depth=self.depth, width=self.width, layer_names=("res2", "res3", "res4"))


class SwiftNet(VOSModule):
  """The SwiftNet network, driven by `jaxvos.models.skeleton.MemoryFamily` (see its module contract)."""
  config: SwiftNetConfig

  def setup(self):
    c = self.config
    self.Encoder = Encoder(c.depth, c.width)
    self.LAE = LightAggregationEncoder(c.rsp_kernel)
    self.KV_M_r4 = KeyValue(c.key_dim, c.value_dim)
    self.KV_Q_r4 = KeyValue(c.key_dim, c.value_dim)
    self.aspp = ASPP(c.aspp_dim, c.dropout)
    self.Decoder = Decoder(c.decoder_dim)

  def encode_query(self, frame: jax.Array, cache=None, info=None):
    """frame [b h w 3] (normalised) -> key16/value16 [b h/16 w/16 ck|cv], conv1, feats4/8/16 and frame_small
    (float32 [b h/s w/s 3], intensities in [0, 1] at `variation_stride`, for the trigger and the match)."""
    del info
    feats = self.Encoder(frame)
    key16, value16 = self.KV_Q_r4(feats["feats16"])
    pixels = frame.astype(jnp.float32) * IMAGENET_STD + IMAGENET_MEAN
    query = {"key16": key16, "value16": value16, "frame_small": average_pool(pixels, self.config.variation_stride),
             **{name: feats[name] for name in ("conv1", "feats4", "feats8", "feats16")}}
    return query, {} if cache is None else cache, {}

  def encode_memory(self, frame: jax.Array, query: dict[str, jax.Array], probs: jax.Array, info=None):
    """Per-object memory keys [b o h w ck] and values [b o h w cv] from the query features and probs [b o H W]
    (the LAE: no backbone pass), and the masks at the variation stride."""
    del frame, info
    encoded = self.LAE(query, probs)
    if self.config.lae_norm is not None:
      encoded = rescale_norm(encoded, self.config.lae_norm)
    keys, values = self.KV_M_r4(encoded)
    return {"keys": keys, "values": values, "masks_small": pool_masks(probs, self.config.variation_stride)}

  def decode(self, query: dict[str, jax.Array], readout: dict[str, jax.Array], cache=None, info=None):
    """[read-out [b o h w cv], query value] -> ASPP -> STM decoder -> foreground logits [b o H W]."""
    readout = readout["readout"]
    value16 = jnp.broadcast_to(query["value16"][:, None], readout.shape)
    x = self.aspp(jnp.concatenate([readout, value16], axis=-1),
                  deterministic=info is None or not info.training)
    return self.Decoder(x, query["feats8"], query["feats4"]), cache, {}

  def initialize(self, frame: jax.Array, masks: jax.Array) -> jax.Array:
    """Touches every parameter once (for `init`)."""
    query, _, _ = self.encode_query(frame)
    return self.decode(query, {"readout": self.encode_memory(frame, query, masks)["values"]})[0]


def swiftnet(config: SwiftNetConfig = SwiftNetConfig(), name: str = "swiftnet") -> MemoryFamily:
  return MemoryFamily(name=name, config=config, module=SwiftNet(config),
                      memory=PixelAdaptiveMemoryType(config.memory))
