"""Segmentation losses over {background, objects}: cross-entropy and STCN's bootstrapped cross-entropy.

Inputs follow the family protocol (`jaxvos.models.family`): `logits` float [b o+1 h w] (index 0 the background,
the soft-aggregated logits of METHODS.md), `labels` integer [b h w] (0 background, k the object in slot k - 1),
`object_valid` bool [b o]. Invalid (padded) objects are excluded from the softmax whatever their logits, so they
take no probability and get no gradient; labels never point at them (`jaxvos.types.ClipBatch`).

Every function here is jit-friendly: the bootstrapped fraction may be a traced value (it follows the training step),
so the hardest pixels are chosen by a sort of the per-pixel losses and a rank mask rather than a `top_k` with a
static k.
"""

import dataclasses

import jax
import jax.numpy as jnp

# Logit given to excluded classes before the log-softmax: exp(-1e9 - max) is 0 in float32 and bfloat16.
_EXCLUDED = -1e9


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array, object_valid: jax.Array) -> jax.Array:
  """Per-pixel cross-entropy `-log softmax(logits)[label]` (nats), float32 [b h w].

  The softmax runs over the background and the valid objects only; computed in float32 whatever the logits' dtype.
  """
  keep = jnp.concatenate([jnp.ones_like(object_valid[:, :1]), object_valid], axis=1)[:, :, None, None]
  logits = jnp.where(keep, logits.astype(jnp.float32), _EXCLUDED)
  log_probs = jax.nn.log_softmax(logits, axis=1)
  picked = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=1)
  return -picked[:, 0]


def cross_entropy(logits: jax.Array, labels: jax.Array, object_valid: jax.Array) -> jax.Array:
  """Mean per-pixel cross-entropy over the batch and all pixels (a float32 scalar)."""
  return jnp.mean(pixel_cross_entropy(logits, labels, object_valid))


def bootstrapped_cross_entropy(logits: jax.Array, labels: jax.Array, object_valid: jax.Array,
                               fraction: jax.Array | float) -> jax.Array:
  """Mean cross-entropy of the hardest `fraction` of each video's pixels (STCN's bootstrapped CE).

  Per video, the `floor(fraction * h * w)` pixels (at least one) with the highest loss are averaged, then the
  videos are averaged. STCN picks its hardest pixels over a GPU's whole batch, which makes the loss depend on the
  number of GPUs; per video, the loss of a clip is the same on any number of devices. `fraction = 1` is the plain
  cross-entropy.
  """
  return hardest_mean(pixel_cross_entropy(logits, labels, object_valid), fraction)


def hardest_mean(pixel_losses: jax.Array, fraction: jax.Array | float) -> jax.Array:
  """Mean over videos of the mean of each video's `floor(fraction * h * w)` (at least 1) largest losses [b h w]."""
  b, n = pixel_losses.shape[0], pixel_losses.shape[1] * pixel_losses.shape[2]
  hardest_first = -jnp.sort(-pixel_losses.reshape(b, n), axis=1)
  count = jnp.clip(jnp.floor(jnp.asarray(fraction, jnp.float32) * n), 1, n)
  chosen = jnp.arange(n) < count
  return jnp.mean(jnp.sum(jnp.where(chosen, hardest_first, 0.0), axis=1) / count)


def bootstrap_fraction(step: jax.Array | int, start_step: int, end_step: int, final_fraction: float) -> jax.Array:
  """STCN's schedule of the bootstrapped fraction: 1 (plain CE) up to `start_step`, then linear down to
  `final_fraction` at `end_step`, constant after (STCN: 20k, 70k, 0.15). Works on traced steps."""
  step = jnp.asarray(step, jnp.float32)
  progress = jnp.clip((step - start_step) / max(end_step - start_step, 1), 0.0, 1.0)
  return 1.0 - (1.0 - final_fraction) * progress


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """Plain cross-entropy, or STCN's bootstrapped cross-entropy with its schedule (steps count batches)."""
  bootstrapped: bool = False
  start_step: int = 20_000      # plain cross-entropy up to here (STCN: 20k)
  end_step: int = 70_000        # hardest `final_fraction` of the pixels from here on (STCN: 70k)
  final_fraction: float = 0.15


def segmentation_loss(logits: jax.Array, labels: jax.Array, object_valid: jax.Array, step: jax.Array,
                      spec: LossSpec) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The default training loss of a clip (`jaxvos.models.family.Family.loss`) and its metrics.

  logits [t b o+1 h w] of the scored frames, labels [t b h w], object_valid [b o]. The value is the (bootstrapped)
  cross-entropy, a mean over frames and videos; metrics: `cross_entropy` (plain, comparable across the
  bootstrapping schedule), `bootstrap_fraction` and `iou` (argmax masks; no gradient).
  """
  t, b = logits.shape[:2]
  fraction = (bootstrap_fraction(step, spec.start_step, spec.end_step, spec.final_fraction)
              if spec.bootstrapped else jnp.ones((), jnp.float32))
  flat = lambda x: x.reshape(t * b, *x.shape[2:])  # noqa: E731
  valid = jnp.broadcast_to(object_valid, (t, *object_valid.shape)).reshape(t * b, -1)
  pixel_losses = pixel_cross_entropy(flat(logits), flat(labels), valid)
  metrics = {"cross_entropy": jnp.mean(pixel_losses), "bootstrap_fraction": fraction,
             "iou": jax.lax.stop_gradient(mean_iou(logits, labels, object_valid))}
  return hardest_mean(pixel_losses, fraction), metrics


def mean_iou(logits: jax.Array, labels: jax.Array, object_valid: jax.Array) -> jax.Array:
  """Mean IoU of the argmax masks of logits [t b o+1 h w] against labels [t b h w] over valid objects."""
  predicted = jnp.argmax(logits, axis=2)  # [t b h w]
  ids = jnp.arange(1, object_valid.shape[1] + 1)[:, None, None]
  pred, gt = predicted[:, :, None] == ids, labels[:, :, None] == ids  # [t b o h w]
  inter = jnp.sum(pred & gt, axis=(-2, -1))
  union = jnp.sum(pred | gt, axis=(-2, -1))
  iou = jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)
  weights = jnp.broadcast_to(object_valid, iou.shape)
  return jnp.sum(iou * weights) / jnp.maximum(jnp.sum(weights), 1)
