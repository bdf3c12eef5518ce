"""The space-time memory of the STM/STCN twins and its read-out maths, as `jaxvos.memory.key_value` and
`jaxvos.ops.attention` define them, for one video (no batch axis).

Policy (the same fixed capacity as jaxvos): annotated frames (the first, and a frame where a new object first
appears) are pinned while fewer than `max_pinned` slots are; every `every`-th frame is written over the oldest
unpinned slot (a ring); with `temporary`, one extra slot holds the previous frame and is emptied when that frame
went to the ring. Reads attend to the positions of written slots (an object only to those written since it
appeared): a softmax over memory of the affinity, restricted to the `top_k` best per query position where set.
Soft aggregation turns per-object probabilities into logits over {background, objects} (METHODS.md).
"""

import dataclasses

import torch

# Logit for what must take no probability (exp of it is exactly 0 in float32), as in `jaxvos.ops.attention`.
EXCLUDED = -1e4


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
  """`jaxvos.memory.key_value.MemoryConfig`: capacity and write policy (a checkpoint stores all four fields)."""
  slots: int = 9
  every: int = 5
  max_pinned: int = 4
  temporary: bool = True

  def __post_init__(self):
    if not 1 <= self.max_pinned < self.slots:
      raise ValueError(f"need 1 <= max_pinned < slots, got max_pinned={self.max_pinned}, slots={self.slots}")
    if self.every < 1:
      raise ValueError(f"every must be >= 1, got {self.every}")

  @property
  def capacity(self) -> int:
    return self.slots + int(self.temporary)


class KeyValueMemory:
  """Fixed slots of keys [g s m ck] and values [o s m cv]; the last slot is the temporary one (if any)."""

  def __init__(self, config: MemoryConfig, *, key_groups: int, objects: int, positions: int, key_dim: int,
               value_dim: int, device=None):
    s = config.capacity
    self.config = config
    self.keys = torch.zeros(key_groups, s, positions, key_dim, device=device)
    self.values = torch.zeros(objects, s, positions, value_dim, device=device)
    self.written_at = torch.full((s,), -1, dtype=torch.int64)  # frame index of each slot's content, -1 empty
    self.pinned = torch.zeros(s, dtype=torch.bool)
    self.object_since = torch.full((objects,), -1, dtype=torch.int64)  # frame each object appeared, -1 before
    self.num_frames = 0  # frames seen: the index of the next frame

  def note_objects(self, new_valid: torch.Tensor) -> None:
    """Objects annotated at the current frame [o] read memory from this frame on."""
    self.object_since = torch.where(new_valid.cpu(), self.num_frames, self.object_since)

  def valid_positions(self) -> torch.Tensor:
    """bool [(s m)], or [o (s m)] when some object appeared after the oldest frame in memory, on its device."""
    written = self.written_at >= 0
    valid = written & (self.written_at[None] >= self.object_since[:, None])  # [o s]
    if int(self.object_since.max()) > int(self.written_at[written].min()):
      return valid.repeat_interleave(self.keys.shape[2], dim=1).to(self.keys.device)
    return written.repeat_interleave(self.keys.shape[2]).to(self.keys.device)

  def plan_write(self, annotated: bool) -> tuple[int, bool, bool]:
    """(slot, pin, write) for the current frame, as `jaxvos.memory.key_value.plan_write`."""
    c = self.config
    t = self.num_frames
    pin = annotated and int(self.pinned[:c.slots].sum()) < c.max_pinned
    to_ring = annotated or t % c.every == 0
    age = torch.where(self.pinned[:c.slots], torch.iinfo(torch.int64).max, self.written_at[:c.slots])
    slot = int(torch.argmin(age)) if to_ring else c.slots  # empty slots (-1) first; ties: the first
    return slot, pin, to_ring or c.temporary

  def write(self, keys: torch.Tensor, values: torch.Tensor, slot: int, pin: bool) -> None:
    """Stores keys [g m ck] and values [o m cv] in `slot`; a ring write empties the temporary slot."""
    self.keys[:, slot] = keys
    self.values[:, slot] = values
    self.written_at[slot] = self.num_frames
    self.pinned[slot] |= pin
    if self.config.temporary and slot != self.config.slots:
      self.written_at[self.config.slots] = -1


