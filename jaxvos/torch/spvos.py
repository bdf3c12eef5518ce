"""The SpVOS twin (Lin, Chen, Yu, "SpVOS: Efficient Video Object Segmentation With Triple Sparse Convolution",
IEEE TIP 2023), written from METHODS.md and `jaxvos.models.spvos` / `jaxvos.nn.gated_conv`; the streaming side
(gate caches, dense refresh) is `jaxvos.torch.spvos_processor`.

The STCN twin (`jaxvos.torch.stcn`) with every 3x3 convolution of the key encoder's residual stages (res2,
layer2, layer3; the 7x7 stem and the 1x1 convolutions stay plain) and of the decoder (compress, up_16_8, up_8_4;
`pred` stays plain) replaced by a `GatedConv2d`: the same `weight` and `bias` plus a child `gate` (`GateHead`),
so the keys are STCN's plus `....gate.embed.*` and `....gate.logits.*`, those of jaxvos. Per output tile the gate
picks one of three actions on its argmax:

- compute: the convolution;
- reuse: this layer's output on the previous frame at the same pixels;
- skip: zero (the convolution's output before any following BatchNorm).

Gate input: the layer's input x, its change since the previous frame, and the previous frame's soft masks
max-pooled to the input's size (per object in the decoder's per-object layers, their union elsewhere): a linear
embedding + ReLU, averaged over each tile's input window (`tile * stride`), the mask's max appended, a 3x3
convolution over the tile grid -> 3 logits. Tiles cover `tile_pixels` frame pixels at every stride
(`tile_pixels // stride` outputs). A frame forced dense (the first, every `refresh_every`-th, the decoder after
an annotation) computes every tile.

Execution is masked dense compute: the whole convolution, then a per-pixel choice between it, the previous
output and zero. Numerically it is what jaxvos's sparse executor (`jaxvos.ops.sparse_conv`, tested equal to
masked dense compute) gives; it saves no time here.
"""

import re

import torch
from torch import nn
from torch.nn import functional as F

from jaxvos.torch import layers
from jaxvos.torch import stcn as stcn_lib

COMPUTE, REUSE, SKIP = 0, 1, 2
ACTIONS = {"compute": COMPUTE, "reuse": REUSE, "skip": SKIP}
# SpVOSConfig fields that only training reads (the twin is for inference): not network arguments.
TRAINING_FIELDS = ("target", "sparsity_weight", "sparsity_on", "entropy_weight", "entropy_ramp_steps",
                   "dense_clip_probability", "gate_init_bias", "temperature", "buckets", "distill_weight")
POOLS = {"mean": ("mean",), "mean_max": ("mean", "max")}  # as jaxvos.nn.gated_conv.POOLS


