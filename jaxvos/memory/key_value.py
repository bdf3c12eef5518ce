"""The bounded space-time key/value memory of the dense baselines (STM, STCN).

Slots hold whole frames: a key per position (shared by all objects, g = 1, or per object, g = o) and a value per
object and position. The policy, after STM/STCN, with a capacity fixed once and for all:

- annotated frames (the first frame, and a frame where a new object first appears) are *pinned*: never evicted,
  as long as at most `max_pinned` slots are pinned (later annotated frames are then ordinary writes);
- every `every`-th frame is written over the oldest unpinned slot: the unpinned slots form a ring;
- with `temporary`, one extra slot holds the previous frame (left empty when that frame went to the ring).

An object reads only the memory written since it first appeared (`object_since`). Frames written before it was
annotated were encoded while it counted as background, often at the very pixels where it stands (a seated
onlooker who joins at frame 8 barely moves): read together with its own annotated frame, they would say "not
this object" as loudly as that frame says "this object". When every object has been there since the oldest
frame in memory (always in training clips, and in most videos once the ring has turned over), all objects share
one read, as before; otherwise the read runs per object (`lax.cond`, so the common case pays nothing). Training
steps always take the per-object read (the same numbers when all objects share the memory), so a train step
compiles and differentiates one read, not two.

With `read_threshold` (SpVOS's read guard, not in STCN): while the memory is unchanged (no slot written, no
object added since the last read; STCN writes every 5th frame), a query position whose key moved by at most the
threshold times the mean key norm since the key its cached read-out was read with keeps that read-out; only the
others are read (`attention.read_rows`). As the convolutions' change guard, exact up to the threshold.

Nothing here grows with the video: writes are `dynamic_update_slice` into preallocated slots, so the memory is a
valid `lax.scan` carry and a 10 000-frame video compiles and runs like a 10-frame one.
"""

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp

from jaxvos.ops import attention
from jaxvos.ops.sparse_conv import DEFAULT_BUCKETS


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
  """Capacity and write policy. Defaults follow STM/STCN at test time (every 5th frame, previous frame)."""
  slots: int = 9          # pinned + ring slots (the temporary slot comes on top)
  every: int = 5          # write every k-th frame (counted from the first frame)
  max_pinned: int = 4     # annotated frames kept forever; must leave at least one ring slot
  temporary: bool = True  # keep the previous frame in an extra slot

  def __post_init__(self):
    if not 1 <= self.max_pinned < self.slots:
      raise ValueError(f"need 1 <= max_pinned < slots, got max_pinned={self.max_pinned}, slots={self.slots}")
    if self.every < 1:
      raise ValueError(f"every must be >= 1, got {self.every}")

  @property
  def capacity(self) -> int:
    """Slots allocated, the temporary one included."""
    return self.slots + int(self.temporary)


@flax.struct.dataclass
class KeyValueMemory:
  """Fixed-capacity key/value memory of a batch of videos; slot `slots` (the last) is the temporary one."""
  keys: jax.Array          # [b g s m ck]
  values: jax.Array        # [b o s m cv]
  written_at: jax.Array    # int32 [b s] frame index of each slot's content, -1 while empty
  pinned: jax.Array        # bool [b s]
  object_valid: jax.Array  # bool [b o] objects that have appeared so far
  object_since: jax.Array  # int32 [b o] the frame where each object was annotated, -1 before it appears
  num_frames: jax.Array    # int32 [] frames seen; the index of the next frame
  read_cache: Any = None   # ReadCache with `KeyValueMemoryType.read_threshold`, else None

  @classmethod
  def empty(cls, config: MemoryConfig, *, batch: int, key_groups: int, objects: int, positions: int,
            key_dim: int, value_dim: int, dtype=jnp.float32) -> "KeyValueMemory":
    s = config.capacity
    return cls(keys=jnp.zeros((batch, key_groups, s, positions, key_dim), dtype),
               values=jnp.zeros((batch, objects, s, positions, value_dim), dtype),
               written_at=jnp.full((batch, s), -1, jnp.int32), pinned=jnp.zeros((batch, s), bool),
               object_valid=jnp.zeros((batch, objects), bool),
               object_since=jnp.full((batch, objects), -1, jnp.int32), num_frames=jnp.zeros((), jnp.int32))

  def valid_positions(self) -> jax.Array:
    """bool [b (s m)]: the memory positions a read may attend to."""
    return self._spread(self.written_at >= 0)

  def object_positions(self) -> jax.Array:
    """bool [b o (s m)]: the positions each object may attend to, those written since it appeared."""
    written = self.written_at[:, None, :]
    valid = (written >= 0) & (written >= self.object_since[:, :, None])  # [b o s]
    b, o, s = valid.shape
    return self._spread(valid.reshape(b * o, s)).reshape(b, o, -1)

  def objects_share_memory(self) -> jax.Array:
    """bool []: every object may attend to every written position (no object is younger than the memory)."""
    oldest = jnp.min(jnp.where(self.written_at >= 0, self.written_at, jnp.iinfo(jnp.int32).max), axis=1)
    return ~jnp.any(self.object_since > oldest[:, None])

  def _spread(self, slot_valid: jax.Array) -> jax.Array:
    """bool [x s] per slot -> [x (s m)] per position."""
    x, s = slot_valid.shape
    m = self.keys.shape[3]
    return jnp.broadcast_to(slot_valid[:, :, None], (x, s, m)).reshape(x, s * m)

  def flat_keys(self) -> jax.Array:
    """[b g (s m) ck]."""
    b, g, s, m, c = self.keys.shape
    return self.keys.reshape(b, g, s * m, c)

  def flat_values(self) -> jax.Array:
    """[b o (s m) cv]."""
    b, o, s, m, c = self.values.shape
    return self.values.reshape(b, o, s * m, c)


