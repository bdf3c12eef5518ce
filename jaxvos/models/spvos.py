"""SpVOS (Lin, Chen, Yu, "SpVOS: Efficient Video Object Segmentation With Triple Sparse Convolution", IEEE TIP
2023; METHODS.md, SpVOS) on the STCN model (`jaxvos.models.stcn`).

Every 3x3 convolution of the key encoder's ResNet layers (res2/layer2/layer3; the stem stays dense) and of the
decoder (compress, up_16_8, up_8_4; `pred` stays dense) is a `jaxvos.nn.gated_conv.GatedConv`: per output tile
it computes, reuses its output of the previous frame, or skips. The value encoder, the key projection and
`key_comp` stay dense: the value encoder runs only on memorised frames, and the skeleton gives `encode_memory`
no cache to keep its previous outputs in. Parameter paths are STCN's plus `gate` modules beside the gated
convolutions (`.../conv1/gate/...`), so a trained STCN grafts in 1:1 with the gates at their initialisation
(`jaxvos.convert.graft.EXTENDS`).

Per frame t (`FrameInfo.t`):
- t = 0 (the annotated frame, `init_memory`): dense; the per-layer caches (input x and output y of every gated
  convolution) are filled. The decoder does not run at t = 0, so its caches start as zeros and it runs dense
  at t = 1.
- t % `refresh_every` == 0 (default 10), the frame after one where new objects were annotated (decoder), and
  every frame of a clip drawn dense by mixed sparse training: dense (every gate forced to compute).
- otherwise: gated; Gumbel straight-through samples in training (an rng was given), argmax and the sparse
  executor at inference.

The change guard (`change_threshold`, off by default; not in the paper): in every gated layer a tile whose
receptive field's input changed by at most the threshold times the mean pixel norm, measured against the input
its cached output was computed from (`jaxvos.nn.gated_conv.changed_tiles`), reuses that output; the gates decide
the tiles that changed. With `force="compute"` the guard alone decides (compute where changed, reuse elsewhere),
no learnt gate is read, and the dense refresh can be dropped (`refresh_every` large): reused outputs never drift
past the threshold. On the trained tiny model that beat every trained gate (session 21, `experiments/README.md`;
`experiments/spvos_guarded.py` makes such a checkpoint from a trained STCN).

The read guard (`read_threshold`, off by default; not in the paper): the memory read, not a convolution, is over
half of the tiny model's frame at 480p. While the memory is unchanged (STCN writes every 5th frame), a query
position whose key moved by at most the threshold (times the mean key norm) since the key its cached read-out was
read with keeps that read-out, and only the others are read (`jaxvos.memory.key_value`,
`jaxvos.ops.attention.read_rows`), at inference; training reads whole. The keys are never bitwise the previous
frame's, even where every convolution reused: the residual shortcuts carry the stem's small changes everywhere.

Mixed sparse training: at t = 1 each video of a training batch draws "dense clip" with probability
`dense_clip_probability` (kept in the cache for the rest of the clip), so the shared weights stay valid dense
and gated. The sparsity objective (`sparsity_terms`, the family's `loss_terms`) is
`lambda * sum_l w_l (rho_l - rho*)^2`, rho_l the fraction of layer l's outputs computed, w_l its share of the
gated layers' dense MACs, averaged over the gated frames (rho_l from the sampled gates as in the paper, the
mean probability of `compute` or the argmax decisions: `sparsity_on`); optionally plus `mu * sum_l w_l H_l`,
the gates' mean entropy (`entropy_weight`, off by default), so that sampled and argmax decisions agree; optionally
plus the gated layers' output error against their convolutions (`distill_weight`, `sparsity_terms`).

Aux outputs per frame (each [b]): `executed/<layer path>` (rho_l), `macs/<part>`, `executed_macs/<part>`,
`sparsity/<part>` (rho_l as `sparsity_on` says), `entropy/<part>`, `argmax_macs/<part>`, `expected_macs/<part>`,
`distill/<part>` for the parts `encoder` and `decoder` (`jaxvos.nn.gated_conv.summarize`) and `gated` (1 where
the encoder's gates decided).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvos.backbones.resnet import resnet_trunk
from jaxvos.memory.key_value import KeyValueMemoryType
from jaxvos.models.skeleton import MemoryFamily
from jaxvos.models.stcn import STCN, KeyProjection, STCNConfig, ValueEncoder
from jaxvos.nn.gated_conv import POOLS, RHO, FrameGates, GateSettings, gated_factory, summarize
from jaxvos.nn.layers import KAIMING_FAN_OUT, conv
from jaxvos.ops import attention
from jaxvos.ops.resize import resize_bilinear
from jaxvos.ops.sparse_conv import DEFAULT_BUCKETS


@dataclasses.dataclass(frozen=True)
class SpVOSConfig(STCNConfig):
  """STCN's sizes plus the gates' settings (`jaxvos.nn.gated_conv.GateSettings`) and the sparsity objective."""
  refresh_every: int = 10               # K: every K-th frame runs dense
  target: float = 0.58                  # rho*: executed MAC fraction aimed at (42% saved)
  sparsity_weight: float = 1.0          # lambda
  sparsity_on: str = "sample"           # rho_l of the objective: "sample" (the paper), "expected", "argmax"
  entropy_weight: float = 0.0           # mu: weight of the gates' mean entropy in the loss (decisive gates)
  entropy_ramp_steps: int = 0           # mu grows linearly from 0 over these training steps (0: constant)
  distill_weight: float = 0.0           # nu: weight of the gated layers' output error against their convolution
  dense_clip_probability: float = 0.5   # mixed sparse training: a training clip runs dense with this probability
  tile_pixels: tuple[int, int] = (32, 96)
  gate_hidden: int = 8
  gate_init_bias: float = 2.0
  gate_pool: str = "mean"               # "mean_max": a gate also sees its embedding's maximum over the tile
  change_threshold: float | None = None  # reuse where a layer's input changed by less (`changed_tiles`)
  temperature: float = 1.0
  buckets: tuple[float, ...] = DEFAULT_BUCKETS
  force: str | None = None              # "compute" / "reuse" / "skip" on every gated frame (tests, ablations)
  compute_threshold: float | None = None  # inference: compute where p(compute) >= this, not argmax (calibrated)
  gated_parts: tuple[str, ...] = ("encoder", "decoder")  # the others run dense on every frame (ablations)
  read_threshold: float | None = None   # inference: read memory only where the query key moved (not the paper)

  def gate_settings(self) -> GateSettings:
    return GateSettings(tile_pixels=self.tile_pixels, hidden=self.gate_hidden, init_bias=self.gate_init_bias,
                        temperature=self.temperature, buckets=self.buckets, force=self.force,
                        compute_threshold=self.compute_threshold, pool=self.gate_pool,
                        change_threshold=self.change_threshold, distill=self.distill_weight > 0)


class GatedKeyEncoder(nn.Module):
  """STCN's key encoder (`key_encoder`) with gated 3x3 convolutions in its residual blocks."""
  depth: int
  width: int

  @nn.compact
  def __call__(self, frame: jax.Array, gates: FrameGates) -> dict[str, jax.Array]:
    return resnet_trunk(frame, depth=self.depth, width=self.width, layer_names=("res2", "layer2", "layer3"),
                        conv=gated_factory(gates, KAIMING_FAN_OUT))


