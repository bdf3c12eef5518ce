"""STCN (Cheng, Tai, Tang, "Rethinking Space-Time Networks with Improved Memory Coverage", NeurIPS 2021).

The key encoder (ResNet-50 to layer3) runs once per frame; its projected key is both the query key and, when the
frame is memorised, the memory key. The value encoder (ResNet-18 to layer3 on RGB, the object's mask and the
sum of the other objects' masks) is fused with the key encoder's feats16. Affinity: negative squared L2
distance, softmax over memory, top-k (k = 20) at test time. Decoder: ResBlock, two upsample blocks with the /8
and /4 skips, a 3x3 convolution to one logit per object, bilinear x4.

Parameter paths mirror hkchengrex/STCN `model/network.py` and `model/modules.py` (`key_encoder/res2_0/...`,
`value_encoder/fuser/...`, `key_proj/key_proj`, `key_comp`, `decoder/up_16_8/...`), so importing an official
checkpoint is a rename table (`jaxvos.convert`). `single_object=True` is the old single-object variant whose
value encoder does not see the other objects' masks (one input channel fewer).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.backbones.resnet import resnet_trunk
from jaxvos.memory.key_value import KeyValueMemoryType, MemoryConfig
from jaxvos.models.skeleton import MemoryFamily, VOSModule
from jaxvos.nn.blocks import FeatureFusionBlock, ResBlock, UpsampleBlock
from jaxvos.nn.layers import conv
from jaxvos.ops import attention
from jaxvos.ops.resize import resize_bilinear


@dataclasses.dataclass(frozen=True)
class STCNConfig:
  """Sizes default to the official model; `key_depth=18` gives the lighter CPU variant."""
  key_depth: int = 50           # ResNet depth of the key encoder (50 or 18)
  value_depth: int = 18         # ResNet depth of the value encoder
  width: int = 64               # ResNet base width (64 in torchvision; smaller only for tests)
  key_dim: int = 64
  value_dim: int = 512
  hidden_dim: int = 512         # key_comp: the query's own value at /16, concatenated to the read-out
  decoder_dims: tuple[int, int, int] = (512, 256, 256)  # compress, up_16_8, up_8_4
  single_object: bool = False
  top_k: int | None = 20        # None: a full softmax over memory (training)
  memory: MemoryConfig = MemoryConfig(temporary=False)


class KeyEncoder(nn.Module):
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array) -> dict[str, jax.Array]:
    return resnet_trunk(frame, depth=self.depth, width=self.width, layer_names=("res2", "layer2", "layer3"))


class ValueEncoder(nn.Module):
  """ResNet on [RGB, mask, other objects] per object, fused with the key encoder's feats16."""
  depth: int
  width: int
  value_dim: int
  single_object: bool

  @nn.compact
  def __call__(self, frame: jax.Array, feats16: jax.Array, masks: jax.Array) -> jax.Array:
    """frame [b h w 3], feats16 [b h/16 w/16 c], masks [b o h w] -> values [b o h/16 w/16 cv]."""
    o = masks.shape[1]
    inputs = [jnp.broadcast_to(frame[:, None], (frame.shape[0], o, *frame.shape[1:])), masks[..., None]]
    if not self.single_object:
      inputs.append((jnp.sum(masks, axis=1, keepdims=True) - masks)[..., None])
    x = resnet_trunk(jnp.concatenate(inputs, axis=-1), depth=self.depth, width=self.width, conv_bias=True)
    feats16 = jnp.broadcast_to(feats16[:, None], (*x["feats16"].shape[:-1], feats16.shape[-1]))
    return FeatureFusionBlock(self.value_dim, name="fuser")(x["feats16"], feats16)


class KeyProjection(nn.Module):
  key_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return conv(self.key_dim, 3, name="key_proj", kernel_init=nn.initializers.orthogonal())(x)


class Decoder(nn.Module):
  dims: tuple[int, int, int]

  @nn.compact
  def __call__(self, x: jax.Array, feats8: jax.Array, feats4: jax.Array) -> jax.Array:
    """x [b o h/16 w/16 c] -> per-object logits [b o h w]."""
    x = ResBlock(self.dims[0], name="compress")(x)
    x = UpsampleBlock(self.dims[1], name="up_16_8")(feats8, x)
    x = UpsampleBlock(self.dims[2], name="up_8_4")(feats4, x)
    x = conv(1, 3, name="pred")(nn.relu(x))
    return resize_bilinear(x, scale_factor=4.0)[..., 0]


class STCN(VOSModule):
  """The STCN network, driven by `jaxvos.models.skeleton.MemoryFamily` (see its module contract)."""
  config: STCNConfig

  def setup(self):
    c = self.config
    self.key_encoder = KeyEncoder(c.key_depth, c.width)
    self.value_encoder = ValueEncoder(c.value_depth, c.width, c.value_dim, c.single_object)
    self.key_proj = KeyProjection(c.key_dim)
    self.key_comp = conv(c.hidden_dim, 3, name="key_comp")
    self.decoder = Decoder(c.decoder_dims)

  def encode_query(self, frame: jax.Array, cache=None, info=None):
    """STCN's `encode_key`: key16 [b h w ck], value16 (key_comp), feats16/8/4; no cache, no aux."""
    del info
    feats = self.key_encoder(frame)
    query = {"key16": self.key_proj(feats["feats16"]), "value16": self.key_comp(feats["feats16"]),
             "feats16": feats["feats16"], "feats8": feats["feats8"], "feats4": feats["feats4"]}
    return query, {} if cache is None else cache, {}

  def encode_memory(self, frame: jax.Array, query: dict[str, jax.Array], probs: jax.Array, info=None):
    """The frame's query key is its memory key (g = 1); values from the value encoder."""
    del info
    return {"keys": query["key16"][:, None], "values": self.value_encoder(frame, query["feats16"], probs)}

  def decode(self, query: dict[str, jax.Array], readout: dict[str, jax.Array], cache=None, info=None):
    """STCN's `segment_with_query` before the sigmoid: read-out [b o h w cv] -> logits [b o H W]."""
    del info
    readout = readout["readout"]
    value16 = jnp.broadcast_to(query["value16"][:, None], (*readout.shape[:-1], query["value16"].shape[-1]))
    logits = self.decoder(jnp.concatenate([readout, value16], axis=-1), query["feats8"], query["feats4"])
    return logits, cache, {}

  def initialize(self, frame: jax.Array, masks: jax.Array) -> jax.Array:
    """Touches every parameter once (for `init`)."""
    query, _, _ = self.encode_query(frame)
    return self.decode(query, {"readout": self.encode_memory(frame, query, masks)["values"]})[0]


def stcn(config: STCNConfig = STCNConfig(), name: str = "stcn") -> MemoryFamily:
  memory = KeyValueMemoryType(config.memory, attention.l2_affinity, config.top_k)
  return MemoryFamily(name=name, config=config, module=STCN(config), memory=memory)
