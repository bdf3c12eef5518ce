"""`bench davis`: trained models side by side on DAVIS sequences: J&F, MACs per frame as executed, wall-clock.

Every model (a model directory: a training run's `export/...`, `jaxvos convert` output, or `default` for the
packaged model) segments the same sequences from their first frame's objects (the semi-supervised protocol,
scored with the jaxvos J&F as `jaxvos evaluate` scores), **interleaved frame by frame in one process**, so the
load of a shared machine hits all of them alike. Per model:

- J&F, J and F over the sequences;
- ms per frame: the median over every frame but each sequence's first (streaming, as `jaxvos segment` runs a
  video: one jitted step per frame, uint8 RGB in, id map out). The first sequence is segmented once untimed
  before, so compilations (SpVOS compiles one program per bucket of active tiles) fall outside the timing;
- GMAC per frame: one step's dense count (`bench flops`), and as executed: each gated layer weighted by the
  fraction of its output it computed on these frames (the `executed/...` aux outputs of SpVOS; a dense model
  executes everything).

The last columns are ratios to the first model: put the model under test first and its dense twin second.
`--dense-twins` adds, after each gated checkpoint, the same weights with every gate forced to compute (the
weights' own dense twin: mixed sparse training keeps them valid dense).

    python -m jaxvos bench davis --checkpoints RUNS/spvos-davis-cpu/export/final,default \\
        --davis-root ../shared/data/davis2016-240p --sequences dog-agility,motorbike,soccerball
"""

import dataclasses
import os
import time
from typing import Any

import numpy as np

EXECUTED = "executed/"


def add_arguments(parser) -> None:
  parser.add_argument("--checkpoints", required=True, metavar="DIR[,DIR...]", help="model directories to "
                      "compare (`default`: the packaged default model); ratios are to the first")
  parser.add_argument("--davis-root", required=True, help="a DAVIS root (JPEGImages/, Annotations/)")
  parser.add_argument("--resolution", default="240p", help="the DAVIS resolution folder (default 240p)")
  parser.add_argument("--sequences", required=True, metavar="LIST", help="comma-separated sequence names")
  parser.add_argument("--size", type=int, default=0, help="shorter side every model sees (default: the first "
                      "checkpoint's working size)")
  parser.add_argument("--max-frames", type=int, default=0, help="frames per sequence (default: all)")
  parser.add_argument("--dense-twins", action="store_true", help="also run each gated checkpoint with every "
                      "gate forced to compute")


@dataclasses.dataclass
class _Model:
  label: str
  family: Any
  variables: Any
  times: list[float] = dataclasses.field(default_factory=list)
  predictions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  executed: dict[str, float] = dataclasses.field(default_factory=dict)  # layer -> sum of per-frame fractions
  frames: int = 0
  dense_macs: dict[str, int] | None = None


