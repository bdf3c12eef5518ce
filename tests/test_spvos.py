"""SpVOS (`jaxvos.models.spvos`, `jaxvos.nn.gated_conv`) and the MAC counter (`jaxvos.bench.flops`).

The model tests graft one random `stcn-tiny` into `spvos-tiny` (gates at their initialisation) and run 4-frame
clips as one compiled scan, so a handful of programs cover: forced compute == the dense model, forced reuse ==
the previous frame's layer outputs, refresh frames are dense, gradients reach the gates, mixed training."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos import losses
from jaxvos.backbones.resnet import BasicBlock, Bottleneck
from jaxvos.bench import flops
from jaxvos.convert import graft
from jaxvos.convert.rules import flatten_variables, unflatten_variables
from jaxvos.models import registry
from jaxvos.models import spvos as spvos_lib
from jaxvos.nn import gated_conv as gc
from jaxvos.ops import sparse_conv as sc
from jaxvos.training import step as step_lib

H, W = 32, 48
TILES = dict(tile_pixels=(16, 16), buckets=(0.5,))  # /4: 4x4 tiles, a 2x3 grid; /16: 1x1 tiles; slots 0, 3, 6


@functools.lru_cache(maxsize=None)
def _variables():
  """(stcn-tiny variables, the spvos-tiny variables grafted from them)."""
  dense = registry.build("stcn-tiny")
  dense_vars = dense.init(jax.random.key(0), (H, W))
  sparse = registry.build("spvos-tiny", **TILES)
  fresh = flatten_variables(jax.device_get(sparse.init(jax.random.key(1), (H, W))))
  grafted, _ = graft.graft(flatten_variables(jax.device_get(dense_vars)), fresh,
                           graft.rules_for("stcn-tiny", "spvos-tiny"), source_name="stcn", model="spvos-tiny")
  return dense_vars, unflatten_variables(grafted)


def _with_gate_bias(variables, bias):
  """The variables with every gate's logits set to `bias` (compute, reuse, skip): the kernel zeroed."""
  flat = flatten_variables(variables)
  for path in flat:
    if path[-2] == "logits" and "gate" in path:
      flat[path] = np.asarray(bias, np.float32) if path[-1] == "bias" else np.zeros_like(flat[path])
  return unflatten_variables(flat)


def _clip(seed=0, num_frames=4):
  r = np.random.RandomState(seed)
  frames = r.randn(num_frames, 1, H, W, 3).astype(np.float32) * 0.5
  masks = np.zeros((1, 2, H, W), np.float32)
  masks[0, 0, 4:16, 4:20], masks[0, 1, 18:30, 24:44] = 1, 1
  for t in range(num_frames):
    frames[t, 0, 4:16, 4 + 2 * t:20 + 2 * t] += 1.5
  return jnp.asarray(frames), jnp.asarray(masks)


@functools.lru_cache(maxsize=None)
def _runner(name, **overrides):
  family = registry.build(name, **overrides)

  @jax.jit
  def run(variables, frames, masks):
    """init_memory on frame 0, then steps 1.. under scan: (logits [t b o+1 h w], aux, caches per step)."""
    valid = jnp.ones(masks.shape[:2], bool)
    state = family.init_memory(variables, frames[0], masks, valid)

    def body(state, frame):
      state, out = family.step(variables, state, frame, jnp.zeros_like(masks), jnp.zeros_like(valid))
      return state, (out.logits, out.aux, state.cache)

    return jax.lax.scan(body, state, frames[1:])[1]

  return run


def _probs(logits):
  return np.asarray(jax.nn.softmax(logits, axis=2))


def test_gates_forced_to_compute_give_the_dense_model():
  dense_vars, sparse_vars = _variables()
  frames, masks = _clip()
  want, _, _ = _runner("stcn-tiny")(dense_vars, frames, masks)
  got, aux, _ = _runner("spvos-tiny", force="compute", **TILES)(sparse_vars, frames, masks)
  np.testing.assert_allclose(_probs(got), _probs(want), atol=1e-5)
  executed = [v for k, v in aux.items() if k.startswith("executed/")]
  assert len(executed) == 12 + 10  # ResNet-18 res2..layer3 3x3 convs; the decoder's 3x3 convs but pred
  assert all(np.all(np.asarray(v) == 1.0) for v in executed)


