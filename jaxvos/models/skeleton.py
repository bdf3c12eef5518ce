"""The shared skeleton of every memory-based family, written once: a family chooses its parts.

A family built here is a Flax module (its encoders and decoder) plus a memory type. Per frame:

1. `encode_query`: the module encodes the frame (and may read or refresh its per-frame `cache`);
2. `memory.read`: the memory type turns the query into the decoder's inputs (a read-out, a context ...);
3. `decode`: per-object foreground logits at the frame's size;
4. shared here: objects whose ground truth is given at this frame take it (`merge_new_objects`), the others
   are soft-aggregated (METHODS.md), and the soft probabilities, detached, are what memory is encoded from;
5. `memory.update`: the memory type decides what to store (every k-th frame, a triggered pixel update, a
   running context) and calls `encode()` (the module's `encode_memory`) only under its own `lax.cond`, so a
   frame that is not memorised costs no memory encoding;
6. `end_frame`: the module updates its cache with the frame's probabilities (previous masks, ...).

The module contract (a Linen module in `setup` style; `VOSModule` gives the defaults):

```
initialize(frame, masks)                          touches every parameter (for `init`)
encode_query(frame, cache, info) -> (query dict, cache, aux)     cache is None on the first frame
encode_memory(frame, query, probs, info) -> encoded              probs [b o h w], detached
decode(query, readout, cache, info) -> (logits [b o h w], cache, aux)
end_frame(cache, probs, info) -> cache
```

The memory type contract (a frozen dataclass of static settings with pure methods; `jaxvos.memory.*`):

```
init(encoded, query, info) -> memory                         the annotated first frame
read(memory, query, info) -> (readout dict, memory, aux)
update(memory, encode, query, probs, info) -> (memory, aux)  encode: () -> encoded
```

`info` is a `jaxvos.models.family.FrameInfo` (frame index, objects, training or not). Randomness reaches the
module through Flax's rng streams `dropout` and `sample`, derived from `step`'s `rng` (none in inference).
Adding a family is a module file, a memory file (or an existing memory type) and one registry entry.
"""

import dataclasses
from typing import Any, Callable, Protocol

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from jaxvos import losses
from jaxvos.models.family import FrameInfo, StepOutput
from jaxvos.ops import attention

