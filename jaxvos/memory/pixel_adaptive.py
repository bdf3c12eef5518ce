"""SwiftNet's pixel-adaptive memory (PAM; Wang et al., CVPR 2021, Sec. 3.2), with a fixed capacity.

Layout of the `m` memory positions of a video (`n` = positions of a frame at /16, `k` = ceil(beta n)):

    [ first frame: n | temporary: n (if `temporary`) | pool: `pool_updates` x k | later pinned: (pinned-1) x n ]

- **Pinned**: annotated frames stored whole (the first frame always; later frames where objects first appear,
  while a pinned slot is free). Never evicted, never overwritten.
- **Temporary**: the previous frame's full encoding, rewritten every frame (as the released model). Left empty
  after a frame that was pinned (it is already in memory).
- **Pixel pool**: a ring of `pool_updates` chunks of k entries. A memory update writes the k most novel pixels
  of the frame into the oldest chunk. Eviction policy: when the pool is full, the oldest update (first in,
  first out) is overwritten; pinned frames are never touched. A later annotated frame finding every pinned slot
  taken becomes a (forced) pixel update, so it may eventually be evicted.

**Variation-aware trigger** (VAT). At the working resolution, average-pooled by the model's `variation_stride`,
a position's image variation is `mean_rgb |x_t - x_{t-1}| > frame_threshold` (intensities in [0, 1]) and its mask
variation `max_o |y_t - y_{t-1}| > mask_threshold` over valid objects (soft masks). A position *varies* if
either does (`combine="or"`; `"and"`: both). The running variation P accumulates the fraction of varied
positions of every frame since the last update; frame t triggers a pixel update when `P > variation_threshold`
or `t - last_update >= max_interval`, and P resets to 0. An annotated frame is always an update. The previous
frame and masks the variation is measured against live in the memory state.

**Pixel-wise update**. The triggered frame's keys (per object: memory keys are encoded with the object's
mask) are compared with every valid non-temporary memory key of the same object by cosine similarity; a pixel's
score is its best match; the k = ceil(beta n) pixels with the lowest scores (most novel) are appended
(`lax.top_k`, static k).

**Pixel-wise match** (`match_fraction`, off when None). Only the `ceil(match_fraction n)` query positions whose
image changed most since the previous frame (mean |x_t - x_{t-1}| over the position's 16x16 patch) are matched
against memory; the others keep their previous read-out, which the state carries. After a frame where an
object appeared (its read-outs are stale) the next read is a full match. With a budget of every position the
read-out equals the full match (tested).

Read: `softmax over valid memory positions of k_m . k_q / sqrt(ck)` with per-object keys (g = o). Compute
follows the fill: reads and the update's similarities run over the shortest of `read_buckets` static prefixes of
memory that holds every valid position (`lax.switch`; the pool fills from its start, later pinned frames sit at
the end), so a video's early frames do not pay for its empty capacity.

Contract with the module: `query` holds `key16` [b h w ck] and `frame_small` float32 [b h' w' 3] (intensities
in [0, 1] at stride `variation_stride`); `encode()` returns `keys` [b o h w ck], `values` [b o h w cv] and
`masks_small` float32 [b o h' w'] (the masks at stride `variation_stride`). Aux: `memory_fill` (fraction of
positions in use), `memory_entries`, `trigger` (1.0 where the frame was written as an update), `variation` (the
frame's fraction of varied positions) and `matched_fraction`, each [b].
"""

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from jaxvos.ops import attention