class GatedResBlock(nn.Module):
  """`jaxvos.nn.blocks.ResBlock` with gated convolutions (the same parameters)."""
  features: int
  gates: FrameGates

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    make = gated_factory(self.gates)
    r = make(self.features, 3, 1, True, "conv1")(nn.relu(x))
    r = make(self.features, 3, 1, True, "conv2")(nn.relu(r))
    if x.shape[-1] != self.features:
      x = make(self.features, 3, 1, True, "downsample")(x)
    return x + r


class GatedUpsampleBlock(nn.Module):
  """`jaxvos.nn.blocks.UpsampleBlock` with gated convolutions: skip [b h w c], up [b o h/2 w/2 c']."""
  features: int
  gates: FrameGates

  @nn.compact
  def __call__(self, skip: jax.Array, up: jax.Array) -> jax.Array:
    skip = gated_factory(self.gates)(up.shape[-1], 3, 1, True, "skip_conv")(skip)
    x = skip[:, None] + resize_bilinear(up, scale_factor=2.0)
    return GatedResBlock(self.features, self.gates, name="out_conv")(x)


class GatedDecoder(nn.Module):
  """STCN's decoder (`jaxvos.models.stcn.Decoder`) with gated convolutions; `pred` stays dense."""
  dims: tuple[int, int, int]

  @nn.compact
  def __call__(self, x: jax.Array, feats8: jax.Array, feats4: jax.Array, gates: FrameGates) -> jax.Array:
    """x [b o h/16 w/16 c] -> per-object logits [b o h w]."""
    x = GatedResBlock(self.dims[0], gates, name="compress")(x)
    x = GatedUpsampleBlock(self.dims[1], gates, name="up_16_8")(feats8, x)
    x = GatedUpsampleBlock(self.dims[2], gates, name="up_8_4")(feats4, x)
    x = conv(1, 3, name="pred")(nn.relu(x))
    return resize_bilinear(x, scale_factor=4.0)[..., 0]


