"""Memory read-out maths: affinities, masked softmax over valid memory, top-k read, soft aggregation.

Shapes follow the axis alphabet of `jaxvos.types`: queries [b n ck], memory keys [b g m ck] where `g` is 1 when
every object shares the memory keys (STCN) or `o` when keys are per object (STM), memory values [b o m cv],
affinities [b g n m]. Invalid memory positions (empty slots) are excluded with a validity mask [b m], or [b o m]
when objects may attend to different positions (an object reads only memory written since it appeared).

Mixed precision: keys and values may be bfloat16 (the network's compute dtype). Affinities are accumulated and
returned in float32 and the softmax runs in float32 (bfloat16 keeps 8 bits of mantissa: an affinity of ~100 would
round to the nearest 0.5, enough to reorder the top-k); read-outs come back in the values' dtype, so the decoder
that consumes them stays in the compute dtype.

Large frames: the affinity of every query position against every memory position grows with the square of the
frame's area (75 GB for STCN's memory at 4K). `read_memory` computes it a chunk of query positions at a time, so
only a block of it (`query_chunk_bytes()`: 256 MiB, 16 MiB on a CPU) ever exists; each query position's read-out
is unchanged (its softmax is over memory, within its own row).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from jaxvos.ops.sparse_conv import DEFAULT_BUCKETS, bucket_slots

_PRECISION = jax.lax.Precision.HIGHEST
# Logit for what must take no probability: exp(_EXCLUDED - max) is exactly 0 in float32, with finite gradients.
EXCLUDED = -1e4
# Largest affinity block (bytes, float32) that `read_memory` computes at once; its softmax needs about three.
# On a CPU a smaller block, one that stays in cache: the softmax's passes over a block are memory-bound there
# (SwiftNet's read at 480p, 2 objects, the 2-core CPU: 127 ms in 256 MiB blocks, 52 ms in 16 MiB ones).
QUERY_CHUNK_BYTES = 256 * 2**20
CPU_QUERY_CHUNK_BYTES = 16 * 2**20


def query_chunk_bytes() -> int:
  """`read_memory`'s default block size on the default backend."""
  return CPU_QUERY_CHUNK_BYTES if jax.default_backend() == "cpu" else QUERY_CHUNK_BYTES


def dot_affinity(memory_keys: jax.Array, query_keys: jax.Array) -> jax.Array:
  """STM: `k_m . k_q / sqrt(ck)`. memory_keys [b g m ck], query_keys [b n ck] -> [b g n m]."""
  scale = memory_keys.shape[-1] ** -0.5
  return _dots(query_keys, memory_keys) * scale


def l2_affinity(memory_keys: jax.Array, query_keys: jax.Array) -> jax.Array:
  """STCN: negative squared L2 distance `(2 k_m . k_q - |k_m|^2) / sqrt(ck)`; -> [b g n m].

  `-|k_m - k_q|^2 = 2 k_m.k_q - |k_m|^2 - |k_q|^2`; the last term is constant over memory and cancels in the
  softmax, so it is left out as in STCN.
  """
  scale = memory_keys.shape[-1] ** -0.5
  squares = jnp.sum(jnp.square(memory_keys.astype(jnp.float32)), axis=-1)[:, :, None, :]
  return (2.0 * _dots(query_keys, memory_keys) - squares) * scale


def _dots(query_keys: jax.Array, memory_keys: jax.Array) -> jax.Array:
  """`k_q . k_m` [b g n m], accumulated and returned in float32 whatever the keys' dtype."""
  return jnp.einsum("bnc,bgmc->bgnm", query_keys, memory_keys, precision=_PRECISION,
                    preferred_element_type=jnp.float32)


def masked_softmax(logits: jax.Array, valid: jax.Array, axis: int = -1) -> jax.Array:
  """Softmax over `axis` of the positions where `valid`; invalid positions get exactly 0."""
  logits = jnp.where(valid, logits, EXCLUDED)
  return jax.nn.softmax(logits, axis=axis) * valid


