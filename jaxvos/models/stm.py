"""STM (Oh, Lee, Xu, Kim, "Video Object Segmentation using Space-Time Memory Networks", ICCV 2019).

A query encoder (ResNet-50 to layer3) on the frame and a memory encoder (a second ResNet-50) on the frame, the
object's mask and the union of the other objects' masks (7x7/2 convolutions `conv1_m` and `conv1_o` added to
conv1's output before BatchNorm). 3x3 key/value heads (key C/8, value C/2) on both; memory keys are per object
(g = o). Affinity `k_m . k_q / sqrt(ck)`, softmax over all of memory; the read-out is concatenated with the
query's own value and decoded (3x3 conv + ResBlock at /16, refine with the /8 and /4 skips, 3x3 conv to two
logits per object, bilinear x4; the foreground logit is their difference).

Parameter paths mirror the official release's module names (`Encoder_M`, `Encoder_Q`, `KV_M_r4`, `KV_Q_r4`,
`Decoder/convFM`, `RF3`, `RF2`, `pred2`; ResNet layers `res2`..`res4`). The official code carries a
non-commercial licence; nothing is taken from it but these names.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.backbones.resnet import resnet_trunk
from jaxvos.memory.key_value import KeyValueMemoryType, MemoryConfig
from jaxvos.models.skeleton import MemoryFamily, VOSModule
from jaxvos.nn.blocks import Refine, ResBlock
from jaxvos.nn.layers import KAIMING_FAN_OUT, conv
from jaxvos.ops import attention
from jaxvos.ops.resize import resize_bilinear

_LAYERS = ("res2", "res3", "res4")


@dataclasses.dataclass(frozen=True)
class STMConfig:
  depth: int = 50        # ResNet depth of both encoders (50 or 18)
  width: int = 64
  key_dim: int = 128
  value_dim: int = 512
  decoder_dim: int = 256
  memory: MemoryConfig = MemoryConfig(temporary=True)


class MemoryEncoder(nn.Module):
  """ResNet on the frame, with the object's mask and the other objects' union added after conv1."""
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array, masks: jax.Array) -> jax.Array:
    """frame [b h w 3], masks [b o h w] -> feats16 [b o h/16 w/16 c]."""
    others = jnp.clip(jnp.sum(masks, axis=1, keepdims=True) - masks, 0.0, 1.0)
    mask_conv = lambda name: conv(self.width, 7, stride=2, bias=False, name=name,  # noqa: E731
                                  kernel_init=KAIMING_FAN_OUT)
    extra = mask_conv("conv1_m")(masks[..., None]) + mask_conv("conv1_o")(others[..., None])
    frames = jnp.broadcast_to(frame[:, None], (*masks.shape, 3))
    return resnet_trunk(frames, depth=self.depth, width=self.width, layer_names=_LAYERS,
                        conv1_extra=extra)["feats16"]


class QueryEncoder(nn.Module):
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array) -> dict[str, jax.Array]:
    return resnet_trunk(frame, depth=self.depth, width=self.width, layer_names=_LAYERS)


class KeyValue(nn.Module):
  key_dim: int
  value_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return conv(self.key_dim, 3, name="Key")(x), conv(self.value_dim, 3, name="Value")(x)


class Decoder(nn.Module):
  dim: int

  @nn.compact
  def __call__(self, x: jax.Array, feats8: jax.Array, feats4: jax.Array) -> jax.Array:
    """x [b o h/16 w/16 c] -> foreground logits [b o h w]."""
    x = ResBlock(self.dim, name="ResMM")(conv(self.dim, 3, name="convFM")(x))
    x = Refine(self.dim, name="RF3")(feats8, x)
    x = Refine(self.dim, name="RF2")(feats4, x)
    logits = resize_bilinear(conv(2, 3, name="pred2")(nn.relu(x)), scale_factor=4.0)
    return logits[..., 1] - logits[..., 0]  # softmax over {bg, fg} == sigmoid of the difference


class STM(VOSModule):
  """The STM network, driven by `jaxvos.models.skeleton.MemoryFamily` (see its module contract)."""
  config: STMConfig

  def setup(self):
    c = self.config
    self.Encoder_M = MemoryEncoder(c.depth, c.width)
    self.Encoder_Q = QueryEncoder(c.depth, c.width)
    self.KV_M_r4 = KeyValue(c.key_dim, c.value_dim)
    self.KV_Q_r4 = KeyValue(c.key_dim, c.value_dim)
    self.Decoder = Decoder(c.decoder_dim)

  def encode_query(self, frame: jax.Array, cache=None, info=None):
    del info
    feats = self.Encoder_Q(frame)
    key16, value16 = self.KV_Q_r4(feats["feats16"])
    query = {"key16": key16, "value16": value16, "feats8": feats["feats8"], "feats4": feats["feats4"]}
    return query, {} if cache is None else cache, {}

  def encode_memory(self, frame: jax.Array, query: dict[str, jax.Array], probs: jax.Array, info=None):
    """Per-object keys (g = o) and values from the memory encoder; the query features are not used."""
    del query, info
    keys, values = self.KV_M_r4(self.Encoder_M(frame, probs))
    return {"keys": keys, "values": values}

  def decode(self, query: dict[str, jax.Array], readout: dict[str, jax.Array], cache=None, info=None):
    del info
    readout = readout["readout"]
    value16 = jnp.broadcast_to(query["value16"][:, None], readout.shape)
    logits = self.Decoder(jnp.concatenate([readout, value16], axis=-1), query["feats8"], query["feats4"])
    return logits, cache, {}

  def initialize(self, frame: jax.Array, masks: jax.Array) -> jax.Array:
    query, _, _ = self.encode_query(frame)
    return self.decode(query, {"readout": self.encode_memory(frame, query, masks)["values"]})[0]


def stm(config: STMConfig = STMConfig(), name: str = "stm") -> MemoryFamily:
  memory = KeyValueMemoryType(config.memory, attention.dot_affinity, top_k=None)
  return MemoryFamily(name=name, config=config, module=STM(config), memory=memory)
