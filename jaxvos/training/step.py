"""The pure train step: unroll a clip with the family protocol, score every frame after the first, update.

`make_train_step(family, optimizer, ...)` returns `train_step(state, batch) -> (state, metrics)`, a pure function
to compile once with `jax.jit` and shardings (`jaxvos.training.sharding`). For every clip of the batch:

1. `family.init_memory` on frame 0 with its ground-truth masks;
2. `family.step` on frames 1 .. t-1 under `lax.scan`, the memory as the carry; the family writes each frame into
   memory from its own detached soft prediction (STM/STCN practice; `jaxvos.models.memory_network`), so the clip's
   later frames never see their ground truth;
3. the loss (cross-entropy or STCN's bootstrapped cross-entropy over {background, objects}) on frames 1 .. t-1,
   averaged over frames and videos; gradients of the parameters only (BatchNorm is frozen).

Options: `jax.checkpoint` over the per-frame step (activations of one frame at a time are kept for the backward
pass: memory grows with the clip length only through the memory itself), and a bfloat16 compute dtype with float32
parameters (parameters, BatchNorm statistics and frames are cast inside the step, gradients come back float32;
affinities, soft aggregation, masks and the loss stay float32: `jaxvos.precision`).
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxvos import losses
from jaxvos.inference.frames import normalize, one_hot_slots
from jaxvos.models.family import Family
from jaxvos.precision import cast_floats
from jaxvos.training.state import TrainState

Batch = dict[str, jax.Array]  # frames uint8 [b t h w 3], labels uint8 [b t h w], object_valid bool [b o]


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """Plain cross-entropy, or STCN's bootstrapped cross-entropy with its schedule (steps count batches)."""
  bootstrapped: bool = False
  start_step: int = 20_000      # plain cross-entropy up to here (STCN: 20k)
  end_step: int = 70_000        # hardest `final_fraction` of the pixels from here on (STCN: 70k)
  final_fraction: float = 0.15


def unroll_clip(family: Family, variables: Any, frames: jax.Array, labels: jax.Array, object_valid: jax.Array,
                *, remat: bool = True, rng: jax.Array | None = None) -> jax.Array:
  """Logits float [t-1 b o+1 h w] of frames 1 .. t-1 of clips `frames` [b t h w 3] (normalised).

  `labels` uint8 [b t h w]: only frame 0 is read (its masks initialise the memory). With `remat`, the per-frame
  step is rematerialised in the backward pass (`jax.checkpoint`). A family that declares `stochastic = True`
  (e.g. sampled gates) gets `rng=` a key per frame folded from `rng`; the others never see it.
  """
  num_objects = object_valid.shape[1]
  first_masks = one_hot_slots(labels[:, 0], num_objects)
  memory = family.init_memory(variables, frames[:, 0], first_masks, object_valid)
  no_masks, no_objects = jnp.zeros_like(first_masks), jnp.zeros_like(object_valid)
  stochastic = getattr(family, "stochastic", False) and rng is not None

  def frame_step(memory, inputs):
    frame, index = inputs
    extra = {"rng": jax.random.fold_in(rng, index)} if stochastic else {}
    return family.step(variables, memory, frame, no_masks, no_objects, **extra)

  if remat:
    frame_step = jax.checkpoint(frame_step, prevent_cse=False)
  later = jnp.moveaxis(frames[:, 1:], 1, 0)
  _, logits = jax.lax.scan(frame_step, memory, (later, jnp.arange(1, frames.shape[1])))
  return logits


def clip_loss(logits: jax.Array, labels: jax.Array, object_valid: jax.Array, fraction: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """(bootstrapped cross-entropy, plain cross-entropy), means over frames and videos, of logits [t b o+1 h w]
  against labels [t b h w]; objects [b o]. At `fraction` 1 both are equal."""
  t, b = logits.shape[:2]
  flat = lambda x: x.reshape(t * b, *x.shape[2:])  # noqa: E731
  valid = jnp.broadcast_to(object_valid, (t, *object_valid.shape)).reshape(t * b, -1)
  pixel_losses = losses.pixel_cross_entropy(flat(logits), flat(labels), valid)
  return losses.hardest_mean(pixel_losses, fraction), jnp.mean(pixel_losses)


def mean_iou(logits: jax.Array, labels: jax.Array, object_valid: jax.Array) -> jax.Array:
  """Mean IoU of the argmax masks over valid objects and frames (a training-progress metric, no gradient)."""
  predicted = jnp.argmax(logits, axis=2)  # [t b h w]
  ids = jnp.arange(1, object_valid.shape[1] + 1)[:, None, None]
  pred, gt = predicted[:, :, None] == ids, labels[:, :, None] == ids  # [t b o h w]
  inter = jnp.sum(pred & gt, axis=(-2, -1))
  union = jnp.sum(pred | gt, axis=(-2, -1))
  iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)
  weights = jnp.broadcast_to(object_valid, iou.shape)
  return jnp.sum(iou * weights) / jnp.maximum(jnp.sum(weights), 1)


def make_train_step(family: Family, optimizer: optax.GradientTransformation, *, loss: LossSpec = LossSpec(),
                    remat: bool = True, compute_dtype: jnp.dtype = jnp.float32,
                    learning_rate: optax.Schedule | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """A pure `train_step(state, batch) -> (state, metrics)` (see the module docstring).

  Args:
    family: the model family (its `init_memory` and `step` are unrolled over the clip).
    optimizer: from `jaxvos.training.optimizer.make_optimizer`.
    loss: cross-entropy or bootstrapped cross-entropy with its schedule over batch steps.
    remat: `jax.checkpoint` over the per-frame step.
    compute_dtype: float32, or bfloat16 for the network's compute (parameters stay float32).
    learning_rate: the schedule, only to report the current rate in the metrics.

  Metrics (float32 scalars, means over the global batch): `loss` (what is minimised), `cross_entropy` (the plain
  cross-entropy, comparable across the bootstrapping schedule), `iou` (argmax masks), `grad_norm`,
  `bootstrap_fraction` and, with `learning_rate`, `learning_rate`.
  """
  def loss_fn(params, state: TrainState, batch: Batch, fraction: jax.Array):
    variables = cast_floats({"params": params, "batch_stats": state.batch_stats}, compute_dtype)
    frames = normalize(batch["frames"]).astype(compute_dtype)
    rng = jax.random.fold_in(state.rng, state.step)  # the only randomness of a step
    logits = unroll_clip(family, variables, frames, batch["labels"], batch["object_valid"], remat=remat, rng=rng)
    labels = jnp.moveaxis(batch["labels"][:, 1:], 1, 0)
    value, plain = clip_loss(logits, labels, batch["object_valid"], fraction)
    aux = {"cross_entropy": plain, "iou": mean_iou(logits, labels, batch["object_valid"])}
    return value, jax.lax.stop_gradient(aux)

  def train_step(state: TrainState, batch: Batch):
    fraction = (losses.bootstrap_fraction(state.step, loss.start_step, loss.end_step, loss.final_fraction)
                if loss.bootstrapped else jnp.ones((), jnp.float32))
    (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, fraction)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": value, **aux, "grad_norm": optax.tree.norm(grads), "bootstrap_fraction": fraction}
    if learning_rate is not None:
      metrics["learning_rate"] = jnp.asarray(learning_rate(state.step), jnp.float32)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step