def test_gates_forced_to_reuse_give_the_previous_frames_layer_outputs():
  _, sparse_vars = _variables()
  frames, masks = _clip(seed=1)
  _, aux, caches = _runner("spvos-tiny", force="reuse", **TILES)(sparse_vars, frames, masks)
  for part in ("encoder", "decoder"):
    for path, layer in caches[part].items():
      # the decoder first runs at t = 1, dense; from t = 2 (scan index 1) every layer repeats its t = 1 output
      first = 0 if part == "encoder" else 1
      for t in range(first + 1, frames.shape[0] - 1):
        np.testing.assert_array_equal(layer["y"][t], layer["y"][first], err_msg=f"{path} at {t}")
      np.testing.assert_array_equal(aux[f"executed/{path}"][first + 1:], 0.0)
  np.testing.assert_array_equal(aux["executed/decoder/compress/conv1"][0], 1.0)  # t = 1: decoder dense


def test_dense_refresh_frames_are_dense_and_equal_the_dense_model():
  """refresh_every=2: frame 2 runs dense (gates leaning to reuse elsewhere), so with only frame 0 in memory its
  masks are the dense model's; frames 1 and 3 reuse in the encoder. gated_parts=("encoder",): the decoder runs
  dense on every frame."""
  dense_vars, sparse_vars = _variables()
  frames, masks = _clip(seed=2)
  want, _, _ = _runner("stcn-tiny")(dense_vars, frames, masks)
  got, aux, _ = _runner("spvos-tiny", refresh_every=2, gated_parts=("encoder",), **TILES)(
      _with_gate_bias(sparse_vars, [-5, 0, 0]), frames, masks)
  decoder = [v for k, v in aux.items() if k.startswith("executed/decoder")]
  assert decoder and all(np.all(np.asarray(v) == 1.0) for v in decoder)
  np.testing.assert_allclose(_probs(got)[1], _probs(want)[1], atol=1e-5)  # t = 2
  np.testing.assert_array_equal(aux["gated"][:, 0], [1.0, 0.0, 1.0])
  encoder = [v for k, v in aux.items() if k.startswith("executed/key_encoder")]
  assert all(float(v[1, 0]) == 1.0 for v in encoder)
  assert np.mean([float(v[0, 0]) for v in encoder]) < 0.5 and np.mean([float(v[2, 0]) for v in encoder]) < 0.5
  assert np.abs(_probs(got)[2] - _probs(want)[2]).max() > 1e-4  # a gated frame differs


def _train_loss(family, variables, rng):
  frames, masks = _clip(seed=3, num_frames=3)
  labels = (jnp.argmax(jnp.concatenate([0.5 * jnp.ones_like(masks[:, :1]), masks], axis=1), axis=1)
            .astype(jnp.uint8))
  labels = jnp.broadcast_to(labels[:, None], (1, 3, H, W))
  valid = jnp.ones((1, 2), bool)
  outputs = step_lib.unroll_clip(family, variables, jnp.moveaxis(frames, 0, 1), labels, valid, remat=False, rng=rng)
  loss, metrics = family.loss(outputs.logits, jnp.moveaxis(labels[:, 1:], 1, 0), valid, outputs.aux,
                              jnp.zeros((), jnp.int32), losses.LossSpec())
  return loss, (metrics, outputs.aux)


def test_gradients_reach_the_gates_through_the_straight_through_estimator():
  _, variables = _variables()
  family = registry.build("spvos-tiny", dense_clip_probability=0.0, **TILES)
  grad_fn = jax.jit(jax.grad(lambda p, rng: _train_loss(family, {**variables, "params": p}, rng), has_aux=True))
  grads, (metrics, aux) = grad_fn(variables["params"], jax.random.key(0))
  flat = flatten_variables({"params": grads})
  gates = {p: float(jnp.abs(g).sum()) for p, g in flat.items() if "gate" in p}
  assert len(gates) == 4 * 22
  assert np.mean([g > 0 for g in gates.values()]) > 0.9, sorted(gates.items())[:5]
  assert float(metrics["sparsity"]) > 0 and 0 < float(metrics["executed_mac_fraction"]) <= 1
  np.testing.assert_array_equal(aux["gated"][:, 0], [1.0, 1.0])