@flax.struct.dataclass
class ReadCache:
  """The cached read-outs (`KeyValueMemoryType.read_threshold`), the query keys they were read with and the
  memory they read."""
  keys: jax.Array          # [b n ck]
  readout: jax.Array       # [b o n cv]
  written_at: jax.Array    # int32 [b s] the memory's slots at that read
  object_since: jax.Array  # int32 [b o] and its objects

  @classmethod
  def empty(cls, query_keys: jax.Array, memory: KeyValueMemory) -> "ReadCache":
    """A cache that no read can take from (its memory differs from any real one)."""
    b, o = memory.values.shape[:2]
    return cls(keys=jnp.zeros_like(query_keys),
               readout=jnp.zeros((b, o, query_keys.shape[1], memory.values.shape[-1]), memory.values.dtype),
               written_at=jnp.full_like(memory.written_at, -2), object_since=jnp.full_like(memory.object_since, -2))


def plan_write(memory: KeyValueMemory, config: MemoryConfig, annotated: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Where the current frame goes: (slot [b] int32, pin [b] bool, write [b] bool).

  `annotated` [b]: a new object's ground truth is given at this frame (the first frame always is).
  """
  t = memory.num_frames
  pin = annotated & (jnp.sum(memory.pinned[:, :config.slots], axis=1) < config.max_pinned)
  to_ring = annotated | (t % config.every == 0)
  age = jnp.where(memory.pinned[:, :config.slots], jnp.iinfo(jnp.int32).max, memory.written_at[:, :config.slots])
  oldest = jnp.argmin(age, axis=1).astype(jnp.int32)  # empty slots (-1) first
  temporary_slot = jnp.full_like(oldest, config.slots)
  slot = jnp.where(to_ring, oldest, temporary_slot)
  write = to_ring | config.temporary
  return slot, pin, write


def write(memory: KeyValueMemory, config: MemoryConfig, keys: jax.Array, values: jax.Array,
          slot: jax.Array, pin: jax.Array, write_mask: jax.Array) -> KeyValueMemory:
  """Writes keys [b g m ck] and values [b o m cv] of the current frame into `slot` where `write_mask`.

  A write into the ring clears the temporary slot: the previous frame is then already in memory.
  """
  def put(store, item, index, do):  # store [x s m c], item [x m c] for one video
    item = jnp.where(do, item, jax.lax.dynamic_index_in_dim(store, index, axis=1, keepdims=False))
    return jax.lax.dynamic_update_index_in_dim(store, item, index, axis=1)

  new_keys = jax.vmap(put)(memory.keys, keys.astype(memory.keys.dtype), slot, write_mask)
  new_values = jax.vmap(put)(memory.values, values.astype(memory.values.dtype), slot, write_mask)
  hit = (jnp.arange(config.capacity) == slot[:, None]) & write_mask[:, None]  # [b s]
  written_at = jnp.where(hit, memory.num_frames, memory.written_at)
  if config.temporary:
    to_ring = write_mask & (slot != config.slots)
    written_at = written_at.at[:, config.slots].set(jnp.where(to_ring, -1, written_at[:, config.slots]))
  return memory.replace(keys=new_keys, values=new_values, written_at=written_at,
                        pinned=memory.pinned | (hit & pin[:, None]))


@dataclasses.dataclass(frozen=True)
class KeyValueMemoryType:
  """The skeleton's memory type (`jaxvos.models.skeleton`) for STM and STCN: whole frames in slots.

  `encode()` returns `{"keys": [b g h w ck], "values": [b o h w cv]}`; the query holds `key16` [b h w ck]. The
  read-out is `{"readout": [b o h w cv]}`: a softmax over the valid memory positions of `affinity`, restricted
  to the `top_k` best where set, computed a chunk of query positions at a time when the whole affinity would
  be large (`attention.read_memory`: high resolutions fit wherever the memory itself fits). Aux: `memory_fill`,
  the fraction of slots in use [b]; with `read_threshold`, `read_fraction`, the fraction of query positions read
  [b] (the bucket's rows; 1 in training, where every read is whole).
  """
  config: MemoryConfig
  affinity: Callable[[jax.Array, jax.Array], jax.Array]  # (memory keys [b g m ck], query keys [b n ck])
  top_k: int | None = None
  read_threshold: float | None = None          # read only the query positions whose key moved (module docstring)
  buckets: tuple[float, ...] = DEFAULT_BUCKETS  # the row counts `attention.read_rows` may read

  def init(self, encoded, query, info) -> KeyValueMemory:
    keys, values = _flat(encoded["keys"]), _flat(encoded["values"])
    memory = KeyValueMemory.empty(
        self.config, batch=keys.shape[0], key_groups=keys.shape[1], objects=values.shape[1],
        positions=keys.shape[2], key_dim=keys.shape[-1], value_dim=values.shape[-1], dtype=keys.dtype)
    memory = _note_objects(memory, info)
    slot, pin, do = plan_write(memory, self.config, jnp.ones(keys.shape[0], bool))
    memory = write(memory, self.config, keys, values, slot, pin, do)
    if self.read_threshold is not None:
      b, h, w, _ = query["key16"].shape
      memory = memory.replace(read_cache=ReadCache.empty(query["key16"].reshape(b, h * w, -1), memory))
    return memory.replace(num_frames=memory.num_frames + 1)

  def read(self, memory: KeyValueMemory, query, info):
    b, h, w, _ = query["key16"].shape
    query_keys = query["key16"].reshape(b, h * w, -1)
    training = getattr(info, "training", False)

    def read_keys(valid, keys):
      return attention.read_memory(self.affinity, memory.flat_keys(), keys, memory.flat_values(), valid,
                                   self.top_k)

    aux = {}
    guarded = self.read_threshold is not None and memory.read_cache is not None and not training
    if not guarded:
      read = lambda valid: read_keys(valid, query_keys)  # noqa: E731
      if self.read_threshold is not None:
        aux["read_fraction"] = jnp.ones((b,), jnp.float32)
    else:
      cache = memory.read_cache
      same_memory = (jnp.all(memory.written_at == cache.written_at, axis=1)
                     & jnp.all(memory.object_since == cache.object_since, axis=1))
      moved = jnp.linalg.norm((query_keys - cache.keys).astype(jnp.float32), axis=-1)  # [b n]
      scale = jnp.mean(jnp.linalg.norm(query_keys.astype(jnp.float32), axis=-1), axis=1, keepdims=True)
      changed = (moved > self.read_threshold * scale) | ~same_memory[:, None]
      read = lambda valid: attention.read_rows(  # noqa: E731
          lambda keys: read_keys(valid, keys), query_keys, changed, cache.readout, self.buckets)
      aux["read_fraction"] = jnp.broadcast_to(attention.rows_read(changed, self.buckets), (b,))
    if training:  # one program to compile and differentiate (training reads are small)
      readout = read(memory.object_positions())
    else:
      readout = jax.lax.cond(memory.objects_share_memory(), lambda: read(memory.valid_positions()),
                             lambda: read(memory.object_positions()))
    if guarded:  # a kept read-out keeps the key it was read with
      keys = jnp.where(changed[..., None], query_keys, memory.read_cache.keys)
      memory = memory.replace(read_cache=ReadCache(keys, readout, memory.written_at, memory.object_since))
    return {"readout": readout.reshape(b, readout.shape[1], h, w, readout.shape[-1])}, memory, aux

  def update(self, memory: KeyValueMemory, encode, query, probs, info):
    del query, probs
    memory = _note_objects(memory, info)
    slot, pin, do = plan_write(memory, self.config, info.annotated)

    def encode_and_write(memory):
      encoded = encode()
      return write(memory, self.config, _flat(encoded["keys"]), _flat(encoded["values"]), slot, pin, do)

    memory = jax.lax.cond(jnp.any(do), encode_and_write, lambda memory: memory, memory)
    fill = jnp.mean((memory.written_at >= 0).astype(jnp.float32), axis=1)
    return memory.replace(num_frames=memory.num_frames + 1), {"memory_fill": fill}


def _note_objects(memory: KeyValueMemory, info) -> KeyValueMemory:
  """Takes in the objects known at this frame; those annotated here read memory from this frame on."""
  since = jnp.where(info.new_object_valid, memory.num_frames, memory.object_since)
  return memory.replace(object_valid=info.object_valid, object_since=since)


def _flat(x: jax.Array) -> jax.Array:
  """[b x h w c] -> [b x (h w) c]."""
  return x.reshape(*x.shape[:2], -1, x.shape[-1])
