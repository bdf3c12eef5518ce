"""A sparse executor for convolutions: compute only the output tiles that some pixel needs, keep the rest.

What SpVOS needs to save wall-clock time and not only counted MACs (METHODS.md, SpVOS; after SBNet, Ren et al.
CVPR 2018): masked dense compute (`jnp.where(mask, conv(x), base)`) costs the whole convolution whatever the
mask. Here, for tile decisions (`sparse_conv_tiles`, activity [n ht wt]) or an output mask (`sparse_conv`,
[n ho wo], pooled per tile: a tile is active if any of its pixels is) and a `base` [n ho wo c'] (what every
other pixel keeps: a reused or skipped value):

1. the active count picks one of a few static slot counts (`buckets`: fractions of the tiles; 0 and all tiles
   always among them), so a layer compiles a bounded number of programs and `lax.switch` runs only one;
2. `lax.top_k` over the tiles' activity picks that many tiles (the active ones first); each is gathered with its
   halo, the input window of `(t - 1) * stride + k` rows and columns that its t x t outputs read;
3. one `lax.conv` over the windows laid side by side in a few wide canvas rows (`_canvas_conv`) gives those
   tiles' outputs: the MACs are about the slots' `th * tw * k^2 * c * c'` (x 1.08 for 24-wide tiles), never the
   whole map's;
4. the tiles are scattered back over `base` (`lax.scatter`; unused slots dropped), pixel by pixel where a mask
   says so.

The bucket "all tiles" runs the dense convolution (no gather: nothing to save; when every tile is active, without
building or merging `base`), and so do the buckets whose canvas would cost nearly as much (`effective_slots`); the
bucket 0 returns `base`. Strides 1 and 2 (any stride) and odd square kernels are supported, with PyTorch's
padding `k // 2` on both sides (`jaxvos.nn.layers.conv`).
Arrays are NHWC, kernels HWIO; `post` (a bias: any function that acts on the last axis pixel by pixel) is
applied to computed outputs only. Results equal masked dense compute (tested); `jaxvos bench sparse` times it.
"""

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

DEFAULT_TILE = (8, 24)       # output tile (rows, columns): wide tiles keep the canvas halo overhead small
DEFAULT_BUCKETS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)  # fractions of the tiles; 0 and 1 are added
CANVAS_WIDTH = 1024          # input pixels per canvas row (`_canvas_conv`)
MAX_CANVAS_FRACTION = 0.9    # a bucket whose canvas computes more than this of the dense outputs runs dense
DN = ("NHWC", "HWIO", "NHWC")
Post = Callable[[jax.Array], jax.Array] | None
Tile = int | tuple[int, int]


def as_tile(tile: Tile) -> tuple[int, int]:
  """(rows, columns) of an output tile given as a side or a pair."""
  return (tile, tile) if isinstance(tile, int) else tuple(tile)


def conv_output_hw(hw: Sequence[int], kernel: int, stride: int) -> tuple[int, int]:
  """Output size of a `kernel x kernel` convolution with padding `kernel // 2` and `stride` (PyTorch's)."""
  pad = kernel // 2
  return tuple((size + 2 * pad - kernel) // stride + 1 for size in hw)


def tile_grid(hw: Sequence[int], tile: Tile) -> tuple[int, int]:
  """Tiles (rows, columns) that cover an output map of size `hw`; the last ones may overhang."""
  return tuple(math.ceil(size / t) for size, t in zip(hw, as_tile(tile)))


def bucket_slots(num_tiles: int, buckets: Sequence[float] = DEFAULT_BUCKETS) -> tuple[int, ...]:
  """The static slot counts: 0, ceil(f * num_tiles) for each fraction f, and num_tiles, sorted and unique."""
  slots = {0, num_tiles} | {min(num_tiles, math.ceil(f * num_tiles)) for f in buckets}
  return tuple(sorted(slots))


def dense_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
  """The reference: x [n h w c], kernel [k k c c'] -> [n ho wo c'], `nn.Conv`'s call with padding k // 2."""
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=DN)


