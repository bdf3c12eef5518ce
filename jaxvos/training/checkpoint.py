"""Checkpoints with orbax: the train state and the data iterator's position, saved together, atomically.

Layout under a run's workdir:

  checkpoints/<step>/state/    the `TrainState` (orbax PyTree: params, BatchNorm statistics, optimizer, step, rng)
  checkpoints/<step>/data/     the grain iterator state of each process (`process_<i>-of-<n>.json`)
  best/<step>/state/           the state with the best validation J&F so far (one kept)
  export/{final,best}/         the variables as `jaxvos convert` model directories (model.json +
                               variables.safetensors), for `jaxvos segment --checkpoint`

Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp-*` and renames it when every item is complete, so a
run killed at any moment (during a save too) leaves only complete checkpoints under their final names; the
leftover temporary folders are ignored on restore and cleaned up. Saves are asynchronous (training continues while
the arrays are written); the data position is captured when `save` is called.
"""

import contextlib
import json
import logging
import os
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from jaxvos.training.state import TrainState

BEST_METRIC = "j_and_f"


class _IteratorStateSnapshot:
  """The iterator position at save time, as grain's checkpoint handler reads it (bytes of JSON).

  The handler may run after the training loop moved on; a snapshot keeps the saved position exact.
  """

  def __init__(self, state: dict[str, Any]):
    self._state = json.dumps(state, indent=2).encode()

  def get_state(self) -> bytes:
    return self._state


@contextlib.contextmanager
def _absl_warnings_off(off: bool = True):
  """Silences absl's warnings (orbax logs through absl) inside the block when `off`."""
  logger = logging.getLogger("absl")
  level = logger.level
  if off:
    logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def abstract_state(state: TrainState) -> TrainState:
  """Shapes, dtypes and shardings of a state: what `restore` fills in."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


class Checkpointer:
  """Periodic checkpoints of one run (`<workdir>/checkpoints`) and its best one (`<workdir>/best`).

  Args:
    workdir: the run's folder.
    keep: how many of the latest checkpoints to keep.
    async_save: write in a background thread (call `wait` before reading a checkpoint back).
    read_only: only read (export, inspection): nothing is created, saved or cleaned up, so reading a run's
      checkpoints while it trains (or after it was killed) never touches its folders. A writer removes the
      temporary folders a killed save left behind; two writers on one workdir would remove each other's.
  """

  def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
    workdir = os.path.abspath(workdir)
    options = dict(create=not read_only, cleanup_tmp_directories=not read_only, read_only=read_only,
                   enable_async_checkpointing=async_save)
    self.directory = os.path.join(workdir, "checkpoints")
    self.best_directory = os.path.join(workdir, "best")
    with _absl_warnings_off(read_only):  # orbax warns that a read-only manager is read-only, and will not delete
      self._manager = ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
      self._best = ocp.CheckpointManager(self.best_directory, options=ocp.CheckpointManagerOptions(
          max_to_keep=1, best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="max", **options))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state: TrainState, iterator: grain.DatasetIterator) -> None:
    """Saves the state and the iterator's position at `state.step` (skipped if that step is already saved)."""
    step = int(state.step)
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(_IteratorStateSnapshot(iterator.get_state()))), force=True)

  def restore(self, like: TrainState, iterator: grain.DatasetIterator | None = None,
              step: int | None = None) -> TrainState:
    """The state saved at `step` (default the latest), placed like `like`; moves `iterator` to its position.

    Without an iterator only the state is read (e.g. to inspect a run made by another number of processes).
    """
    step = self.latest_step() if step is None else step
    items = {"state": ocp.args.StandardRestore(abstract_state(like))}
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    return self._manager.restore(step, args=ocp.args.Composite(**items)).state

  def save_best(self, state: TrainState, score: float) -> None:
    """Offers the state with its validation J&F; orbax keeps the best one."""
    step = int(state.step)
    if step in self._best.all_steps():
      return
    self._best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                    metrics={BEST_METRIC: float(score)}, force=True)

  def best_step(self) -> int | None:
    return self._best.best_step()

  def restore_best(self, like: TrainState) -> TrainState | None:
    """The state with the best validation J&F (None if no validation ran)."""
    step = self.best_step()
    if step is None:
      return None
    items = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state(like)))
    return self._best.restore(step, args=items).state

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    self._manager.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
    self._best.close()


def restore_variables(path: str, like: TrainState, *, best: bool = False) -> dict[str, Any]:
  """`{"params", "batch_stats"}` to start a new run from (its optimizer starts afresh), placed like `like`.

  `path` is a previous run's workdir (its latest checkpoint, or its best one with `best`; the optimizer state it
  holds may differ from this run's) or a model directory written by `jaxvos convert` (imported weights). The
  variables must fit the model being trained.
  """
  path = os.path.abspath(path)
  if os.path.isfile(os.path.join(path, "model.json")):
    from jaxvos.convert.io import load_model  # pylint: disable=g-import-not-at-top
    _, variables = load_model(path)
    variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)  # noqa: E731
    if shapes(variables) != shapes(like.variables()):
      raise ValueError(f"{path} holds the variables of another model than the one being trained")
    return variables
  directory = os.path.join(path, "best" if best else "checkpoints")
  target = abstract_state(like).variables()
  with _absl_warnings_off():
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  with manager:
    step = manager.best_step() if best else manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory} (and no model.json in {path})")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)))
  return restored.state


def export_model(path: str, family: Any, variables: Any, *, source: str) -> None:
  """Writes variables as a `jaxvos convert` model directory at `path`, replacing an older export.

  `family` is the one inference should run (e.g. STCN with its test-time top-k and memory policy).
  """
  from jaxvos.convert.io import save_model  # pylint: disable=g-import-not-at-top
  temporary = path + ".tmp"
  shutil.rmtree(temporary, ignore_errors=True)
  save_model(temporary, family, variables, source=source)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(temporary, path)
