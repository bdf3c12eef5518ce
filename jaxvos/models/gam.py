"""GAM ("Real-time High-Resolution Video Object Segmentation", Wang, Chen, Yang, Wu): a fixed-size global context
per object instead of a growing memory, channel-wise attention (CAM) and a mask embedding module (MEM).

Per frame (`jaxvos.models.skeleton.MemoryFamily` drives the parts):

- Frame encoder F_E (ResNet-50 to layer3; `frame_depth=18` for ResNet-18): each frame passes it once. Its
  feats16 give the key `key16 = conv3x3(feats16)` [h w C_N] -- the query key L_F of eq. (3), reused unchanged
  as the memory key K_T when the frame is memorised -- and the frame's own value `value16 = conv3x3(feats16)`
  [h w C_M] (the paper's V_L); feats8 and feats4 are the decoder's skips.
- Mask encoder M_E (ResNet-18 to layer3) on two channels per object, its soft mask and the clamped sum of the
  other objects' masks (no RGB: frames and masks are encoded separately), fused with F_E's feats16 at stride
  16 by STCN's fusion block (concat, ResBlock, CBAM, ResBlock) into the value V_T [o h w C_M]; the frame's
  share of the fusion is computed once per frame, not per object (`jaxvos.nn.gam_blocks.FrameMaskFusion`).
- Memory (`jaxvos.memory.global_context`): A_T = w(K_T)^T V_T per object, the running mean G_T over the
  memorised frames, read as D = q(L_F) G_{T-1} [o h w C_M]; the default normalisation is efficient attention.
- Combination: f_in = D + value16 at every pixel (`combine="sum"`, the paper's section 3.2.4), or their
  concatenation (`"concat"`, 2 C_M channels).
- CAM (`jaxvos.nn.gam_blocks.ChannelAttention`) on f_in per object, then MEM: the three previous soft masks of
  the object and of the rest, plus position channels, through four 3x3 conv + ReLU to g [o h w C] at stride 16,
  which gates the decoder's input as f * (1 + g): where the previous masks put the object (and where MEM learns
  to look) features are amplified, elsewhere left as they are.
- Decoder: STM's (`jaxvos.models.stm.Decoder`), one logit per object; the skeleton soft-aggregates.

MEM's mask history is the module's per-frame `cache`: {"masks": [b 3 o H/s W/s]} in the compute dtype, oldest
first, s = `mem_stride` (default 4) of the model's working size H x W (area-averaged). It is the only part of
the state that depends on the frame size: 3 o H W / s^2 values (3 o H W / 16 at s = 4: 1.6 MB per object at
2048x1088 in float32, against 256 KiB per object for the context at C_N 128, C_M 512). An object's annotated
mask fills all three entries at the frame it is given, so MEM sees it repeated until three predictions exist.
Ablations: `use_cam=False`, `use_mem=False` (no history kept then).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.backbones.resnet import resnet_trunk
from jaxvos.memory.global_context import ContextConfig, GlobalContextMemoryType
from jaxvos.models.family import FrameInfo
from jaxvos.models.skeleton import MemoryFamily, VOSModule
from jaxvos.models.stm import Decoder
from jaxvos.nn.gam_blocks import ChannelAttention, FrameMaskFusion, MaskEmbedding
from jaxvos.nn.layers import conv

HISTORY = 3  # previous masks MEM sees


@dataclasses.dataclass(frozen=True)
class GAMConfig:
  """Defaults: the paper's model (ResNet-50 frame encoder, ResNet-18 mask encoder, C_N 128, C_M 512)."""
  frame_depth: int = 50      # ResNet depth of the frame encoder F_E (50 or 18)
  mask_depth: int = 18       # ResNet depth of the mask encoder M_E
  width: int = 64            # ResNet base width (64 in torchvision; smaller only for tests)
  key_dim: int = 128         # C_N
  value_dim: int = 512       # C_M
  decoder_dim: int = 256
  combine: str = "sum"       # D and the frame's value16: "sum" or "concat"
  use_cam: bool = True
  use_mem: bool = True
  mem_dim: int = 64          # MEM's hidden channels
  mem_stride: int = 4        # stride of the mask history (4, 8 or 16)
  memory: ContextConfig = ContextConfig()

  def __post_init__(self):
    if self.combine not in ("sum", "concat"):
      raise ValueError(f"combine must be sum or concat, got {self.combine!r}")
    if self.mem_stride not in (4, 8, 16):
      raise ValueError(f"mem_stride must be 4, 8 or 16, got {self.mem_stride}")

  @property
  def decoder_in(self) -> int:
    """Channels of f_in (CAM's input, MEM's output, the decoder's input)."""
    return self.value_dim * (2 if self.combine == "concat" else 1)


class FrameEncoder(nn.Module):
  """F_E: a ResNet trunk with torchvision's names (`conv1`, `layer1_0` ...), so ImageNet weights import as is."""
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array) -> dict[str, jax.Array]:
    return resnet_trunk(frame, depth=self.depth, width=self.width)


