"""`python -m jaxvos bench sparse`: the sparse executor alone against the dense convolution, at fixed active fractions.

The executor (`jaxvos.ops.sparse_conv`) convolves only the output tiles a mask needs and keeps a base value
elsewhere; this measures its time over the dense convolution's for one 3x3 convolution of SpVOS's gated layers at
480p (default: ResNet layer1, [1 120 216 64] -> 64 channels: a 480x864 frame at stride 4), for active fractions
0.25, 0.5 and 0.75 of the output pixels and two kinds of mask:

- `random`: random tiles of the gate's granularity (SpVOS gates per tile: `jaxvos.models.spvos`), so the active
  fraction is exactly what is executed;
- `blob`: a smooth random field thresholded at the fraction's quantile (pixel-shaped blobs, as moving objects
  give): tiles that hold any active pixel are executed, more than the fraction.

The executor runs on tile decisions (`sparse_conv_tiles`), as in the model, whose gates decide per tile.

One line per (mask, fraction), `active 0.50: sparse/dense time 0.xx` (goal: at most the fraction + 0.15), with
the executed tile fraction and the milliseconds. Both programs are compiled before timing, then run back to back
`--repeats` times; the ratio is the median of the pairs' ratios (robust to the load of a shared machine), the
milliseconds the medians.

    python -m jaxvos bench sparse [--tile 8,24] [--shape 1,120,216,64] [--features 64] [--stride 1] [--repeats 20]
"""

import time

import numpy as np

DESCRIPTION = __doc__.split("\n\n")[0].split(": ", 1)[1]
FRACTIONS = (0.25, 0.5, 0.75)
BLOB_CELL = 24  # blob masks: noise on a grid of 24-pixel cells, blurred (blobs of ~20-60 output pixels)


def add_arguments(parser):
  parser.add_argument("--tile", default="8,24",
                      help="output tile ROWS,COLUMNS of the executor (default 8,24: SpVOS's tiles at stride 4)")
  parser.add_argument("--shape", default="1,120,216,64", help="input n,h,w,c (default ResNet layer1 at 480p)")
  parser.add_argument("--features", type=int, default=64, help="output channels (default 64)")
  parser.add_argument("--stride", type=int, default=1, choices=(1, 2))
  parser.add_argument("--masks", default="random,blob", help="mask kinds, comma-separated (random, blob)")
  parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="active fractions")
  parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement (median)")
  parser.add_argument("--seed", type=int, default=0)


def make_mask(kind: str, fraction: float, shape: tuple[int, int, int], tile: tuple[int, int], seed: int = 0
              ) -> np.ndarray:
  """bool [n ho wo]: `random` tiles (exactly round(fraction * tiles) of them) or `blob`s (a smoothed noise field
  thresholded so that `fraction` of the pixels are active)."""
  r = np.random.RandomState(seed)
  n, ho, wo = shape
  if kind == "random":
    ht, wt = -(-ho // tile[0]), -(-wo // tile[1])
    flat = np.zeros(n * ht * wt, bool)
    flat[r.permutation(flat.size)[:round(fraction * flat.size)]] = True
    tiles = flat.reshape(n, ht, wt)
    return np.repeat(np.repeat(tiles, tile[0], axis=1), tile[1], axis=2)[:, :ho, :wo]
  if kind == "blob":
    cell = BLOB_CELL
    field = r.randn(n, ho // cell + 3, wo // cell + 3)
    field = np.repeat(np.repeat(field, cell, axis=1), cell, axis=2)
    for axis in (1, 2):  # two box blurs of a cell smooth the blocks into blobs
      field = _box_blur(_box_blur(field, cell, axis), cell, axis)
    field = field[:, cell:cell + ho, cell:cell + wo]
    return field > np.quantile(field, 1.0 - fraction)
  raise ValueError(f"unknown mask kind {kind!r} (random, blob)")


def _box_blur(x: np.ndarray, size: int, axis: int) -> np.ndarray:
  """Mean over a window of `size` along `axis` (valid part, zero-padded back to the input length)."""
  c = np.cumsum(np.moveaxis(x, axis, -1), axis=-1)
  c = np.concatenate([np.zeros_like(c[..., :1]), c], axis=-1)
  out = (c[..., size:] - c[..., :-size]) / size
  out = np.concatenate([out, np.repeat(out[..., -1:], size - 1, axis=-1)], axis=-1)
  return np.moveaxis(out, -1, axis)


def _paired_seconds(dense, dense_args, sparse, sparse_args, repeats: int) -> tuple[np.ndarray, np.ndarray]:
  """Seconds of `repeats` back-to-back (dense, sparse) runs: pairs share the machine's load of the moment."""
  dense(*dense_args).block_until_ready()
  sparse(*sparse_args).block_until_ready()
  times = np.zeros((repeats, 2))
  for i in range(repeats):
    for j, (fn, args) in enumerate(((dense, dense_args), (sparse, sparse_args))):
      start = time.perf_counter()
      fn(*args).block_until_ready()
      times[i, j] = time.perf_counter() - start
  return times[:, 0], times[:, 1]


def measure(shape, features: int, stride: int, tile: tuple[int, int], kinds, fractions, repeats: int, seed: int = 0
            ) -> list[dict]:
  """Per (kind, fraction): the executed tile fraction, sparse and dense milliseconds and their ratio."""
  import jax  # pylint: disable=g-import-not-at-top  (JAX starts only when benchmarking)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxvos.ops import sparse_conv as sc  # pylint: disable=g-import-not-at-top
  r = np.random.RandomState(seed)
  n, h, w, c = shape
  x = jnp.asarray(r.randn(n, h, w, c), jnp.float32)
  kernel = jnp.asarray(r.randn(3, 3, c, features) * 0.05, jnp.float32)
  ho, wo = sc.conv_output_hw((h, w), 3, stride)
  base = jnp.asarray(r.randn(n, ho, wo, features), jnp.float32)
  dense = jax.jit(lambda x, k: sc.dense_conv(x, k, stride))
  sparse = jax.jit(lambda x, k, a, b: sc.sparse_conv_tiles(x, k, a, b, stride=stride, tile=tile))
  rows = []
  for kind in kinds:
    for fraction in fractions:
      activity = sc.tile_activity(jnp.asarray(make_mask(kind, fraction, (n, ho, wo), tile, seed)), tile)
      executed = float(sc.executed_fraction(activity, tile, (ho, wo), stride))
      dense_s, sparse_s = _paired_seconds(dense, (x, kernel), sparse, (x, kernel, activity, base), repeats)
      rows.append(dict(kind=kind, fraction=fraction, executed=executed, sparse_ms=1e3 * np.median(sparse_s),
                       dense_ms=1e3 * np.median(dense_s), ratio=float(np.median(sparse_s / dense_s))))
  return rows


def run(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  shape = tuple(int(v) for v in args.shape.split(","))
  tile = tuple(int(v) for v in args.tile.split(","))
  tile = tile * 2 if len(tile) == 1 else tile
  fractions = tuple(float(v) for v in args.fractions.split(","))
  kinds = tuple(args.masks.split(","))
  print(f"3x3 conv {shape} -> {args.features} channels, stride {args.stride}, tile {tile[0]}x{tile[1]}, "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind})")
  for row in measure(shape, args.features, args.stride, tile, kinds, fractions, args.repeats, args.seed):
    print(f"{row['kind']:<6} active {row['fraction']:.2f}: sparse/dense time {row['ratio']:.2f}  "
          f"(tiles executed {row['executed']:.2f}; sparse {row['sparse_ms']:.1f} ms, dense {row['dense_ms']:.1f} ms)")
  return 0
