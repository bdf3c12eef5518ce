"""SpVOS's triple-gated convolution (Lin, Chen, Yu, "SpVOS: Efficient Video Object Segmentation With Triple Sparse
Convolution", IEEE TIP 2023; METHODS.md, SpVOS).

A `GatedConv` replaces a 3x3 convolution of a dense model and keeps its parameters (`kernel`, `bias`: the names
and shapes of `flax.linen.Conv`, so a trained dense model grafts in). Per frame, a small gate (`GateHead`, the
child `gate`) decides per output **tile** one of three actions:

- `COMPUTE`: the convolution (through the sparse executor, `jaxvos.ops.sparse_conv`, at inference);
- `REUSE`: this layer's output on the previous frame (temporal redundancy);
- `SKIP`: zero, the convolution's output before any following BatchNorm (spatial redundancy: in a residual block
  a skipped second convolution leaves the shortcut path and the BatchNorm's shift).

Tiles, not pixels: the executor's work is whole tiles (XLA's CPU convolution needs wide windows to run at the
dense speed, `jaxvos.ops.sparse_conv`), so deciding per tile makes the counted MACs the executed ones and the
wall-clock follow the gates. Tiles cover a fixed image footprint (`GateSettings.tile_pixels`, 32x96 pixels by
default: 8x24 outputs at stride 4, 4x12 at 8, 2x6 at 16); `tile_pixels=(s, s)` at stride s is the paper's
per-pixel gate.

Gate input: the layer's input x, its change x - x_prev since the previous frame, and the previous frame's soft
mask near the tile (max over the tile's footprint; per object in the decoder, all objects in the encoder):
1x1 embedding + ReLU, mean over each tile (and its maximum, `pool="mean_max"`), the mask's max appended, a 3x3
convolution over the tile grid -> 3 logits (compute / reuse / skip), initialised near `init_bias` for compute and
0 for the others (a grafted dense model starts mostly dense). Training (`mode="sample"`): Gumbel-softmax with a
straight-through hard one-hot (rng stream `sample`), the convolution computed densely and mixed by the one-hot;
inference (`"argmax"`): argmax, executed sparsely. A sampled gate computes with its probability, an argmax gate
wherever compute is the likeliest action (at 0.45 against 0.3 and 0.25, always): `compute_threshold` instead
computes where compute's probability reaches the threshold and otherwise takes the likelier of reuse and skip, a
knob calibrated after training (`experiments/calibrate_spvos_gates.py`). `force_dense` (the first frame, every
K-th frame, dense clips of mixed training) makes every tile compute.

`change_threshold` (`GateSettings`; `changed_tiles`) adds a parameter-free guard: a tile whose receptive field's
input did not change by more than the threshold reuses its output (exact up to the threshold), and the gate (or
`force`) decides only the tiles that changed; a reused tile's cached input stays the one its output was computed
from, so changes below the threshold add up until the gate is asked. `force="compute"` with the guard: compute
where the input changed, reuse elsewhere, no learnt gate read.

`FrameGates` is what one frame's gated layers share while a module method is traced (a Python object, never a
pytree): the settings, the previous frame's per-layer caches `{path: {"x", "y"}}` and masks, and what the layers
leave behind: the new caches and their statistics (executed fraction, dense MACs).
"""

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.nn.layers import conv
from jaxvos.ops import sparse_conv as sc

COMPUTE, REUSE, SKIP = 0, 1, 2
POOLS = {"mean": ("mean",), "mean_max": ("mean", "max")}  # GateSettings.pool: what a gate pools per tile
ACTIONS = {"compute": COMPUTE, "reuse": REUSE, "skip": SKIP}
MODES = ("dense", "init", "sample", "argmax")


