"""GAM's global context: a fixed C_N x C_M matrix per object, the running mean of every memorised frame's context.

"Real-time High-Resolution Video Object Segmentation" (Wang, Chen, Yang, Wu), section 3.2. Per memorised frame T,
with keys K_T [n ck] (ck = C_N, the frame encoder's 3x3 key head) and an object's values V_T [n cv] (cv = C_M,
the mask encoder fused with the frame features):

    A_T = w(K_T)^T V_T                        [ck cv]   eq. (1), the frame's context
    G_T = G_{T-1} + (A_T - G_{T-1}) / T       [ck cv]   eq. (2), so G_1 = A_1 and G_T = mean(A_1 .. A_T)
    D   = q(L_F) G_{T-1}                      [n cv]    eq. (3), the read of the current frame (key L_F)

T counts the frames memorised *for that object*: an object that first appears at frame k starts its own G at
k (count 0 -> 1), whatever the others hold. Nothing here depends on the video length or the frame size: the
state is [b o ck cv] + [b o ck] float32 + a count, 256 KiB per object at C_N 128, C_M 512.

The paper writes raw products. `normalization` picks the key weightings w (memory) and q (query):

- `efficient` (default): the efficient-attention convention of the Global Context module GAM derives from
  (Li, Shen, Shan 2020): w = softmax of each key channel over positions (so every row of A_T is a convex
  combination of value vectors, independent of n) and q = softmax of each query key over channels (so D is a
  convex combination of the rows of G). A context learnt on 384x384 crops reads the same at 2K.
- `raw`: w = K, q = L, the paper's formula; A grows with n (a 2K frame has 25x the positions of a 384 crop).
- `mean`: w = K / n, q = L; A is the mean over positions, independent of n.
- `livos`: w and q softmax over channels (LiVOS, CVPR 2025); A sums over positions, and the read is divided by
  `q . z`, z = the running mean of sum_n w(k_n) [ck] (kept in `normalizer`), which cancels the n.

Contexts are accumulated and kept in float32 whatever the compute dtype (a bfloat16 running mean stalls once
1/T falls below its 8-bit mantissa); the read-out comes back in the query's dtype.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

NORMALIZATIONS = ("efficient", "raw", "mean", "livos")
_PRECISION = jax.lax.Precision.HIGHEST
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class ContextConfig:
  """Static settings of the global context: the key normalisation and the update interval."""
  normalization: str = "efficient"  # one of NORMALIZATIONS (module docstring)
  every: int = 1                    # memorise every k-th frame (annotated frames always)

  def __post_init__(self):
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
    if self.every < 1:
      raise ValueError(f"every must be >= 1, got {self.every}")


@flax.struct.dataclass
class GlobalContext:
  """Per-object running means over the memorised frames; zero (count 0) for objects not yet seen."""
  context: jax.Array     # float32 [b o ck cv]  G
  normalizer: jax.Array  # float32 [b o ck]     running mean of sum_n w(k_n) (all ones under `efficient`)
  count: jax.Array       # int32 [b o]          frames averaged into each object's G


def memory_weights(keys: jax.Array, normalization: str) -> jax.Array:
  """w(K): keys [b n ck] -> float32 [b n ck], the weighting of a memorised frame's keys."""
  keys = keys.astype(jnp.float32)
  if normalization == "efficient":
    return jax.nn.softmax(keys, axis=1)
  if normalization == "mean":
    return keys / keys.shape[1]
  if normalization == "livos":
    return jax.nn.softmax(keys, axis=-1)
  return keys


def query_weights(keys: jax.Array, normalization: str) -> jax.Array:
  """q(L): query keys [b n ck] -> float32 [b n ck]."""
  keys = keys.astype(jnp.float32)
  if normalization in ("efficient", "livos"):
    return jax.nn.softmax(keys, axis=-1)
  return keys


def frame_context(keys: jax.Array, values: jax.Array, normalization: str) -> tuple[jax.Array, jax.Array]:
  """Eq. (1): keys [b n ck], values [b o n cv] -> (A float32 [b o ck cv], sum_n w(k_n) float32 [b ck])."""
  weights = memory_weights(keys, normalization)
  context = jnp.einsum("bnk,bonv->bokv", weights.astype(values.dtype), values, precision=_PRECISION,
                       preferred_element_type=jnp.float32)
  return context, jnp.sum(weights, axis=1)


