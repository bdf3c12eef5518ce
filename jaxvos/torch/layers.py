"""PyTorch blocks of the jaxvos twins: ResNet trunks cut after layer3, ResBlock, CBAM, fusion and decoder steps.

Each block computes what its Flax counterpart in `jaxvos.backbones.resnet` / `jaxvos.nn.blocks` computes, with
the attribute names that make `state_dict()` keys the PyTorch spelling of the Flax variable paths
(`jaxvos.convert.rules`: `res2_0/conv1/kernel` is `res2.0.conv1.weight`). NCHW; features with an object axis are
flattened to [(b o) c h w] by the callers. Convolutions pad k // 2 on both sides, BatchNorm uses its running
statistics (eps 1e-5; the twins are for inference), bilinear resizes are `F.interpolate(align_corners=False)`,
which jaxvos's `resize_bilinear` reproduces.
"""

import torch
from torch import nn
from torch.nn import functional as F


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
  return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
  return F.interpolate(x, scale_factor=float(factor), mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
  """ResNet-18 block: two 3x3 convolutions, identity or projection shortcut."""
  expansion = 1

  def __init__(self, in_channels: int, planes: int, stride: int, project: bool, bias: bool):
    super().__init__()
    self.conv1 = conv(in_channels, planes, 3, stride, bias)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = conv(planes, planes, 3, 1, bias)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = (nn.Sequential(conv(in_channels, planes, 1, stride, bias), nn.BatchNorm2d(planes))
                       if project else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
  """ResNet-50 block (torchvision v1.5: the stride on the 3x3 convolution)."""
  expansion = 4

  def __init__(self, in_channels: int, planes: int, stride: int, project: bool, bias: bool):
    super().__init__()
    self.conv1 = conv(in_channels, planes, 1, 1, bias)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = conv(planes, planes, 3, stride, bias)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = conv(planes, 4 * planes, 1, 1, bias)
    self.bn3 = nn.BatchNorm2d(4 * planes)
    self.downsample = (nn.Sequential(conv(in_channels, 4 * planes, 1, stride, bias), nn.BatchNorm2d(4 * planes))
                       if project else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


_BLOCKS = {18: (BasicBlock, (2, 2, 2)), 50: (Bottleneck, (3, 4, 6))}


def trunk_channels(depth: int, width: int) -> dict[str, int]:
  """Channels of feats4/8/16 of a trunk."""
  expansion = _BLOCKS[depth][0].expansion
  return {f"feats{4 * 2**i}": width * 2**i * expansion for i in range(3)}


class Trunk(nn.Module):
  """conv1 .. layer3 of a ResNet as attributes of the module itself (the references inline their trunks, so
  `key_encoder.conv1`, `key_encoder.res2.0...`); subclasses add their own layers."""

  def __init__(self, depth: int, width: int, in_channels: int = 3, bias: bool = False,
               layer_names: tuple[str, str, str] = ("layer1", "layer2", "layer3")):
    super().__init__()
    block, counts = _BLOCKS[depth]
    self.conv1 = conv(in_channels, width, 7, 2, bias)
    self.bn1 = nn.BatchNorm2d(width)
    self.layer_names = layer_names
    channels = width
    for stage, (name, count) in enumerate(zip(layer_names, counts)):
      planes, stride = width * 2**stage, 1 if stage == 0 else 2
      blocks = []
      for i in range(count):
        project = i == 0 and (stride != 1 or channels != planes * block.expansion)
        blocks.append(block(channels, planes, stride if i == 0 else 1, project, bias))
        channels = planes * block.expansion
      setattr(self, name, nn.Sequential(*blocks))

  def features(self, x: torch.Tensor, conv1_extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """[n c h w] -> feats2 (after conv1, bn1, relu), feats4/8/16 (after each stage)."""
    x = self.conv1(x)
    if conv1_extra is not None:
      x = x + conv1_extra
    feats = {"feats2": F.relu(self.bn1(x))}
    x = F.max_pool2d(feats["feats2"], 3, stride=2, padding=1)
    for stage, name in enumerate(self.layer_names):
      x = getattr(self, name)(x)
      feats[f"feats{4 * 2**stage}"] = x
    return feats


class ResBlock(nn.Module):
  """Pre-activation residual block: `x + conv2(relu(conv1(relu(x))))`, a 3x3 projection when widths differ."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.conv1 = conv(in_channels, out_channels, 3)
    self.conv2 = conv(out_channels, out_channels, 3)
    self.downsample = conv(in_channels, out_channels, 3) if in_channels != out_channels else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    r = self.conv2(F.relu(self.conv1(F.relu(x))))
    return (self.downsample(x) if self.downsample is not None else x) + r


class ChannelGate(nn.Module):
  """CBAM channel attention: a shared MLP on the global average and max pools, summed, then a sigmoid gate."""

  def __init__(self, channels: int, reduction: int = 16):
    super().__init__()
    self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
                             nn.Linear(channels // reduction, channels))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
    return x * torch.sigmoid(gate)[:, :, None, None]


class BasicConv(nn.Module):
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
    super().__init__()
    self.conv = conv(in_channels, out_channels, kernel_size)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(x)


class SpatialGate(nn.Module):
  """CBAM spatial attention: a 7x7 convolution over the channel max and mean, then a sigmoid gate."""

  def __init__(self):
    super().__init__()
    self.spatial = BasicConv(2, 1, 7)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    pooled = torch.stack([x.amax(dim=1), x.mean(dim=1)], dim=1)
    return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
  def __init__(self, channels: int):
    super().__init__()
    self.ChannelGate = ChannelGate(channels)  # pylint: disable=invalid-name  (checkpoint name)
    self.SpatialGate = SpatialGate()  # pylint: disable=invalid-name

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
  """STCN value fusion: concat(value feats, key-encoder feats16) -> ResBlock -> CBAM residual -> ResBlock."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.block1 = ResBlock(in_channels, out_channels)
    self.attention = CBAM(out_channels)
    self.block2 = ResBlock(out_channels, out_channels)

  def forward(self, x: torch.Tensor, feats16: torch.Tensor) -> torch.Tensor:
    x = self.block1(torch.cat([x, feats16], dim=1))
    return self.block2(x + self.attention(x))


def per_object(skip: torch.Tensor, objects: int) -> torch.Tensor:
  """[b c h w] shared by every object -> [(b o) c h w]."""
  return skip.repeat_interleave(objects, dim=0)


class UpsampleBlock(nn.Module):
  """STCN decoder step: 3x3 conv on the skip, plus the x2-upsampled coarser map, then a ResBlock."""

  def __init__(self, skip_channels: int, up_channels: int, out_channels: int):
    super().__init__()
    self.skip_conv = conv(skip_channels, up_channels, 3)
    self.out_conv = ResBlock(up_channels, out_channels)

  def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """skip [b c h w], up [(b o) c' h/2 w/2] -> [(b o) c'' h w]."""
    skip = per_object(self.skip_conv(skip), up.shape[0] // skip.shape[0])
    return self.out_conv(skip + upsample(up, 2))


class Refine(nn.Module):
  """STM decoder step: ResBlock(3x3 conv(skip)) plus the x2-upsampled coarser map, then a ResBlock."""

  def __init__(self, skip_channels: int, channels: int):
    super().__init__()
    self.convFS = conv(skip_channels, channels, 3)  # pylint: disable=invalid-name  (checkpoint names)
    self.ResFS = ResBlock(channels, channels)  # pylint: disable=invalid-name
    self.ResMM = ResBlock(channels, channels)  # pylint: disable=invalid-name

  def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    s = per_object(self.ResFS(self.convFS(skip)), up.shape[0] // skip.shape[0])
    return self.ResMM(s + upsample(up, 2))
