"""A small stand-in for the parts of `torchvision` that the `stcnbuf` reference model imports.

torchvision has no CPU build on the machines that run the tests, and the parity tests need no more of it than:

- `torchvision.models.resnet18` / `resnet50`: ResNet trunks in pure PyTorch with torchvision's exact module
  layout and state-dict names (`conv1`, `bn1`, `layer1`..`layer4` of `BasicBlock` / `Bottleneck`, each block's
  `downsample.0` conv and `downsample.1` BatchNorm, `fc`). Convolutions have no bias. A bottleneck strides on
  its 3x3 convolution (torchvision's "ResNet v1.5"). Written from the published architecture (He et al. 2016).
- `torchvision.models.ResNet18_Weights` / `ResNet50_Weights`: enums whose weights load nothing (there is no
  network here); a model built with them keeps its random initialisation.
- `torchvision.transforms`: `Compose`, `ToTensor`, `Normalize`.

`installed()` puts the stand-in into `sys.modules` as `torchvision`, `torchvision.models` and
`torchvision.transforms` and stubs `torch.utils.model_zoo.load_url` (stcnbuf's value encoder asks for ImageNet
ResNet-18 weights), so building a reference model never touches the network.
"""

import contextlib
import enum
import sys
import types
from collections.abc import Iterator, Sequence
from unittest import mock

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection; the first one strides."""
  expansion = 1

  def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    return self.relu(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection."""
  expansion = 4

  def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * self.expansion)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet(nn.Module):
  """7x7/2 stem, 3x3/2 max pool, four stages (strides 4, 8, 16, 32), global average pool, linear classifier."""

  def __init__(self, block: type[nn.Module], blocks_per_stage: Sequence[int], num_classes: int = 1000):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    in_channels = 64
    for index, (planes, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
      stage, in_channels = _stage(block, in_channels, planes, num_blocks, stride=1 if index == 0 else 2)
      setattr(self, f"layer{index + 1}", stage)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(in_channels, num_classes)
    for module in self.modules():
      if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(block: type[nn.Module], in_channels: int, planes: int, num_blocks: int,
           stride: int) -> tuple[nn.Sequential, int]:
  """One stage; its first block strides and projects the shortcut when the shape changes."""
  out_channels = planes * block.expansion
  downsample = None
  if stride != 1 or in_channels != out_channels:
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                               nn.BatchNorm2d(out_channels))
  blocks = [block(in_channels, planes, stride, downsample)]
  blocks += [block(out_channels, planes) for _ in range(num_blocks - 1)]
  return nn.Sequential(*blocks), out_channels


class ResNet18_Weights(enum.Enum):  # pylint: disable=invalid-name
  """Names of torchvision's weights; the stand-in loads none of them."""
  IMAGENET1K_V1 = "IMAGENET1K_V1"
  DEFAULT = "IMAGENET1K_V1"


class ResNet50_Weights(enum.Enum):  # pylint: disable=invalid-name
  """Names of torchvision's weights; the stand-in loads none of them."""
  IMAGENET1K_V1 = "IMAGENET1K_V1"
  IMAGENET1K_V2 = "IMAGENET1K_V2"
  DEFAULT = "IMAGENET1K_V2"


def resnet18(weights: ResNet18_Weights | None = None, progress: bool = True, **kwargs) -> ResNet:
  """ResNet-18 with random weights (`weights` is accepted and ignored)."""
  del weights, progress
  return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet50(weights: ResNet50_Weights | None = None, progress: bool = True, **kwargs) -> ResNet:
  """ResNet-50 with random weights (`weights` is accepted and ignored)."""
  del weights, progress
  return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


class Compose:
  """Applies transforms in order."""

  def __init__(self, transforms: Sequence):
    self.transforms = list(transforms)

  def __call__(self, x):
    for transform in self.transforms:
      x = transform(x)
    return x


class ToTensor:
  """A HWC uint8 image (PIL or NumPy) -> a float32 CHW tensor in [0, 1]; float arrays are only transposed."""

  def __call__(self, picture) -> torch.Tensor:
    array = np.asarray(picture)
    if array.ndim == 2:
      array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor.float().div(255) if array.dtype == np.uint8 else tensor.float()


class Normalize:
  """(x - mean) / std per channel of a CHW or NCHW tensor."""

  def __init__(self, mean: Sequence[float], std: Sequence[float]):
    self.mean = torch.tensor(mean).view(-1, 1, 1)
    self.std = torch.tensor(std).view(-1, 1, 1)

  def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
    return (tensor - self.mean) / self.std


def _modules() -> dict[str, types.ModuleType]:
  """`torchvision`, `torchvision.models` and `torchvision.transforms` as module objects of this stand-in."""
  package = types.ModuleType("torchvision", "Test stand-in for torchvision (tests/torch_reference).")
  package.__path__ = []
  models = types.ModuleType("torchvision.models")
  for name in ("ResNet", "BasicBlock", "Bottleneck", "ResNet18_Weights", "ResNet50_Weights", "resnet18",
               "resnet50"):
    setattr(models, name, globals()[name])
  transforms = types.ModuleType("torchvision.transforms")
  for name in ("Compose", "ToTensor", "Normalize"):
    setattr(transforms, name, globals()[name])
  package.models, package.transforms = models, transforms
  return {"torchvision": package, "torchvision.models": models, "torchvision.transforms": transforms}


def _no_download(url: str, *args, **kwargs) -> dict:
  """Replaces `model_zoo.load_url`: an empty state dict, so a "pretrained" model keeps random weights."""
  del url, args, kwargs
  return {}


@contextlib.contextmanager
def installed() -> Iterator[None]:
  """Makes `import torchvision...` give the stand-in and stubs weight downloads, inside the `with` block.

  Modules imported inside the block (e.g. `stcnbuf.model.modules`) keep their references to the stand-in
  afterwards; building their models again needs the block again (the download stub ends with it).
  """
  standin = _modules()
  saved = {name: sys.modules[name] for name in standin if name in sys.modules}
  sys.modules.update(standin)
  try:
    with mock.patch("torch.utils.model_zoo.load_url", _no_download), \
         mock.patch("torch.hub.load_state_dict_from_url", _no_download):
      yield
  finally:
    # Only these names: other modules imported meanwhile stay (dropping them would re-import them later).
    for name in standin:
      sys.modules.pop(name, None)
    sys.modules.update(saved)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> nn.Module:
  """Gives every BatchNorm random affine parameters and running statistics (in place; returns `model`).

  Fresh BatchNorms have mean 0, variance 1, scale 1, shift 0: a parity test with those would not notice a
  converter that swapped or dropped them.
  """
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        shape = module.running_mean.shape
        module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
        module.bias.copy_(torch.randn(shape, generator=generator) * 0.1)
        module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
        module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
  return model