def test_training_reports_what_the_argmax_would_execute_and_the_gates_entropy():
  """Gates fixed at p = softmax(1, 0.5, 0) everywhere: the argmax computes every tile while the samples compute
  about 0.5 of them, and the entropy metric is H(p) weighted by the gated MACs (the decoder runs dense at t = 1)."""
  _, variables = _variables()
  family = registry.build("spvos-tiny", dense_clip_probability=0.0, **TILES)
  logits = np.array([1.0, 0.5, 0.0])
  _, (metrics, aux) = jax.jit(lambda rng: _train_loss(family, _with_gate_bias(variables, logits), rng))(
      jax.random.key(0))
  p = np.exp(logits) / np.exp(logits).sum()
  encoder, decoder = float(aux["macs/encoder"][0, 0]), float(aux["macs/decoder"][0, 0])
  gated_share = np.mean([encoder / (encoder + decoder), 1.0])  # frames 1 and 2
  np.testing.assert_allclose(float(metrics["gate_entropy"]), -(p * np.log(p)).sum() * gated_share, rtol=1e-5)
  assert float(metrics["argmax_mac_fraction"]) == 1.0
  assert 0.2 < float(metrics["executed_mac_fraction"]) < 0.8
  # the expected fraction: p(compute) on the gated layers, 1 on the dense decoder of frame 1
  expected = np.mean([(encoder * p[0] + decoder) / (encoder + decoder), p[0]])
  np.testing.assert_allclose(float(metrics["expected_mac_fraction"]), expected, rtol=1e-5)


def test_the_loss_adds_the_weighted_sparsity_entropy_and_distillation_terms():
  config = registry.build("spvos-tiny").config
  aux = {"gated": jnp.array([[1.0], [0.0]])}  # [t b]: the second frame ran dense
  parts = {"encoder": (30.0, 3.0, 6.0, 9.0), "decoder": (10.0, 1.0, 2.0, 3.0)}
  for part, (macs, sparsity, entropy, distill) in parts.items():
    aux.update({f"macs/{part}": jnp.full((2, 1), macs), f"sparsity/{part}": jnp.array([[sparsity], [0.0]]),
                f"entropy/{part}": jnp.array([[entropy], [0.0]]), f"executed_macs/{part}": jnp.full((2, 1), macs),
                f"argmax_macs/{part}": jnp.full((2, 1), macs), f"expected_macs/{part}": jnp.full((2, 1), macs),
                f"distill/{part}": jnp.array([[distill], [0.0]])})
  for weights, ramp, step in [((1.0, 0.0, 0.0), 0, 0), ((0.5, 2.0, 0.0), 0, 0), ((0.5, 2.0, 0.0), 100, 25),
                              ((0.5, 2.0, 3.0), 100, 400)]:
    terms = spvos_lib.sparsity_terms(dataclasses.replace(config, sparsity_weight=weights[0],
                                                         entropy_weight=weights[1], entropy_ramp_steps=ramp,
                                                         distill_weight=weights[2]))
    loss, metrics = terms(aux, jnp.asarray(step, jnp.int32))
    np.testing.assert_allclose(float(metrics["sparsity"]), 0.1, rtol=1e-6)  # (3 + 1) / 40, the gated frame only
    np.testing.assert_allclose(float(metrics["gate_entropy"]), 0.2, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["gate_distill"]), 0.3, rtol=1e-6)
    mu = weights[1] * (min(1.0, step / ramp) if ramp else 1.0)
    np.testing.assert_allclose(float(loss), weights[0] * 0.1 + mu * 0.2 + weights[2] * 0.3, rtol=1e-6)
  with pytest.raises(ValueError, match="sparsity_on"):
    spvos_lib.sparsity_terms(dataclasses.replace(config, sparsity_on="samples"))


