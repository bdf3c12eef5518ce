"""Where one frame's time goes: a family's skeleton stages timed one by one, on this host.

Builds the state of a video after a few frames, then times, each as its own compiled program (median of
--repeats after a warm-up, every model's stages interleaved): the query encoder, the memory read, the decoder,
the memory encoder (`encode_memory`; SwiftNet's light aggregation encoder, run on every frame), the memory
update (with the memory encoder inside) and the whole step. Stage times do not add up exactly to the step's
(XLA fuses across stages in the step).

Two sources of models and frames:

- `--model NAME` (random weights) on random frames with two box masks, a 16:9 frame of height --size, the state
  after 3 frames (session 11, `experiments/README.md`, SwiftNet's stages):

    python experiments/stage_times.py --model swiftnet --size 480 [--override '{"rsp_kernel": 1}']

- `--checkpoints DIR,...` (trained weights; `default`: the packaged model) on a real DAVIS sequence, annotated at
  its first frame and streamed through `--frame` frames as `jaxvos segment` does, so gated models (SpVOS) time
  the decisions their gates take on real frames; `--variants FIELD=VALUE,...` adds each checkpoint with a config
  field changed, e.g. `force=compute` (SpVOS's dense twin: every gate computes). Session 20:

    python experiments/stage_times.py --checkpoints RUNS/spvos-gates-6f-cpu/export/final,default \
        --variants force=compute --davis-root ../shared/data/davis-examples-480p --resolution 480p \
        --sequence blackswan --size 480 --frame 3
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.bench import davis as bench_davis  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.convert import io  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.inference import Segmenter  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models import registry  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models.family import FrameInfo  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models.skeleton import bind_apply  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.training import data as data_lib, validation  # noqa: E402  pylint: disable=g-import-not-at-top


def random_video_state(family, variables, size: int):
  """(state after 3 frames, the 4th frame, object_valid) of a 2-object random video of height `size`."""
  h, w = size, 16 * round(size * 16 / 9 / 16)
  rng = np.random.RandomState(0)
  frames = [jnp.asarray(rng.randn(1, h, w, 3).astype(np.float32)) for _ in range(4)]
  masks = np.zeros((1, 2, h, w), np.float32)
  masks[0, 0, h // 5:3 * h // 5, w // 8:w // 2] = 1
  masks[0, 1, 2 * h // 5:4 * h // 5, 3 * w // 5:w - w // 16] = 1
  masks, valid = jnp.asarray(masks), jnp.ones((1, 2), bool)
  none = (jnp.zeros_like(masks), jnp.zeros_like(valid))
  state = jax.jit(family.init_memory)(variables, frames[0], masks, valid)
  step = jax.jit(lambda v, s, f: family.step(v, s, f, *none))
  for frame in frames[1:3]:
    state, _ = step(variables, state, frame)
  return state, frames[3], valid


def davis_video_state(family, variables, video, size: int, frame_index: int):
  """(state after frames 0..frame_index - 1 of `video`, annotated at frame 0, streamed as `jaxvos segment`
  streams, the preprocessed frame `frame_index`, object_valid)."""
  first = validation.first_frame_objects(video)
  segmenter = Segmenter(family, variables, size=size)
  stream = segmenter.stream([int(i) for i in np.unique(first) if i])
  for t in range(frame_index):
    stream(video.frames[t], first if t == 0 else None)
  preprocess = segmenter._preprocess  # pylint: disable=protected-access
  frame = preprocess(jnp.asarray(video.frames[frame_index][None]), stream.geometry)
  return stream.state, frame, jnp.ones((1, len(stream.slot_ids)), bool)


def stages(family, variables, state, frame, valid) -> dict:
  """{stage: thunk}, each stage its own compiled program, fed the outputs of the stages before it."""
  module, memory_type = family.module, family.memory
  none = (jnp.zeros((1, valid.shape[1], *frame.shape[1:3]), frame.dtype), jnp.zeros_like(valid))
  info = FrameInfo(t=state.num_frames, object_valid=valid, new_object_valid=none[1])
  apply = lambda v, method, *a: bind_apply(module, v, None)(method, *a, info)  # noqa: E731
  encode_query = jax.jit(lambda v, f, c: apply(v, "encode_query", f, c))
  read = jax.jit(lambda m, q: memory_type.read(m, q, info))
  decode = jax.jit(lambda v, q, r, c: apply(v, "decode", q, r, c))
  encode_memory = jax.jit(lambda v, f, q, p: apply(v, "encode_memory", f, q, p))
  update = jax.jit(lambda v, m, f, q, p: memory_type.update(m, lambda: apply(v, "encode_memory", f, q, p), q, p,
                                                            info))
  step = jax.jit(lambda v, s, f: family.step(v, s, f, *none))
  query, cache, _ = encode_query(variables, frame, state.cache)
  readout, memory, _ = read(state.memory, query)
  probs = jax.nn.sigmoid(decode(variables, query, readout, cache)[0])
  return {
      "query encoder": lambda: encode_query(variables, frame, state.cache),
      "memory read": lambda: read(state.memory, query),
      "decoder": lambda: decode(variables, query, readout, cache),
      "memory encoder": lambda: encode_memory(variables, frame, query, probs),
      "memory update (with the encoder)": lambda: update(variables, memory, frame, query, probs),
      "whole step": lambda: step(variables, state, frame),
  }


def median_times(thunks: dict, repeats: int) -> dict:
  """{name: median seconds}, the thunks interleaved, after one warm-up round that compiles them."""
  times = {name: [] for name in thunks}
  for repeat in range(repeats + 1):
    for name, fn in thunks.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      if repeat:
        times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def build_models(args) -> dict:
  """{label: (family, variables)}: --checkpoints (trained) or --model (random weights), each also with every
  --variants field changed where its config has the field."""
  items = bench_davis.split_list(args.variants)
  models = {}
  if args.checkpoints:
    for path in args.checkpoints.split(","):
      path = io.DEFAULT_MODEL if path == "default" else path
      label = bench_davis.label(path)
      family, variables = io.load_model(path)
      models[label] = family, variables
      for item in items:
        variant = bench_davis.family_with_field(path, item)
        if variant is not None:
          models[f"{label} {item}"] = variant, variables
    return models
  overrides = json.loads(args.override)
  for name in args.model.split(","):
    fields = {f.name for f in dataclasses.fields(registry.MODELS[name].config_class)}
    override = {field: value for field, value in overrides.items() if field in fields}
    family = registry.build(name, **override)
    variables = family.init(jax.random.key(0), (64, 64))
    models[f"{name} {override or ''}".strip()] = family, variables
    for field, value in map(bench_davis.parse_field, items):
      if field in fields:
        models[f"{name} {field}={value}"] = registry.build(name, **{**override, field: value}), variables
  return models


def executed_fraction(family, variables, state, frame, valid) -> float | None:
  """The fraction of its dense MACs the step executes on `frame` (gated families), else None."""
  none = (jnp.zeros((1, valid.shape[1], *frame.shape[1:3]), frame.dtype), jnp.zeros_like(valid))
  aux = jax.jit(lambda v, s, f: family.step(v, s, f, *none)[1].aux)(variables, state, frame)
  parts = [key.split("/", 1)[1] for key in aux if key.startswith("executed_macs/")]
  if not parts:
    return None
  return float(sum(aux[f"executed_macs/{p}"].sum() for p in parts) / sum(aux[f"macs/{p}"].sum() for p in parts))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="swiftnet", help="comma-separated registered models, random weights "
                      "(without --checkpoints)")
  parser.add_argument("--override", default="{}", help="config overrides as JSON, each applied to the --model "
                      "configs that have the field, e.g. '{\"rsp_kernel\": 1}'")
  parser.add_argument("--checkpoints", default="", help="comma-separated model directories (`default`)")
  parser.add_argument("--variants", default="", help="comma-separated FIELD=VALUE: each model also with FIELD "
                      "changed, where its config has it")
  parser.add_argument("--davis-root", default="", help="stream a DAVIS sequence (default: random frames)")
  parser.add_argument("--resolution", default="240p")
  parser.add_argument("--sequence", default="blackswan")
  parser.add_argument("--frame", type=int, default=3, help="the frame timed (streamed from frame 0)")
  parser.add_argument("--size", type=int, default=480)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--stages", default="", help="comma-separated stage names to time (default: all), e.g. "
                      "'whole step'")
  args = parser.parse_args()
  models = build_models(args)
  if args.davis_root:
    videos = {v.name: v for v in data_lib.davis_videos(args.davis_root, args.resolution)}
    video = validation.load_videos([videos[args.sequence]], args.frame + 1)[0]
    setups = {label: (family, variables, *davis_video_state(family, variables, video, args.size, args.frame))
              for label, (family, variables) in models.items()}
    where = f"{args.sequence} frame {args.frame}"
  else:
    setups = {label: (family, variables, *random_video_state(family, variables, args.size))
              for label, (family, variables) in models.items()}
    where = "random frames, 2 objects, frame 3"
  wanted = set(filter(None, args.stages.split(",")))
  thunks = {(label, name): fn for label, setup in setups.items() for name, fn in stages(*setup).items()
            if not wanted or name in wanted}
  times = median_times(thunks, args.repeats)
  frame = next(iter(setups.values()))[3]
  print(f"{frame.shape[2]}x{frame.shape[1]}, {where}; median of {args.repeats}, interleaved; {jax.default_backend()}")
  first = times.get((next(iter(setups)), "whole step"))
  for label, setup in setups.items():
    fraction = executed_fraction(*setup)
    notes = [] if first is None else [f"whole step {times[(label, 'whole step')] / first:.2f} of the first's"]
    notes += [] if fraction is None else [f"executes {fraction:.2f} of its dense MACs"]
    print(f"{label}{' (' + ', '.join(notes) + ')' if notes else ''}:")
    for (owner, name), seconds in times.items():
      if owner == label:
        print(f"  {name:34s} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
  main()