# Largest similarity block (bytes, float32) the pixel-wise update computes at once.
SIMILARITY_CHUNK_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class PixelMemoryConfig:
  """Capacity and policies of the pixel-adaptive memory (module docstring).

  Trigger defaults: calibrated on the 30 DAVIS 2016 training sequences at the default working size (shorter
  side 480, stride 4) with ground-truth masks, for a mean interval of 5 frames (median 4, 9.6% of the updates
  forced by `max_interval`, per-sequence means 3.1 .. 10): `python experiments/calibrate_swiftnet_trigger.py`.
  """
  pinned: int = 2                    # whole annotated frames kept forever (the first + late-object frames)
  temporary: bool = True             # the previous frame, whole
  beta: float = 0.1                  # fraction of a frame's positions appended per update
  pool_updates: int = 40             # pixel-pool capacity, in updates; full: the oldest update is evicted
  frame_threshold: float = 0.04      # th_f, intensity in [0, 1] (about 10 / 255)
  mask_threshold: float = 0.5        # th_m, probability
  variation_threshold: float = 1.54  # P_th, in frames' worth of varied positions (0.33 vary per frame)
  max_interval: int = 10             # an update at the latest every `max_interval` frames
  combine: str = "or"                # a position varies if its image "or" its mask varies ("and": both)
  match_fraction: float | None = None  # pixel-wise match budget (fraction of positions); None: full match
  read_buckets: int = 4              # static memory prefixes reads choose from by fill (1: always all of it)
  top_k: int | None = None           # a read keeps each query position's k best matches (STCN's); None: all
  key_norm: float | None = None      # reads see memory keys rescaled to this L2 norm; None: as encoded (paper)

  def __post_init__(self):
    if min(self.pinned, self.pool_updates, self.max_interval, self.read_buckets, self.top_k or 1) < 1:
      raise ValueError("pinned, pool_updates, max_interval, read_buckets and top_k must be >= 1")
    if self.key_norm is not None and self.key_norm <= 0:
      raise ValueError(f"key_norm must be > 0, got {self.key_norm}")
    if not 0.0 < self.beta <= 1.0 or not (self.match_fraction is None or 0.0 < self.match_fraction <= 1.0):
      raise ValueError(f"beta and match_fraction must be in (0, 1], got {self.beta}, {self.match_fraction}")
    if self.combine not in ("or", "and"):
      raise ValueError(f"combine must be 'or' or 'and', got {self.combine!r}")

  def update_size(self, n: int) -> int:
    """k: positions appended per pixel-wise update of a frame of n positions."""
    return budget(self.beta, n)

  def read_options(self) -> dict:
    """`full_read`'s keyword arguments from this config."""
    return {"top_k": self.top_k, "key_norm": self.key_norm}

  def layout(self, n: int) -> "Layout":
    """Static positions of the memory for frames of n positions (module docstring)."""
    k = self.update_size(n)
    pool = n * (1 + int(self.temporary))
    later = pool + self.pool_updates * k
    ends = sorted({pool + k * math.ceil(self.pool_updates * (i + 1) / self.read_buckets)
                   for i in range(self.read_buckets)} | {later + (self.pinned - 1) * n})
    return Layout(n=n, k=k, temporary=n, pool=pool, later_pinned=later, capacity=ends[-1], read_ends=tuple(ends))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where things sit in the memory axis (`PixelMemoryConfig.layout`)."""
  n: int                       # positions of a frame
  k: int                       # positions appended per pixel-wise update
  temporary: int               # start of the temporary slot (when the config has one)
  pool: int                    # start of the pixel pool
  later_pinned: int            # start of the pinned frames after the first
  capacity: int                # m
  read_ends: tuple[int, ...]   # the static prefixes reads choose from, increasing, the last = capacity

  def pinned_offset(self, slot: jax.Array) -> jax.Array:
    """int32 [b]: the start of pinned slot `slot` [b] (0: the first frame)."""
    return jnp.where(slot == 0, 0, self.later_pinned + (slot - 1) * self.n).astype(jnp.int32)


def budget(fraction: float, n: int) -> int:
  """ceil(fraction n), at least 1 (rounded first so 0.1 * 30 is 3, not 4)."""
  return max(1, math.ceil(round(fraction * n, 6)))


@flax.struct.dataclass
class PixelMemory:
  """A batch of videos' pixel-adaptive memory; every field has a fixed shape over the video."""
  keys: jax.Array          # [b o m ck] per-object keys
  values: jax.Array        # [b o m cv]
  written_at: jax.Array    # int32 [b m] frame of each position's content, -1 while empty
  num_pinned: jax.Array    # int32 [b] pinned slots used
  pool_writes: jax.Array   # int32 [b] pixel updates written so far (the ring's cursor)
  variation: jax.Array     # float32 [b] the running variation P
  last_update: jax.Array   # int32 [b] frame of the last update
  prev_frame: jax.Array    # float32 [b h' w' 3] the previous frame at the variation stride
  prev_masks: jax.Array    # float32 [b o h' w'] the previous masks at the variation stride
  readout: jax.Array       # [b o n cv] the previous read-out (pixel-wise match; n = 0 when off)
  stale: jax.Array         # bool [b] the next read must match every position
  object_valid: jax.Array  # bool [b o]
  object_since: jax.Array  # int32 [b o] the frame where each object was annotated (-1 before): its reads
                           # attend to positions written since (`jaxvos.memory.key_value` says why)

  def object_positions(self) -> jax.Array:
    """bool [b o m]: the positions each object may attend to, those written since it appeared."""
    written = self.written_at[:, None, :]
    return (written >= 0) & (written >= self.object_since[:, :, None])


