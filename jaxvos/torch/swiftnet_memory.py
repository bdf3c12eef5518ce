"""SwiftNet's pixel-adaptive memory for the PyTorch twin: `jaxvos.memory.pixel_adaptive`'s policy and maths for
one video (no batch axis), with PyTorch and NumPy alone.

The layout, the variation-aware trigger, the pixel-wise update with its fixed-capacity eviction (a first-in,
first-out ring of `pool_updates` chunks), the temporary slot and the pixel-wise match are those of jaxvos; the
module docstring of `jaxvos.memory.pixel_adaptive` defines them and is not repeated here. What differs is only
how the work is done: reads attend to every valid position with a masked softmax instead of choosing among the
static prefixes `read_ends` (masked positions take exactly zero weight, so the read-outs are the same up to the
order of float32 sums), and nothing needs a static shape, so the updates are plain Python branches.

Ties break as in jaxvos: among equally novel pixels (`lax.top_k` of the negated scores) and equally changed
query positions the lower index comes first (`torch.sort(..., stable=True)`).
"""

import dataclasses
import math
from collections.abc import Callable

import torch

from jaxvos.torch import memory as memory_lib


@dataclasses.dataclass(frozen=True)
class PixelMemoryConfig:
  """`jaxvos.memory.pixel_adaptive.PixelMemoryConfig`, field for field (a checkpoint stores all of them)."""
  pinned: int = 2
  temporary: bool = True
  beta: float = 0.1
  pool_updates: int = 40
  frame_threshold: float = 0.04
  mask_threshold: float = 0.5
  variation_threshold: float = 1.54
  max_interval: int = 10
  combine: str = "or"
  match_fraction: float | None = None
  read_buckets: int = 4  # jaxvos's compute buckets; kept for the config's round trip, reads here use all of memory
  top_k: int | None = None
  key_norm: float | None = None

  def __post_init__(self):
    if min(self.pinned, self.pool_updates, self.max_interval, self.read_buckets, self.top_k or 1) < 1:
      raise ValueError("pinned, pool_updates, max_interval, read_buckets and top_k must be >= 1")
    if self.key_norm is not None and self.key_norm <= 0:
      raise ValueError(f"key_norm must be > 0, got {self.key_norm}")
    if not 0.0 < self.beta <= 1.0 or not (self.match_fraction is None or 0.0 < self.match_fraction <= 1.0):
      raise ValueError(f"beta and match_fraction must be in (0, 1], got {self.beta}, {self.match_fraction}")
    if self.combine not in ("or", "and"):
      raise ValueError(f"combine must be 'or' or 'and', got {self.combine!r}")

  def layout(self, n: int) -> "Layout":
    """Positions of the memory axis for frames of n positions (jaxvos's layout, without the read prefixes)."""
    k = budget(self.beta, n)
    pool = n * (1 + int(self.temporary))
    later = pool + self.pool_updates * k
    return Layout(n=n, k=k, pool=pool, later_pinned=later, capacity=later + (self.pinned - 1) * n)


@dataclasses.dataclass(frozen=True)
class Layout:
  """[first frame: n | temporary: n (if any) | pool: pool_updates x k | later pinned: (pinned - 1) x n]."""
  n: int
  k: int
  pool: int
  later_pinned: int
  capacity: int

  @property
  def temporary(self) -> int:
    return self.n

  def pinned_offset(self, slot: int) -> int:
    return 0 if slot == 0 else self.later_pinned + (slot - 1) * self.n


def budget(fraction: float, n: int) -> int:
  """ceil(fraction n), at least 1 (rounded first, as jaxvos: 0.1 * 30 is 3, not 4)."""
  return max(1, math.ceil(round(fraction * n, 6)))