def tile_activity(mask: jax.Array, tile: Tile) -> jax.Array:
  """Active pixels per tile: mask [n ho wo] bool -> int32 [n ht wt] (overhanging pixels count as inactive)."""
  (th, tw), (n, ho, wo) = as_tile(tile), mask.shape
  ht, wt = tile_grid((ho, wo), (th, tw))
  padded = jnp.pad(mask.astype(jnp.int32), ((0, 0), (0, ht * th - ho), (0, wt * tw - wo)))
  return padded.reshape(n, ht, th, wt, tw).sum(axis=(2, 4))


def tiles_to_pixels(tiles: jax.Array, tile: Tile, hw: Sequence[int]) -> jax.Array:
  """Per-tile values [n ht wt ...] repeated over their pixels -> [n h w ...] (overhang cropped)."""
  th, tw = as_tile(tile)
  return jnp.repeat(jnp.repeat(tiles, th, axis=1), tw, axis=2)[:, :hw[0], :hw[1]]


def _window_starts(index: jax.Array, grid: tuple[int, int], step: tuple[int, int]) -> jax.Array:
  """int32 [... 3]: (video, row, column) of the tiles `index` [...] (flat over n ht wt), scaled by `step`."""
  n_idx, rest = jnp.divmod(index, grid[0] * grid[1])
  i, j = jnp.divmod(rest, grid[1])
  return jnp.stack([n_idx, i * step[0], j * step[1]], axis=-1).astype(jnp.int32)


