"""The family protocol: the few pure functions every model family exposes (DESIGN.md, "The family protocol").

The inference engine, the streaming API and the training unroll only ever call these, so they never branch on
the family. Conventions shared by every family:

- `frame`: float32 [b h w 3], RGB normalised with the ImageNet mean and std (`jaxvos.inference.normalize`),
  h and w multiples of 16.
- `masks`: float32 [b o h w] in [0, 1], one (soft) mask per object slot; `object_valid`: bool [b o]. Object
  slot i holds object id i + 1 of the video's id list; padded slots are invalid and change nothing.
- `logits`: float32 [b o+1 h w], index 0 the background, at the frame's (padded) size; softmax over axis 1
  gives the soft-aggregated probabilities of METHODS.md. Invalid objects get a large negative logit, so they
  never win an argmax and take no probability.
- `new_masks` / `new_object_valid` in `step`: ground truth for objects that first appear at this frame (zeros /
  False elsewhere). Their masks replace the prediction, and the frame is written into memory.
- `Memory` is a frozen `flax.struct.dataclass` of fixed-capacity arrays: a valid `lax.scan` carry whose shapes
  never change with the video length.
"""

from typing import Any, Protocol

import jax

Variables = Any  # {"params": ..., "batch_stats": ...} pytree
Memory = Any


class Family(Protocol):
  name: str    # registry name, e.g. "stcn"
  config: Any  # frozen dataclass; `dataclasses.asdict(config)` is what a checkpoint stores

  def init(self, rng: jax.Array, frame_hw: tuple[int, int] = (64, 64)) -> Variables:
    """Random variables (parameters and frozen BatchNorm statistics)."""

  def init_memory(self, variables: Variables, frame: jax.Array, masks: jax.Array,
                  object_valid: jax.Array) -> Memory:
    """Memory holding the annotated first frame (written permanently)."""

  def step(self, variables: Variables, memory: Memory, frame: jax.Array, new_masks: jax.Array,
           new_object_valid: jax.Array) -> tuple[Memory, jax.Array]:
    """Segments one frame from memory and writes it back by the memory policy; returns (memory, logits)."""