LossTerms = Callable[[dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]

# `Skeleton.init`'s one-off program on a CPU host (other backends compile it as any program).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


@flax.struct.dataclass
class State:
  """A video's whole state in a skeleton family; every field has a fixed shape over the video."""
  memory: Any              # the memory type's dataclass
  cache: Any               # the module's per-frame cache (a pytree; {} when it keeps none)
  object_valid: jax.Array  # bool [b o] objects that have appeared so far
  num_frames: jax.Array    # int32 [] frames seen: the index of the next frame


class MemoryType(Protocol):
  def init(self, encoded: Any, query: dict[str, jax.Array], info: FrameInfo) -> Any: ...

  def read(self, memory: Any, query: dict[str, jax.Array], info: FrameInfo
           ) -> tuple[dict[str, jax.Array], Any, dict[str, jax.Array]]: ...

  def update(self, memory: Any, encode: Callable[[], Any], query: dict[str, jax.Array], probs: jax.Array,
             info: FrameInfo) -> tuple[Any, dict[str, jax.Array]]: ...


class VOSModule(nn.Module):
  """Defaults of the module contract for families that keep no per-frame cache."""

  def end_frame(self, cache: Any, probs: jax.Array, info: FrameInfo) -> Any:
    del probs, info
    return cache


@dataclasses.dataclass(frozen=True)
class MemoryFamily:
  """A family (`jaxvos.models.family.Family`) from a module and a memory type (see the module docstring).

  `loss_terms(aux, step) -> (value, metrics)`, if given, is added to the segmentation loss (e.g. SpVOS's
  sparsity objective); `aux` is stacked over the clip's frames [t b ...].
  """
  name: str
  config: Any            # the family's frozen config dataclass
  module: nn.Module
  memory: MemoryType
  loss_terms: LossTerms | None = None

  def init(self, rng: jax.Array, frame_hw: tuple[int, int] = (64, 64)):
    """Random variables, as one compiled program (op by op, a ResNet's initialisers take ~200 compilations).

    The program runs once and does next to nothing, so on a CPU XLA compiles it unoptimised
    (`INIT_COMPILER_OPTIONS`): a third of the compile time (stcn-tiny 8.8 -> 2.9 s on the 2-core CPU); values
    may differ from an optimised compile's by an ulp (a run from random weights recorded with an optimised init
    may not repeat to the digit).
    """
    frame = jnp.zeros((1, *frame_hw, 3), jnp.float32)
    masks = jnp.zeros((1, 1, *frame_hw), jnp.float32)
    own_program = jax.default_backend() == "cpu" and not isinstance(rng, jax.core.Tracer)  # not inside a trace
    return jax.jit(lambda rng: self.module.init(rng, frame, masks, method="initialize"),
                   compiler_options=INIT_COMPILER_OPTIONS if own_program else None)(rng)

  def init_memory(self, variables, frame: jax.Array, masks: jax.Array, object_valid: jax.Array) -> State:
    """The state after the annotated frame: masks [b o h w] (ground truth), object_valid [b o]."""
    info = FrameInfo(t=jnp.zeros((), jnp.int32), object_valid=object_valid, new_object_valid=object_valid)
    apply = bind_apply(self.module, variables, None)
    query, cache, _ = apply("encode_query", frame, None, info)
    probs = _memory_probs(attention.aggregate(masks, object_valid), frame.dtype)
    memory = self.memory.init(apply("encode_memory", frame, query, probs, info), query, info)
    cache = apply("end_frame", cache, probs, info)
    return State(memory=memory, cache=cache, object_valid=object_valid, num_frames=jnp.ones((), jnp.int32))

  def step(self, variables, state: State, frame: jax.Array, new_masks: jax.Array, new_object_valid: jax.Array,
           *, rng: jax.Array | None = None) -> tuple[State, StepOutput]:
    """Segments `frame` (see the module docstring); new_masks [b o h w] of the objects given at this frame."""
    info = FrameInfo(t=state.num_frames, object_valid=state.object_valid | new_object_valid,
                     new_object_valid=new_object_valid, training=rng is not None)
    apply = bind_apply(self.module, variables, rng)
    query, cache, query_aux = apply("encode_query", frame, state.cache, info)
    readout, memory, read_aux = self.memory.read(state.memory, query, info)
    object_logits, cache, decode_aux = apply("decode", query, readout, cache, info)
    probs = merge_new_objects(jax.nn.sigmoid(object_logits.astype(jnp.float32)), new_masks, new_object_valid)
    logits = attention.aggregate(probs, info.object_valid)
    probs = _memory_probs(logits, frame.dtype)
    encode = lambda: apply("encode_memory", frame, query, probs, info)  # noqa: E731
    memory, update_aux = self.memory.update(memory, encode, query, probs, info)
    cache = apply("end_frame", cache, probs, info)
    state = State(memory=memory, cache=cache, object_valid=info.object_valid, num_frames=state.num_frames + 1)
    return state, StepOutput(logits=logits, aux={**query_aux, **read_aux, **decode_aux, **update_aux})

  def loss(self, logits: jax.Array, labels: jax.Array, object_valid: jax.Array, aux: dict[str, jax.Array],
           step: jax.Array, spec: losses.LossSpec) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The segmentation loss of `spec`, plus `loss_terms` when the family has them."""
    value, metrics = losses.segmentation_loss(logits, labels, object_valid, step, spec)
    if self.loss_terms is not None:
      extra, extra_metrics = self.loss_terms(aux, step)
      value, metrics = value + extra, {**metrics, **extra_metrics}
    return value, metrics


def bind_apply(module: nn.Module, variables, rng: jax.Array | None) -> Callable[..., Any]:
  """`apply(method, *args)`: the module's method with `variables`, and rng streams when `rng` is given.

  Each call gets its own keys (`fold_in` of a call counter), so two parts never draw the same numbers.
  """
  calls = iter(range(1 << 16))

  def apply(method: str, *args):
    rngs = {}
    if rng is not None:
      key = jax.random.fold_in(rng, next(calls))
      rngs = {"dropout": jax.random.fold_in(key, 0), "sample": jax.random.fold_in(key, 1)}
    return module.apply(variables, *args, method=method, rngs=rngs)

  return apply


def _memory_probs(logits: jax.Array, dtype) -> jax.Array:
  """Detached soft object probabilities [b o h w] of aggregated logits, in the compute dtype: what memory
  is encoded from (the model's own prediction, as in training)."""
  return jax.lax.stop_gradient(jax.nn.softmax(logits, axis=1)[:, 1:]).astype(dtype)


def merge_new_objects(probs: jax.Array, new_masks: jax.Array, new_object_valid: jax.Array) -> jax.Array:
  """Objects given at this frame take their ground truth; the others lose the pixels the new ones cover.

  probs, new_masks [b o h w]; new_object_valid [b o].
  """
  is_new = new_object_valid[:, :, None, None]
  covered = jnp.max(jnp.where(is_new, new_masks, 0.0), axis=1, keepdims=True)
  return jnp.where(is_new, new_masks, probs * (1.0 - covered))
