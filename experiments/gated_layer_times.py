"""One SpVOS gated convolution timed against the plain one, and its parts, on this host (random weights).

For a layer input [1 h w c] -> c channels (3x3, stride 1) of a 480x864 frame, median of --repeats (ms): the plain
convolution; the gated layer forced dense (the decisions a constant: XLA folds the executor's branch), with
unforced gates that all compute (the run-time branch), forced to reuse; the executor alone with every tile and
with every other tile active; the gate head alone. Session 20 (`experiments/README.md`):

    python experiments/gated_layer_times.py --shape 120,216,64
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxvos.nn import gated_conv as gc  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxvos.ops import sparse_conv as sc  # noqa: E402  pylint: disable=g-import-not-at-top

FRAME_HW = (480, 864)


def median_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compiled
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e3)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="120,216,64", help="h,w,c of the layer's input (at stride 4: 120,216)")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  h, w, c = (int(v) for v in args.shape.split(","))
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(1, h, w, c).astype(np.float32))
  x_prev = x + 0.1 * jnp.asarray(rng.randn(1, h, w, c).astype(np.float32))
  masks = jnp.zeros((1, 1, *FRAME_HW))
  settings = gc.GateSettings()
  variables = gc.GatedConv(c, gates=gc.FrameGates(settings, "init", FRAME_HW)).init(jax.random.key(0), x)
  y_prev = jax.jit(gc.GatedConv(c).apply)(variables, x)

  def gated(force_dense: bool, force: str | None = None):
    def run(variables, x):
      gates = gc.FrameGates(gc.GateSettings(force=force), "argmax", FRAME_HW, masks=masks,
                            caches={"": {"x": x_prev, "y": y_prev}}, force_dense=jnp.array([force_dense]))
      return gc.GatedConv(c, gates=gates).apply(variables, x)
    return jax.jit(run)

  all_compute = jax.tree.map(lambda a: a, variables)
  all_compute["params"]["gate"]["logits"]["bias"] = jnp.array([10.0, 0.0, 0.0])  # compute's logit far ahead
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  tile = tuple(max(1, p // (FRAME_HW[0] // h)) for p in settings.tile_pixels)
  grid = sc.tile_grid((h, w), tile)
  every = jnp.ones((1, *grid))
  every_other = (jnp.arange(every.size).reshape(every.shape) % 2).astype(jnp.float32)
  executor = jax.jit(lambda x, a: sc.sparse_conv_tiles(x, kernel, a, y_prev, tile=tile, post=lambda y: y + bias))
  head = gc.GateHead(tile, 1, settings.hidden, settings.init_bias)
  head_variables = head.init(jax.random.key(1), x, x - x_prev, jnp.zeros((1, h, w)))
  rows = {
      "plain convolution": (jax.jit(lambda x: sc.dense_conv(x, kernel) + bias), x),
      "gated, forced dense": (gated(True), variables, x),
      "gated, every gate computing": (gated(False), all_compute, x),
      "gated, forced to reuse": (gated(False, "reuse"), variables, x),
      "executor, every tile": (executor, x, every),
      "executor, every other tile": (executor, x, every_other),
      "gate head": (jax.jit(lambda x: head.apply(head_variables, x, x - x_prev, jnp.zeros((1, h, w)))), x),
  }
  print(f"[1 {h} {w} {c}] -> {c}, tiles {tile} ({grid[0]}x{grid[1]}); median of {args.repeats} ms; "
        f"{jax.default_backend()}")
  for name, (fn, *fn_args) in rows.items():
    print(f"  {name:28s} {median_ms(fn, *fn_args, repeats=args.repeats):7.2f}")


if __name__ == "__main__":
  main()