class FrameGates:
  """One frame's gating state for one part (encoder or decoder), shared by its gated layers during a call.

  `dense`: every tile computes (no previous frame is read). Otherwise `caches` {path: {"x", "y"}} are the
  previous frame's inputs and outputs of each layer and `masks` [b o H W] its soft masks. The layers leave
  `new_caches` (this frame's) and `actions` {path: int64 [N ht wt]} (COMPUTE everywhere when dense).
  """

  def __init__(self, frame_hw: tuple[int, int], tile_pixels: tuple[int, int], *, dense: bool,
               caches: dict | None = None, masks: torch.Tensor | None = None, force: str | None = None,
               compute_threshold: float | None = None, change_threshold: float | None = None):
    self.frame_hw, self.tile_pixels, self.dense = tuple(frame_hw), tuple(tile_pixels), dense
    self.caches, self.masks, self.force = caches, masks, force
    self.compute_threshold, self.change_threshold = compute_threshold, change_threshold
    self.new_caches: dict[str, dict[str, torch.Tensor]] = {}
    self.actions: dict[str, torch.Tensor] = {}

  def tile(self, out_hw: tuple[int, int]) -> tuple[int, int]:
    """Output tile (rows, columns) of a layer with output `out_hw`: the footprint over the layer's stride."""
    stride = max(1, self.frame_hw[0] // out_hw[0])
    return tuple(max(1, p // stride) for p in self.tile_pixels)

  def mask_near(self, items: int, hw: tuple[int, int]) -> torch.Tensor:
    """The previous masks max-pooled to `hw`: [N 1 h w], per object when the layer's N items are objects."""
    b, o = self.masks.shape[:2]
    masks = self.masks.amax(dim=1, keepdim=True) if items == b else self.masks.reshape(b * o, 1, *self.masks.shape[2:])
    return F.max_pool2d(masks, (masks.shape[2] // hw[0], masks.shape[3] // hw[1]))


def tile_pool(x: torch.Tensor, window: tuple[int, int], how: str) -> torch.Tensor:
  """Mean (over the valid pixels) or max of x [N c h w] over windows; the last ones may overhang."""
  h, w = x.shape[2:]
  gh, gw = -(-h // window[0]), -(-w // window[1])
  pad = (0, gw * window[1] - w, 0, gh * window[0] - h)
  if how == "max":
    return F.max_pool2d(F.pad(x, pad, value=float("-inf")), window)
  ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), pad)
  return F.avg_pool2d(F.pad(x, pad), window) / F.avg_pool2d(ones, window)


class GateHead(nn.Module):
  """x, dx [N c h w] and the previous mask [N 1 h w] -> logits [N 3 ht wt] (compute, reuse, skip)."""

  def __init__(self, in_channels: int, hidden: int, pool: str = "mean"):
    super().__init__()
    self.pools = POOLS[pool]
    self.embed = nn.Linear(2 * in_channels, hidden)
    self.logits = layers.conv(hidden * len(self.pools) + 1, 3, 3)

  def forward(self, x: torch.Tensor, dx: torch.Tensor, mask: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    embedded = F.relu(self.embed(torch.cat([x, dx], dim=1).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    pooled = [tile_pool(embedded, window, how) for how in self.pools]
    return self.logits(torch.cat([*pooled, tile_pool(mask, window, "max")], dim=1))


class GatedConv2d(nn.Conv2d):
  """A 3x3 `nn.Conv2d` (padding 1) gated per output tile by the `FrameGates` its network sets on it for a call
  (`gates`; None: a plain convolution). `path` is the layer's jaxvos path, the key of its cache."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, bias: bool, hidden: int, pool: str = "mean"):
    super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
    self.gate = GateHead(in_channels, hidden, pool)
    self.gates: FrameGates | None = None
    self.path = ""

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = super().forward(x)
    gates = self.gates
    if gates is None:
      return y
    out_hw = tuple(y.shape[2:])
    th, tw = gates.tile(out_hw)
    if gates.dense:
      action = torch.full((x.shape[0], -(-out_hw[0] // th), -(-out_hw[1] // tw)), COMPUTE, device=x.device)
    else:
      previous = gates.caches[self.path]
      window = (th * self.stride[0], tw * self.stride[1])
      dx = x - previous["x"]
      logits = self.gate(x, dx, gates.mask_near(x.shape[0], x.shape[2:]), window)
      action = (decide(logits, gates.compute_threshold) if gates.force is None else
                torch.full_like(logits[:, 0], ACTIONS[gates.force], dtype=torch.int64))
      if gates.change_threshold is not None:
        action = torch.where(changed_tiles(x, dx, window, gates.change_threshold), action, REUSE)
      pixels = action.repeat_interleave(th, dim=1).repeat_interleave(tw, dim=2)[:, None, :out_hw[0], :out_hw[1]]
      y = torch.where(pixels == COMPUTE, y, torch.where(pixels == REUSE, previous["y"], 0.0))
      if gates.change_threshold is not None:  # a reused tile keeps the input its output was computed from
        reused = action.repeat_interleave(window[0], dim=1).repeat_interleave(window[1], dim=2)[:, None, :x.shape[2],
                                                                                                 :x.shape[3]]
        x = torch.where(reused == REUSE, previous["x"], x)
    gates.new_caches[self.path] = {"x": x, "y": y}
    gates.actions[self.path] = action
    return y


def changed_tiles(x: torch.Tensor, dx: torch.Tensor, window: tuple[int, int], threshold: float) -> torch.Tensor:
  """bool [N ht wt]: tiles with an input pixel within their 3x3 receptive field (a one-pixel halo) whose change
  exceeds `threshold` times the mean pixel norm, as `jaxvos.nn.gated_conv.changed_tiles`; the others reuse."""
  change = F.max_pool2d(dx.float().norm(dim=1, keepdim=True), 3, stride=1, padding=1)
  scale = x.float().norm(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
  return tile_pool(change / scale.clamp_min(1e-6), window, "max")[:, 0] > threshold


def decide(logits: torch.Tensor, compute_threshold: float | None) -> torch.Tensor:
  """Action per tile from logits [N 3 ht wt], as `jaxvos.nn.gated_conv.decide`."""
  if compute_threshold is None:
    return logits.argmax(dim=1)
  p = torch.softmax(logits.float(), dim=1)
  other = torch.where(p[:, REUSE] >= p[:, SKIP], REUSE, SKIP)
  return torch.where(p[:, COMPUTE] >= compute_threshold, COMPUTE, other)


def jaxvos_path(name: str) -> str:
  """A PyTorch module name -> its jaxvos path (`key_encoder.res2.0.conv1` -> `key_encoder/res2_0/conv1`)."""
  return re.sub(r"\.(\d+)", r"_\1", name).replace(".", "/")


class SpVOS(stcn_lib.STCN):
  """STCN with gated 3x3 convolutions; `jaxvos.torch.spvos_processor.SpVOSProcessor` drives it.

  `encode_query` and `decode` take the part's `FrameGates` (None: plain dense STCN, no caches).
  """

  def __init__(self, *, tile_pixels=(32, 96), gate_hidden: int = 8, gate_pool: str = "mean", refresh_every: int = 10,
               force: str | None = None, compute_threshold: float | None = None,
               change_threshold: float | None = None, gated_parts=("encoder", "decoder"),
               read_threshold: float | None = None, **stcn_arguments):
    super().__init__(**stcn_arguments)
    if force is not None and force not in ACTIONS:
      raise ValueError(f"force must be one of {', '.join(ACTIONS)} or None, got {force!r}")
    if gate_pool not in POOLS or not set(gated_parts) <= {"encoder", "decoder"}:
      raise ValueError(f"gate_pool {gate_pool!r} / gated_parts {gated_parts!r}: not SpVOS's")
    self.tile_pixels, self.refresh_every, self.force = tuple(tile_pixels), refresh_every, force
    self.compute_threshold, self.gated_parts = compute_threshold, tuple(gated_parts)
    self.change_threshold, self.read_threshold = change_threshold, read_threshold
    stages = [getattr(self.key_encoder, name) for name in self.key_encoder.layer_names]
    decoder = [self.decoder.compress, self.decoder.up_16_8, self.decoder.up_8_4]
    self._gated = {part: _gate_convolutions(parents, gate_hidden, gate_pool)
                   for part, parents in (("encoder", stages), ("decoder", decoder))}
    for name, module in self.named_modules():
      if isinstance(module, GatedConv2d):
        module.path = jaxvos_path(name)

  def encode_query(self, frame: torch.Tensor, gates: FrameGates | None = None) -> dict[str, torch.Tensor]:
    with _gating(self._gated["encoder"], gates):
      return super().encode_query(frame)

  def decode(self, readout: torch.Tensor, query: dict[str, torch.Tensor], gates: FrameGates | None = None
             ) -> torch.Tensor:
    with _gating(self._gated["decoder"], gates):
      return super().decode(readout, query)


def _gate_convolutions(parents: list[nn.Module], hidden: int, pool: str) -> list[GatedConv2d]:
  """Replaces every 3x3 `nn.Conv2d` below `parents` by a `GatedConv2d` of the same shape; returns them."""
  gated = []
  for parent in parents:
    for module in list(parent.modules()):
      for child_name, child in list(module.named_children()):
        if type(child) is nn.Conv2d and child.kernel_size == (3, 3):  # pylint: disable=unidiomatic-typecheck
          replacement = GatedConv2d(child.in_channels, child.out_channels, child.stride[0], child.bias is not None,
                                    hidden, pool)
          setattr(module, child_name, replacement)
          gated.append(replacement)
  return gated


class _gating:  # pylint: disable=invalid-name  (a context manager used as `with _gating(...)`)
  """Sets `gates` on the layers for the duration of a call."""

  def __init__(self, gated: list[GatedConv2d], gates: FrameGates | None):
    self.gated, self.gates = gated, gates

  def __enter__(self):
    for module in self.gated:
      module.gates = self.gates

  def __exit__(self, *exc):
    for module in self.gated:
      module.gates = None
