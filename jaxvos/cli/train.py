"""`python -m jaxvos train --config experiments/<family>/<stage>.py --workdir DIR [--config.key=value ...]`.

The config file's `get_config()` returns an `ml_collections.ConfigDict`; `--config.a.b=value` overrides a field
(the value is parsed by the field's type: numbers, true/false, tuples as `1,2` or `(1, 2)`, `none`). This module
is the only place that reads a config: it turns it into the typed arguments of `jaxvos.training` (a family, an
optimizer, a train step, a dataset, a validator) and runs `jaxvos.training.loop.train`. Running the same command
again resumes from the latest checkpoint in `--workdir`.

Multi-host: pass `--distributed` on every process (JAX finds the coordinator on SLURM, TPU pods and Kubernetes),
or `--coordinator HOST:PORT --num-processes N --process-id I`; each process reads its own shard of the data.
"""

import argparse
import ast
import importlib.util
import json
import os
import sys
import time
from typing import Any

import ml_collections

DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True,
                      help="an experiments/<family>/<stage>.py file, or FILE.py:VARIANT (e.g. video.py:cpu)")
  parser.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and TensorBoard files")
  parser.add_argument("--devices", type=int, help="use the first N local devices (default all)")
  parser.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed.initialize()")
  parser.add_argument("--coordinator", help="multi-host coordinator HOST:PORT (implies --distributed)")
  parser.add_argument("--num-processes", type=int, help="multi-host: number of processes")
  parser.add_argument("--process-id", type=int, help="multi-host: this process's index")
  parser.add_argument("--export-only", action="store_true",
                      help="only write <workdir>/export/{final,best} and curves.png from the run (no training)")


ACCEPTS_EXTRA = True


# ---------------------------------------------------------------------------------------------------------------
# Config files and overrides.


