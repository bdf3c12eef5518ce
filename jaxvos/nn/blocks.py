"""Blocks shared by the STM/STCN families and their descendants: ResBlock, CBAM, feature fusion, decoders.

Names and structure mirror STCN's `model/modules.py` and `model/cbam.py` (hkchengrex/STCN, MIT) and STM's
decoder; features are NHWC and may carry extra leading axes (objects), which every convolution treats as batch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.nn.layers import conv
from jaxvos.ops.resize import resize_bilinear


class ResBlock(nn.Module):
  """Pre-activation residual block: `x + conv2(relu(conv1(relu(x))))`, a 3x3 projection when widths differ."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    r = conv(self.features, 3, name="conv1")(nn.relu(x))
    r = conv(self.features, 3, name="conv2")(nn.relu(r))
    if x.shape[-1] != self.features:
      x = conv(self.features, 3, name="downsample")(x)
    return x + r


class ChannelGate(nn.Module):
  """CBAM channel attention: a shared MLP on the global average and max pools, summed, then a sigmoid gate."""
  reduction: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    hidden, out = nn.Dense(c // self.reduction, name="mlp_1"), nn.Dense(c, name="mlp_3")
    mlp = lambda pooled: out(nn.relu(hidden(pooled)))  # noqa: E731
    gate = mlp(jnp.mean(x, axis=(-3, -2))) + mlp(jnp.max(x, axis=(-3, -2)))
    return x * jax.nn.sigmoid(gate)[..., None, None, :]


class SpatialGate(nn.Module):
  """CBAM spatial attention: a 7x7 convolution over the channel max and mean, then a sigmoid gate."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pooled = jnp.stack([jnp.max(x, axis=-1), jnp.mean(x, axis=-1)], axis=-1)
    return x * jax.nn.sigmoid(BasicConv(1, 7, name="spatial")(pooled))


class BasicConv(nn.Module):
  """A convolution wrapped once more, so parameter paths match CBAM's PyTorch names (`spatial.conv`)."""
  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return conv(self.features, self.kernel_size, name="conv")(x)


class CBAM(nn.Module):
  """Convolutional block attention (Woo et al., ECCV 2018): channel gate, then spatial gate."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return SpatialGate(name="SpatialGate")(ChannelGate(name="ChannelGate")(x))


class FeatureFusionBlock(nn.Module):
  """STCN value fusion: concat(value feats, key-encoder feats16) -> ResBlock -> CBAM residual -> ResBlock."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, feats16: jax.Array) -> jax.Array:
    x = ResBlock(self.features, name="block1")(jnp.concatenate([x, feats16], axis=-1))
    return ResBlock(self.features, name="block2")(x + CBAM(name="attention")(x))


class UpsampleBlock(nn.Module):
  """STCN decoder step: 3x3 conv on the skip features, plus the x2-upsampled coarser map, then a ResBlock.

  skip [b h w c] is shared by every object; up [b o h/2 w/2 c'] is per object; the skip is projected to c'.
  """
  features: int

  @nn.compact
  def __call__(self, skip: jax.Array, up: jax.Array) -> jax.Array:
    skip = conv(up.shape[-1], 3, name="skip_conv")(skip)
    x = skip[:, None] + resize_bilinear(up, scale_factor=2.0)
    return ResBlock(self.features, name="out_conv")(x)


class Refine(nn.Module):
  """STM decoder step: ResBlock(3x3 conv(skip)) plus the x2-upsampled coarser map, then a ResBlock."""
  features: int

  @nn.compact
  def __call__(self, skip: jax.Array, up: jax.Array) -> jax.Array:
    s = ResBlock(self.features, name="ResFS")(conv(self.features, 3, name="convFS")(skip))
    return ResBlock(self.features, name="ResMM")(s[:, None] + resize_bilinear(up, scale_factor=2.0))
