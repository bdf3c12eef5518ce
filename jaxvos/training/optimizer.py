"""Optimizers: AdamW with a warmup + cosine, step-decay or constant learning rate, global-norm clipping and
optional gradient accumulation (`optax.MultiSteps`); optionally only the parameters whose path matches a regular
expression are trained (`trainable`: the rest stay as initialised, with no optimizer state; e.g. SpVOS's gates
alone, so the grafted dense weights stay exactly those of the dense twin).

Step counts here are *batches* (the train state's `step`), whatever the accumulation: with
`accumulate_steps = k` the parameters change once every k batches, and the learning-rate schedule is read at
the batch count of the update, so a config keeps its meaning when k changes.
"""

import dataclasses
import re

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
  trainable: str = ""                   # a regex over parameter paths ("a/b/kernel"): only matches train; "": all

  def __post_init__(self):
    if self.schedule not in ("cosine", "steps", "constant"):
      raise ValueError(f"unknown schedule {self.schedule!r}; use cosine, steps or constant")
    if self.accumulate_steps < 1:
      raise ValueError(f"accumulate_steps must be >= 1, got {self.accumulate_steps}")
    try:
      re.compile(self.trainable)
    except re.error as e:
      raise ValueError(f"trainable {self.trainable!r} is not a regular expression: {e}") from None


def trainable_mask(pattern: str, params):
  """True where a parameter's path ("module/submodule/kernel") matches `pattern` (all True for "").

  Raises ValueError when a non-empty pattern matches none, so a misspelt path does not train nothing silently.
  """
  if not pattern:
    return jax.tree.map(lambda _: True, params)
  regex = re.compile(pattern)
  mask = jax.tree_util.tree_map_with_path(
      lambda path, _: bool(regex.search("/".join(str(getattr(k, "key", k)) for k in path))), params)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(f"trainable {pattern!r} matches no parameter path")
  return mask


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
  """`clip_by_global_norm -> adamw(schedule)` over the `trainable` parameters (the others get zero updates),
  wrapped in `optax.MultiSteps` when accumulating. The global norm is the trainable parameters' gradient's."""
  schedule = learning_rate_schedule(spec)
  k = spec.accumulate_steps
  per_update = schedule if k == 1 else (lambda update: schedule(update * k))
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
  chain = [optax.clip_by_global_norm(spec.clip_norm)] if spec.clip_norm else []
  chain.append(optax.adamw(per_update, b1=spec.b1, b2=spec.b2, weight_decay=spec.weight_decay, mask=decay_mask))
  optimizer = optax.chain(*chain)
  if spec.trainable:
    labels = lambda params: jax.tree.map(  # noqa: E731
        lambda train: "train" if train else "frozen", trainable_mask(spec.trainable, params))
    optimizer = optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)
  return optax.MultiSteps(optimizer, every_k_schedule=k) if k > 1 else optimizer