@dataclasses.dataclass(frozen=True)
class GateSettings:
  """Static settings of every gated layer of a model."""
  tile_pixels: tuple[int, int] = (32, 96)  # decision tile's footprint in frame pixels (rows, columns)
  hidden: int = 8                          # channels of the gate's embedding
  init_bias: float = 2.0                   # initial logit of `compute` (softmax 0.79 against 0.11, 0.11)
  temperature: float = 1.0                 # Gumbel-softmax temperature
  buckets: tuple[float, ...] = sc.DEFAULT_BUCKETS
  force: str | None = None                 # "compute" / "reuse" / "skip": every gate's decision (tests, ablations)
  compute_threshold: float | None = None   # inference: compute where p(compute) >= this (None: argmax)
  pool: str = "mean"                       # the embedding over a tile: "mean", or "mean_max" (both, concatenated)
  change_threshold: float | None = None    # reuse every tile whose input changed by less (`changed_tiles`)
  distill: bool = False                    # training: record each layer's output error (`LayerStats.distill`)


@dataclasses.dataclass
class LayerStats:
  fraction: jax.Array         # float32 [b] output pixels computed (1 where forced dense)
  macs: float                 # dense MACs of the layer per video
  gated: jax.Array            # float32 [b] 1 where the gates decided (not forced dense)
  entropy: jax.Array          # float32 [b] mean entropy of the gates' distributions (0 where dense)
  argmax_fraction: jax.Array  # float32 [b] output pixels the argmax would compute (= fraction at inference)
  expected: jax.Array         # float32 [b] mean probability of `compute` over the output pixels (1 where dense)
  distill: jax.Array | None = None  # float32 [b] |y - y_dense|^2 / |y_dense|^2 (sampled gates, `GateSettings.distill`)