def test_the_sparsity_term_takes_rho_from_the_samples_the_probabilities_or_the_argmax():
  """`sparsity_on`: rho_l of the objective from the sampled decisions (the paper), the mean p(compute) or the
  argmax decisions with that gradient. On a gated layer with p(compute) about 0.79 everywhere (the initial bias)
  whose argmax computes every tile, against rho* 0.58, the term's value is the analytic one, and for "expected"
  and "argmax" its gradient reaches the gate logits directly, lowering compute's logit against the others."""
  apply, variables, x, _ = _gated_layer("argmax")
  bias = np.asarray(variables["params"]["gate"]["logits"]["bias"])
  for on in ("sample", "expected", "argmax"):
    def objective(variables):
      _, gates = apply(variables, x)
      aux = gc.summarize(gates, "encoder", 0.58, on)
      return aux["sparsity/encoder"].sum() / aux["macs/encoder"].sum(), gates.stats[ROOT].expected

    grads, expected = jax.grad(objective, has_aux=True)(variables)
    p = np.exp(bias) / np.exp(bias).sum()
    np.testing.assert_allclose(expected, p[gc.COMPUTE], atol=0.02)  # the kernel's logits are about 0
    # an argmax layer's decisions are its argmax: rho = 1 for "sample" too, but with no gradient to the gate
    rho = {"sample": np.ones(2), "expected": np.asarray(expected), "argmax": np.ones(2)}[on]
    np.testing.assert_allclose(objective(variables)[0], np.mean((rho - 0.58) ** 2), rtol=1e-5)
    bias_grad = np.asarray(grads["params"]["gate"]["logits"]["bias"])
    if on == "sample":
      np.testing.assert_array_equal(bias_grad, 0.0)
    else:
      assert bias_grad[gc.COMPUTE] > 0 and bias_grad[gc.REUSE] < 0 and bias_grad[gc.SKIP] < 0


def test_mixed_sparse_training_runs_whole_clips_dense():
  _, variables = _variables()
  family = registry.build("spvos-tiny", dense_clip_probability=1.0, **TILES)
  _, (metrics, aux) = jax.jit(lambda rng: _train_loss(family, variables, rng))(jax.random.key(0))
  np.testing.assert_array_equal(aux["gated"], 0.0)
  assert all(np.all(np.asarray(v) == 1.0) for k, v in aux.items() if k.startswith("executed/"))
  assert float(metrics["sparsity"]) == 0.0


ROOT = ""  # the cache key of a GatedConv applied on its own: a root module's path is empty


def _gated_layer(mode, force=None, stride=1, distill=False):
  """A GatedConv (8 -> 6 channels) on x [2 12 18 8] of a frame 12*stride x 18*stride, with a previous frame:
  (apply(variables, x, rngs) -> (y, gates), variables, x, y_prev)."""
  settings = gc.GateSettings(tile_pixels=(4 * stride, 6 * stride), force=force, buckets=(0.25, 0.5),
                             distill=distill)
  r = np.random.RandomState(0)
  x, x_prev = (jnp.asarray(r.randn(2, 12, 18, 8), jnp.float32) for _ in range(2))
  out_hw = sc.conv_output_hw((12, 18), 3, stride)
  y_prev = jnp.asarray(r.randn(2, *out_hw, 6), jnp.float32)
  masks = jnp.asarray(r.rand(2, 1, 12 * stride, 18 * stride), jnp.float32)

  def apply(variables, x, rngs=None):
    gates = gc.FrameGates(settings, mode, (12 * stride, 18 * stride), caches={ROOT: {"x": x_prev, "y": y_prev}},
                          masks=masks, force_dense=jnp.zeros((2,), bool))
    return gc.GatedConv(6, 3, stride, True, gates=gates).apply(variables, x, rngs=rngs), gates

  init = gc.GatedConv(6, 3, stride, True, gates=gc.FrameGates(settings, "init", (12 * stride, 18 * stride)))
  return apply, init.init(jax.random.key(0), x), x, y_prev