class SpVOS(STCN):
  """STCN with gated convolutions, driven by `jaxvos.models.skeleton.MemoryFamily`.

  Cache (in the state): `encoder` / `decoder` {layer path: {"x", "y"}} of the previous frame, `mask` [b o H W]
  its soft masks, `refresh` bool [b] (new objects were annotated: the decoder runs dense next), `dense_clip`
  bool [b] (mixed sparse training).
  """
  config: SpVOSConfig

  def setup(self):
    c = self.config
    self.key_encoder = GatedKeyEncoder(c.key_depth, c.width)
    self.value_encoder = ValueEncoder(c.value_depth, c.width, c.value_dim, c.single_object)
    self.key_proj = KeyProjection(c.key_dim)
    self.key_comp = conv(c.hidden_dim, 3, name="key_comp")
    self.decoder = GatedDecoder(c.decoder_dims)

  def _gates(self, frame_hw, cache, info, part: str) -> FrameGates:
    """The frame's gates for `part` (encoder / decoder); dense without a cache (the first frame, `init`)."""
    settings = self.config.gate_settings()
    if cache is None:
      return FrameGates(settings, "init" if self.is_initializing() else "dense", frame_hw)
    force = cache["dense_clip"] | (info.t % self.config.refresh_every == 0) | (part not in self.config.gated_parts)
    if part == "decoder":  # its caches are zeros until it has run once; stale for objects new at t - 1
      force = force | (info.t <= 1) | cache["refresh"]
    return FrameGates(settings, "sample" if info.training else "argmax", frame_hw, caches=cache[part],
                      masks=cache["mask"], force_dense=force)

  def encode_query(self, frame: jax.Array, cache=None, info=None):
    """STCN's query (key16, value16, feats16/8/4) through the gated key encoder; the encoder caches."""
    if cache is not None:
      cache = {**cache, "dense_clip": self._dense_clip(cache, info)}
    gates = self._gates(frame.shape[1:3], cache, info, "encoder")
    feats = self.key_encoder(frame, gates)
    query = {"key16": self.key_proj(feats["feats16"]), "value16": self.key_comp(feats["feats16"]),
             "feats16": feats["feats16"], "feats8": feats["feats8"], "feats4": feats["feats4"]}
    if cache is None:
      return query, {**self._first_cache(frame, query, info), "encoder": gates.new_caches}, {}
    aux = summarize(gates, "encoder", self.config.target, self.config.sparsity_on)
    aux["gated"] = 1.0 - gates.forced((frame.shape[0],)).astype(jnp.float32)
    return query, {**cache, "encoder": gates.new_caches}, aux

  def decode(self, query: dict[str, jax.Array], readout: dict[str, jax.Array], cache=None, info=None):
    """STCN's decoder, gated: read-out [b o h w cv] -> logits [b o H W]; the decoder caches."""
    frame_hw = tuple(4 * size for size in query["feats4"].shape[1:3])
    gates = self._gates(frame_hw, cache, info, "decoder")
    readout = readout["readout"]
    value16 = jnp.broadcast_to(query["value16"][:, None], (*readout.shape[:-1], query["value16"].shape[-1]))
    logits = self.decoder(jnp.concatenate([readout, value16], axis=-1), query["feats8"], query["feats4"], gates)
    if cache is None:
      return logits, cache, {}
    aux = summarize(gates, "decoder", self.config.target, self.config.sparsity_on)
    return logits, {**cache, "decoder": gates.new_caches}, aux

  def end_frame(self, cache, probs: jax.Array, info):
    """Keeps the frame's soft masks (the next frame's gates look at them) and whether objects were added."""
    return {**cache, "mask": probs, "refresh": info.annotated}

  def _dense_clip(self, cache, info) -> jax.Array:
    """bool [b]: drawn at t = 1 in training (mixed sparse training), kept for the clip; False at inference."""
    if not info.training or self.config.dense_clip_probability <= 0:
      return cache["dense_clip"]
    draw = jax.random.bernoulli(self.make_rng("sample"), self.config.dense_clip_probability,
                                cache["dense_clip"].shape)
    return jnp.where(info.t == 1, draw, cache["dense_clip"])

  def _first_cache(self, frame: jax.Array, query: dict[str, jax.Array], info) -> dict:
    """The cache after the first frame, but its encoder part: zero decoder caches (shaped by tracing the decoder
    on a zero read-out, whose values are unused, so XLA drops that computation), no masks yet."""
    b, objects = frame.shape[0], (1 if info is None else info.object_valid.shape[1])
    readout = jnp.zeros((b, objects, *query["key16"].shape[1:3], self.config.value_dim), frame.dtype)
    gates = FrameGates(self.config.gate_settings(), "dense", frame.shape[1:3])
    if info is not None:
      self.decoder(jnp.concatenate([readout, jnp.broadcast_to(query["value16"][:, None], (
          *readout.shape[:-1], query["value16"].shape[-1]))], axis=-1), query["feats8"], query["feats4"], gates)
    return {"decoder": jax.tree.map(jnp.zeros_like, gates.new_caches),
            "mask": jnp.zeros((b, objects, *frame.shape[1:3]), frame.dtype),
            "refresh": jnp.zeros((b,), bool), "dense_clip": jnp.zeros((b,), bool)}