def read(affinity: jax.Array, memory_values: jax.Array, valid: jax.Array, top_k: int | None = None
         ) -> jax.Array:
  """Read-out of memory values for every query position: [b g n m], [b o m cv], [b m] -> [b o n cv].

  With `top_k`, only the k highest affinities of each query position take part (STCN at test time), and the
  values are gathered rather than multiplied by a mostly-zero matrix. A per-object `valid` [b o m] gives each
  object its own softmax (and top-k) over a shared affinity.
  """
  valid = valid[:, None, None, :] if valid.ndim == 2 else valid[:, :, None, :]
  if top_k is None or top_k >= affinity.shape[-1]:
    return _weighted_sum(masked_softmax(affinity, valid), memory_values, "bomc")
  masked = jnp.where(valid, affinity, EXCLUDED)
  top_logits, top_index = jax.lax.top_k(masked, top_k)  # [b g n k]
  weights = masked_softmax(top_logits, top_logits > EXCLUDED / 2)
  b, g, n, k = top_index.shape
  gathered = jnp.take_along_axis(memory_values, top_index.reshape(b, g, n * k, 1), axis=2)  # [b o (n k) cv]
  gathered = gathered.reshape(*gathered.shape[:2], n, k, gathered.shape[-1])
  return _weighted_sum(weights, gathered, "bonmc")