def dot_affinity(memory_keys: torch.Tensor, query_keys: torch.Tensor) -> torch.Tensor:
  """STM: `k_m . k_q / sqrt(ck)`; memory_keys [g m ck], query_keys [n ck] -> [g n m]."""
  scale = memory_keys.shape[-1] ** -0.5
  return torch.einsum("nc,gmc->gnm", query_keys, memory_keys) * scale


def l2_affinity(memory_keys: torch.Tensor, query_keys: torch.Tensor) -> torch.Tensor:
  """STCN: `(2 k_m . k_q - |k_m|^2) / sqrt(ck)`, the negative squared distance up to a per-query constant."""
  scale = memory_keys.shape[-1] ** -0.5
  squares = torch.sum(torch.square(memory_keys), dim=-1)[:, None, :]
  return (2.0 * torch.einsum("nc,gmc->gnm", query_keys, memory_keys) - squares) * scale


AFFINITIES = {"dot": dot_affinity, "l2": l2_affinity}


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
  """Softmax over the last axis of the positions where `valid`; the others get exactly 0."""
  return torch.softmax(torch.where(valid, logits, EXCLUDED), dim=-1) * valid


def read(affinity: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, top_k: int | None) -> torch.Tensor:
  """Read-out [o n cv] of values [o m cv] with affinity [g n m] (g = 1 shared, or o) over valid [m] (or [o m]:
  each object its own softmax and top-k)."""
  if valid.dim() == 2:
    valid = valid[:, None, :]
  if top_k is None or top_k >= affinity.shape[-1]:
    weights = masked_softmax(affinity, valid)
    return torch.einsum("gnm,omc->onc" if weights.shape[0] == 1 else "onm,omc->onc", weights, values)
  top_logits, top_index = torch.topk(torch.where(valid, affinity, EXCLUDED), top_k, dim=-1)  # [g n k]
  weights = masked_softmax(top_logits, top_logits > EXCLUDED / 2)
  g, n, k = top_index.shape
  o, _, cv = values.shape
  index = top_index.reshape(g, n * k, 1).expand(o, n * k, cv)
  gathered = torch.gather(values, 1, index).reshape(o, n, k, cv)
  return torch.einsum("gnk,onkc->onc" if g == 1 else "onk,onkc->onc", weights, gathered)


def aggregate(probs: torch.Tensor, object_valid: torch.Tensor) -> torch.Tensor:
  """Soft aggregation: probs [o h w] in [0, 1], object_valid [o] -> logits [o+1 h w] (background first).

  Background is `prod(1 - p_o)` over valid objects, probabilities are clamped to [1e-7, 1 - 1e-7] and turned into
  logits `log(p / (1 - p))`; invalid objects get `EXCLUDED`. The softmax of the result is the probabilities.
  """
  valid = object_valid[:, None, None]
  probs = torch.where(valid, probs.float(), 0.0)
  background = torch.prod(1.0 - probs, dim=0, keepdim=True)
  full = torch.clamp(torch.cat([background, probs], dim=0), 1e-7, 1.0 - 1e-7)
  logits = torch.log(full) - torch.log1p(-full)
  keep = torch.cat([torch.ones_like(valid[:1]), valid], dim=0)
  return torch.where(keep, logits, EXCLUDED)


def merge_new_objects(probs: torch.Tensor, new_masks: torch.Tensor, new_valid: torch.Tensor) -> torch.Tensor:
  """Objects given at this frame take their masks; the others lose the pixels the new ones cover. [o h w]."""
  is_new = new_valid[:, None, None]
  covered = torch.where(is_new, new_masks, 0.0).amax(dim=0, keepdim=True)
  return torch.where(is_new, new_masks, probs * (1.0 - covered))