class FrameGates:
  """One frame's shared gating state (see the module docstring); built by the model for each traced part."""

  def __init__(self, settings: GateSettings, mode: str, frame_hw: tuple[int, int], *, caches=None, masks=None,
               force_dense: jax.Array | None = None):
    """caches: {path: {"x", "y"}} of the previous frame (None in modes dense / init); masks: [b o H W] soft
    masks of the previous frame; force_dense: bool [b]."""
    assert mode in MODES, mode
    self.settings, self.mode, self.frame_hw = settings, mode, frame_hw
    self.caches, self.masks, self.force_dense = caches, masks, force_dense
    self.new_caches: dict[str, dict[str, jax.Array]] = {}
    self.stats: dict[str, LayerStats] = {}

  def tile(self, out_hw: tuple[int, int]) -> tuple[int, int]:
    """The decision tile (rows, columns) of a layer whose output is `out_hw`: the footprint over its stride."""
    stride = max(1, self.frame_hw[0] // out_hw[0])
    return tuple(max(1, p // stride) for p in self.settings.tile_pixels)

  def mask_near(self, lead: tuple[int, ...], hw: tuple[int, int], dtype) -> jax.Array:
    """The previous masks max-pooled to `hw`: [N h w] for the layer's leading axes (b: union of the objects,
    b o: per object); zeros without masks (`init`)."""
    masks = self.masks
    if masks is None:
      return jnp.zeros((math.prod(lead), *hw), dtype)
    if len(lead) == 1:
      masks = jnp.max(masks, axis=1)
    masks = masks.reshape(-1, *masks.shape[-2:])
    fh, fw = masks.shape[1] // hw[0], masks.shape[2] // hw[1]
    pooled = masks[:, :hw[0] * fh, :hw[1] * fw].reshape(-1, hw[0], fh, hw[1], fw).max(axis=(2, 4))
    return pooled.astype(dtype)

  def forced(self, lead: tuple[int, ...]) -> jax.Array:
    """bool [N]: the layer's items (videos, or videos x objects) that must compute everything."""
    force = jnp.zeros(lead[:1], bool) if self.force_dense is None else self.force_dense
    return jnp.broadcast_to(force.reshape(-1, *([1] * (len(lead) - 1))), lead).reshape(-1)

  def record(self, path: str, x: jax.Array, y: jax.Array, stats: LayerStats):
    self.new_caches[path] = {"x": x, "y": y}
    self.stats[path] = stats


def _tile_pool(x: jax.Array, window: tuple[int, int], how: str) -> jax.Array:
  """Mean or max of x [N h w c] over windows (the last ones may overhang: means over their valid pixels)."""
  n, h, w, c = x.shape
  gh, gw = -(-h // window[0]), -(-w // window[1])
  pad = ((0, 0), (0, gh * window[0] - h), (0, gw * window[1] - w), (0, 0))
  blocks = lambda v: v.reshape(v.shape[0], gh, window[0], gw, window[1], -1)  # noqa: E731
  if how == "max":
    return blocks(jnp.pad(x, pad, constant_values=-jnp.inf)).max(axis=(2, 4))
  count = blocks(jnp.pad(jnp.ones((1, h, w, 1), x.dtype), pad)).sum(axis=(2, 4))
  return blocks(jnp.pad(x, pad)).sum(axis=(2, 4)) / count


class SplitDense(nn.Module):
  """`nn.Dense(features)` of `concatenate([a, b], -1)` (the same parameters and initialisation), computed as
  a @ W_a + b @ W_b: without the concatenated copy of its inputs (the gate's embedding of a 64-channel layer1 at
  480p ran 4.6x faster on the 2-core CPU, session 20)."""
  features: int

  @nn.compact
  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (a.shape[-1] + b.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    a, b, kernel, bias = nn.dtypes.promote_dtype(a, b, kernel, bias)
    return a @ kernel[:a.shape[-1]] + b @ kernel[a.shape[-1]:] + bias


class GateHead(nn.Module):
  """x, its change dx [N h w c] and the previous mask [N h w] -> logits [N ht wt 3] (compute, reuse, skip) per
  output tile `tile` of a convolution with `stride`. `pool` "mean_max" adds the embedding's maximum over the tile
  to its mean: a change confined to a few pixels of the tile (a small object moving) is diluted in the mean."""
  tile: tuple[int, int]
  stride: int
  hidden: int
  init_bias: float
  pool: str = "mean"

  @nn.compact
  def __call__(self, x: jax.Array, dx: jax.Array, mask: jax.Array) -> jax.Array:
    window = (self.tile[0] * self.stride, self.tile[1] * self.stride)
    embedded = nn.relu(SplitDense(self.hidden, name="embed")(x, dx))
    pooled = [_tile_pool(embedded, window, how) for how in POOLS[self.pool]]
    features = jnp.concatenate([*pooled, _tile_pool(mask[..., None], window, "max")], axis=-1)
    bias_init = lambda key, shape, dtype: jnp.zeros(shape, dtype).at[COMPUTE].set(self.init_bias)  # noqa: E731
    return nn.Conv(3, (3, 3), padding=((1, 1), (1, 1)), kernel_init=nn.initializers.normal(0.01),
                   bias_init=bias_init, name="logits")(features)


def decide(logits: jax.Array, compute_threshold: float | None = None) -> jax.Array:
  """Inference action per tile from logits [..., 3]: the argmax, or with `compute_threshold`, compute where its
  probability reaches the threshold and otherwise the likelier of reuse and skip."""
  if compute_threshold is None:
    return jnp.argmax(logits, axis=-1)
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  other = jnp.where(p[..., REUSE] >= p[..., SKIP], REUSE, SKIP)
  return jnp.where(p[..., COMPUTE] >= compute_threshold, COMPUTE, other)


def straight_through_gumbel(logits: jax.Array, key: jax.Array, temperature: float) -> jax.Array:
  """Hard one-hot samples of softmax(logits) [..., 3] whose gradient is the Gumbel-softmax's (Jang et al. 2017)."""
  gumbel = jax.random.gumbel(key, logits.shape, jnp.float32)
  soft = jax.nn.softmax((logits.astype(jnp.float32) + gumbel) / temperature, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), 3, dtype=soft.dtype)
  return hard + soft - jax.lax.stop_gradient(soft)


class GatedConv(nn.Module):
  """`flax.linen.Conv` (same parameters; padding k // 2, `jaxvos.nn.layers.conv`) gated per output tile by
  `gates` (the module docstring); a plain convolution when `gates` is None. x [... h w c] -> [... ho wo c']."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  gates: Any = None  # FrameGates

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, lead = self.kernel_size, x.shape[:-3]
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32) if self.use_bias else None
    flat, kernel, bias = nn.dtypes.promote_dtype(x.reshape(-1, *x.shape[-3:]), kernel, bias)
    post = (lambda y: y + bias) if bias is not None else (lambda y: y)  # noqa: E731
    gates = self.gates
    if gates is None or gates.mode in ("dense", "init"):
      y = post(sc.dense_conv(flat, kernel, self.stride))
      if gates is not None:
        if gates.mode == "init":  # creates the gate's parameters
          self._head(gates, flat, jnp.zeros_like(flat), lead, y.shape[1:3])
        ones = jnp.ones(lead[:1], jnp.float32)
        zeros = jnp.zeros_like(ones)
        gates.record(self._path(), flat.reshape(x.shape), y.reshape(*lead, *y.shape[1:]),
                     LayerStats(ones, self._macs(flat, y, lead), zeros, zeros, ones, ones))
      return y.reshape(*lead, *y.shape[1:])
    return self._gated(gates, flat, kernel, post, lead)

  def _path(self) -> str:
    return "/".join(self.scope.path)

  def _macs(self, flat: jax.Array, y: jax.Array, lead: tuple[int, ...]) -> float:
    """Dense multiply-accumulates of the layer per video."""
    per_item = y.shape[1] * y.shape[2] * self.kernel_size**2 * flat.shape[-1] * self.features
    return float(per_item * (flat.shape[0] // lead[0]))

  def _head(self, gates: FrameGates, flat, dx, lead, out_hw) -> jax.Array:
    s = gates.settings
    head = GateHead(gates.tile(out_hw), self.stride, s.hidden, s.init_bias, s.pool, name="gate")
    return head(flat, dx, gates.mask_near(lead, flat.shape[1:3], flat.dtype))

  def _gated(self, gates: FrameGates, flat, kernel, post, lead) -> jax.Array:
    """The gated convolution on a frame with a previous one: sampled (training) or argmax + sparse executor."""
    prev = gates.caches[self._path()]
    y_prev = prev["y"].reshape(-1, *prev["y"].shape[-3:])
    out_hw = y_prev.shape[1:3]
    tile = gates.tile(out_hw)
    x_prev = prev["x"].reshape(flat.shape)
    dx = flat - x_prev
    if gates.settings.force is None:
      logits = self._head(gates, flat, dx, lead, out_hw)
    else:  # a forced decision reads no gate: its head is not run (its statistics are those of uniform logits)
      logits = jnp.zeros((flat.shape[0], *(-(-size // t) for size, t in zip(out_hw, tile)), 3), jnp.float32)
    forced = gates.forced(lead)[:, None, None]
    guarded = gates.settings.change_threshold is not None
    window = (tile[0] * self.stride, tile[1] * self.stride)  # a tile's input pixels
    unchanged = None if not guarded else ~changed_tiles(flat, dx, window, self.kernel_size,
                                                        gates.settings.change_threshold)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-12)), axis=-1)  # [N ht wt]
    decision = decide(jax.lax.stop_gradient(logits), gates.settings.compute_threshold)
    would = sc.tiles_to_pixels(_override(jax.nn.one_hot(decision, 3), forced, None, unchanged)[..., COMPUTE], tile,
                               out_hw)
    if gates.mode == "sample":
      onehot = straight_through_gumbel(logits, self.make_rng("sample"), gates.settings.temperature)
      onehot = _override(onehot, forced, gates.settings.force, unchanged)
      weights = sc.tiles_to_pixels(onehot, tile, out_hw).astype(flat.dtype)
      dense = post(sc.dense_conv(flat, kernel, self.stride))
      y = weights[..., COMPUTE, None] * dense + weights[..., REUSE, None] * y_prev
      reused = onehot[..., REUSE]
      computed = weights[..., COMPUTE].astype(jnp.float32)
      distill = _relative_error(y, jax.lax.stop_gradient(dense)) if gates.settings.distill else None
    else:
      action = jnp.argmax(_override(jax.nn.one_hot(decision, 3), forced, gates.settings.force, unchanged), -1)
      pixels = sc.tiles_to_pixels(action, tile, out_hw)
      base = lambda: jnp.where(pixels[..., None] == REUSE, y_prev, jnp.zeros((), y_prev.dtype))  # noqa: E731
      y = sc.sparse_conv_tiles(flat, kernel, (action == COMPUTE).astype(jnp.float32), base, stride=self.stride,
                               tile=tile, buckets=gates.settings.buckets, post=post)
      computed = (pixels == COMPUTE).astype(jnp.float32)
      distill = None  # not measured at inference
      reused = (action == REUSE).astype(flat.dtype)
    x_cached = flat
    if guarded:  # a reused tile keeps the input its output was computed from: slow changes add up to the threshold
      x_cached = flat + sc.tiles_to_pixels(reused, window, flat.shape[1:3]).astype(flat.dtype)[..., None] * (
          x_prev - flat)
    per_video = lambda v: v.reshape(lead[0], -1).mean(axis=1)  # noqa: E731
    fraction, gated = per_video(computed), 1.0 - per_video(forced.astype(jnp.float32))
    entropy = per_video(jnp.where(forced, 0.0, entropy))
    expected = per_video(jnp.where(forced, 1.0, sc.tiles_to_pixels(probs[..., COMPUTE], tile, out_hw)))
    distill = None if distill is None else per_video(jnp.where(forced[..., 0], 0.0, distill))
    gates.record(self._path(), x_cached.reshape(*lead, *flat.shape[1:]), y.reshape(*lead, *y.shape[1:]),
                 LayerStats(fraction, self._macs(flat, y, lead), gated, entropy, per_video(would), expected, distill))
    return y.reshape(*lead, *y.shape[1:])


def changed_tiles(x: jax.Array, dx: jax.Array, window: tuple[int, int], kernel_size: int, threshold: float
                  ) -> jax.Array:
  """bool [N ht wt]: the tiles (`window` input pixels) of a k x k convolution with an input pixel within its
  receptive field (the tile and a halo of k // 2 pixels) whose change |dx| (the L2 norm over channels) exceeds
  `threshold` times the mean |x| over the item's pixels (as skip-convolutions gate on the norm of the input's
  change); the other tiles' outputs may be reused."""
  change = jnp.linalg.norm(dx.astype(jnp.float32), axis=-1)
  change = jax.lax.reduce_window(change, -jnp.inf, jax.lax.max, (1, kernel_size, kernel_size), (1, 1, 1), "SAME")
  scale = jnp.mean(jnp.linalg.norm(x.astype(jnp.float32), axis=-1), axis=(1, 2), keepdims=True)
  return _tile_pool(change[..., None] / jnp.maximum(scale[..., None], 1e-6), window, "max")[..., 0] > threshold


def _relative_error(y: jax.Array, dense: jax.Array) -> jax.Array:
  """[N 1]: |y - dense|^2 / |dense|^2 per item of [N h w c] outputs (how far the gates moved the layer's output
  from the convolution of the same input)."""
  squares = lambda v: jnp.sum(jnp.square(v.astype(jnp.float32)), axis=(1, 2, 3))  # noqa: E731
  return (squares(y - dense) / jnp.maximum(squares(dense), 1e-6))[:, None]


def _override(onehot: jax.Array, forced: jax.Array, force: str | None, unchanged: jax.Array | None = None
              ) -> jax.Array:
  """Decisions [N ht wt 3] with `force` (a fixed action) applied, the `unchanged` tiles [N ht wt] (the change
  guard) set to reuse, then the `forced` items [N 1 1] (dense frames) set to compute."""
  if force is not None:
    onehot = jnp.broadcast_to(jax.nn.one_hot(ACTIONS[force], 3, dtype=onehot.dtype), onehot.shape)
  if unchanged is not None:
    onehot = jnp.where(unchanged[..., None], jax.nn.one_hot(REUSE, 3, dtype=onehot.dtype), onehot)
  return jnp.where(forced[..., None], jax.nn.one_hot(COMPUTE, 3, dtype=onehot.dtype), onehot)


def gated_factory(gates: FrameGates | None, kernel_init: Callable = nn.initializers.lecun_normal()) -> Callable:
  """A convolution factory `(features, kernel_size, stride, bias, name) -> module` (`jaxvos.backbones.resnet`):
  3x3 convolutions gated by `gates`, the others plain `jaxvos.nn.layers.conv`."""
  def make(features: int, kernel_size: int, stride: int, bias: bool, name: str) -> nn.Module:
    if kernel_size != 3:
      return conv(features, kernel_size, stride=stride, bias=bias, name=name, kernel_init=kernel_init)
    return GatedConv(features, kernel_size, stride, bias, kernel_init, gates, name=name)

  return make


RHO = {  # what rho_l, a layer's executed fraction in the sparsity objective, is taken from (`summarize`)
    "sample": lambda s: s.fraction,  # the sampled (training) or argmax (inference) decisions: the paper's
    "expected": lambda s: s.expected,  # the mean probability of `compute`: differentiable without sampling
    # the argmax decisions (what inference executes) with the expected fraction's gradient (straight-through)
    "argmax": lambda s: s.argmax_fraction + s.expected - jax.lax.stop_gradient(s.expected),
}


def summarize(gates: FrameGates, part: str, target: float, rho: str = "sample") -> dict[str, jax.Array]:
  """A part's aux outputs (each [b]): `executed/<layer>` (fraction of the layer's outputs computed), and over
  the part's layers `macs/<part>` (dense MACs), `executed_macs/<part>`, `sparsity/<part>`:
  sum_l macs_l (rho_l - target)^2 over the gated layers (the unnormalised SpVOS sparsity objective) with rho_l
  as `RHO[rho]` says, `entropy/<part>`: sum_l macs_l H_l (the gates' mean entropy, MAC-weighted),
  `argmax_macs/<part>`: the MACs the argmax decisions would execute (in training, where gates are sampled, what
  inference would run), `expected_macs/<part>`: sum_l macs_l p_l with p_l the mean probability of
  `compute`, and `distill/<part>`: sum_l macs_l e_l with e_l the relative squared error the sampled gates left in
  layer l's output against its convolution (0 at inference)."""
  fraction = RHO[rho]
  aux = {f"executed/{path}": s.fraction for path, s in gates.stats.items()}
  stats = list(gates.stats.values())
  zero = jnp.zeros_like(stats[0].fraction)
  aux[f"macs/{part}"] = zero + sum(s.macs for s in stats)
  aux[f"executed_macs/{part}"] = zero + sum(s.macs * s.fraction for s in stats)
  aux[f"sparsity/{part}"] = zero + sum(s.macs * s.gated * (fraction(s) - target) ** 2 for s in stats)
  aux[f"entropy/{part}"] = zero + sum(s.macs * s.gated * s.entropy for s in stats)
  aux[f"expected_macs/{part}"] = zero + sum(s.macs * s.expected for s in stats)
  aux[f"argmax_macs/{part}"] = zero + sum(s.macs * s.argmax_fraction for s in stats)
  aux[f"distill/{part}"] = zero + sum(s.macs * s.gated * s.distill for s in stats if s.distill is not None)
  return aux