def run(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  paths = [io.DEFAULT_MODEL if p == "default" else p for p in args.checkpoints.split(",")]
  size = args.size or io.working_size(paths[0])
  models = []
  for path in paths:
    models.append(_Model(_label(path), *io.load_model(path)))
    if args.dense_twins and "force" in io.read_meta(path)["config"]:
      models.append(_forced_dense(models[-1], path))
  videos = _videos(args)
  segmenters = [Segmenter(m.family, m.variables, size=size) for m in models]
  print(f"{', '.join(m.label for m in models)}: {len(videos)} sequences ({sum(len(v.frames) for v in videos)} "
        f"frames) at a shorter side of {size}, interleaved frame by frame; {jax.devices()[0].device_kind}",
        flush=True)
  _segment(videos[0], models, segmenters, timed=False)  # compiles every program the timed run needs
  for video in videos:
    _segment(video, models, segmenters, timed=True)
    print(f"  {video.name}: {len(video.frames)} frames", flush=True)
  _report(models, videos)
  return 0


def _label(path: str) -> str:
  from jaxvos.convert import io  # pylint: disable=g-import-not-at-top
  if os.path.realpath(path) == os.path.realpath(io.DEFAULT_MODEL):
    return "default"
  parts = os.path.normpath(path).split(os.sep)
  return "/".join(parts[-3:]) if len(parts) >= 3 and parts[-2] == "export" else parts[-1]


def _forced_dense(model: _Model, path: str) -> _Model:
  """The same weights with every gate forced to compute."""
  from jaxvos.convert import families, io  # pylint: disable=g-import-not-at-top
  meta = io.read_meta(path)
  family = families.build(meta["family"], {**meta["config"], "force": "compute"})
  return _Model(f"{model.label} forced dense", family, model.variables)


def _videos(args) -> list:
  from jaxvos.training import data as data_lib, validation  # pylint: disable=g-import-not-at-top
  from data_pipelines.errors import DataError  # pylint: disable=g-import-not-at-top
  names = [n for n in args.sequences.split(",") if n]
  by_name = {s.name: s for s in data_lib.davis_videos(args.davis_root, args.resolution)}
  missing = [n for n in names if n not in by_name]
  if missing:
    raise DataError(os.path.join(args.davis_root, "JPEGImages", args.resolution), f"no sequence {missing[0]}")
  return validation.load_videos([by_name[n] for n in names], args.max_frames or None)


def _segment(video, models: list[_Model], segmenters: list, *, timed: bool) -> None:
  """Segments `video` with every model, frame by frame in turn; keeps times, predictions and gate statistics."""
  from jaxvos.training import validation  # pylint: disable=g-import-not-at-top
  first = validation.first_frame_objects(video)
  ids = [int(i) for i in np.unique(first) if i]
  streams = [segmenter.stream(ids) for segmenter in segmenters]
  predictions = [[] for _ in models]
  for t, frame in enumerate(video.frames):
    for model, stream, predicted in zip(models, streams, predictions):
      start = time.perf_counter()
      predicted.append(stream(frame, first if t == 0 else None))  # host ids: the frame's work is done
      if timed and t > 0:
        model.times.append(time.perf_counter() - start)
  if not timed:
    return
  for model, stream, predicted in zip(models, streams, predictions):
    model.predictions[video.name] = np.stack(predicted)
    steps = len(video.frames) - 1
    for key, stats in stream.aux_stats().items():
      if key.startswith(EXECUTED):
        name = key[len(EXECUTED):]
        model.executed[name] = model.executed.get(name, 0.0) + stats["mean"] * steps
    model.frames += steps
    if model.dense_macs is None:
      model.dense_macs = _dense_macs(model, stream, video.frames[1])


def _dense_macs(model: _Model, stream, frame: np.ndarray) -> dict[str, int]:
  """MACs per layer of one step of `model` at the stream's frame size."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxvos.bench import flops  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
  x = frames_lib.preprocess(jnp.asarray(frame[None]), stream.geometry)
  objects = len(stream.slot_ids)
  masks = jnp.zeros((1, objects, *stream.geometry.model_hw), jnp.float32)
  return flops.count_macs(model.family.step, model.variables, stream.state, x, masks,
                          jnp.zeros((1, objects), bool))


def _report(models: list[_Model], videos: list) -> None:
  from jaxvos.bench import flops  # pylint: disable=g-import-not-at-top
  from jaxvos.training import validation  # pylint: disable=g-import-not-at-top
  rows = []
  for model in models:
    scores = validation.summary(validation.score(videos, model.predictions))
    fractions = {name: total / model.frames for name, total in model.executed.items()}
    dense = sum(model.dense_macs.values())
    executed = sum(flops.executed_macs(model.dense_macs, fractions).values())
    rows.append((model.label, scores, float(np.median(model.times)) * 1e3, dense / 1e9, executed / 1e9))
  _, _, base_ms, _, base_executed = rows[0]
  print(f"\n{'model':<34} {'J&F':>6} {'J':>6} {'F':>6} {'ms/frame':>9} {'GMAC dense':>11} {'executed':>9} "
        f"{'time / first':>13} {'MAC / first':>12}")
  for label, scores, ms, dense, executed in rows:
    print(f"{label:<34} {scores['j_and_f']:6.3f} {scores['j_mean']:6.3f} {scores['f_mean']:6.3f} {ms:9.1f} "
          f"{dense:11.3f} {executed:9.3f} {ms / base_ms:13.2f} {executed / base_executed:12.2f}")
  for (label, scores, ms, dense, executed) in rows:
    if executed < dense:
      print(f"{label}: executes {executed / dense:.2f} of its dense MACs")
