"""The training loop: restore or start, run compiled steps, report, validate, checkpoint.

`train(...)` is what `python -m jaxvos train` runs once it has turned a config into typed arguments. It is the
same on one CPU and on many hosts: every process runs it with its own shard of the data (`dataset`), the state is
replicated over the mesh, and only process 0 writes reports.

Resuming: if `<workdir>/checkpoints` holds a complete checkpoint, the state and the data iterator's position are
restored from the latest one, so a run killed at any moment continues on exactly the batches it would have seen
(the train step and the data are deterministic: the parameters after N steps are bit-identical). Metrics are
fetched from the devices every `log_every` steps and before every checkpoint; a non-finite loss stops the run
(`NonFiniteLoss`) before anything after it is saved, so the last checkpoint is the last good state.
"""

import dataclasses
import time
from typing import Any, Callable

import grain
import jax
import numpy as np
import optax
from jax.sharding import Mesh

from data_pipelines import sampling
from jaxvos.models.family import Family
from jaxvos.training import checkpoint as checkpoint_lib
from jaxvos.training import sharding
from jaxvos.training.reporting import MetricsWriter
from jaxvos.training.state import TrainState, create_train_state

Validator = Callable[[Any], dict[str, float]]  # host variables -> {"j_and_f": ..., ...}


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """How long to train and how often to report, checkpoint and validate (all in batch steps)."""
  total_steps: int
  log_every: int = 50
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  validate_every: int = 0            # 0: never
  async_checkpoints: bool = True
  seed: int = 0                      # parameter initialisation and the state's PRNG key
  init_hw: tuple[int, int] = (64, 64)  # frame size used to initialise the parameters
  data_threads: int = 4
  prefetch: int = 8


class NonFiniteLoss(RuntimeError):
  """The loss became NaN or infinite; `last_good_step` is the latest complete checkpoint (None if none)."""

  def __init__(self, step: int, last_good_step: int | None, directory: str):
    self.step, self.last_good_step = step, last_good_step
    kept = (f"the last good checkpoint is step {last_good_step} in {directory}" if last_good_step is not None
            else "no checkpoint was saved")
    super().__init__(f"non-finite loss at step {step}; training stopped and {kept} (lower the learning rate or "
                     "check the data, then run the same command to resume)")


def initial_state(family: Family, optimizer: optax.GradientTransformation, mesh: Mesh, *, seed: int,
                  init_hw: tuple[int, int], variables: Any = None) -> TrainState:
  """A fresh state replicated on the mesh: the family's random variables (or `variables`) at step 0."""
  init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
  if variables is None:
    variables = family.init(init_key, init_hw)
  return sharding.replicate(create_train_state(variables, optimizer, state_key), mesh)


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> tuple[dict[str, float], list[float]]:
  """(mean of each metric, the per-step losses) of metrics fetched from the devices."""
  fetched = [sharding.host_copy(m) for m in pending]
  losses = [float(m["loss"]) for m in fetched]
  return {key: float(np.mean([m[key] for m in fetched])) for key in fetched[0]}, losses


def train(family: Family, optimizer: optax.GradientTransformation, train_step: Callable, *,
          dataset: grain.MapDataset, workdir: str, mesh: Mesh, options: LoopOptions, clips_per_step: int,
          validator: Validator | None = None, init_from: str | None = None) -> TrainState:
  """Trains to `options.total_steps` (resuming from `workdir` if it holds a checkpoint); returns the state.

  Args:
    family, optimizer, train_step: the model, its optimizer and `make_train_step(family, optimizer, ...)`.
    dataset: this process's batches (`jaxvos.training.data.clip_dataset`); element i is batch step i.
    workdir: checkpoints, metrics and TensorBoard files go here.
    mesh: the `data` mesh (`sharding.make_mesh`); the global batch must divide over its devices.
    options: lengths and intervals.
    clips_per_step: the global batch size (for the clips/s report).
    validator: J&F of host variables on held-out videos; the best state is kept in `<workdir>/best`.
    init_from: where this run's parameters start (ignored when resuming): a previous run's workdir or a model
      directory, or parts of several (`checkpoint.init_variables`, `jaxvos.convert.graft`).

  Raises:
    NonFiniteLoss: the loss became NaN or infinite.
  """
  writer = MetricsWriter(workdir, total_steps=options.total_steps, clips_per_step=clips_per_step,
                         enabled=jax.process_index() == 0)
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=options.keep_checkpoints,
                                             async_save=options.async_checkpoints)
  iterator = sampling.clip_iterator(dataset, num_threads=options.data_threads, prefetch=options.prefetch)
  try:
    state = _start(family, optimizer, mesh, options, checkpointer, iterator, writer, init_from)
    compiled = sharding.compile_train_step(train_step, mesh, state)
    return _run(compiled, state, iterator, mesh, options, checkpointer, writer, validator)
  finally:
    checkpointer.wait()
    checkpointer.close()
    writer.close()


def _start(family, optimizer, mesh, options, checkpointer, iterator, writer, init_from) -> TrainState:
  """The state to start from: the latest checkpoint, else `init_from`'s parameters, else random ones."""
  state = initial_state(family, optimizer, mesh, seed=options.seed, init_hw=options.init_hw)
  latest = checkpointer.latest_step()
  if latest is not None:
    writer.message(f"resuming from the checkpoint at step {latest} in {checkpointer.directory}")
    return checkpointer.restore(state, iterator, latest)
  if init_from:
    variables, notes = checkpoint_lib.init_variables(init_from, family, state.variables())
    for line in (f"starting from the parameters of {init_from}", *notes):
      writer.message(line)
    return initial_state(family, optimizer, mesh, seed=options.seed, init_hw=options.init_hw, variables=variables)
  return state


def _run(compiled, state: TrainState, iterator, mesh, options: LoopOptions, checkpointer, writer, validator
         ) -> TrainState:
  step = int(sharding.host_copy(state.step))
  writer.start(step)
  pending = []
  while step < options.total_steps:
    state, metrics = compiled(state, sharding.device_batch(next(iterator), mesh))
    pending.append(metrics)
    step += 1
    last = step == options.total_steps
    save = step % options.checkpoint_every == 0 or last
    validate = validator is not None and options.validate_every and (step % options.validate_every == 0 or last)
    if step % options.log_every == 0 or save or validate:
      means, losses = _mean_metrics(pending)
      bad = [i for i, value in enumerate(losses) if not np.isfinite(value)]
      if bad:
        checkpointer.wait()
        raise NonFiniteLoss(step - len(pending) + bad[0] + 1, checkpointer.latest_step(), checkpointer.directory)
      writer.train(step, means)
      pending = []
    if save:
      checkpointer.save(state, iterator)
    if validate:
      start = time.perf_counter()
      scores = validator(sharding.host_copy(state.variables()))
      writer.validation(step, scores, time.perf_counter() - start)
      checkpointer.save_best(state, scores["j_and_f"])
  return state
