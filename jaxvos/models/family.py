"""The family protocol: the few pure functions every model family exposes (DESIGN.md, "The family protocol").

The inference engine, the streaming API and the training unroll only ever call these, so they never branch on
the family:

```
init(rng, frame_hw) -> variables
init_memory(variables, frame, masks, object_valid) -> state
step(variables, state, frame, new_masks, new_object_valid, *, rng=None) -> (state, StepOutput(logits, aux))
loss(logits, labels, object_valid, aux, step, spec) -> (scalar, metrics)
```

Conventions shared by every family:

- `frame`: [b h w 3] in the compute dtype (float32, or bfloat16 with `jaxvos.precision`), RGB normalised with
  the ImageNet mean and std (`jaxvos.inference.normalize`), h and w multiples of 16.
- `masks`: float32 [b o h w] in [0, 1], one (soft) mask per object slot; `object_valid`: bool [b o]. Object
  slot i holds object id i + 1 of the video's id list; padded slots are invalid and change nothing.
- `StepOutput.logits`: float32 [b o+1 h w], index 0 the background, at the frame's (padded) size; softmax over
  axis 1 gives the soft-aggregated probabilities of METHODS.md. Invalid objects get a large negative logit, so
  they never win an argmax and take no probability.
- `StepOutput.aux`: a dict of per-frame arrays with a leading batch axis (a trigger decision, memory fill, the
  executed fraction of a gated layer ...). Its keys and shapes are fixed by the family, so `lax.scan` can stack
  it; training hands it to `loss` and logs it, `segment --stats` summarises it per video.
- `new_masks` / `new_object_valid` in `step`: ground truth for objects that first appear at this frame (zeros /
  False elsewhere). Their masks replace the prediction, and the frame is written into memory.
- `rng`: a PRNG key where the family may sample (dropout, Gumbel gates): training passes one per frame,
  inference passes None, which also means "deterministic" (`FrameInfo.training`).
- The state is a frozen `flax.struct.dataclass` of fixed-capacity arrays: a valid `lax.scan` carry whose shapes
  never change with the video length.
- `loss` is the training objective of a clip: logits [t b o+1 h w] of frames 1 .. t, labels [t b h w], the
  clip's objects [b o], the stacked aux [t b ...], the optimizer step and a `jaxvos.losses.LossSpec`; it returns
  the scalar to minimise and float32 scalar metrics that reach the logs and TensorBoard as they are.

Most families are built with `jaxvos.models.skeleton.MemoryFamily`, which implements all four from a Flax
module (encoders, decoder) and a memory type (`jaxvos.memory`).
"""

from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp

Variables = Any  # {"params": ..., "batch_stats": ...} pytree
State = Any


@flax.struct.dataclass
class StepOutput:
  """What `step` returns beside the new state: the frame's logits and the family's per-frame aux arrays."""
  logits: jax.Array                    # float32 [b o+1 h w]
  aux: dict[str, jax.Array]            # each [b ...]


@flax.struct.dataclass
class FrameInfo:
  """What a family's parts know about the frame being processed (passed to encoders, decoders and memories)."""
  t: jax.Array                         # int32 [] index of the frame in the video (0: the first annotated one)
  object_valid: jax.Array              # bool [b o] objects known once this frame's new ones are merged
  new_object_valid: jax.Array          # bool [b o] objects whose ground truth is given at this frame
  training: bool = flax.struct.field(pytree_node=False, default=False)  # an rng was given: sample, drop out

  @property
  def annotated(self) -> jax.Array:
    """bool [b]: some object's ground truth is given at this frame (the first frame always)."""
    return jnp.any(self.new_object_valid, axis=1)


class Family(Protocol):
  name: str    # registry name, e.g. "stcn"
  config: Any  # frozen dataclass; `dataclasses.asdict(config)` is what a checkpoint stores

  def init(self, rng: jax.Array, frame_hw: tuple[int, int] = (64, 64)) -> Variables:
    """Random variables (parameters and frozen BatchNorm statistics)."""

  def init_memory(self, variables: Variables, frame: jax.Array, masks: jax.Array,
                  object_valid: jax.Array) -> State:
    """The state after the annotated first frame (written into memory permanently)."""

  def step(self, variables: Variables, state: State, frame: jax.Array, new_masks: jax.Array,
           new_object_valid: jax.Array, *, rng: jax.Array | None = None) -> tuple[State, StepOutput]:
    """Segments one frame from the state and updates it by the family's memory policy."""

  def loss(self, logits: jax.Array, labels: jax.Array, object_valid: jax.Array, aux: dict[str, jax.Array],
           step: jax.Array, spec: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training loss of a clip and its metrics (see the module docstring)."""
