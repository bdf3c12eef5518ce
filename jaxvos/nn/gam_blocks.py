"""GAM's blocks: the channel-wise attention module (CAM), the mask embedding module (MEM) and the fusion of the
mask encoder's features with the frame's, which computes the frame's share once per frame.

"Real-time High-Resolution Video Object Segmentation" (Wang, Chen, Yang, Wu), sections 3.3 and 3.4. Features are
NHWC with any leading axes (objects), which every convolution treats as batch. There is no public reference
code, so parameter names are jaxvos's own: `cam/alpha`, `mem/conv1` .. `mem/conv4`, `fuser/...`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.nn.blocks import CBAM, ResBlock
from jaxvos.nn.layers import conv

_PRECISION = jax.lax.Precision.HIGHEST


def nonnegative(x: jax.Array) -> jax.Array:
  """max(x, 0) in value, the identity in gradient (straight through).

  Keeps a learned scale >= 0 that starts at exactly 0 and can still leave it: relu, abs or a square of a
  parameter initialised at 0 all have a zero gradient there, and softplus cannot reach 0.
  """
  return x + jax.lax.stop_gradient(jnp.maximum(x, 0) - x)


class ChannelAttention(nn.Module):
  """CAM, eqs. (4)-(7): channel-to-channel attention added back with a learned scale alpha >= 0, initially 0.

  With X = f_in as [n c] (n = h w positions):

      R = X^T X / n                       [c c]   eq. (4), divided by n (see below)
      R'(i, j) = softmax_i R(i, j)                eq. (5), normalised over the channels i
      f_R = X R'                          [n c]   eq. (6)
      f_out = alpha f_R + f_in                    eq. (7), alpha = nonnegative(the parameter `alpha`)

  The paper's R sums over positions, so its softmax would sharpen with the frame's area and turn one-hot at
  2K; the mean over positions keeps the attention what it learnt on training crops. With alpha = 0 the block is
  exactly the identity. R and its softmax are float32; the output has the input's dtype.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [... h w c] -> [... h w c]."""
    alpha = nonnegative(self.param("alpha", nn.initializers.zeros, (), jnp.float32))
    *lead, h, w, c = x.shape
    f = x.reshape(*lead, h * w, c)
    r = jnp.einsum("...ni,...nj->...ij", f, f, precision=_PRECISION, preferred_element_type=jnp.float32)
    attention = jax.nn.softmax(r / (h * w), axis=-2)
    f_r = jnp.einsum("...ni,...ij->...nj", f, attention.astype(x.dtype), precision=_PRECISION,
                     preferred_element_type=jnp.float32)
    return (alpha.astype(jnp.float32) * f_r.reshape(x.shape) + x).astype(x.dtype)


def position_channels(h: int, w: int, dtype=jnp.float32) -> jax.Array:
  """MEM's position encoding P [h w 3]: x and y of each pixel centre in [-1, 1], and the distance to the centre
  of the frame sqrt(x^2 + y^2) / sqrt(2), in [0, 1]."""
  ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h * 2.0 - 1.0
  xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w * 2.0 - 1.0
  y, x = jnp.meshgrid(ys, xs, indexing="ij")
  return jnp.stack([x, y, jnp.sqrt(x * x + y * y) / jnp.sqrt(2.0)], axis=-1).astype(dtype)


class MaskEmbedding(nn.Module):
  """MEM, eq. (8): E^{t-3} + E^{t-2} + E^{t-1} + P (concatenated) -> four 3x3 convolutions, each with a ReLU.

  E^i has two channels: the object's soft mask and the rest (the clamped sum of the other objects' masks); P
  is `position_channels`. The history comes at stride `16 / 2**downsamples` of the frame; the first
  `downsamples` convolutions have stride 2, so the output is at stride 16, where it gates the decoder's input
  (`jaxvos.models.gam`: f * (1 + g)). ReLU outputs: g >= 0.
  """
  features: int       # hidden channels
  out_features: int   # channels of g (those of the decoder's input)
  downsamples: int    # stride-2 convolutions: 2 for a history at stride 4, 0 at stride 16

  @nn.compact
  def __call__(self, history: jax.Array) -> jax.Array:
    """history [b 3 o h w] (oldest first, soft masks) -> g [b o h/2**downsamples w/2**downsamples out_features]."""
    others = jnp.clip(jnp.sum(history, axis=2, keepdims=True) - history, 0.0, 1.0)
    pairs = jnp.stack([history, others], axis=-1)                       # [b 3 o h w 2]
    b, t, o, h, w, _ = pairs.shape
    masks = jnp.moveaxis(pairs, 1, 4).reshape(b, o, h, w, 2 * t)       # E^{t-3}, E^{t-2}, E^{t-1}
    position = jnp.broadcast_to(position_channels(h, w, history.dtype), (b, o, h, w, 3))
    x = jnp.concatenate([masks, position], axis=-1)
    for i in range(4):
      features = self.out_features if i == 3 else self.features
      x = nn.relu(conv(features, 3, stride=2 if i < self.downsamples else 1, name=f"conv{i + 1}")(x))
    return x


class FrameMaskFusion(nn.Module):
  """STCN's value fusion (concat -> ResBlock -> CBAM residual -> ResBlock), with the frame computed once.

  The first ResBlock's two convolutions over concat(mask features, frame features) are each the sum of a
  convolution over either part (ReLU acts channel by channel), so the frame's share -- the 1024 channels of a
  ResNet-50 against the mask encoder's 256 -- is computed once per frame and added to every object's, where a
  plain fusion block would convolve it once per object (GAM: "frames and masks are encoded separately").
  Mathematically the same block as `jaxvos.nn.blocks.FeatureFusionBlock`, with its kernels split in two.
  """
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, feats16: jax.Array) -> jax.Array:
    """x [b o h w c] per object, feats16 [b h w c'] of the frame -> [b o h w features]."""
    def split_conv(name, a, f):
      own = conv(self.features, 3, name=f"{name}_mask")(a)
      return own + conv(self.features, 3, bias=False, name=f"{name}_frame")(f)[:, None]

    hidden = split_conv("conv1", nn.relu(x), nn.relu(feats16))
    y = split_conv("downsample", x, feats16) + conv(self.features, 3, name="conv2")(nn.relu(hidden))
    return ResBlock(self.features, name="block2")(y + CBAM(name="attention")(y))
