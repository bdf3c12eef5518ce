"""`python -m jaxvos train --config experiments/<family>/<stage>.py[:VARIANT] --workdir DIR [--config.key=value ...]`.

The config file's `get_config()` (or `get_config(VARIANT)`) returns an `ml_collections.ConfigDict`; configs share
their fields and stage recipes through `experiments/common.py` (`config_module`). The config and its overrides
are read by `ml_collections.config_flags` (absl flags): `--config.a.b=value` is parsed by the type of the field
(`--config.train.steps=400`, `--config.data.crop_hw=64,64`, `--config.train.remat=true`), and an unknown field
or a value of the wrong type ends the command with one line. The other options are argparse's. This module is
the only place that reads a config: it turns it into the typed arguments of `jaxvos.training` (a family, an
optimizer, a train step, a dataset, a validator) and runs `jaxvos.training.loop.train`. Running the same command
again resumes from the latest checkpoint in `--workdir`.

`--config.train.init_from=SOURCE[,SOURCE...]` starts a new run from other weights (`jaxvos.convert.graft`): a
previous run's workdir or a model directory of the same model, of a smaller config of it (parameters whose
shapes match are copied), of the dense family a sparse one extends, or torchvision ResNets imported with
`jaxvos convert from-torch --family resnet18|resnet50` into the model's encoders; `PART=PATH` fills only PART.

Multi-host: pass `--distributed` on every process (JAX finds the coordinator on SLURM, TPU pods and Kubernetes),
or `--coordinator HOST:PORT --num-processes N --process-id I`; each process reads its own shard of the data.
"""

import argparse
import ast
import importlib.util
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from data_pipelines.errors import DataError, warn

DESCRIPTION = """Train a model from an experiments/<family>/<stage>.py config; running the same command again
resumes from the latest checkpoint in --workdir. Config fields are overridden with --config.KEY=VALUE, parsed by
the field's type (an unknown field or a bad value is a one-line error).

  jaxvos train --config experiments/stcn/smoke.py --workdir runs/smoke --config.train.steps=400
  jaxvos train --config experiments/stcn/video.py:full --workdir runs/video \\
      --config.train.init_from=key_encoder=ckpt/resnet50,value_encoder=ckpt/resnet18

--config.train.init_from=[PART=]DIR[,...] starts from a previous run or a model directory (the same model, a
smaller config of it, or ResNets imported with `jaxvos convert from-torch --family resnet18|resnet50` into the
encoders)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", required=True, metavar="FILE",
                      help="an experiments/<family>/<stage>.py file, or FILE.py:VARIANT (e.g. video.py:full); "
                      "fields are overridden with --config.KEY=VALUE (e.g. --config.train.steps=400)")
  parser.add_argument("--workdir", required=True, metavar="DIR",
                      help="where the run keeps its checkpoints, metrics.jsonl, TensorBoard files and exported "
                      "models (a run in it is resumed)")
  parser.add_argument("--devices", type=int, metavar="N", help="use the first N local devices (default: all)")
  parser.add_argument("--distributed", action="store_true",
                      help="one process of a multi-host run: JAX finds the coordinator on SLURM, TPU pods and "
                      "Kubernetes (default: off)")
  parser.add_argument("--coordinator", metavar="HOST:PORT",
                      help="the multi-host coordinator's address, for clusters JAX cannot detect (implies "
                      "--distributed; default: none)")
  parser.add_argument("--num-processes", type=int, metavar="N",
                      help="with --coordinator: the number of processes (default: none)")
  parser.add_argument("--process-id", type=int, metavar="N",
                      help="with --coordinator: this process's index, 0 to N-1 (default: none)")
  parser.add_argument("--export-only", action="store_true",
                      help="train nothing: write DIR/export/{final,best} and curves.png from the run's checkpoints "
                      "(default: off)")


ACCEPTS_EXTRA = True  # the --config.key=value overrides, handed to config_flags


# ---------------------------------------------------------------------------------------------------------------
# Config files and overrides.


def config_module(config_file: str, relative_path: str):
  """The Python file at `relative_path` from `config_file`'s folder, loaded as a module (once per process).

  How configs share code without experiments/ being a package: `common = config_module(__file__,
  "../common.py")` in `experiments/<family>/<stage>.py` loads `experiments/common.py`.
  """
  path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_file)), relative_path))
  name = "jaxvos_config_" + re.sub(r"\W", "_", path)
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not os.path.isfile(path):
      raise FileNotFoundError(f"{path} (loaded by {config_file}) not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
  return sys.modules[name]


_OVERRIDE = re.compile(r"--?config\.\w[\w.]*(=.*)?", re.DOTALL)


def load_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (`FILE.py:ARG` calls `get_config(ARG)`), with `--config.key=value` overrides.

  Both are `ml_collections.config_flags`'s: the file is loaded by its config-file parser and each override is
  parsed by the type of its field. The config is locked: an override cannot add a field.

  A `--config.train.steps` that changes the file's step count warns: the fields a config derives from it do not
  follow.

  Raises:
    DataError: one line naming the config file (missing, or failing to load) or the override (an unknown
      field, a value of the wrong type, or an argument that is not an override).
  """
  file, _, variant = path.partition(":")
  if not os.path.isfile(file):
    raise DataError(file, "config file not found")
  config = _parse_flags(config_flags.DEFINE_config_file, ["jaxvos train", f"--config={path}"], file)
  if not isinstance(config, ml_collections.ConfigDict):
    raise DataError(file, f"get_config({variant!r}) returned {type(config).__name__}, not a ConfigDict")
  overrides = [_check_override(config, item) for item in overrides]
  file_steps = config.train.steps if "train" in config and "steps" in config.train else None
  config = _parse_flags(lambda *a, **k: config_flags.DEFINE_config_dict(*a, config, **k),
                        ["jaxvos train", *overrides], None)
  if file_steps is not None and config.train.steps != file_steps:
    warn(file, f"--config.train.steps={config.train.steps}: what the config derives from its {file_steps} "
               "steps (learning-rate decay, loss and gap schedules) stays as it was; override that too where it "
               "should follow")
  return config