def average_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
  """Mean over `stride` x `stride` blocks of [... h w] (h, w multiples of `stride`)."""
  *lead, h, w = x.shape
  return x.float().reshape(*lead, h // stride, stride, w // stride, stride).mean(dim=(-3, -1))


def varied_fraction(frame: torch.Tensor, prev_frame: torch.Tensor, masks: torch.Tensor, prev_masks: torch.Tensor,
                    object_valid: torch.Tensor, config: PixelMemoryConfig) -> torch.Tensor:
  """VAT's fraction [] of positions whose image (frames [3 h w] in [0, 1]) or mask ([o h w]) varied."""
  image = torch.mean(torch.abs(frame - prev_frame), dim=0) > config.frame_threshold
  change = torch.where(object_valid[:, None, None], torch.abs(masks - prev_masks), 0.0)
  mask = torch.amax(change, dim=0) > config.mask_threshold
  varied = (image | mask) if config.combine == "or" else (image & mask)
  return varied.float().mean()


def most_novel(new_keys: torch.Tensor, memory_keys: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
  """Index [o k] of each object's k pixels least similar (best cosine to the valid memory keys) to memory.

  new_keys [o n ck], memory_keys [o m ck], valid [m]; an empty memory scores -1.
  """
  normalise = lambda x: x * torch.rsqrt(torch.clamp(torch.sum(x * x, -1, keepdim=True), min=1e-12))  # noqa: E731
  cosine = torch.einsum("onc,omc->onm", normalise(new_keys.float()), normalise(memory_keys.float()))
  best = torch.amax(torch.where(valid, cosine, -1.0), dim=-1)
  return torch.sort(best, dim=-1, stable=True).indices[:, :k]


def patch_change(frame: torch.Tensor, prev_frame: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
  """Mean |x_t - x_{t-1}| over each query position's patch: frames [3 h' w'] -> [n]."""
  change = torch.mean(torch.abs(frame - prev_frame), dim=0)
  return average_pool(change, frame.shape[1] // grid_hw[0]).reshape(-1)


def rescale_norm(x: torch.Tensor, norm: float, dim: int) -> torch.Tensor:
  """x with every vector along `dim` rescaled to L2 norm `norm` (zero vectors stay zero)."""
  norms = torch.sqrt(torch.sum(x.float() ** 2, dim=dim, keepdim=True))
  return (x * (norm / torch.clamp(norms, min=1e-6))).to(x.dtype)


def pool_masks(probs: torch.Tensor, stride: int) -> torch.Tensor:
  """Soft masks [o H W] -> [o H/stride W/stride] (what the trigger compares)."""
  return average_pool(probs, stride)


def frame_small(frame: torch.Tensor, stride: int, mean, std) -> torch.Tensor:
  """A normalised frame [3 H W] -> intensities in [0, 1], averaged over `stride` blocks: [3 H/s W/s]."""
  pixels = frame.float() * torch.tensor(std, device=frame.device)[:, None, None] + torch.tensor(
      mean, device=frame.device)[:, None, None]
  return average_pool(pixels, stride)


class PixelMemory:
  """One video's pixel-adaptive memory: keys [o m ck], values [o m cv], and the trigger's running state."""

  def __init__(self, config: PixelMemoryConfig, encoded: dict[str, torch.Tensor], query_keys: torch.Tensor,
               frame_small: torch.Tensor, object_valid: torch.Tensor):
    """The annotated first frame, pinned whole (`encoded`: keys [o n ck], values [o n cv], masks_small
    [o h' w']) with its objects `object_valid` [o]; its read-out of its own query keys [n ck] seeds the
    pixel-wise match."""
    keys, values = encoded["keys"], encoded["values"]
    (o, n, ck), cv = keys.shape, values.shape[-1]
    self.config, self.layout = config, config.layout(n)
    m = self.layout.capacity
    self.keys = keys.new_zeros(o, m, ck)
    self.values = values.new_zeros(o, m, cv)
    self.written_at = torch.full((m,), -1, dtype=torch.int64, device=keys.device)
    self.num_pinned, self.pool_writes, self.last_update, self.num_frames = 1, 0, 0, 0
    self.variation = torch.zeros((), dtype=torch.float32, device=keys.device)  # P, in float32 as in jaxvos
    self.prev_frame, self.prev_masks = frame_small, encoded["masks_small"]
    self.stale = False
    self.object_since = torch.full((o,), -1, dtype=torch.int64, device=keys.device)
    self.note_objects(object_valid)
    self.write(keys, values, 0)
    self.readout = self.read_positions(query_keys) if config.match_fraction is not None else None
    self.num_frames = 1

  def valid(self) -> torch.Tensor:
    return self.written_at >= 0

  def note_objects(self, new_valid: torch.Tensor) -> None:
    """Objects annotated at the current frame [o] read what is written from this frame on."""
    self.object_since = torch.where(new_valid.to(self.written_at.device), self.num_frames, self.object_since)

  def object_positions(self) -> torch.Tensor:
    """bool [o m]: the positions each object may attend to, those written since it appeared."""
    return self.valid()[None] & (self.written_at[None] >= self.object_since[:, None])

  def write(self, keys: torch.Tensor, values: torch.Tensor, offset: int) -> None:
    """Stores keys [o l ck] and values [o l cv] at positions offset .. offset + l, written now."""
    end = offset + keys.shape[1]
    self.keys[:, offset:end] = keys
    self.values[:, offset:end] = values
    self.written_at[offset:end] = self.num_frames

  def read_positions(self, query_keys: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Read-out [o n cv] of query_keys [n ck] (of its rows `index` [k] only, when given: [o k cv]), over each
    position's `top_k` best matches and with memory keys rescaled to `key_norm` where the config says so."""
    keys = self.keys if self.config.key_norm is None else rescale_norm(self.keys, self.config.key_norm, dim=-1)
    affinity = memory_lib.dot_affinity(keys, query_keys if index is None else query_keys[index])
    return memory_lib.read(affinity, self.values, self.object_positions(), self.config.top_k)

  def read(self, query_keys: torch.Tensor, frame_small: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """The frame's read-out [o n cv] (query_keys [n ck]): the full match, or the pixel-wise one (module doc)."""
    if self.config.match_fraction is None:
      return self.read_positions(query_keys)
    if self.stale:
      readout = self.read_positions(query_keys)
    else:
      budget_k = budget(self.config.match_fraction, query_keys.shape[0])
      change = patch_change(frame_small, self.prev_frame, grid_hw)
      index = torch.sort(change, descending=True, stable=True).indices[:budget_k]
      readout = self.readout.clone()
      readout[:, index] = self.read_positions(query_keys, index)
    self.readout, self.stale = readout, False
    return readout

  def update(self, encode: Callable[[], dict[str, torch.Tensor]], frame_small: torch.Tensor, probs: torch.Tensor,
             annotated: bool, object_valid: torch.Tensor) -> bool:
    """After the frame is segmented (probs [o H W]): trigger, write, and move on; returns whether the frame was
    written as an update (pinned or pixel-wise)."""
    c, t = self.config, self.num_frames
    masks = pool_masks(probs, probs.shape[-1] // frame_small.shape[-1])
    fraction = varied_fraction(frame_small, self.prev_frame, masks, self.prev_masks, object_valid, c)
    variation = self.variation + fraction
    trigger = bool(variation > c.variation_threshold) or t - self.last_update >= c.max_interval
    pin = annotated and self.num_pinned < c.pinned
    pixel = (trigger or annotated) and not pin
    if c.temporary or pin or pixel:  # the temporary slot is rewritten every frame
      self._write(encode(), pin, pixel)
    updated = pin or pixel
    self.variation = torch.zeros_like(variation) if updated or trigger else variation
    self.last_update = t if updated else self.last_update
    self.prev_frame, self.prev_masks = frame_small, masks
    self.stale = self.stale or annotated
    self.num_frames += 1
    return updated

  def _write(self, encoded: dict[str, torch.Tensor], pin: bool, pixel: bool) -> None:
    """Pixel-wise update (into the pool's oldest chunk; the temporary slot is not compared against), the pinned
    write, then the temporary slot (emptied instead when the frame was pinned)."""
    keys, values, layout = encoded["keys"], encoded["values"], self.layout
    if pixel:
      compare = self.valid().clone()
      if self.config.temporary:
        compare[layout.temporary:layout.pool] = False
      index = most_novel(keys, self.keys, compare, layout.k)  # [o k]
      take = lambda x: torch.gather(x, 1, index[..., None].expand(*index.shape, x.shape[-1]))  # noqa: E731
      self.write(take(keys), take(values), layout.pool + (self.pool_writes % self.config.pool_updates) * layout.k)
      self.pool_writes += 1
    if pin:
      self.write(keys, values, layout.pinned_offset(self.num_pinned))
      self.num_pinned += 1
    if self.config.temporary:
      if pin:
        self.written_at[layout.temporary:layout.pool] = -1
      else:
        self.write(keys, values, layout.temporary)

  def entries(self) -> int:
    return int(self.valid().sum())