def _gather(x: jax.Array, starts: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Windows of x [n h w c] at starts [rows columns 3] (in bounds) -> [rows size[0] columns size[1] c]."""
  dnums = jax.lax.GatherDimensionNumbers(offset_dims=(1, 3, 4), collapsed_slice_dims=(0,),
                                         start_index_map=(0, 1, 2))
  return jax.lax.gather(x, starts, dnums, (1, *size, x.shape[-1]),
                        mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _scatter(x: jax.Array, starts: jax.Array, updates: jax.Array) -> jax.Array:
  """x [n h w c] with `updates` [rows th columns tw c] written at starts [rows columns 3]: distinct windows;
  windows that do not lie inside x are dropped (how unused slots are discarded)."""
  dnums = jax.lax.ScatterDimensionNumbers(update_window_dims=(1, 3, 4), inserted_window_dims=(0,),
                                          scatter_dims_to_operand_dims=(0, 1, 2))
  return jax.lax.scatter(x, starts, updates, dnums, unique_indices=True,
                         mode=jax.lax.GatherScatterMode.FILL_OR_DROP)


def _canvas_layout(slots: int, tile: tuple[int, int], stride: int, kernel: int) -> tuple[int, int, int, int]:
  """(rows, columns, window height, window width) of the canvas that `slots` tiles are convolved on.

  XLA's CPU convolution pays a fixed cost per image and runs wide images fastest, so the tiles' input windows
  are laid side by side in a few canvas rows of about `CANVAS_WIDTH` pixels. A window is `wc` wide (its
  `(tw - 1) * stride + k` columns rounded up to a multiple of the stride, at least `stride * (tw + 1)`); outputs
  that straddle two windows are computed and dropped: an overhead of (wc / stride) / tw in width only (1.08
  for 24-wide tiles).
  """
  th, tw = tile
  wc = max(-(-((tw - 1) * stride + kernel) // stride) * stride, stride * (tw + 1))
  rows = max(1, round(slots * wc / CANVAS_WIDTH))
  return rows, -(-slots // rows), (th - 1) * stride + kernel, wc


def _canvas_conv(canvas: jax.Array, kernel: jax.Array, tile: tuple[int, int], stride: int) -> jax.Array:
  """The convolution of a canvas [rows wh columns wc c] -> its tiles' outputs [rows th columns tw c'].

  The canvas is padded by one stride left and right although no kept output needs it: XLA's CPU convolution
  without any padding ran ~1.6x slower per output (jaxlib 0.10, measured on the 2-core CPU); window j's tile
  sits at the canvas outputs j * wc / stride + 1 ... + tw.
  """
  rows, wh, columns, wc, c = canvas.shape
  out = jax.lax.conv_general_dilated(canvas.reshape(rows, wh, columns * wc, c), kernel, (stride, stride),
                                     ((0, 0), (stride, stride)), dimension_numbers=DN)
  per_window = wc // stride
  out = out[:, :, :columns * per_window].reshape(rows, tile[0], columns, per_window, -1)
  return out[:, :, :, 1:tile[1] + 1]


def _gathered(slots: int, x, kernel, activity, mask, base, *, tile, stride, post):
  """The `slots` most active tiles convolved and written over `base` (a branch of `sparse_conv_tiles`)."""
  (th, tw), (_, ho, wo, _), k = tile, base.shape, kernel.shape[0]
  grid = activity.shape[1:]
  rows, columns, wh, wc = _canvas_layout(slots, tile, stride, k)
  _, index = jax.lax.top_k(activity.reshape(-1), slots)
  index = jnp.pad(jnp.sort(index), (0, rows * columns - slots)).reshape(rows, columns)
  used = (jnp.arange(rows * columns) < slots).reshape(rows, columns) & (activity.reshape(-1)[index] > 0)
  pad = k // 2
  hi = [max(0, (g - 1) * t * stride + size - extent - pad)  # the last window must lie inside
        for g, t, size, extent in zip(grid, tile, (wh, wc), x.shape[1:3])]
  x = jnp.pad(x, ((0, 0), (pad, hi[0]), (pad, hi[1]), (0, 0)))
  canvas = _gather(x, _window_starts(index, grid, (th * stride, tw * stride)), (wh, wc))
  out = _canvas_conv(canvas, kernel, tile, stride)
  out = (post(out) if post is not None else out).astype(base.dtype)
  base = jnp.pad(base, ((0, 0), (0, grid[0] * th - ho), (0, grid[1] * tw - wo), (0, 0)))
  starts = _window_starts(index, grid, tile)
  if mask is not None:
    mask = jnp.pad(mask, ((0, 0), (0, grid[0] * th - ho), (0, grid[1] * tw - wo)))[..., None]
    out = jnp.where(_gather(mask, starts, tile), out, _gather(base, starts, tile))
  starts = jnp.where(used[..., None], starts, jnp.asarray(base.shape[:3], jnp.int32))  # unused: dropped
  return _scatter(base, starts, out)[:, :ho, :wo]


def sparse_conv(x: jax.Array, kernel: jax.Array, mask: jax.Array, base: jax.Array, *, stride: int = 1,
                tile: Tile = DEFAULT_TILE, buckets: Sequence[float] = DEFAULT_BUCKETS, post: Post = None
                ) -> jax.Array:
  """`where(mask, post(conv(x)), base)`, computing only the tiles that hold a pixel of `mask`.

  Args:
    x: [n h w c] input.
    kernel: [k k c c'] (k odd), padding k // 2 as in `jaxvos.nn.layers.conv`.
    mask: bool [n ho wo]: the output pixels to compute (any pattern; tiles are what is executed).
    base: [n ho wo c'] what the other pixels keep.
    stride: the convolution's stride (1 or 2 in ResNets; any).
    tile: output tile (rows, columns) or side; the executed MACs are those of the active tiles, rounded up to
      a bucket.
    buckets: fractions of the tiles that set the static slot counts (`bucket_slots`).
    post: a per-pixel function of the conv output (bias, frozen BatchNorm), applied before the merge.
  Returns:
    [n ho wo c'] in base's dtype.
  """
  return sparse_conv_tiles(x, kernel, tile_activity(mask, tile), base, stride=stride, tile=tile, buckets=buckets,
                           post=post, mask=mask)


def sparse_conv_tiles(x: jax.Array, kernel: jax.Array, activity: jax.Array, base: jax.Array | Callable[[], jax.Array],
                      *, stride: int = 1, tile: Tile = DEFAULT_TILE, buckets: Sequence[float] = DEFAULT_BUCKETS,
                      post: Post = None, mask: jax.Array | None = None) -> jax.Array:
  """The executor on a tile decision: activity [n ht wt] (> 0: compute the tile; the score orders the slots);
  with `mask` [n ho wo] only its pixels of the computed tiles take the convolution (`sparse_conv`).

  `base` may be a function that returns it: it is then built only in the branches that keep some of it, so when
  every tile computes (and no `mask`) the result is the convolution alone, without a pass over the base or a
  merge (a gated layer's reuse base is a full-resolution select: at 256 channels per object, as much memory
  traffic as a small convolution).
  """
  tile = as_tile(tile)
  make_base = base if callable(base) else (lambda: base)
  base_shape = jax.eval_shape(make_base)
  ho, wo = base_shape.shape[1:3]
  assert activity.shape[1:] == tile_grid((ho, wo), tile), (activity.shape, (ho, wo), tile)
  activity = activity.astype(jnp.float32)
  slot_counts = effective_slots(activity.shape, tile, (ho, wo), stride, kernel.shape[0], buckets)
  count = jnp.sum(activity > 0)
  choice = jnp.searchsorted(jnp.asarray(slot_counts), count, side="left")
  pixel_mask = mask if mask is not None else tiles_to_pixels(activity > 0, tile, (ho, wo))

  def convolved():
    out = dense_conv(x, kernel, stride)
    return (post(out) if post is not None else out).astype(base_shape.dtype)

  def dense(_):
    return jnp.where(pixel_mask[..., None], convolved(), make_base())

  def gathered(slots, _):
    return _gathered(slots, x, kernel, activity, mask, make_base(), tile=tile, stride=stride, post=post)

  branches = [lambda _: make_base()] + [functools.partial(gathered, s) for s in slot_counts[1:-1]] + [dense]
  if mask is None:  # every tile active: the convolution alone
    branches.append(lambda _: convolved())
    choice = jnp.where(count == activity.size, len(branches) - 1, choice)
  return jax.lax.switch(choice, branches, None)


def effective_slots(grid_shape: Sequence[int], tile: Tile, out_hw: Sequence[int], stride: int = 1, kernel: int = 3,
                    buckets: Sequence[float] = DEFAULT_BUCKETS) -> tuple[int, ...]:
  """The slot counts `sparse_conv_tiles` switches between for tiles [n ht wt]: `bucket_slots` without the
  buckets whose canvas would compute at least `MAX_CANVAS_FRACTION` of the dense outputs (narrow tiles near
  full activity: the dense convolution is then cheaper, and what they ask for is run by it)."""
  tile = as_tile(tile)
  num_tiles, dense = math.prod(grid_shape), grid_shape[0] * math.prod(out_hw)
  slots = bucket_slots(num_tiles, buckets)

  def canvas(count):
    rows, columns, _, wc = _canvas_layout(count, tile, stride, kernel)
    return rows * columns * tile[0] * (wc // stride)

  return (0, *(s for s in slots[1:-1] if canvas(s) < MAX_CANVAS_FRACTION * dense), num_tiles)


def executed_fraction(activity: jax.Array, tile: Tile, out_hw: Sequence[int], stride: int = 1, kernel: int = 3,
                      buckets: Sequence[float] = DEFAULT_BUCKETS) -> jax.Array:
  """The fraction of the tiles the executor convolves for `activity` [n ht wt]: the chosen bucket's slots."""
  slot_counts = effective_slots(activity.shape, tile, out_hw, stride, kernel, buckets)
  choice = jnp.searchsorted(jnp.asarray(slot_counts), jnp.sum(activity > 0), side="left")
  return jnp.asarray(slot_counts, jnp.float32)[choice] / activity.size
