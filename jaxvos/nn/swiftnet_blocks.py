"""SwiftNet's blocks (Wang et al., "SwiftNet: Real-time Video Object Segmentation", CVPR 2021): the light
aggregation encoder (LAE) and the ASPP after the memory read.

Parameter names mirror the released PyTorch model (haochenheheda/SwiftNet `swiftnet.py`: `LAE.conv1_m`,
`LAE.conv_fusion3`, `aspp.aspp2.atrous_conv`, `aspp.conv1`); nothing else is taken from it. Features are NHWC;
per-object tensors carry an `o` axis after the batch axis, which every convolution treats as batch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.nn.layers import KAIMING_FAN_OUT, conv
from jaxvos.ops.resize import space_to_depth

RSP_FACTOR = 16  # reversed sub-pixel: a mask at full size -> 256 channels at /16


def reversed_sub_pixel(mask: jax.Array, factor: int = RSP_FACTOR) -> jax.Array:
  """SwiftNet's reversed sub-pixel downsampling, lossless: mask [... h w] -> [... h/f w/f f*f].

  Channel `i * f + j` holds pixel (f*y + i, f*x + j), as PyTorch's `F.pixel_unshuffle` orders them.
  """
  return space_to_depth(mask[..., None], factor)


class LightAggregationEncoder(nn.Module):
  """The LAE: the memory encoding of a frame from its *query* features plus the object masks (METHODS.md).

  No backbone runs here: the frame's conv1 (pre-ReLU, /2), res2 (/4), res3 (/8) and res4 (/16) features come from
  the query encoder, and the masks enter at /2 (7x7/2 convolutions added to conv1) and at /16 (reversed
  sub-pixel of the full-size masks, then a `rsp_kernel` x `rsp_kernel` channel-adjusting convolution: 1 in the
  paper's text, 3 in the released model):

      x1 = relu(c1 + conv1_m(m) + conv1_o(o))
      x2 = relu(r2 + conv_fusion1(x1));   x3 = relu(r3 + conv_fusion2(x2))        (3x3, stride 2)
      x4 = relu(r4 + conv2_m(RSP16(m)) + conv2_o(RSP16(o)) + conv_fusion3(x3))
      x5 = relu(conv_fusion5(relu(conv_fusion4(x4))))

  `m` is the object's soft mask, `o` the clamped sum of the other objects'. Convolutions have no bias (as
  released).
  """
  rsp_kernel: int = 3

  @nn.compact
  def __call__(self, feats: dict[str, jax.Array], masks: jax.Array) -> jax.Array:
    """feats: conv1 [b h/2 w/2 c1], feats4/8/16 [b h/s w/s c_s]; masks [b o h w] -> [b o h/16 w/16 c16]."""
    others = jnp.clip(jnp.sum(masks, axis=1, keepdims=True) - masks, 0.0, 1.0)
    m, o = masks[..., None].astype(feats["conv1"].dtype), others[..., None].astype(feats["conv1"].dtype)
    shared = lambda x: x[:, None]  # noqa: E731  (query features: one per frame, broadcast over objects)
    c1, c16 = feats["conv1"].shape[-1], feats["feats16"].shape[-1]
    mask_conv = lambda name: conv(c1, 7, stride=2, bias=False, name=name, kernel_init=KAIMING_FAN_OUT)  # noqa: E731
    x = nn.relu(shared(feats["conv1"]) + mask_conv("conv1_m")(m) + mask_conv("conv1_o")(o))
    for i, stride in enumerate((4, 8), start=1):
      skip = feats[f"feats{stride}"]
      x = nn.relu(shared(skip) + conv(skip.shape[-1], 3, stride=2, bias=False, name=f"conv_fusion{i}")(x))
    rsp_conv = lambda name: conv(c16, self.rsp_kernel, bias=False, name=name)  # noqa: E731
    x = (shared(feats["feats16"]) + rsp_conv("conv2_m")(reversed_sub_pixel(m[..., 0]))
         + rsp_conv("conv2_o")(reversed_sub_pixel(o[..., 0]))
         + conv(c16, 3, stride=2, bias=False, name="conv_fusion3")(x))
    x = nn.relu(conv(c16, 3, bias=False, name="conv_fusion4")(nn.relu(x)))
    return nn.relu(conv(c16, 3, bias=False, name="conv_fusion5")(x))


class ASPPBranch(nn.Module):
  """One ASPP branch: a (dilated) convolution without bias, then ReLU (`_ASPPModule.atrous_conv`)."""
  features: int
  kernel_size: int
  dilation: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = self.dilation * (self.kernel_size // 2)
    return nn.relu(nn.Conv(self.features, (self.kernel_size,) * 2, padding=((pad, pad), (pad, pad)),
                           kernel_dilation=(self.dilation,) * 2, use_bias=False, name="atrous_conv")(x))


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling on the memory read-out (SwiftNet; Chen et al., DeepLab v3).

  Branches `aspp1` (1x1) and `aspp2..4` (3x3, dilation 2, 4, 8), each `features` channels with ReLU, are
  concatenated, fused by the 1x1 `conv1` (no bias), ReLU, then dropout (rate `dropout`, active only when
  `deterministic` is False; Flax rng stream "dropout").
  """
  features: int
  dropout: float = 0.5
  dilations: tuple[int, ...] = (1, 2, 4, 8)

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
    branches = [ASPPBranch(self.features, 1 if d == 1 else 3, d, name=f"aspp{i + 1}")(x)
                for i, d in enumerate(self.dilations)]
    x = nn.relu(conv(self.features, 1, bias=False, name="conv1")(jnp.concatenate(branches, axis=-1)))
    return nn.Dropout(self.dropout, deterministic=deterministic)(x)