class MaskEncoder(nn.Module):
  """M_E: a ResNet on [mask, other objects] per object, fused with F_E's feats16 into the value (C_M)."""
  depth: int
  width: int
  value_dim: int

  @nn.compact
  def __call__(self, feats16: jax.Array, masks: jax.Array) -> jax.Array:
    """feats16 [b h/16 w/16 c], masks [b o h w] -> V_T [b o h/16 w/16 cv]."""
    others = jnp.clip(jnp.sum(masks, axis=1, keepdims=True) - masks, 0.0, 1.0)
    x = resnet_trunk(jnp.stack([masks, others], axis=-1), depth=self.depth, width=self.width)["feats16"]
    return FrameMaskFusion(self.value_dim, name="fuser")(x, feats16)


class GAM(VOSModule):
  """The GAM network, driven by `jaxvos.models.skeleton.MemoryFamily` (see its module contract)."""
  config: GAMConfig

  def setup(self):
    c = self.config
    self.frame_encoder = FrameEncoder(c.frame_depth, c.width)
    self.mask_encoder = MaskEncoder(c.mask_depth, c.width, c.value_dim)
    self.key_proj = conv(c.key_dim, 3, name="key_proj")
    self.value_proj = conv(c.value_dim, 3, name="value_proj")
    if c.use_cam:
      self.cam = ChannelAttention()
    if c.use_mem:
      downsamples = {4: 2, 8: 1, 16: 0}[c.mem_stride]
      self.mem = MaskEmbedding(c.mem_dim, c.decoder_in, downsamples)
    self.decoder = Decoder(c.decoder_dim)

  def encode_query(self, frame: jax.Array, cache, info: FrameInfo):
    """key16 [b h w C_N] (L_F, and K_T when memorised), value16 [b h w C_M], feats16/8/4; the cache starts
    as an empty mask history on the first frame."""
    feats = self.frame_encoder(frame)
    query = {"key16": self.key_proj(feats["feats16"]), "value16": self.value_proj(feats["feats16"]),
             "feats16": feats["feats16"], "feats8": feats["feats8"], "feats4": feats["feats4"]}
    if cache is None:
      cache = {}
      if self.config.use_mem:
        b, h, w, _ = frame.shape
        s = self.config.mem_stride
        cache = {"masks": jnp.zeros((b, HISTORY, info.object_valid.shape[1], h // s, w // s), frame.dtype)}
    return query, cache, {}

  def encode_memory(self, frame: jax.Array, query: dict[str, jax.Array], probs: jax.Array, info=None):
    """The memorised frame's keys (its query key, reused) and values V_T = M_E(F_T, masks)."""
    del frame, info
    return {"keys": query["key16"], "values": self.mask_encoder(query["feats16"], probs)}

  def decode(self, query: dict[str, jax.Array], readout: dict[str, jax.Array], cache, info=None):
    """D [b o h w C_M] combined with value16, CAM, gated by MEM -> STM decoder -> logits [b o H W]; aux
    `mem_gain`, the mean of g over the valid objects' positions [b]."""
    d = readout["readout"]
    value16 = jnp.broadcast_to(query["value16"][:, None], (*d.shape[:-1], query["value16"].shape[-1]))
    f = d + value16 if self.config.combine == "sum" else jnp.concatenate([d, value16], axis=-1)
    if self.config.use_cam:
      f = self.cam(f)
    aux = {}
    if self.config.use_mem:
      g = self.mem(cache["masks"]).astype(f.dtype)
      f = f * (1 + g)
      valid = info.object_valid.astype(jnp.float32)
      per_object = jnp.mean(g.astype(jnp.float32), axis=(2, 3, 4))
      aux["mem_gain"] = jnp.sum(per_object * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
    return self.decoder(f, query["feats8"], query["feats4"]), cache, aux

  def end_frame(self, cache, probs: jax.Array, info: FrameInfo):
    """Pushes the frame's soft masks [b o H W] onto the history; objects given at this frame (all of them on
    the first) fill it with their annotated mask."""
    if not self.config.use_mem:
      return cache
    b, o, h, w = probs.shape
    s = self.config.mem_stride
    masks = jnp.mean(probs.reshape(b, o, h // s, s, w // s, s), axis=(3, 5)).astype(cache["masks"].dtype)
    shifted = jnp.concatenate([cache["masks"][:, 1:], masks[:, None]], axis=1)
    repeated = jnp.broadcast_to(masks[:, None], shifted.shape)
    return {"masks": jnp.where(info.new_object_valid[:, None, :, None, None], repeated, shifted)}

  def initialize(self, frame: jax.Array, masks: jax.Array) -> jax.Array:
    """Touches every parameter once (for `init`)."""
    valid = jnp.ones(masks.shape[:2], bool)
    info = FrameInfo(t=jnp.zeros((), jnp.int32), object_valid=valid, new_object_valid=valid)
    query, cache, _ = self.encode_query(frame, None, info)
    values = self.encode_memory(frame, query, masks, info)["values"]
    return self.decode(query, {"readout": values}, cache, info)[0]


def gam(config: GAMConfig = GAMConfig(), name: str = "gam") -> MemoryFamily:
  return MemoryFamily(name=name, config=config, module=GAM(config),
                      memory=GlobalContextMemoryType(config.memory))
