"""Thin constructors for PyTorch-equivalent layers: explicit padding, PyTorch's BatchNorm epsilon, frozen BN.

Flax's `'SAME'` padding on a stride-2 convolution pads after, PyTorch pads both sides, so every convolution
here spells its padding out.
"""

import flax.linen as nn

# torchvision initialises ResNet convolutions with Kaiming normal over fan-out.
KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel_size: int, *, stride: int = 1, padding: int | None = None, bias: bool = True,
         name: str, kernel_init=nn.initializers.lecun_normal()) -> nn.Conv:
  """`nn.Conv2d(in, features, kernel_size, stride, padding=kernel_size // 2 unless given, bias=bias)`."""
  pad = kernel_size // 2 if padding is None else padding
  return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=bias, kernel_init=kernel_init, name=name)


def frozen_batch_norm(name: str) -> nn.BatchNorm:
  """BatchNorm that always uses its running statistics (`batch_stats`), as VOS training keeps BN frozen.

  The affine scale and bias are ordinary parameters; the statistics are never updated.
  """
  return nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=name)
