"""The pure train step: unroll a clip with the family protocol, score every frame after the first, update.

`make_train_step(family, optimizer, ...)` returns `train_step(state, batch) -> (state, metrics)`, a pure function
to compile once with `jax.jit` and shardings (`jaxvos.training.sharding`). For every clip of the batch:

1. `family.init_memory` on frame 0 with its ground-truth masks;
2. `family.step` on frames 1 .. t-1 under `lax.scan`, the memory as the carry; the family writes each frame into
   memory from its own detached soft prediction (STM/STCN practice; `jaxvos.models.skeleton`), so the clip's
   later frames never see their ground truth, except an object that enters late: with the batch's optional
   `first_frame` (int32 [b o], e.g. pseudo-videos with `annotate_late_entries`) object k is given to the model
   at frame `first_frame[k]` as inference gives it (`new_masks` / `new_object_valid`), and is background to the
   model before;
3. the family's `loss` on frames 1 .. t-1 (by default cross-entropy or STCN's bootstrapped cross-entropy over
   {background, objects}, averaged over frames and videos; a family may add terms from the steps' aux outputs);
   gradients of the parameters only (BatchNorm is frozen).

Options: `jax.checkpoint` over the per-frame step (activations of one frame at a time are kept for the backward
pass: memory grows with the clip length only through the memory itself), and a bfloat16 compute dtype with float32
parameters (parameters, BatchNorm statistics and frames are cast inside the step, gradients come back float32;
affinities, soft aggregation, masks and the loss stay float32: `jaxvos.precision`).
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxvos.inference.frames import normalize, one_hot_slots
from jaxvos.losses import LossSpec
from jaxvos.models.family import Family, StepOutput
from jaxvos.precision import cast_floats
from jaxvos.training.state import TrainState

Batch = dict[str, jax.Array]  # frames uint8 [b t h w 3], labels uint8 [b t h w], object_valid bool [b o],
#                               optionally first_frame int32 [b o]


def unroll_clip(family: Family, variables: Any, frames: jax.Array, labels: jax.Array, object_valid: jax.Array,
                *, first_frame: jax.Array | None = None, remat: bool = True,
                rng: jax.Array | None = None) -> StepOutput:
  """The step outputs of frames 1 .. t-1 of clips `frames` [b t h w 3] (normalised), stacked over frames:
  logits float [t-1 b o+1 h w] and each aux array [t-1 b ...].

  `labels` uint8 [b t h w]: without `first_frame` only frame 0 is read (its masks initialise the memory). With
  `first_frame` int32 [b o], object k's masks are read at frame `first_frame[b, k]` only, where it is given to the
  model (at 0 by `init_memory`, later by `step`'s `new_masks`). With `remat`, the per-frame step is
  rematerialised in the backward pass (`jax.checkpoint`). With `rng`, frame i's step gets `fold_in(rng, i)`
  (training: dropout, sampled gates); without, every step is deterministic.
  """
  num_objects = object_valid.shape[1]
  if first_frame is None:
    first_frame = jnp.zeros(object_valid.shape, jnp.int32)

  def given_at(index, frame_labels):
    """The masks float [b o h w] and validity bool [b o] of the objects given at frame `index`."""
    valid = object_valid & (first_frame == index)
    return one_hot_slots(frame_labels, num_objects) * valid[:, :, None, None], valid

  state = family.init_memory(variables, frames[:, 0], *given_at(0, labels[:, 0]))

  def frame_step(state, inputs):
    frame, frame_labels, index = inputs
    frame_rng = None if rng is None else jax.random.fold_in(rng, index)
    return family.step(variables, state, frame, *given_at(index, frame_labels), rng=frame_rng)

  if remat:
    frame_step = jax.checkpoint(frame_step, prevent_cse=False)
  later = (jnp.moveaxis(frames[:, 1:], 1, 0), jnp.moveaxis(labels[:, 1:], 1, 0), jnp.arange(1, frames.shape[1]))
  _, outputs = jax.lax.scan(frame_step, state, later)
  return outputs


def make_train_step(family: Family, optimizer: optax.GradientTransformation, *, loss: LossSpec = LossSpec(),
                    remat: bool = True, compute_dtype: jnp.dtype = jnp.float32,
                    learning_rate: optax.Schedule | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """A pure `train_step(state, batch) -> (state, metrics)` (see the module docstring).

  Args:
    family: the model family (its `init_memory` and `step` are unrolled over the clip).
    optimizer: from `jaxvos.training.optimizer.make_optimizer`.
    loss: the `LossSpec` handed to `family.loss` (cross-entropy or bootstrapped cross-entropy with its
      schedule over batch steps).
    remat: `jax.checkpoint` over the per-frame step.
    compute_dtype: float32, or bfloat16 for the network's compute (parameters stay float32).
    learning_rate: the schedule, only to report the current rate in the metrics.

  Metrics (float32 scalars, means over the global batch): `loss` (what is minimised), every metric of the
  family's `loss` (the default: `cross_entropy`, `bootstrap_fraction`, `iou`; a family adds its own, e.g. a
  sparsity term), `grad_norm` and, with `learning_rate`, `learning_rate`.
  """
  def loss_fn(params, state: TrainState, batch: Batch):
    variables = cast_floats({"params": params, "batch_stats": state.batch_stats}, compute_dtype)
    frames = normalize(batch["frames"]).astype(compute_dtype)
    rng = jax.random.fold_in(state.rng, state.step)  # the only randomness of a step
    outputs = unroll_clip(family, variables, frames, batch["labels"], batch["object_valid"],
                          first_frame=batch.get("first_frame"), remat=remat, rng=rng)
    labels = jnp.moveaxis(batch["labels"][:, 1:], 1, 0)
    value, metrics = family.loss(outputs.logits, labels, batch["object_valid"], outputs.aux, state.step, loss)
    return value, jax.lax.stop_gradient(metrics)

  def train_step(state: TrainState, batch: Batch):
    (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": value, **aux, "grad_norm": optax.tree.norm(grads)}
    if learning_rate is not None:
      metrics["learning_rate"] = jnp.asarray(learning_rate(state.step), jnp.float32)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step
