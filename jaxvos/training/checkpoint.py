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

A new run starts from other weights with `init_variables` (`train.init_from`): runs and model directories are
read without knowing their model (`read_variables`) and grafted by `jaxvos.convert.graft`'s rule table.
"""

import contextlib
import json
import logging
import os
import shutil
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from data_pipelines.errors import DataError
from jaxvos.training.sharding import host_copy
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


def init_variables(init_from: str, family: Any, initial: Any) -> tuple[dict[str, Any], list[str]]:
  """The variables a new run starts from: `initial` (the family's fresh variables) with `init_from` grafted in.

  `init_from` is `[PART=]PATH[,[PART=]PATH...]`, applied in order by the rule table of `jaxvos.convert.graft`
  (the same model or another config of it, a dense family into its sparse extension, torchvision ResNets into
  the encoders). Each PATH is a previous run's workdir (its latest checkpoint; the optimizer state it holds is
  not read, so it may differ from this run's) or a model directory (`jaxvos convert`, a run's `export/best`).

  Returns:
    (`{"params", "batch_stats"}` as NumPy arrays, notes for the log: what was copied and what kept its initial
    values).

  Raises:
    DataError: a PATH that is neither, or variables that do not fit by the rules (one line, naming the first).
  """
  from jaxvos.convert import graft  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.rules import flatten_variables, unflatten_variables  # pylint: disable=g-import-not-at-top
  variables = {path: np.asarray(value) for path, value in flatten_variables(host_copy(initial)).items()}
  notes = []
  for part, path in graft.parse_sources(init_from):
    model, source = read_variables(path, default_model=family.name)
    variables, lines = graft.graft(source, variables, graft.rules_for(model, family.name, part, source_name=path),
                                   source_name=path, model=family.name)
    notes += lines
  return {"params": {}, "batch_stats": {}, **unflatten_variables(variables)}, notes


def read_variables(path: str, *, best: bool = False, default_model: str | None = None
                   ) -> tuple[str | None, dict[tuple[str, ...], np.ndarray]]:
  """(model name, flat NumPy variables) of a model directory or a run's workdir (latest or best checkpoint).

  A workdir's model name is its `config.json`'s (written by `jaxvos train`), else `default_model`.
  """
  from jaxvos.convert.io import MODEL_FILE, load_model  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.rules import flatten_variables  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(os.path.join(path, MODEL_FILE)):
    family, variables = load_model(path)
    return family.name, {key: np.asarray(value) for key, value in flatten_variables(variables).items()
                         if key[0] in ("params", "batch_stats")}
  if not os.path.isdir(os.path.join(path, "checkpoints")):
    hint = (" (a PyTorch file? import it with `python -m jaxvos convert from-torch`)"
            if path.endswith((".pth", ".pt")) else "")
    raise DataError(path, f"is neither a model directory ({MODEL_FILE}) nor a training run's workdir "
                    f"(checkpoints/){hint}")
  config_path = os.path.join(path, "config.json")
  model = default_model
  if os.path.isfile(config_path):
    with open(config_path, encoding="utf-8") as f:
      model = json.load(f).get("model", default_model)
  return model, flatten_variables(_read_run_variables(os.path.join(path, "best" if best else "checkpoints")))


def _read_run_variables(directory: str) -> dict[str, Any]:
  """`{"params", "batch_stats"}` of the latest checkpoint under `directory` as NumPy arrays, read by the shapes
  the checkpoint records (no model needed; the optimizer state is not read)."""
  with _absl_warnings_off():
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True),
                                    item_handlers={"state": ocp.PyTreeCheckpointHandler()})
  with manager:
    step = manager.latest_step()
    if step is None:
      raise DataError(directory, "holds no complete checkpoint")
    metadata = manager.item_metadata(step)["state"]
    tree = getattr(metadata, "tree", metadata)
    item = {key: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree[key])
            for key in ("params", "batch_stats") if key in tree}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True)))
  return restored.state


def export_model(path: str, family: Any, variables: Any, *, source: str, inference_size: int | None = None
                 ) -> None:
  """Writes variables as a `jaxvos convert` model directory at `path`, replacing an older export.

  `family` is the one inference should run (e.g. STCN with its test-time top-k and memory policy);
  `inference_size` its working size (`jaxvos.convert.io.working_size`), if known.
  """
  from jaxvos.convert.io import save_model  # pylint: disable=g-import-not-at-top
  temporary = path + ".tmp"
  shutil.rmtree(temporary, ignore_errors=True)
  save_model(temporary, family, variables, source=source, inference_size=inference_size)
  shutil.rmtree(path, ignore_errors=True)
  os.replace(temporary, path)