def read_memory(affinity_fn: Callable[[jax.Array, jax.Array], jax.Array], memory_keys: jax.Array,
                query_keys: jax.Array, memory_values: jax.Array, valid: jax.Array, top_k: int | None = None,
                *, chunk_bytes: int | None = None) -> jax.Array:
  """`read(affinity_fn(memory_keys, query_keys), memory_values, valid, top_k)`, a chunk of queries at a time.

  memory_keys [b g m ck], query_keys [b n ck], memory_values [b o m cv], valid [b m] or [b o m] -> [b o n cv].
  When the whole affinity [b g n m] (float32; [b o n m] with per-object validity) fits in `chunk_bytes` it is
  computed at once, as `read` does; otherwise the query positions are split into equal chunks (the last padded)
  that `lax.map` reads one after the other. `chunk_bytes` defaults to `query_chunk_bytes()`.
  """
  chunk_bytes = chunk_bytes or query_chunk_bytes()
  b, g, m, _ = memory_keys.shape
  n = query_keys.shape[1]
  groups = g if valid.ndim == 2 else max(g, valid.shape[1])
  rows = max(1, chunk_bytes // (4 * b * groups * m))  # query positions per chunk
  if rows >= n:
    return read(affinity_fn(memory_keys, query_keys), memory_values, valid, top_k)
  num_chunks = -(-n // rows)
  rows = -(-n // num_chunks)  # equal chunks, the padding spread thin
  padded = jnp.pad(query_keys, ((0, 0), (0, num_chunks * rows - n), (0, 0)))
  chunks = jnp.moveaxis(padded.reshape(b, num_chunks, rows, padded.shape[-1]), 1, 0)  # [chunks b rows ck]

  def read_chunk(chunk_keys: jax.Array) -> jax.Array:  # [b rows ck] -> [b o rows cv]
    return read(affinity_fn(memory_keys, chunk_keys), memory_values, valid, top_k)

  out = jax.lax.map(read_chunk, chunks)  # [chunks b o rows cv]
  out = jnp.moveaxis(out, 0, 2)
  return out.reshape(*out.shape[:2], num_chunks * rows, out.shape[-1])[:, :, :n]


def read_rows(read: Callable[[jax.Array], jax.Array], query_keys: jax.Array, changed: jax.Array,
              previous: jax.Array, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> jax.Array:
  """`read(query_keys)` [b o n cv] recomputed only at the query positions where `changed` [b n]; the others keep
  `previous` [b o n cv] (their read-out from the same keys and memory).

  The most changed positions of any video pick one of a few static row counts (`sparse_conv.bucket_slots` of n:
  none, fractions of n, all), so `lax.switch` runs one of a bounded number of programs; a bucket reads its rows
  gathered (the changed ones first, `lax.top_k`), the last one every row; only the changed rows are written
  back. A row's read-out does not depend on the other rows read with it, up to the float rounding of a different
  matrix shape.
  """
  n = query_keys.shape[1]
  slot_counts = bucket_slots(n, buckets)

  def gathered(slots: int) -> jax.Array:
    activity = changed.astype(jnp.float32)  # (ONNX Runtime has no Where on booleans, which a gather of them takes)
    _, index = jax.lax.top_k(activity, slots)  # [b slots]
    rows = read(jnp.take_along_axis(query_keys, index[..., None], axis=1, mode="clip")).astype(previous.dtype)
    picked = jnp.take_along_axis(activity, index, axis=1, mode="clip") > 0
    target = jnp.where(picked, index, n)  # n: out of bounds, dropped
    return jax.vmap(lambda p, t, r: p.at[:, t].set(r, mode="drop"))(previous, target, rows)

  branches = [lambda: previous] + [lambda s=s: gathered(s) for s in slot_counts[1:-1]]
  branches.append(lambda: jnp.where(changed[:, None, :, None], read(query_keys).astype(previous.dtype), previous))
  return jax.lax.switch(_bucket(changed, slot_counts), branches)


def rows_read(changed: jax.Array, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> jax.Array:
  """The fraction of the query positions `read_rows` reads for `changed` [b n]: its bucket's rows."""
  slot_counts = bucket_slots(changed.shape[1], buckets)
  return jnp.asarray(slot_counts, jnp.float32)[_bucket(changed, slot_counts)] / changed.shape[1]


def _bucket(changed: jax.Array, slot_counts: tuple[int, ...]) -> jax.Array:
  """The index of the smallest slot count that holds every video's changed rows."""
  return jnp.searchsorted(jnp.asarray(slot_counts), jnp.max(jnp.sum(changed, axis=1)), side="left")


def _weighted_sum(weights: jax.Array, values: jax.Array, values_spec: str) -> jax.Array:
  """Sums values over `m` with weights [b g n m], g = 1 (shared by all objects) or o (per object).

  The weights are cast to the values' dtype, the sum accumulates in float32 and returns in the values' dtype.
  """
  weights_spec = "bnm" if weights.shape[1] == 1 else "bonm"
  weights = (weights[:, 0] if weights.shape[1] == 1 else weights).astype(values.dtype)
  return jnp.einsum(f"{weights_spec},{values_spec}->bonc", weights, values, precision=_PRECISION,
                    preferred_element_type=jnp.float32).astype(values.dtype)


def aggregate(probs: jax.Array, object_valid: jax.Array, axis: int = 1) -> jax.Array:
  """Soft aggregation (STM): per-object foreground probabilities -> logits over {background, objects}.

  probs [b o ...] in [0, 1]; object_valid [b o]. Background is `prod(1 - p_o)` over valid objects, every
  probability is clamped to [1e-7, 1 - 1e-7], and the logit is `log(p / (1 - p))`, so that a softmax over the
  returned [b o+1 ...] gives STM's normalised odds. Invalid objects get `EXCLUDED` and take no probability.
  Computed in float32 whatever the compute dtype: in bfloat16, 1 - 1e-7 rounds to 1 and the logit to infinity.
  """
  valid = object_valid.reshape(object_valid.shape + (1,) * (probs.ndim - 2))
  probs = jnp.where(valid, probs.astype(jnp.float32), 0.0)
  background = jnp.prod(1.0 - probs, axis=axis, keepdims=True)
  full = jnp.clip(jnp.concatenate([background, probs], axis=axis), 1e-7, 1.0 - 1e-7)
  logits = jnp.log(full) - jnp.log1p(-full)
  keep = jnp.concatenate([jnp.ones_like(valid[:, :1]), valid], axis=1)
  return jnp.where(keep, logits, EXCLUDED)
