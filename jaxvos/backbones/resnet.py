"""ResNet-18 and ResNet-50 trunks cut after layer3, with torchvision's layout and parameter names.

A trunk returns the features at strides 2, 4, 8 and 16 (`feats2` after conv1/bn1/relu, `feats4` after layer1,
`feats8` after layer2, `feats16` after layer3), and `conv1`, conv1's output after BatchNorm and before the ReLU
(SwiftNet's light aggregation encoder adds its mask features there). ResNet-50 blocks are torchvision's v1.5
bottlenecks (the stride sits on the 3x3 convolution). BatchNorm is frozen (`jaxvos.nn.layers.frozen_batch_norm`).

`resnet_trunk` creates its layers inside the calling module, so a model whose PyTorch reference inlines the
trunk (STCN's `key_encoder.conv1`, `key_encoder.res2.0...`) gets exactly those parameter paths. Options that
the references need: `width` (64 in torchvision; smaller for tests), `conv_bias` (STCN's and STM's modified
ResNets give every convolution a bias), renamed layers (`layer_names`) and `conv1_extra`, a tensor added to
conv1's output before BatchNorm (STM's mask convolutions). Extra input channels on conv1 (mask inputs) need no
option: the input's channel count sets conv1's shape. `conv`, a factory with `_conv`'s signature, replaces the
blocks' convolutions (SpVOS's gated 3x3 convolutions, `jaxvos.nn.gated_conv`; the stem stays plain); it must
keep their parameter names and shapes.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax

from jaxvos.nn.layers import KAIMING_FAN_OUT, conv, frozen_batch_norm

_BLOCKS = {18: ("basic", (2, 2, 2)), 50: ("bottleneck", (3, 4, 6))}
ConvFactory = Callable[..., nn.Module]  # (features, kernel_size, stride, bias, name) -> a convolution module


def _conv(features, kernel_size, stride, bias, name):
  return conv(features, kernel_size, stride=stride, bias=bias, name=name, kernel_init=KAIMING_FAN_OUT)


class BasicBlock(nn.Module):
  """ResNet-18/34 block: two 3x3 convolutions and an identity (or 1x1 projection) shortcut."""
  planes: int
  stride: int = 1
  project: bool = False
  conv_bias: bool = False
  conv: ConvFactory | None = None  # None: `_conv`

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    make = self.conv or _conv
    out = nn.relu(frozen_batch_norm("bn1")(make(self.planes, 3, self.stride, self.conv_bias, "conv1")(x)))
    out = frozen_batch_norm("bn2")(make(self.planes, 3, 1, self.conv_bias, "conv2")(out))
    if self.project:
      x = frozen_batch_norm("downsample_1")(make(self.planes, 1, self.stride, self.conv_bias, "downsample_0")(x))
    return nn.relu(out + x)


class Bottleneck(nn.Module):
  """ResNet-50 block (torchvision v1.5): 1x1, 3x3 (strided), 1x1 to 4x planes, identity or projection shortcut."""
  planes: int
  stride: int = 1
  project: bool = False
  conv_bias: bool = False
  conv: ConvFactory | None = None  # None: `_conv`

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    make = self.conv or _conv
    out = nn.relu(frozen_batch_norm("bn1")(make(self.planes, 1, 1, self.conv_bias, "conv1")(x)))
    out = nn.relu(frozen_batch_norm("bn2")(make(self.planes, 3, self.stride, self.conv_bias, "conv2")(out)))
    out = frozen_batch_norm("bn3")(make(4 * self.planes, 1, 1, self.conv_bias, "conv3")(out))
    if self.project:
      x = frozen_batch_norm("downsample_1")(
          make(4 * self.planes, 1, self.stride, self.conv_bias, "downsample_0")(x))
    return nn.relu(out + x)


def resnet_trunk(x: jax.Array, *, depth: int, width: int = 64, conv_bias: bool = False,
                 layer_names: Sequence[str] = ("layer1", "layer2", "layer3"),
                 conv1_extra: jax.Array | None = None, conv: ConvFactory | None = None) -> dict[str, jax.Array]:
  """Runs conv1 .. layer3 on [... h w c] inside the calling (compact) module; returns conv1, feats2/4/8/16."""
  lead = x.shape[:-3]
  x = x.reshape(-1, *x.shape[-3:])
  if conv1_extra is not None:
    conv1_extra = conv1_extra.reshape(-1, *conv1_extra.shape[-3:])
  kind, counts = _BLOCKS[depth]
  block = BasicBlock if kind == "basic" else Bottleneck
  expansion = 1 if kind == "basic" else 4
  x = _conv(width, 7, 2, conv_bias, "conv1")(x)
  if conv1_extra is not None:
    x = x + conv1_extra
  conv1 = frozen_batch_norm("bn1")(x)
  feats = {"conv1": conv1, "feats2": nn.relu(conv1)}
  x = nn.max_pool(feats["feats2"], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  in_channels = width
  for stage, (name, count) in enumerate(zip(layer_names, counts)):
    planes, stride = width * 2**stage, 1 if stage == 0 else 2
    for i in range(count):
      project = i == 0 and (stride != 1 or in_channels != planes * expansion)
      x = block(planes, stride if i == 0 else 1, project, conv_bias, conv, name=f"{name}_{i}")(x)
      in_channels = planes * expansion
    feats[f"feats{4 * 2**stage}"] = x
  return {name: f.reshape(*lead, *f.shape[1:]) for name, f in feats.items()}


class ResNet(nn.Module):
  """A standalone trunk (torchvision names: conv1, bn1, layer1_0 ...), e.g. to import ImageNet weights into."""
  depth: int = 50
  width: int = 64
  conv_bias: bool = False
  layer_names: tuple[str, ...] = ("layer1", "layer2", "layer3")

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    return resnet_trunk(x, depth=self.depth, width=self.width, conv_bias=self.conv_bias,
                        layer_names=self.layer_names)


def channels(depth: int, width: int = 64) -> dict[str, int]:
  """Channels of feats4/8/16 (R18: 64/128/256, R50: 256/512/1024 at width 64)."""
  expansion = 1 if _BLOCKS[depth][0] == "basic" else 4
  return {f"feats{4 * 2**i}": width * 2**i * expansion for i in range(3)}