def read_context(memory: GlobalContext, query_keys: jax.Array, normalization: str) -> jax.Array:
  """Eq. (3): D = q(L_F) G for every object; query_keys [b n ck] -> float32 [b o n cv]."""
  weights = query_weights(query_keys, normalization)
  readout = jnp.einsum("bnk,bokv->bonv", weights, memory.context, precision=_PRECISION,
                       preferred_element_type=jnp.float32)
  if normalization == "livos":
    norm = jnp.einsum("bnk,bok->bon", weights, memory.normalizer, precision=_PRECISION)
    readout = readout / (norm[..., None] + _EPS)
  return readout


def running_mean(memory: GlobalContext, context: jax.Array, key_sums: jax.Array, write: jax.Array,
                 restart: jax.Array) -> GlobalContext:
  """Eq. (2) where `write` [b o]: G += (A - G) / T with T the object's new count; `restart` [b o] objects
  (first seen at this frame) drop what they held and start at count 0, so their G becomes A.

  context [b o ck cv] float32 (A), key_sums [b ck] float32.
  """
  count = jnp.where(restart, 0, memory.count)
  new_count = count + write.astype(jnp.int32)
  rate = jnp.where(write, 1.0 / jnp.maximum(new_count, 1), 0.0).astype(jnp.float32)  # [b o]
  old = jnp.where(restart[..., None, None], 0.0, memory.context)
  old_norm = jnp.where(restart[..., None], 0.0, memory.normalizer)
  return GlobalContext(context=old + rate[..., None, None] * (context - old),
                       normalizer=old_norm + rate[..., None] * (key_sums[:, None] - old_norm),
                       count=new_count)


@dataclasses.dataclass(frozen=True)
class GlobalContextMemoryType:
  """The skeleton's memory type (`jaxvos.models.skeleton`) for GAM.

  `encode()` returns `{"keys": [b h w ck], "values": [b o h w cv]}`; the query holds `key16` [b h w ck]. The
  read-out is `{"readout": [b o h w cv]}` in the query's dtype. A frame is memorised when `t % every == 0` or
  some object's ground truth is given at it; every valid object's G then takes the frame's A. Aux:
  `context_norm` (the RMS entry of the valid objects' G, mean over objects) [b] and `context_update` (1.0 when
  the frame was memorised) [b].
  """
  config: ContextConfig = ContextConfig()

  def init(self, encoded, query, info) -> GlobalContext:
    del query
    context, key_sums = self._frame_context(encoded)
    b, o, ck, cv = context.shape
    empty = GlobalContext(context=jnp.zeros((b, o, ck, cv), jnp.float32),
                          normalizer=jnp.zeros((b, o, ck), jnp.float32), count=jnp.zeros((b, o), jnp.int32))
    return running_mean(empty, context, key_sums, info.object_valid, info.object_valid)

  def read(self, memory: GlobalContext, query, info):
    b, h, w, _ = query["key16"].shape
    readout = read_context(memory, query["key16"].reshape(b, h * w, -1), self.config.normalization)
    readout = readout.reshape(b, readout.shape[1], h, w, readout.shape[-1]).astype(query["key16"].dtype)
    return {"readout": readout}, memory, {"context_norm": context_norm(memory, info.object_valid)}

  def update(self, memory: GlobalContext, encode, query, probs, info):
    del query, probs
    do = (info.t % self.config.every == 0) | info.annotated  # [b]
    write = do[:, None] & info.object_valid
    restart = info.new_object_valid

    def encode_and_update(memory):
      return running_mean(memory, *self._frame_context(encode()), write, restart)

    if self.config.every == 1:  # every frame is memorised: no branch
      memory = encode_and_update(memory)
    else:
      memory = jax.lax.cond(jnp.any(do), encode_and_update, lambda memory: memory, memory)
    return memory, {"context_update": do.astype(jnp.float32)}

  def _frame_context(self, encoded) -> tuple[jax.Array, jax.Array]:
    keys, values = encoded["keys"], encoded["values"]
    b, o, cv = keys.shape[0], values.shape[1], values.shape[-1]
    return frame_context(keys.reshape(b, -1, keys.shape[-1]), values.reshape(b, o, -1, cv),
                         self.config.normalization)


def context_norm(memory: GlobalContext, object_valid: jax.Array) -> jax.Array:
  """float32 [b]: the root-mean-square entry of each valid object's G, averaged over the valid objects."""
  rms = jnp.sqrt(jnp.mean(jnp.square(memory.context), axis=(-2, -1)))  # [b o]
  valid = object_valid.astype(jnp.float32)
  return jnp.sum(rms * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