def test_the_distillation_error_is_the_sampled_outputs_distance_to_the_convolution():
  """e_l = |y - conv(x)|^2 / |conv(x)|^2 per video: 0 computing, 1 skipping, the previous output's distance
  reusing (computed here in NumPy); its gradient reaches the gate's logits (straight-through); training without
  the term and inference's argmax layers report none."""
  rngs = {"sample": jax.random.key(1)}
  for force in ("compute", "reuse", "skip"):
    apply, variables, x, y_prev = _gated_layer("sample", force, distill=True)
    _, gates = apply(variables, x, rngs)
    conv = np.asarray(sc.dense_conv(x, variables["params"]["kernel"]) + variables["params"]["bias"])
    y = {"compute": conv, "reuse": np.asarray(y_prev), "skip": np.zeros_like(conv)}[force]
    want = ((y - conv) ** 2).sum(axis=(1, 2, 3)) / (conv ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(gates.stats[ROOT].distill, want, rtol=1e-5)
  apply, variables, x, _ = _gated_layer("sample", distill=True)
  grads = jax.grad(lambda v: apply(v, x, rngs)[1].stats[ROOT].distill.sum())(variables)
  assert float(jnp.abs(grads["params"]["gate"]["logits"]["bias"]).sum()) > 0
  assert _gated_layer("sample")[0](variables, x, rngs)[1].stats[ROOT].distill is None  # off: not computed
  apply, variables, x, _ = _gated_layer("argmax")
  gates = apply(variables, x)[1]
  assert gates.stats[ROOT].distill is None and float(gc.summarize(gates, "encoder", 0.58)["distill/encoder"][0]) == 0


@pytest.mark.parametrize("force", ["compute", "skip"])
def test_the_change_guard_reuses_the_tiles_whose_receptive_field_did_not_change(force):
  """Guarded at 0.5: a tile takes the gates' (here forced) action where an input pixel within its receptive field
  (the tile and a one-pixel halo) changed by more than half the mean pixel norm, and reuses elsewhere; a reused
  tile keeps in the cache the input its output was computed from, so a change below the threshold is not
  forgotten."""
  settings = gc.GateSettings(tile_pixels=(4, 6), force=force, change_threshold=0.5)
  r = np.random.RandomState(0)
  x_prev = r.randn(1, 12, 18, 8).astype(np.float32)  # tiles of 4 x 6 pixels: a 3 x 3 grid
  y_prev = jnp.asarray(r.randn(1, 12, 18, 6), jnp.float32)
  x = x_prev.copy()
  x[0, 5, 8] += 10.0  # inside tile (1, 1)
  x[0, 3, 0] += 10.0  # the last row of tile (0, 0): in the halo of tile (1, 0)
  x[0, 9, 14] += 0.05  # tile (2, 2): below the threshold
  gates = gc.FrameGates(settings, "argmax", (12, 18), caches={ROOT: {"x": jnp.asarray(x_prev), "y": y_prev}},
                        masks=jnp.zeros((1, 1, 12, 18)), force_dense=jnp.zeros((1,), bool))
  layer = gc.GatedConv(6, 3, 1, True, gates=gates)
  variables = gc.GatedConv(6, 3, 1, True, gates=gc.FrameGates(settings, "init", (12, 18))).init(
      jax.random.key(0), jnp.asarray(x))
  y = np.asarray(layer.apply(variables, jnp.asarray(x)))
  conv = np.asarray(sc.dense_conv(jnp.asarray(x), variables["params"]["kernel"]) + variables["params"]["bias"])
  changed = {(0, 0), (1, 0), (1, 1)}
  for i in range(3):
    for j in range(3):
      rows, cols = slice(4 * i, 4 * i + 4), slice(6 * j, 6 * j + 6)
      want = ({"compute": conv, "skip": np.zeros_like(conv)}[force] if (i, j) in changed else np.asarray(y_prev))
      np.testing.assert_allclose(y[0, rows, cols], want[0, rows, cols], atol=1e-5, err_msg=f"tile {(i, j)}")
  assert float(gates.stats[ROOT].fraction[0]) == pytest.approx(3 / 9 if force == "compute" else 0.0)
  cached = np.asarray(gates.new_caches[ROOT]["x"])
  np.testing.assert_array_equal(cached[0, 9, 14], x_prev[0, 9, 14])  # reused: the input it was computed from
  np.testing.assert_array_equal(cached[0, 5, 8], x[0, 5, 8])  # not reused: this frame's input
  assert gc.changed_tiles(jnp.asarray(x), jnp.asarray(x - x_prev), (4, 6), 1, 0.5).sum() == 2  # no halo: 1 x 1


@pytest.mark.parametrize("force", ["compute", "reuse", "skip"])
def test_a_gated_layer_forced_to_an_action(force):
  apply, variables, x, y_prev = _gated_layer("argmax", force)
  (y, gates) = apply(variables, x)
  params = variables["params"]
  want = {"compute": sc.dense_conv(x, params["kernel"]) + params["bias"], "reuse": y_prev,
          "skip": jnp.zeros_like(y_prev)}[force]
  np.testing.assert_allclose(y, want, atol=1e-5)
  np.testing.assert_array_equal(gates.stats[ROOT].fraction, 1.0 if force == "compute" else 0.0)
  np.testing.assert_array_equal(gates.new_caches[ROOT]["y"], y)


@pytest.mark.parametrize("stride", [1, 2])
def test_a_gated_layer_executes_its_argmax_decisions_sparsely(stride):
  """Random gates: the output is, tile by tile, the convolution, the previous output or zero as the argmax of
  the gate's logits says (the executor at work), and the fraction counts the computed pixels."""
  apply, variables, x, y_prev = _gated_layer("argmax", stride=stride)
  flat = flatten_variables(variables)
  flat[("params", "gate", "logits", "bias")] = np.zeros(3, np.float32)
  variables = unflatten_variables(flat)
  y, gates = apply(variables, x)
  head = gc.GateHead(gates.tile(y.shape[1:3]), stride, 8, 0.0)
  decision = jnp.argmax(head.apply({"params": variables["params"]["gate"]}, x, x - gates.caches[ROOT]["x"],
                                   gates.mask_near((2,), x.shape[1:3], x.dtype)), -1)
  pixels = sc.tiles_to_pixels(decision, gates.tile(y.shape[1:3]), y.shape[1:3])[..., None]
  params = variables["params"]
  conv = sc.dense_conv(x, params["kernel"], stride) + params["bias"]
  want = jnp.where(pixels == gc.COMPUTE, conv, jnp.where(pixels == gc.REUSE, y_prev, 0.0))
  assert len(np.unique(np.asarray(decision))) > 1
  np.testing.assert_allclose(y, want, atol=1e-5)
  np.testing.assert_allclose(gates.stats[ROOT].fraction, np.mean(pixels[..., 0] == gc.COMPUTE, axis=(1, 2)))


def test_the_gate_embedding_is_a_dense_layer_of_the_concatenated_inputs():
  """`SplitDense` (the gate's embedding, two dots) equals flax's `nn.Dense` of [a, b]: same parameters, same
  initialisation, same outputs."""
  a, b = jax.random.normal(jax.random.key(0), (2, 5, 7, 6)), jax.random.normal(jax.random.key(1), (2, 5, 7, 4))
  split = gc.SplitDense(8).init(jax.random.key(2), a, b)
  dense = nn.Dense(8).init(jax.random.key(2), jnp.concatenate([a, b], -1))
  jax.tree.map(np.testing.assert_array_equal, split, dense)
  np.testing.assert_allclose(gc.SplitDense(8).apply(split, a, b),
                             nn.Dense(8).apply(dense, jnp.concatenate([a, b], -1)), rtol=1e-5, atol=1e-5)


def test_a_compute_threshold_decides_by_compute_probability():
  logits = np.random.RandomState(7).randn(500, 3).astype(np.float32)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_array_equal(gc.decide(jnp.asarray(logits)), logits.argmax(-1))
  for threshold in (0.2, 0.5, 0.8):
    want = np.where(p[:, 0] >= threshold, gc.COMPUTE, np.where(p[:, 1] >= p[:, 2], gc.REUSE, gc.SKIP))
    np.testing.assert_array_equal(gc.decide(jnp.asarray(logits), threshold), want)
  computed = [int(np.sum(np.asarray(gc.decide(jnp.asarray(logits), t)) == gc.COMPUTE)) for t in (0.2, 0.5, 0.8)]
  assert computed[0] > computed[1] > computed[2] > 0  # a higher threshold computes less


def test_a_sampled_gate_is_differentiable_and_hard():
  apply, variables, x, y_prev = _gated_layer("sample")

  def loss(params):
    y, gates = apply({**variables, "params": params}, x, rngs={"sample": jax.random.key(3)})
    return jnp.sum(y ** 2) + gates.stats[ROOT].fraction.sum()

  grads = jax.grad(loss)(variables["params"])
  assert float(jnp.abs(grads["gate"]["logits"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["gate"]["embed"]["kernel"]).sum()) > 0
  y, gates = apply(variables, x, rngs={"sample": jax.random.key(3)})
  fraction = np.asarray(gates.stats[ROOT].fraction)
  pixels = fraction * y.shape[1] * y.shape[2]
  np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)  # whole tiles of pixels: a hard decision


def test_mac_counter_equals_the_analytic_count_for_a_convolution_and_resnet_blocks():
  x = jnp.zeros((2, 16, 24, 8))
  conv = nn.Conv(12, (3, 3), strides=2, padding=((1, 1), (1, 1)))
  variables = conv.init(jax.random.key(0), x)
  assert flops.count_macs(conv.apply, variables, x) == {"": 2 * 8 * 12 * 9 * 8 * 12}
  block = BasicBlock(16, stride=2, project=True)
  variables = block.init(jax.random.key(0), x)
  counts = flops.count_macs(block.apply, variables, x)
  out = 2 * 8 * 12  # output pixels
  assert counts == {"conv1": out * 9 * 8 * 16, "conv2": out * 9 * 16 * 16, "downsample_0": out * 8 * 16}
  block = Bottleneck(4, stride=1, project=True)
  counts = flops.count_macs(block.apply, block.init(jax.random.key(0), x), x)
  out = 2 * 16 * 24
  assert counts == {"conv1": out * 8 * 4, "conv2": out * 9 * 4 * 4, "conv3": out * 4 * 16,
                    "downsample_0": out * 8 * 16}
  executed = flops.executed_macs({"a/conv1": 100, "a/conv1/gate/embed": 10, "b": 7}, {"a/conv1": 0.25})
  assert executed == {"a/conv1": 25.0, "a/conv1/gate/embed": 10.0, "b": 7.0}


def test_mac_counter_names_every_gated_layer_of_spvos():
  """Every `executed/<path>` aux key of a step names a convolution of the counted step, at its dense MACs."""
  _, variables = _variables()
  family = registry.build("spvos-tiny", **TILES)
  frames, masks = _clip()
  valid = jnp.ones((1, 2), bool)
  state = jax.eval_shape(family.init_memory, variables, frames[0], masks, valid)
  dense = flops.count_macs(family.step, variables, state, frames[1], masks, valid)
  out = jax.eval_shape(family.step, variables, state, frames[1], masks, valid)[1]
  gated = [k[len("executed/"):] for k in out.aux if k.startswith("executed/")]
  assert gated and all(path in dense for path in gated)
  assert dense["key_encoder/res2_0/conv1"] == (H // 4) * (W // 4) * 9 * 16 * 16
  assert dense["decoder/up_8_4/out_conv/conv1"] == 2 * (H // 4) * (W // 4) * 9 * 16 * 16  # per object


def test_mac_counter_keeps_submodules_named_in_capitals():
  """SwiftNet's modules keep the released names (`Encoder`, `LAE`, `Decoder`): only the root's scope is dropped."""
  family = registry.build("swiftnet-tiny")
  variables = jax.eval_shape(lambda key: family.init(key, (H, W)), jax.random.key(0))
  frames, masks = _clip()
  valid = jnp.ones((1, 2), bool)
  state = jax.eval_shape(family.init_memory, variables, frames[0], masks, valid)
  dense = flops.count_macs(family.step, variables, state, frames[1], masks, valid)
  assert dense["Encoder/conv1"] == (H // 2) * (W // 2) * 49 * 3 * 16
  assert {"LAE/conv1_m", "Decoder/pred2", "aspp/conv1"} <= set(dense)


def test_the_executed_count_takes_the_branch_each_frame_takes():
  """`executed_counter`: STCN's memory encoding (a `cond` of the skeleton) counts on the frames that memorise,
  every 5th, and nothing on the others, every other layer as `count_macs` counts it; a `cond` inside a layer of
  `dense_within` (a gated layer's sparse executor) counts its costliest branch whichever it takes."""
  variables, _ = _variables()
  family = registry.build("stcn-tiny")
  frames, masks = _clip(num_frames=6)
  valid, no_objects = jnp.ones((1, 2), bool), jnp.zeros((1, 2), bool)
  state = jax.jit(family.init_memory)(variables, frames[0], masks, valid)
  args = (variables, state, frames[1], jnp.zeros_like(masks), no_objects)
  dense = flops.count_macs(family.step, *args)
  counter = jax.jit(flops.executed_counter(family.step, *args))
  step = jax.jit(family.step)
  encoding = {name for name in dense if name.startswith("value_encoder/")}
  read = lambda counts: sum(v for k, v in counts.items() if k.startswith("memory/"))  # noqa: E731
  assert encoding and set(counter(*args)) >= set(dense)
  for t in range(1, 6):
    counts = {name: float(value) for name, value in counter(variables, state, frames[t], *args[3:]).items()}
    memorised = t % 5 == 0
    for name, macs in dense.items():
      if not name.startswith("memory/"):  # the read: one read for all objects, not per object (same MACs)
        np.testing.assert_allclose(counts[name], 0.0 if name in encoding and not memorised else macs,
                                   rtol=1e-6, err_msg=f"{name} at t={t}")
    np.testing.assert_allclose(read(counts), read(dense), rtol=1e-6)
    state, _ = step(variables, state, frames[t], *args[3:])

  def layer(x, i):
    with jax.named_scope("gated"):
      return jax.lax.cond(i > 0, lambda a: a @ a, lambda a: a, x)

  x = jnp.ones((3, 3))
  assert float(flops.executed_counter(layer, x, 0)(x, 0)["gated"]) == 0.0
  assert float(flops.executed_counter(layer, x, 0, dense_within=("gated",))(x, 0)["gated"]) == 27.0


@pytest.mark.parametrize("name, dense", [("spvos", "stcn"), ("spvos-r18", "stcn-r18")])
def test_full_size_spvos_is_its_stcn_plus_gates(name, dense):
  """The grafting rule's premise at the official sizes: STCN's variables, same paths and shapes, plus `gate`
  modules (4 arrays each) beside every gated 3x3 convolution."""
  shapes = lambda n: {p: v.shape for p, v in flatten_variables(jax.eval_shape(  # noqa: E731
      functools.partial(registry.build(n).init, frame_hw=(64, 64)), jax.random.key(0))).items()}
  sparse, stcn = shapes(name), shapes(dense)
  assert {p: s for p, s in sparse.items() if p in stcn} == stcn
  extra = [p for p in sparse if p not in stcn]
  assert all("gate" in p for p in extra)
  gated_convs = {"spvos": 3 + 4 + 6, "spvos-r18": 12}[name] + 10  # key encoder + decoder
  assert len(extra) == 4 * gated_convs


def test_config_round_trips_through_its_json_form():
  family = registry.build("spvos-tiny", tile_pixels=[16, 32], force="skip", memory={"slots": 6})
  rebuilt = registry.from_config("spvos-tiny", registry.config_dict(family))
  assert rebuilt.config == family.config and rebuilt.config.tile_pixels == (16, 32)
  assert isinstance(rebuilt.config.buckets, tuple) and rebuilt.config.force == "skip"


@pytest.mark.parametrize("field", ["gate_pool", "gated_parts", "change_threshold", "read_threshold"])
def test_a_config_value_outside_its_range_is_one_error_naming_the_field(field):
  bad = {"gate_pool": "median", "gated_parts": ("stem",), "change_threshold": -0.1, "read_threshold": -1.0}[field]
  with pytest.raises(ValueError, match=field):
    registry.build("spvos-tiny", **{field: bad})
