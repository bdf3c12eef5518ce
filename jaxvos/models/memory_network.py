"""The family protocol for dense space-time memory networks (STM, STCN), written once.

A memory network module (Flax Linen, `setup`-style) exposes three methods:

- `encode_query(frame) -> dict` with at least `key16` [b h w ck]; the other entries are the decoder's inputs;
- `encode_memory(frame, query, masks) -> (keys [b g h w ck], values [b o h w cv])`, g = 1 when memory keys are
  the query keys (STCN) or o when each object has its own (STM);
- `decode(readout [b o h w cv], query) -> [b o H W]` per-object foreground logits at the frame's size.

`MemoryNetwork` turns these into the pure `init_memory` / `step` of `jaxvos.models.family`: read the memory,
decode, merge the ground truth of objects that appear at this frame, soft-aggregate (METHODS.md), then write
the frame into the memory by its policy (`jaxvos.memory.key_value`). Memory values are encoded from the
detached soft probabilities, as in training the model is fed its own predictions.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.memory import key_value
from jaxvos.memory.key_value import KeyValueMemory, MemoryConfig
from jaxvos.ops import attention


@dataclasses.dataclass(frozen=True)
class MemoryNetwork:
  """A family built from a memory network module, an affinity and a memory policy (see module docstring)."""
  name: str
  config: Any                                          # the family's frozen config dataclass
  module: nn.Module
  affinity: Callable[[jax.Array, jax.Array], jax.Array]  # (memory keys [b g m ck], query keys [b n ck])
  memory_config: MemoryConfig
  top_k: int | None = None

  def init(self, rng: jax.Array, frame_hw: tuple[int, int] = (64, 64)):
    """Random variables, as one compiled program (op by op, a ResNet's initialisers take ~200 compilations)."""
    frame = jnp.zeros((1, *frame_hw, 3), jnp.float32)
    masks = jnp.zeros((1, 1, *frame_hw), jnp.float32)
    return jax.jit(lambda rng: self.module.init(rng, frame, masks, method="initialize"))(rng)

  def init_memory(self, variables, frame: jax.Array, masks: jax.Array, object_valid: jax.Array
                  ) -> KeyValueMemory:
    """Memory holding the annotated frame (pinned); masks [b o h w], object_valid [b o]."""
    query = self.module.apply(variables, frame, method="encode_query")
    logits = attention.aggregate(masks, object_valid)
    keys, values = self._encode_memory(variables, frame, query, logits)
    memory = KeyValueMemory.empty(
        self.memory_config, batch=frame.shape[0], key_groups=keys.shape[1], objects=masks.shape[1],
        positions=keys.shape[2], key_dim=keys.shape[-1], value_dim=values.shape[-1], dtype=keys.dtype)
    memory = memory.replace(object_valid=object_valid)
    slot, pin, write = key_value.plan_write(memory, self.memory_config, jnp.ones(frame.shape[0], bool))
    memory = key_value.write(memory, self.memory_config, keys, values, slot, pin, write)
    return memory.replace(num_frames=memory.num_frames + 1)

  def step(self, variables, memory: KeyValueMemory, frame: jax.Array, new_masks: jax.Array,
           new_object_valid: jax.Array) -> tuple[KeyValueMemory, jax.Array]:
    """Segments `frame` from memory, merges new objects' masks, writes by the policy; -> (memory, logits)."""
    query = self.module.apply(variables, frame, method="encode_query")
    b, h16, w16, _ = query["key16"].shape
    affinity = self.affinity(memory.flat_keys(), query["key16"].reshape(b, h16 * w16, -1))
    readout = attention.read(affinity, memory.flat_values(), memory.valid_positions(), self.top_k)
    readout = readout.reshape(b, readout.shape[1], h16, w16, readout.shape[-1])
    probs = jax.nn.sigmoid(self.module.apply(variables, readout, query, method="decode"))
    probs = merge_new_objects(probs, new_masks, new_object_valid)
    object_valid = memory.object_valid | new_object_valid
    logits = attention.aggregate(probs, object_valid)
    memory = memory.replace(object_valid=object_valid)
    slot, pin, write = key_value.plan_write(memory, self.memory_config, jnp.any(new_object_valid, axis=1))

    def encode_and_write(memory):
      keys, values = self._encode_memory(variables, frame, query, logits)
      return key_value.write(memory, self.memory_config, keys, values, slot, pin, write)

    memory = jax.lax.cond(jnp.any(write), encode_and_write, lambda memory: memory, memory)
    return memory.replace(num_frames=memory.num_frames + 1), logits

  def _encode_memory(self, variables, frame, query, logits):
    """Keys [b g m ck] and values [b o m cv] of a frame from its (detached) soft object probabilities.

    The probabilities (float32, from the aggregation) are cast to the frame's dtype: the value encoder computes
    in the compute dtype like the rest of the network.
    """
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits, axis=1)[:, 1:]).astype(frame.dtype)
    keys, values = self.module.apply(variables, frame, query, probs, method="encode_memory")
    flat = lambda x: x.reshape(*x.shape[:2], -1, x.shape[-1])  # noqa: E731
    return flat(keys), flat(values)


def merge_new_objects(probs: jax.Array, new_masks: jax.Array, new_object_valid: jax.Array) -> jax.Array:
  """Objects given at this frame take their ground truth; the others lose the pixels the new ones cover.

  probs, new_masks [b o h w]; new_object_valid [b o].
  """
  is_new = new_object_valid[:, :, None, None]
  covered = jnp.max(jnp.where(is_new, new_masks, 0.0), axis=1, keepdims=True)
  return jnp.where(is_new, new_masks, probs * (1.0 - covered))