def sparsity_terms(config: SpVOSConfig):
  """The family's `loss_terms(aux, step)`: lambda * sum_l w_l (rho_l - rho*)^2 + mu * sum_l w_l H_l over the
  gated frames (aux stacked [t b ...]), with metrics: the executed MAC fraction of the gated frames (sampled
  gates in training) and the fraction their argmax would execute, which is what inference runs.

  The entropy term (mu = `entropy_weight`, 0 by default: the paper has none) makes the gates decisive: sampled
  and argmax decisions then agree, so the fraction the sparsity objective trains is the one inference executes
  (without it, training's samples executed 0.64 of the MACs while the argmax of the same gates computed 0.97).
  mu ramps up from 0 over `entropy_ramp_steps`, so the gates first move under the sparsity objective alone.

  The distillation term (nu = `distill_weight`, 0 by default; not in the paper) adds `nu * sum_l w_l e_l`, e_l
  the relative squared error |y_l - conv_l(x_l)|^2 / |conv_l(x_l)|^2 that the sampled decisions leave in layer
  l's output against the convolution of the same input: a signal local to each gate of what its reuse and skip
  cost, where the masks' loss reaches a gate only through every layer after it.

  `sparsity_on` says what rho_l is: "sample" (the paper) the fraction the straight-through Gumbel samples
  computed; "expected" the mean probability of `compute`; "argmax" the fraction the argmax decisions compute
  (what inference executes) with the expected fraction's gradient (straight-through). With samples or expected
  probabilities, undecided gates satisfy the objective as well as decided sparse ones do, and inference's argmax
  of such gates computes nearly everything (sessions 6-8, `experiments/README.md`); "argmax" penalises exactly
  that.
  """
  if config.sparsity_on not in RHO:
    raise ValueError(f"sparsity_on must be one of {tuple(RHO)}, not {config.sparsity_on!r}")

  def terms(aux: dict[str, jax.Array], step: jax.Array):
    ramp = jnp.minimum(1.0, step / max(config.entropy_ramp_steps, 1)) if config.entropy_ramp_steps else 1.0
    parts = ("encoder", "decoder")
    total = lambda name: sum(aux[f"{name}/{part}"] for part in parts)  # noqa: E731
    macs, gated = total("macs"), aux["gated"]
    frames = jnp.maximum(jnp.sum(gated), 1.0)
    over_gated = lambda name: jnp.sum(total(name) / macs) / frames  # noqa: E731
    sparsity, entropy, distill = over_gated("sparsity"), over_gated("entropy"), over_gated("distill")
    loss = (config.sparsity_weight * sparsity + ramp * config.entropy_weight * entropy
            + config.distill_weight * distill)
    return loss, {"sparsity": sparsity, "gate_entropy": entropy, "gate_distill": distill,
                  "executed_mac_fraction": jnp.sum(total("executed_macs") / macs * gated) / frames,
                  "argmax_mac_fraction": jnp.sum(total("argmax_macs") / macs * gated) / frames,
                  "expected_mac_fraction": jnp.sum(total("expected_macs") / macs * gated) / frames,
                  "gated_frames": jnp.mean(gated)}

  return terms


def spvos(config: SpVOSConfig = SpVOSConfig(), name: str = "spvos") -> MemoryFamily:
  if config.gate_pool not in POOLS:
    raise ValueError(f"gate_pool must be one of {tuple(POOLS)}, not {config.gate_pool!r}")
  unknown = set(config.gated_parts) - {"encoder", "decoder"}
  if unknown:
    raise ValueError(f"gated_parts must name 'encoder' and/or 'decoder', not {sorted(unknown)}")
  for field in ("change_threshold", "read_threshold"):
    value = getattr(config, field)
    if value is not None and not value >= 0:
      raise ValueError(f"{field} must be None (off) or at least 0, not {value!r}")
  memory = KeyValueMemoryType(config.memory, attention.l2_affinity, config.top_k,
                              read_threshold=config.read_threshold, buckets=config.buckets)
  return MemoryFamily(name=name, config=config, module=SpVOS(config), memory=memory,
                      loss_terms=sparsity_terms(config))
