"""ResNet trunks cut after layer3 (features at strides 2/4/8/16), torchvision layout and names."""

from jaxvos.backbones.resnet import ResNet, resnet_trunk

__all__ = ["ResNet", "resnet_trunk"]