def _parse_flags(define, argv: list[str], file: str | None) -> Any:
  """The config of `define("config", ...)` (a `config_flags.DEFINE_config_*`) after absl parses `argv`."""
  flag_values = flags.FlagValues()
  try:
    with warnings.catch_warnings():  # config_flags loads the file with the deprecated `load_module`
      warnings.simplefilter("ignore", DeprecationWarning)
      define("config", flag_values=flag_values, sys_argv=argv, lock_config=True)
      flag_values(argv)
    config = flag_values.config
    config.get("model")  # config_flags defers a failure to load the file to the first access
  except (flags.Error, OSError, ImportError) as error:
    raise DataError(file or _culprit(error, argv[1:]), _last_line(error)) from None
  return config


def _check_override(config: ml_collections.ConfigDict, item: str) -> str:
  """`item`, checked to be `--config.<existing field>[=value]` (else a one-line DataError).

  A tuple of names may be given bare: `--config.val.sequences=blackswan,bmx-trees` becomes the tuple that
  config_flags reads only when quoted (`"('blackswan', 'bmx-trees')"`; unquoted it would be one string).
  """
  if not _OVERRIDE.fullmatch(item):
    raise DataError(item, "unrecognized argument (config overrides look like --config.key=value)")
  *parents, leaf = item.lstrip("-").split("=", 1)[0].split(".")[1:]
  parent, node = None, config
  for depth, name in enumerate(parents + [leaf]):
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      where = ".".join(["config", *parents[:depth]])
      known = ", ".join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) else "none"
      raise DataError(item, f"no such field {name!r} in {where} (fields: {known})")
    parent, node = node, node[name]
  if node is None and parent.get_type(leaf) is type(None):
    raise DataError(item, "the field is None in the config, so it has no type to parse a value by (a config "
                    "declares it with ml_collections.config_dict.placeholder(type))")
  key, _, text = item.partition("=")
  names = isinstance(node, tuple) and all(isinstance(value, str) for value in node)
  if names and text[:1] not in "([" and not _is_literal(text):
    return f"{key}={tuple(part.strip() for part in text.split(',') if part.strip())!r}"
  return item


def _is_literal(text: str) -> bool:
  try:
    ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return False
  return True


def _culprit(error: Exception, overrides: Sequence[str]) -> str:
  """The override that absl's `error` names (the last one given for that field)."""
  match = re.search(r"--config\.([\w.]+)", str(error))
  named = [item for item in overrides if match and item.lstrip("-").split("=", 1)[0] == f"config.{match.group(1)}"]
  return named[-1] if named else " ".join(overrides)


