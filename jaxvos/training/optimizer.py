"""Optimizers: AdamW with a warmup + cosine, step-decay or constant learning rate, global-norm clipping and
optional gradient accumulation (`optax.MultiSteps`).

Step counts here are *batches* (the train state's `step`), whatever the accumulation: with
`accumulate_steps = k` the parameters change once every k batches, and the learning-rate schedule is read at
the batch count of the update, so a config keeps its meaning when k changes.
"""

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """AdamW and its schedule. Learning rates are per update; steps count batches (see the module docstring)."""
  learning_rate: float = 1e-4
  schedule: str = "cosine"              # "cosine", "steps" or "constant" (each after a linear warmup)
  warmup_steps: int = 0
  total_steps: int = 10_000             # where the cosine reaches `final_fraction * learning_rate`
  final_fraction: float = 0.0
  decay_boundaries: tuple[int, ...] = ()  # "steps": multiply by `decay_factor` at each boundary
  decay_factor: float = 0.1
  b1: float = 0.9
  b2: float = 0.999
  weight_decay: float = 0.0             # decoupled; never applied to 1-D parameters (biases, norm scales)
  clip_norm: float | None = 1.0         # global-norm clipping of the (accumulated) gradient; None: off
  accumulate_steps: int = 1

  def __post_init__(self):
    if self.schedule not in ("cosine", "steps", "constant"):
      raise ValueError(f"unknown schedule {self.schedule!r}; use cosine, steps or constant")
    if self.accumulate_steps < 1:
      raise ValueError(f"accumulate_steps must be >= 1, got {self.accumulate_steps}")


def learning_rate_schedule(spec: OptimizerSpec) -> optax.Schedule:
  """The learning rate as a function of the batch step (warmup, then the chosen decay)."""
  peak = spec.learning_rate
  warmup = max(spec.warmup_steps, 0)
  if spec.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, max(spec.total_steps - warmup, 1), alpha=spec.final_fraction)
  elif spec.schedule == "steps":
    boundaries = {max(b - warmup, 0): spec.decay_factor for b in spec.decay_boundaries}
    decay = optax.piecewise_constant_schedule(peak, boundaries)
  else:
    decay = optax.constant_schedule(peak)
  if not warmup:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(spec: OptimizerSpec) -> optax.GradientTransformation:
  """`clip_by_global_norm -> adamw(schedule)`, wrapped in `optax.MultiSteps` when accumulating."""
  schedule = learning_rate_schedule(spec)
  k = spec.accumulate_steps
  per_update = schedule if k == 1 else (lambda update: schedule(update * k))
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
  chain = [optax.clip_by_global_norm(spec.clip_norm)] if spec.clip_norm else []
  chain.append(optax.adamw(per_update, b1=spec.b1, b2=spec.b2, weight_decay=spec.weight_decay, mask=decay_mask))
  optimizer = optax.chain(*chain)
  return optax.MultiSteps(optimizer, every_k_schedule=k) if k > 1 else optimizer
