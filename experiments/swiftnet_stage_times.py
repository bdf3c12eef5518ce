"""Where one SwiftNet frame's time goes: its skeleton stages timed one by one, random weights, on this host.

Builds the state of a 4-frame video (2 objects, a 16:9 frame of the given height), then times, each as its own
compiled program (median of 5 after a warm-up, interleaved): the query encoder, the memory read, the decoder,
the light aggregation encoder (`encode_memory`: the temporary slot's encoding, on every frame), the memory
update (trigger, novelty top-k, temporary slot, with the LAE inside) and the whole step. Stage times do not add
up exactly to the step's (XLA fuses across stages in the step). Session 11, `experiments/README.md`:

    python experiments/swiftnet_stage_times.py --model swiftnet --size 480 [--override '{"rsp_kernel": 1}']
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.models import registry  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models.family import FrameInfo  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.models.skeleton import bind_apply  # noqa: E402  pylint: disable=g-import-not-at-top


def video_state(family, size: int):
  """(variables, state after 3 frames, the 4th frame, (no masks, no valid), valid) of a 2-object random video."""
  h, w = size, 16 * round(size * 16 / 9 / 16)
  variables = family.init(jax.random.key(0), (64, 64))
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
  return variables, state, frames[3], step, FrameInfo(t=state.num_frames, object_valid=valid,
                                                       new_object_valid=none[1])


def stages(family, variables, state, frame, step, info) -> dict:
  """{stage: thunk}, each stage its own compiled program, fed the outputs of the stages before it."""
  module, memory_type = family.module, family.memory
  apply = lambda v, method, *a: bind_apply(module, v, None)(method, *a, info)  # noqa: E731
  encode_query = jax.jit(lambda v, f, c: apply(v, "encode_query", f, c))
  read = jax.jit(lambda m, q: memory_type.read(m, q, info))
  decode = jax.jit(lambda v, q, r, c: apply(v, "decode", q, r, c))
  encode_memory = jax.jit(lambda v, f, q, p: apply(v, "encode_memory", f, q, p))
  update = jax.jit(lambda v, m, f, q, p: memory_type.update(m, lambda: apply(v, "encode_memory", f, q, p), q, p,
                                                            info))
  query, cache, _ = encode_query(variables, frame, state.cache)
  readout, memory, _ = read(state.memory, query)
  probs = jax.nn.sigmoid(decode(variables, query, readout, cache)[0])
  return {
      "query encoder": lambda: encode_query(variables, frame, state.cache),
      "memory read": lambda: read(state.memory, query),
      "decoder": lambda: decode(variables, query, readout, cache),
      "light aggregation encoder": lambda: encode_memory(variables, frame, query, probs),
      "memory update (with the LAE)": lambda: update(variables, memory, frame, query, probs),
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


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="swiftnet")
  parser.add_argument("--size", type=int, default=480)
  parser.add_argument("--override", default="{}", help="config overrides as JSON, e.g. '{\"rsp_kernel\": 1}'")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  family = registry.build(args.model, **json.loads(args.override))
  variables, state, frame, step, info = video_state(family, args.size)
  times = median_times(stages(family, variables, state, frame, step, info), args.repeats)
  print(f"{args.model} {json.loads(args.override) or ''} at {frame.shape[2]}x{frame.shape[1]}, 2 objects, frame 3; "
        f"median of {args.repeats}; {jax.default_backend()}")
  for name, seconds in times.items():
    print(f"  {name:30s} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
  main()