def average_pool(x: jax.Array, stride: int) -> jax.Array:
  """Mean over `stride` x `stride` blocks of [... h w c] (h, w multiples of `stride`), in float32."""
  *lead, h, w, c = x.shape
  x = x.astype(jnp.float32).reshape(*lead, h // stride, stride, w // stride, stride, c)
  return jnp.mean(x, axis=(-4, -2))


def pool_masks(masks: jax.Array, stride: int) -> jax.Array:
  """Masks [b o h w] -> float32 [b o h/stride w/stride]."""
  return average_pool(masks[..., None], stride)[..., 0]


def varied_fraction(frame: jax.Array, prev_frame: jax.Array, masks: jax.Array, prev_masks: jax.Array,
                    object_valid: jax.Array, config: PixelMemoryConfig) -> jax.Array:
  """The fraction [b] of positions whose image or mask varied (VAT's per-pixel indicators, module docstring).

  frame, prev_frame [b h w 3] in [0, 1]; masks, prev_masks [b o h w]; object_valid [b o].
  """
  image = jnp.mean(jnp.abs(frame - prev_frame), axis=-1) > config.frame_threshold
  change = jnp.where(object_valid[:, :, None, None], jnp.abs(masks - prev_masks), 0.0)
  mask = jnp.max(change, axis=1) > config.mask_threshold
  varied = (image | mask) if config.combine == "or" else (image & mask)
  return jnp.mean(varied.astype(jnp.float32), axis=(1, 2))


def accumulate(variation: jax.Array, since_update: jax.Array, fraction: jax.Array, config: PixelMemoryConfig
               ) -> tuple[jax.Array, jax.Array]:
  """VAT: P += fraction; fire where P > P_th or the last update is `max_interval` frames old; P resets.

  Returns (trigger bool [b], P float32 [b]).
  """
  variation = variation + fraction
  trigger = (variation > config.variation_threshold) | (since_update >= config.max_interval)
  return trigger, jnp.where(trigger, 0.0, variation)


def trigger_schedule(fractions: jax.Array, config: PixelMemoryConfig) -> jax.Array:
  """The frames VAT writes into memory, from each frame's fraction of varied positions (`varied_fraction`).

  fractions float32 [t] (entry 0 unused: frame 0 is the annotated one, always written) -> bool [t]. What
  `update` decides frame by frame, for calibrating the thresholds on a dataset without running a network.
  """
  def step(carry, inputs):
    variation, last = carry
    fraction, t = inputs
    trigger, variation = accumulate(variation, t - last, fraction, config)
    return (variation, jnp.where(trigger, t, last)), trigger

  steps = jnp.arange(1, fractions.shape[0], dtype=jnp.int32)
  init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
  _, triggers = jax.lax.scan(step, init, (fractions[1:].astype(jnp.float32), steps))
  return jnp.concatenate([jnp.ones((1,), bool), triggers])


def best_similarity(new_keys: jax.Array, memory_keys: jax.Array, valid: jax.Array,
                    chunk_bytes: int = SIMILARITY_CHUNK_BYTES) -> jax.Array:
  """Each new pixel's best cosine similarity to the valid memory keys of its object.

  new_keys [b o n ck], memory_keys [b o m ck], valid [b m] -> float32 [b o n] (-1 where memory is empty).
  Computed `chunk_bytes` of similarities at a time.
  """
  normalise = lambda x: x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))  # noqa: E731
  memory_keys = normalise(memory_keys.astype(jnp.float32))
  new_keys = normalise(new_keys.astype(jnp.float32))

  def best(chunk: jax.Array) -> jax.Array:  # [b o rows ck] -> [b o rows]
    cosine = jnp.einsum("bonc,bomc->bonm", chunk, memory_keys, precision=jax.lax.Precision.HIGHEST)
    return jnp.max(jnp.where(valid[:, None, None, :], cosine, -1.0), axis=-1)

  b, o, n, c = new_keys.shape
  rows = max(1, chunk_bytes // (4 * b * o * memory_keys.shape[2]))
  if rows >= n:
    return best(new_keys)
  chunks = -(-n // rows)
  padded = jnp.pad(new_keys, ((0, 0), (0, 0), (0, chunks * rows - n), (0, 0)))
  out = jax.lax.map(best, jnp.moveaxis(padded.reshape(b, o, chunks, rows, c), 2, 0))  # [chunks b o rows]
  return jnp.moveaxis(out, 0, 2).reshape(b, o, chunks * rows)[:, :, :n]


def most_novel(new_keys: jax.Array, new_values: jax.Array, memory_keys: jax.Array, valid: jax.Array, k: int
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The k pixels of each object least similar to memory: (keys [b o k ck], values [b o k cv], index [b o k]).

  Ties go to the lower pixel index (`lax.top_k` of the negated scores).
  """
  _, index = jax.lax.top_k(-best_similarity(new_keys, memory_keys, valid), k)
  take = lambda x: jnp.take_along_axis(x, index[..., None], axis=2)  # noqa: E731
  return take(new_keys), take(new_values), index


def write(memory: PixelMemory, keys: jax.Array, values: jax.Array, offset: jax.Array, do: jax.Array,
          t: jax.Array) -> PixelMemory:
  """Writes keys [b o l ck] and values [b o l cv] at memory positions offset .. offset + l of each video
  where `do` [b]; offset int32 [b]."""
  def put(store, item, start, flag):  # one video: store [o m c], item [o l c]
    old = jax.lax.dynamic_slice_in_dim(store, start, item.shape[1], axis=1)
    return jax.lax.dynamic_update_slice_in_dim(store, jnp.where(flag, item.astype(store.dtype), old), start, 1)

  new_keys = jax.vmap(put)(memory.keys, keys, offset, do)
  new_values = jax.vmap(put)(memory.values, values, offset, do)
  position = jnp.arange(memory.written_at.shape[1])[None]
  hit = (position >= offset[:, None]) & (position < offset[:, None] + keys.shape[2]) & do[:, None]
  return memory.replace(keys=new_keys, values=new_values, written_at=jnp.where(hit, t, memory.written_at))


def over_filled_prefix(memory: PixelMemory, valid: jax.Array, ends: tuple[int, ...], fn, fn_valid=None):
  """`fn(keys, values, valid)` over the shortest static prefix `ends[i]` of the memory axis that holds every
  position where `valid` [b m] (of every video of the batch): the work follows the fill (`lax.switch`).
  `fn_valid` ([b ... m], default `valid`, within it) is what `fn` receives, cut to the prefix."""
  last = jnp.max(jnp.where(valid, jnp.arange(valid.shape[1]) + 1, 0))
  index = jnp.minimum(jnp.searchsorted(jnp.asarray(ends), last), len(ends) - 1)
  fn_valid = valid if fn_valid is None else fn_valid
  branches = [lambda end=end: fn(memory.keys[:, :, :end], memory.values[:, :, :end], fn_valid[..., :end])
              for end in ends]
  return jax.lax.switch(index, branches)


def pixel_update(memory: PixelMemory, config: PixelMemoryConfig, keys: jax.Array, values: jax.Array,
                 do: jax.Array, t: jax.Array) -> PixelMemory:
  """Appends the k most novel pixels of the frame (keys [b o n ck], values [b o n cv]) into the pool's oldest
  chunk, where `do` [b]; the temporary slot is not compared against (it holds the previous frame)."""
  layout = config.layout(keys.shape[2])
  position = jnp.arange(memory.written_at.shape[1])[None]
  in_temporary = config.temporary & (position >= layout.temporary) & (position < layout.pool)
  compare = (memory.written_at >= 0) & ~in_temporary
  new_keys, new_values, _ = over_filled_prefix(
      memory, compare, layout.read_ends, lambda mk, mv, valid: most_novel(keys, values, mk, valid, layout.k))
  offset = layout.pool + (memory.pool_writes % config.pool_updates) * layout.k
  memory = write(memory, new_keys, new_values, offset.astype(jnp.int32), do, t)
  return memory.replace(pool_writes=memory.pool_writes + do.astype(jnp.int32))


def rescale_norm(x: jax.Array, norm: float) -> jax.Array:
  """x [... c] with every vector along its last axis rescaled to L2 norm `norm` (zero vectors stay zero)."""
  norms = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True))
  return (x * (norm / jnp.maximum(norms, 1e-6))).astype(x.dtype)


def full_read(memory: PixelMemory, query_keys: jax.Array, ends: tuple[int, ...] | None = None,
              top_k: int | None = None, key_norm: float | None = None) -> jax.Array:
  """Read-out [b o n cv] of every query position (query_keys [b n ck]) over the valid memory (each object over
  what was written since it appeared; keys are per object, so this costs nothing), computed over the shortest
  of the prefixes `ends` (default: all of memory) holding it; `top_k`: over each position's k best matches;
  `key_norm`: the memory keys rescaled to that L2 norm first."""
  ends = ends or (memory.written_at.shape[1],)

  def read(keys, values, valid):
    if key_norm is not None:
      keys = rescale_norm(keys, key_norm)
    return attention.read_memory(attention.dot_affinity, keys, query_keys, values, valid, top_k)

  return over_filled_prefix(memory, memory.written_at >= 0, ends, read, memory.object_positions())


def patch_change(frame: jax.Array, prev_frame: jax.Array, grid_hw: tuple[int, int]) -> jax.Array:
  """Mean |x_t - x_{t-1}| over each query position's patch: frames [b h' w' 3] -> float32 [b n]."""
  change = jnp.mean(jnp.abs(frame - prev_frame), axis=-1, keepdims=True)
  return average_pool(change, frame.shape[1] // grid_hw[0]).reshape(frame.shape[0], -1)


def pixel_match(memory: PixelMemory, query_keys: jax.Array, change: jax.Array, budget_k: int,
                ends: tuple[int, ...] | None = None, **read) -> jax.Array:
  """Read-out [b o n cv]: the `budget_k` positions of largest `change` [b n] matched against memory (over the
  prefixes `ends`, as `full_read`), the others kept from `memory.readout`."""
  _, index = jax.lax.top_k(change, budget_k)  # [b k]
  chosen = jnp.take_along_axis(query_keys, index[..., None], axis=1)
  fresh = full_read(memory, chosen, ends, **read)  # [b o k cv]; read: full_read's top_k, key_norm
  return jax.vmap(lambda old, i, new: old.at[:, i].set(new))(memory.readout, index, fresh)


@dataclasses.dataclass(frozen=True)
class PixelAdaptiveMemoryType:
  """The skeleton's memory type (`jaxvos.models.skeleton`) for SwiftNet; see the module docstring."""
  config: PixelMemoryConfig

  def init(self, encoded, query, info) -> PixelMemory:
    """The annotated first frame, pinned whole; the read-out of the frame itself seeds the pixel-wise match."""
    keys, values = _flat(encoded["keys"]), _flat(encoded["values"])
    (b, o, n, ck), cv = keys.shape, values.shape[-1]
    layout = self.config.layout(n)
    m = layout.capacity
    readout_n = n if self.config.match_fraction is not None else 0
    zeros_b = jnp.zeros((b,), jnp.int32)
    memory = PixelMemory(
        keys=jnp.zeros((b, o, m, ck), keys.dtype), values=jnp.zeros((b, o, m, cv), values.dtype),
        written_at=jnp.full((b, m), -1, jnp.int32), num_pinned=zeros_b + 1, pool_writes=zeros_b,
        variation=jnp.zeros((b,), jnp.float32), last_update=zeros_b, prev_frame=query["frame_small"],
        prev_masks=encoded["masks_small"], readout=jnp.zeros((b, o, readout_n, cv), values.dtype),
        stale=jnp.zeros((b,), bool), object_valid=info.object_valid,
        object_since=jnp.where(info.new_object_valid, info.t, -1).astype(jnp.int32))
    memory = write(memory, keys, values, zeros_b, jnp.ones((b,), bool), info.t)
    if readout_n:
      memory = memory.replace(readout=full_read(memory, _flat_query(query["key16"]), layout.read_ends,
                                                **self.config.read_options()))
    return memory

  def read(self, memory: PixelMemory, query, info):
    del info
    b, h, w, _ = query["key16"].shape
    query_keys, ends = _flat_query(query["key16"]), self.config.layout(h * w).read_ends
    matched, options = jnp.ones((b,), jnp.float32), self.config.read_options()
    if self.config.match_fraction is None:
      readout = full_read(memory, query_keys, ends, **options)
    else:
      k = budget(self.config.match_fraction, h * w)
      change = patch_change(query["frame_small"], memory.prev_frame, (h, w))
      readout = jax.lax.cond(jnp.any(memory.stale), lambda: full_read(memory, query_keys, ends, **options),
                             lambda: pixel_match(memory, query_keys, change, k, ends, **options))
      matched = jnp.where(jnp.any(memory.stale), 1.0, k / (h * w)) * matched
      memory = memory.replace(readout=readout, stale=jnp.zeros_like(memory.stale))
    readout = readout.reshape(b, readout.shape[1], h, w, readout.shape[-1])
    return {"readout": readout}, memory, {"matched_fraction": matched}

  def update(self, memory: PixelMemory, encode, query, probs, info):
    c, t = self.config, info.t
    masks = pool_masks(probs, probs.shape[-1] // query["frame_small"].shape[-2])
    fraction = varied_fraction(query["frame_small"], memory.prev_frame, masks, memory.prev_masks,
                               info.object_valid, c)
    trigger, variation = accumulate(memory.variation, t - memory.last_update, fraction, c)
    pin = info.annotated & (memory.num_pinned < c.pinned)
    pixel = (trigger | info.annotated) & ~pin
    written = self._write(memory, encode, pin, pixel, t)
    updated = pin | pixel
    memory = written.replace(
        variation=jnp.where(updated, 0.0, variation), last_update=jnp.where(updated, t, memory.last_update),
        prev_frame=query["frame_small"], prev_masks=masks, stale=memory.stale | info.annotated,
        object_valid=info.object_valid, object_since=jnp.where(info.new_object_valid, t, memory.object_since))
    valid = (memory.written_at >= 0).astype(jnp.float32)
    aux = {"memory_fill": jnp.mean(valid, axis=1), "memory_entries": jnp.sum(valid, axis=1),
           "trigger": updated.astype(jnp.float32), "variation": fraction}
    return memory, aux

  def _write(self, memory: PixelMemory, encode, pin: jax.Array, pixel: jax.Array, t: jax.Array) -> PixelMemory:
    """Encodes the frame (only when something is written) and writes it: pinned, pixel-wise, temporary."""
    c = self.config

    def encode_and_write(memory: PixelMemory) -> PixelMemory:
      encoded = encode()
      keys, values = _flat(encoded["keys"]), _flat(encoded["values"])
      layout = c.layout(keys.shape[2])
      memory = jax.lax.cond(jnp.any(pixel), lambda m: pixel_update(m, c, keys, values, pixel, t),
                            lambda m: m, memory)
      memory = write(memory, keys, values, layout.pinned_offset(memory.num_pinned), pin, t)
      memory = memory.replace(num_pinned=memory.num_pinned + pin.astype(jnp.int32))
      if not c.temporary:
        return memory
      memory = write(memory, keys, values, jnp.full_like(memory.num_pinned, layout.temporary), ~pin, t)
      region = jnp.arange(memory.written_at.shape[1])[None]
      region = (region >= layout.temporary) & (region < layout.pool)
      return memory.replace(written_at=jnp.where(region & pin[:, None], -1, memory.written_at))

    if c.temporary:  # the previous frame is rewritten every frame: always encode
      return encode_and_write(memory)
    return jax.lax.cond(jnp.any(pin | pixel), encode_and_write, lambda m: m, memory)


def _flat(x: jax.Array) -> jax.Array:
  """[b o h w c] -> [b o (h w) c]."""
  return x.reshape(*x.shape[:2], -1, x.shape[-1])


def _flat_query(x: jax.Array) -> jax.Array:
  """[b h w c] -> [b (h w) c]."""
  return x.reshape(x.shape[0], -1, x.shape[-1])