def load_config(path: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (`FILE.py:ARG` calls `get_config(ARG)`), with overrides applied."""
  path, _, argument = path.partition(".py:")
  path = path if path.endswith(".py") else path + ".py"
  if not os.path.isfile(path):
    raise SystemExit(f"error: config file not found: {path}")
  spec = importlib.util.spec_from_file_location(f"jaxvos_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(argument) if argument else module.get_config()
  for item in overrides:
    apply_override(config, item)
  return config


def _parse_value(text: str, current: Any) -> Any:
  """`text` as the type of the field's current value."""
  if text.lower() in ("none", "null"):
    return None
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  if isinstance(current, (tuple, list)):
    value = ast.literal_eval(text) if text.strip().startswith(("(", "[")) else [
        ast.literal_eval(part) if part.strip()[:1].isdigit() or part.strip()[:1] == "-" else part.strip()
        for part in text.split(",") if part.strip()]
    return type(current)(value if isinstance(value, (tuple, list)) else [value])
  if isinstance(current, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
  """Applies one `--config.a.b=value`."""
  if not item.startswith("--config.") or "=" not in item:
    raise SystemExit(f"error: unrecognized argument {item!r} (overrides look like --config.key=value)")
  key, text = item[len("--config."):].split("=", 1)
  *parents, leaf = key.split(".")
  node = config
  for name in parents:
    if name not in node:
      raise SystemExit(f"error: --config.{key}: no field {name!r} in the config")
    node = node[name]
  if leaf not in node:
    raise SystemExit(f"error: --config.{key}: no such field (known: {', '.join(sorted(node.keys()))})")
  try:
    node[leaf] = _parse_value(text, node[leaf])
  except (ValueError, TypeError, SyntaxError) as error:
    raise SystemExit(f"error: --config.{key}={text}: {error}") from None


# ---------------------------------------------------------------------------------------------------------------
# Config -> typed arguments of jaxvos.training.


def _to_dict(value: Any) -> Any:
  return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def build_families(config: ml_collections.ConfigDict):
  """(training family, validation family) of the config's model."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  return (registry.build(config.model, **_to_dict(config.train_model)),
          registry.build(config.model, **_to_dict(config.eval_model)))


def build_optimizer_spec(config: ml_collections.ConfigDict):
  from jaxvos.training.optimizer import OptimizerSpec  # pylint: disable=g-import-not-at-top
  fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in _to_dict(config.optimizer).items()}
  return OptimizerSpec(total_steps=config.train.steps, **fields)


def build_train_step(config: ml_collections.ConfigDict, family):
  """(optimizer, train_step) of the config."""
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.training import optimizer as optimizer_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  spec = build_optimizer_spec(config)
  optimizer = optimizer_lib.make_optimizer(spec)
  try:
    compute_dtype = precision.compute_dtype(config.train.compute_dtype)
  except ValueError as e:
    raise SystemExit(f"error: train.{e}") from None
  train_step = step_lib.make_train_step(
      family, optimizer, loss=step_lib.LossSpec(**_to_dict(config.loss)), remat=config.train.remat,
      compute_dtype=compute_dtype, learning_rate=optimizer_lib.learning_rate_schedule(spec))
  return optimizer, train_step


def build_clip_spec(config: ml_collections.ConfigDict):
  from data_pipelines import sampling  # pylint: disable=g-import-not-at-top
  data = config.data
  return sampling.ClipSpec(num_frames=data.num_frames, crop_hw=tuple(data.crop_hw), max_objects=data.max_objects,
                           gap_schedule=sampling.GapSchedule(tuple(data.gaps), tuple(data.gap_boundaries)))


def build_items(config: ml_collections.ConfigDict) -> tuple[list, bool]:
  """(training items, static?) of `config.data`."""
  from jaxvos.training import data as data_lib  # pylint: disable=g-import-not-at-top
  data = config.data
  if data.source == "synthetic":
    return data_lib.synthetic_videos(data.synthetic_seed, data.synthetic_videos, height=data.synthetic_hw[0],
                                     width=data.synthetic_hw[1], num_frames=data.synthetic_frames), False
  if data.source == "davis":
    return data_lib.davis_videos(data.davis_root, data.resolution, data.imageset, data.exclude), False
  if data.source == "static":
    items = data_lib.static_pairs(data.static_roots)
    if data.davis_frames_every:
      videos = data_lib.davis_videos(data.davis_root, data.resolution, data.imageset, data.exclude)
      items += data_lib.video_frames(videos, data.davis_frames_every)
    return items, True
  raise SystemExit(f"error: data.source must be synthetic, davis or static, got {data.source!r}")


def build_validation_videos(config: ml_collections.ConfigDict) -> list:
  """The held-out videos of `config.val` (empty if validation is off)."""
  from jaxvos.training import data as data_lib, validation  # pylint: disable=g-import-not-at-top
  val = config.val
  if val.source == "none" or not val.every:
    return []
  if val.source == "synthetic":
    sequences = data_lib.synthetic_videos(val.synthetic_seed, val.synthetic_videos, height=val.synthetic_hw[0],
                                          width=val.synthetic_hw[1], num_frames=val.synthetic_frames,
                                          late_entry_probability=0.0)
  elif val.source == "davis":
    dataset_sequences = data_lib.davis_videos(val.davis_root, val.resolution)
    sequences = [s for s in dataset_sequences if s.name in set(val.sequences)]
    missing = set(val.sequences) - {s.name for s in sequences}
    if missing:
      raise SystemExit(f"error: validation sequences not found in {val.davis_root}: {', '.join(sorted(missing))}")
  else:
    raise SystemExit(f"error: val.source must be synthetic, davis or none, got {val.source!r}")
  return validation.load_videos(sequences, val.max_frames or None)


def build_loop_options(config: ml_collections.ConfigDict):
  from jaxvos.training.loop import LoopOptions  # pylint: disable=g-import-not-at-top
  t = config.train
  return LoopOptions(total_steps=t.steps, log_every=t.log_every, checkpoint_every=t.checkpoint_every,
                     keep_checkpoints=t.keep_checkpoints, validate_every=config.val.every,
                     async_checkpoints=t.async_checkpoints, seed=t.seed, init_hw=tuple(config.data.crop_hw),
                     data_threads=config.data.threads, prefetch=config.data.prefetch)


# ---------------------------------------------------------------------------------------------------------------
# The command.


def _initialize_distributed(args) -> None:
  if args.distributed or args.coordinator:
    from jaxvos.training import sharding  # pylint: disable=g-import-not-at-top
    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def _write_run_files(workdir: str, config: ml_collections.ConfigDict, baseline: dict | None) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2) + "\n")
  if baseline is not None:
    with open(os.path.join(workdir, "baseline.json"), "w", encoding="utf-8") as f:
      json.dump({"copy_first_mask": baseline}, f, indent=2)


def _validator(config: ml_collections.ConfigDict, eval_family):
  """(validator, copy-first-mask baseline scores), or (None, None) when validation is off."""
  from jaxvos.training import validation  # pylint: disable=g-import-not-at-top
  videos = build_validation_videos(config)
  if not videos:
    return None, None
  baseline = validation.summary(validation.score(videos, validation.copy_first_mask(videos)))
  size = config.val.size
  return (lambda variables: validation.validate(eval_family, variables, videos, size=size)), baseline


def export(workdir: str, config: ml_collections.ConfigDict, state=None, mesh=None) -> list[str]:
  """Writes `<workdir>/export/final` (`state`, or the latest checkpoint) and `export/best` (the best validation
  checkpoint, if any) as model directories for `jaxvos segment --checkpoint`; returns the paths written.

  Every process of a multi-process run calls it (restoring is collective); only process 0 writes.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.training import checkpoint as checkpoint_lib, loop, sharding  # pylint: disable=g-import-not-at-top
  family, eval_family = build_families(config)
  optimizer, _ = build_train_step(config, family)
  like = loop.initial_state(family, optimizer, mesh or sharding.make_mesh(1), seed=0,
                            init_hw=tuple(config.data.crop_hw))
  checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
  try:
    if state is None and checkpointer.latest_step() is not None:
      state = checkpointer.restore(like)
    states = {"final": state, "best": checkpointer.restore_best(like)}
  finally:
    checkpointer.close()
  written = []
  for name, exported in states.items():
    if exported is not None and jax.process_index() == 0:
      path = os.path.join(workdir, "export", name)
      step = int(sharding.host_copy(exported.step))
      checkpoint_lib.export_model(path, eval_family, sharding.host_copy(exported.variables()),
                                  source=f"jaxvos train {os.path.abspath(workdir)} step {step}")
      written.append(f"{path} (step {step})")
  return written


def _plot(workdir: str) -> None:
  """`<workdir>/curves.png`: cross-entropy, the loss minimised and validation J&F over the steps."""
  from jaxvos.training.plot import plot_curves  # pylint: disable=g-import-not-at-top
  metrics = os.path.join(workdir, "metrics.jsonl")
  if os.path.isfile(metrics):
    plot_curves(metrics, os.path.join(workdir, "curves.png"))
    print(f"wrote {os.path.join(workdir, 'curves.png')}")


def run(args) -> int:
  sys.stdout.reconfigure(line_buffering=True)
  config = load_config(args.config, args.extra)
  if args.export_only:
    for line in export(args.workdir, config) or ["nothing to export: no checkpoint in " + args.workdir]:
      print(line)
    _plot(args.workdir)
    return 0
  _initialize_distributed(args)
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.training import data as data_lib, loop, sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(args.devices)
  if config.data.batch_size % mesh.size:
    raise SystemExit(f"error: batch size {config.data.batch_size} does not divide over {mesh.size} devices")
  family, eval_family = build_families(config)
  optimizer, train_step = build_train_step(config, family)
  items, static = build_items(config)
  dataset = data_lib.clip_dataset(items, build_clip_spec(config), static=static,
                                  global_batch_size=config.data.batch_size, seed=config.data.seed,
                                  shard_index=jax.process_index(), shard_count=jax.process_count())
  validator, baseline = _validator(config, eval_family)
  writer = jax.process_index() == 0
  if writer:
    _write_run_files(args.workdir, config, baseline)
    print(f"{config.model}: {len(items)} training {'images' if static else 'videos'}, global batch "
          f"{config.data.batch_size} on {mesh.size} devices ({jax.process_count()} processes, "
          f"{jax.default_backend()}); validation {'every %d steps' % config.val.every if validator else 'off'}")
    if baseline:
      print(f"copy-first-mask baseline on the validation videos: J&F {baseline['j_and_f']:.3f}")
  start = time.perf_counter()
  try:
    state = loop.train(family, optimizer, train_step, dataset=dataset, workdir=args.workdir, mesh=mesh,
                       options=build_loop_options(config), clips_per_step=config.data.batch_size,
                       validator=validator, init_from=config.train.init_from or None)
  except loop.NonFiniteLoss as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if writer:
    print(f"done: {config.train.steps} steps in {time.perf_counter() - start:.0f} s; workdir {args.workdir}")
  for line in export(args.workdir, config, state, mesh):
    print(f"exported {line}")
  if writer:
    _plot(args.workdir)
  return 0