def _last_line(error: Exception) -> str:
  """The line of absl's or config_flags' message that says what is wrong (not the traceback, not the flag)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  line = lines[-1] if lines else type(error).__name__
  return re.sub(r"^(flag --config\.[\w.]*=.*?: |\w+Error: )", "", line)


# ---------------------------------------------------------------------------------------------------------------
# Config -> typed arguments of jaxvos.training.


def _to_dict(value: Any) -> Any:
  return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


def build_families(config: ml_collections.ConfigDict):
  """(training family, validation family) of the config's model: `model_overrides` (where the config has it)
  under `train_model` and `eval_model` respectively."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  shared = _to_dict(config.get("model_overrides", {}))
  return (registry.build(config.model, **_merged(shared, _to_dict(config.train_model))),
          registry.build(config.model, **_merged(shared, _to_dict(config.eval_model))))


def _merged(base: dict, top: dict) -> dict:
  """`top` over `base`, nested dicts merged key by key."""
  merged = dict(base)
  for key, value in top.items():
    merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
        else value
  return merged


def build_optimizer_spec(config: ml_collections.ConfigDict):
  from jaxvos.training.optimizer import OptimizerSpec  # pylint: disable=g-import-not-at-top
  fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in _to_dict(config.optimizer).items()}
  try:
    return OptimizerSpec(total_steps=config.train.steps, **fields)
  except ValueError as e:
    raise DataError("config.optimizer", str(e)) from None


def build_train_step(config: ml_collections.ConfigDict, family):
  """(optimizer, train_step) of the config."""
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.training import optimizer as optimizer_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  spec = build_optimizer_spec(config)
  if spec.trainable:  # a pattern that matches nothing fails here, in one line, not at the first step
    import jax  # pylint: disable=g-import-not-at-top
    hw = tuple(config.data.crop_hw)
    shapes = jax.eval_shape(lambda rng: family.init(rng, hw), jax.random.PRNGKey(0))
    try:
      optimizer_lib.trainable_mask(spec.trainable, shapes["params"])
    except ValueError as e:
      raise DataError("config.optimizer", str(e)) from None
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
  if data.source in ("static", "pseudo_video"):
    items = data_lib.static_pairs(data.static_roots)
    if data.davis_frames_every:
      videos = data_lib.davis_videos(data.davis_root, data.resolution, data.imageset, data.exclude)
      items += data_lib.video_frames(videos, data.davis_frames_every)
    return items, True
  raise SystemExit(f"error: data.source must be synthetic, davis, static or pseudo_video, got {data.source!r}")


def build_dataset(config: ml_collections.ConfigDict, items: list, static: bool, shard_index: int,
                  shard_count: int):
  """This process's batches of `config.data`: clips of videos, affine pseudo-clips of images, or pseudo-videos."""
  from jaxvos.training import data as data_lib  # pylint: disable=g-import-not-at-top
  data, spec = config.data, build_clip_spec(config)
  shard = dict(global_batch_size=data.batch_size, seed=data.seed, shard_index=shard_index, shard_count=shard_count)
  if data.source == "pseudo_video":
    from data_pipelines import pseudo_video  # pylint: disable=g-import-not-at-top
    fields = {key: tuple(value) if isinstance(value, list) else value
              for key, value in _to_dict(data.pseudo_video).items()}
    try:
      pseudo_config = pseudo_video.PseudoVideoConfig(**fields)
    except (TypeError, ValueError) as e:
      raise SystemExit(f"error: data.pseudo_video: {e}") from None
    return data_lib.pseudo_video_dataset(items, spec, pseudo_config, **shard)
  return data_lib.clip_dataset(items, spec, static=static, **shard)


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
  checkpoint, if any) as model directories for `jaxvos segment --checkpoint`, with the size validation ran at as
  their working size (none without validation); returns the paths written.

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
                                  source=f"jaxvos train {os.path.abspath(workdir)} step {step}",
                                  inference_size=None if config.val.source == "none" else config.val.size)
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
  from jaxvos.training import loop, sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(args.devices)
  if config.data.batch_size % mesh.size:
    raise SystemExit(f"error: batch size {config.data.batch_size} does not divide over {mesh.size} devices")
  family, eval_family = build_families(config)
  optimizer, train_step = build_train_step(config, family)
  items, static = build_items(config)
  dataset = build_dataset(config, items, static, jax.process_index(), jax.process_count())
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
