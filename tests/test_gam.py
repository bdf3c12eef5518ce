"""GAM specifics (jaxvos/models/gam.py, jaxvos/memory/global_context.py, jaxvos/nn/gam_blocks.py); the contract
every family shares is tests/test_family_contract.py."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.memory import global_context as gc
from jaxvos.models import registry
from jaxvos.models.family import FrameInfo
from jaxvos.nn.blocks import FeatureFusionBlock
from jaxvos.nn.gam_blocks import ChannelAttention, FrameMaskFusion, MaskEmbedding, position_channels
from jaxvos.ops import attention

H, W = 64, 64


class ProbeMemory(gc.GlobalContextMemoryType):
  """The real memory type, which also returns the memorised frame's context A_T in aux (`frame_context`)."""

  def update(self, memory, encode, query, probs, info):
    encoded = encode()
    memory, aux = super().update(memory, lambda: encoded, query, probs, info)
    return memory, {**aux, "frame_context": self._frame_context(encoded)[0]}


@functools.lru_cache(maxsize=None)
def _probed():
  family = registry.build("gam-tiny")
  family = dataclasses.replace(family, memory=ProbeMemory(family.memory.config))
  return family, family.init(jax.random.key(0), (H, W)), jax.jit(family.init_memory), jax.jit(family.step)


def _frames(num_frames, seed=0):
  return jnp.asarray(np.random.RandomState(seed).randn(num_frames, 1, H, W, 3).astype(np.float32))


def _masks():
  masks = np.zeros((1, 2, H, W), np.float32)
  masks[0, 0, 8:30, 6:26] = 1
  masks[0, 1, 36:60, 30:62] = 1
  return jnp.asarray(masks)


def _info(t, valid, new):
  return FrameInfo(t=jnp.asarray(t, jnp.int32), object_valid=jnp.asarray(valid), new_object_valid=jnp.asarray(new))


def _np_context(keys, values, normalization="efficient"):
  """NumPy eq. (1): keys [n ck], values [o n cv] -> A [o ck cv]."""
  keys = keys.astype(np.float64)
  if normalization == "efficient":
    w = np.exp(keys - keys.max(axis=0)) / np.exp(keys - keys.max(axis=0)).sum(axis=0)
  else:
    w = keys
  return np.einsum("nk,onv->okv", w, values)


def test_running_mean_equals_the_numpy_mean_of_the_frame_contexts():
  r = np.random.RandomState(0)
  keys = r.randn(7, 1, 6, 5, 8).astype(np.float32)     # t b h w ck
  values = r.randn(7, 1, 2, 6, 5, 4).astype(np.float32)  # t b o h w cv
  contexts = np.stack([_np_context(k[0].reshape(30, 8), v[0].reshape(2, 30, 4)) for k, v in zip(keys, values)])
  for every in (1, 3):
    memory_type = gc.GlobalContextMemoryType(gc.ContextConfig(every=every))
    valid = np.ones((1, 2), bool)
    encoded = lambda t: {"keys": jnp.asarray(keys[t]), "values": jnp.asarray(values[t])}  # noqa: E731
    memory = memory_type.init(encoded(0), None, _info(0, valid, valid))
    for t in range(1, 7):
      memory, aux = memory_type.update(memory, functools.partial(encoded, t), None, None,
                                       _info(t, valid, ~valid))
      assert float(aux["context_update"][0]) == float(t % every == 0)
    used = list(range(0, 7, every))
    np.testing.assert_allclose(memory.context[0], contexts[used].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(memory.count, [[len(used), len(used)]])
    np.testing.assert_allclose(memory.normalizer, 1.0, rtol=1e-6)  # efficient: each key channel sums to 1


def test_a_late_objects_context_starts_at_its_first_frame():
  r = np.random.RandomState(1)
  keys, values = r.randn(4, 1, 3, 3, 4).astype(np.float32), r.randn(4, 1, 2, 3, 3, 2).astype(np.float32)
  contexts = np.stack([_np_context(k[0].reshape(9, 4), v[0].reshape(2, 9, 2)) for k, v in zip(keys, values)])
  memory_type = gc.GlobalContextMemoryType()
  encoded = lambda t: {"keys": jnp.asarray(keys[t]), "values": jnp.asarray(values[t])}  # noqa: E731
  first, both, none = np.array([[True, False]]), np.ones((1, 2), bool), np.zeros((1, 2), bool)
  memory = memory_type.init(encoded(0), None, _info(0, first, first))
  memory, _ = memory_type.update(memory, functools.partial(encoded, 1), None, None, _info(1, first, none))
  np.testing.assert_array_equal(memory.context[0, 1], 0.0)
  memory, _ = memory_type.update(memory, functools.partial(encoded, 2), None, None,
                                 _info(2, both, ~first))
  np.testing.assert_array_equal(memory.count, [[3, 1]])
  np.testing.assert_allclose(memory.context[0, 1], contexts[2, 1], rtol=1e-5, atol=1e-6)
  memory, _ = memory_type.update(memory, functools.partial(encoded, 3), None, None, _info(3, both, none))
  np.testing.assert_allclose(memory.context[0, 0], contexts[:, 0].mean(axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(memory.context[0, 1], contexts[2:, 1].mean(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("normalization", gc.NORMALIZATIONS)
def test_a_constant_frame_reads_the_same_at_two_resolutions(normalization):
  """Efficient attention (the default), the mean and LiVOS's normalised read do not depend on the number of
  positions; the paper's raw products scale with it."""
  r = np.random.RandomState(2)
  key, value = r.randn(8).astype(np.float32), r.randn(2, 6).astype(np.float32)
  memory_type = gc.GlobalContextMemoryType(gc.ContextConfig(normalization=normalization))
  valid = np.ones((1, 2), bool)
  reads = []
  for h, w in ((4, 4), (16, 8)):  # 16 and 128 positions (a crop and a frame 8x its area)
    keys = jnp.broadcast_to(jnp.asarray(key), (1, h, w, 8))
    values = jnp.broadcast_to(jnp.asarray(value)[None, :, None, None], (1, 2, h, w, 6))
    memory = memory_type.init({"keys": keys, "values": values}, None, _info(0, valid, valid))
    readout, _, _ = memory_type.read(memory, {"key16": keys}, _info(1, valid, ~valid))
    reads.append(np.asarray(readout["readout"][0, :, 0, 0]))
  if normalization == "raw":
    np.testing.assert_allclose(reads[1], 8 * reads[0], rtol=1e-5)
  else:
    np.testing.assert_allclose(reads[1], reads[0], rtol=1e-5, atol=1e-6)
  if normalization in ("efficient", "livos"):  # a convex combination of the constant value: the value itself
    np.testing.assert_allclose(reads[0], value, rtol=1e-5, atol=1e-6)


def test_cam_is_the_identity_at_alpha_zero_and_adds_the_channel_attention_otherwise():
  x = jnp.asarray(np.random.RandomState(3).randn(2, 3, 4, 5, 6).astype(np.float32))  # b o h w c
  cam = ChannelAttention()
  params = cam.init(jax.random.key(0), x)
  assert float(params["params"]["alpha"]) == 0.0
  np.testing.assert_array_equal(cam.apply(params, x), x)
  np.testing.assert_array_equal(cam.apply({"params": {"alpha": jnp.float32(-0.7)}}, x), x)  # kept >= 0
  f = np.asarray(x, np.float64).reshape(2, 3, 20, 6)
  r = np.einsum("bonI,bonJ->boIJ", f, f) / 20
  soft = np.exp(r - r.max(axis=-2, keepdims=True))
  soft /= soft.sum(axis=-2, keepdims=True)  # eq. (5): over the channels i of R(i, j)
  expected = 0.5 * np.einsum("boni,boij->bonj", f, soft).reshape(x.shape) + np.asarray(x)
  np.testing.assert_allclose(cam.apply({"params": {"alpha": jnp.float32(0.5)}}, x), expected, rtol=1e-5,
                             atol=1e-5)
  grad = jax.grad(lambda a: jnp.sum(cam.apply({"params": {"alpha": a}}, x) ** 2))(jnp.float32(0.0))
  assert float(grad) != 0.0  # alpha can leave 0


def test_mem_input_layout_and_position_channels():
  p = np.asarray(position_channels(2, 4))
  np.testing.assert_allclose(p[0, 0], [-0.75, -0.5, np.sqrt(0.75**2 + 0.5**2) / np.sqrt(2)])
  np.testing.assert_allclose(p[1, 3], [0.75, 0.5, np.sqrt(0.75**2 + 0.5**2) / np.sqrt(2)])
  mem = MaskEmbedding(features=4, out_features=5, downsamples=2)
  history = jnp.zeros((1, 3, 2, 8, 8))
  variables = mem.init(jax.random.key(0), history)
  assert variables["params"]["conv1"]["kernel"].shape == (3, 3, 9, 4)  # 3 x (object, rest) + 3 positions
  g = mem.apply(variables, history)
  assert g.shape == (1, 2, 2, 2, 5) and float(g.min()) >= 0.0


def test_frame_mask_fusion_is_stcns_fusion_block_with_split_kernels():
  r = np.random.RandomState(4)
  x, feats16 = jnp.asarray(r.randn(1, 3, 4, 5, 6), jnp.float32), jnp.asarray(r.randn(1, 4, 5, 10), jnp.float32)
  fusion = FrameMaskFusion(32)
  params = fusion.init(jax.random.key(0), x, feats16)["params"]
  joined = lambda name: {"kernel": jnp.concatenate(  # noqa: E731
      [params[f"{name}_mask"]["kernel"], params[f"{name}_frame"]["kernel"]], axis=2),
      "bias": params[f"{name}_mask"]["bias"]}
  stcn = {"block1": {"conv1": joined("conv1"), "conv2": params["conv2"], "downsample": joined("downsample")},
          "attention": params["attention"], "block2": params["block2"]}
  broadcast = jnp.broadcast_to(feats16[:, None], (1, 3, 4, 5, 10))
  expected = FeatureFusionBlock(32).apply({"params": stcn}, x, broadcast)
  np.testing.assert_allclose(fusion.apply({"params": params}, x, feats16), expected, rtol=1e-5, atol=1e-5)


def _pool(probs, s=4):
  """[b o H W] -> [b o H/s W/s] area means."""
  b, o, h, w = probs.shape
  return np.asarray(probs).reshape(b, o, h // s, s, w // s, s).mean(axis=(3, 5))


def test_mem_repeats_the_annotated_mask_until_three_predictions_exist():
  _, variables, init_memory, step = _probed()
  frames, masks, valid = _frames(4), _masks(), jnp.ones((1, 2), bool)
  state = init_memory(variables, frames[0], masks, valid)
  annotated = _pool(jax.nn.softmax(attention.aggregate(masks, valid), axis=1)[:, 1:])
  assert state.cache["masks"].shape == (1, 3, 2, H // 4, W // 4)
  for i in range(3):
    np.testing.assert_allclose(state.cache["masks"][:, i], annotated, atol=1e-6)
  predicted = []
  for t in (1, 2, 3):
    state, output = step(variables, state, frames[t], jnp.zeros_like(masks), jnp.zeros_like(valid))
    predicted.append(_pool(jax.nn.softmax(output.logits, axis=1)[:, 1:]))
    history = [annotated] * (3 - t) + predicted
    for i in range(3):
      np.testing.assert_allclose(state.cache["masks"][:, i], history[i], atol=1e-6)


def test_the_models_context_is_the_mean_of_its_frame_contexts_and_a_late_object_starts_at_its_frame():
  _, variables, init_memory, step = _probed()
  frames, masks = _frames(5, seed=1), _masks()
  first, late = jnp.array([[True, False]]), jnp.array([[False, True]])
  state = init_memory(variables, frames[0], masks.at[:, 1].set(0.0), first)
  first_context = np.asarray(state.memory.context)
  contexts = []
  for t in range(1, 5):
    new_masks, new_valid = (masks.at[:, 0].set(0.0), late) if t == 2 else (jnp.zeros_like(masks), ~(first | late))
    state, output = step(variables, state, frames[t], new_masks, new_valid)
    contexts.append(np.asarray(output.aux["frame_context"]))
    if t == 1:
      np.testing.assert_array_equal(state.memory.context[0, 1], 0.0)
  np.testing.assert_array_equal(state.memory.count, [[5, 3]])
  object0 = np.mean([first_context[0, 0]] + [c[0, 0] for c in contexts], axis=0)
  np.testing.assert_allclose(state.memory.context[0, 0], object0, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(state.memory.context[0, 1], np.mean([c[0, 1] for c in contexts[1:]], axis=0),
                             rtol=1e-4, atol=1e-6)


def _state_shapes(family, variables, hw, steps):
  frame = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
  masks, valid = jax.ShapeDtypeStruct((1, 2, *hw), jnp.float32), jax.ShapeDtypeStruct((1, 2), bool)
  state = jax.eval_shape(family.init_memory, variables, frame, masks, valid)
  for _ in range(steps):
    state, _ = jax.eval_shape(family.step, variables, state, frame, masks, valid)
  return state


def test_state_shapes_and_bytes_do_not_depend_on_video_length_or_frame_size_but_the_mask_history():
  family = registry.build("gam-tiny")
  variables = jax.eval_shape(functools.partial(family.init, frame_hw=(H, W)), jax.random.key(0))
  states = {(hw, steps): _state_shapes(family, variables, hw, steps)
            for hw in ((64, 64), (96, 160)) for steps in (0, 3)}
  shapes = {key: jax.tree.map(lambda x: (x.shape, x.dtype), state.memory) for key, state in states.items()}
  assert len(set(map(str, shapes.values()))) == 1
  c = family.config
  memory_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(states[(64, 64), 0].memory))
  assert memory_bytes == 2 * (c.key_dim * c.value_dim + c.key_dim) * 4 + 2 * 4  # G, z float32, count int32
  for (hw, _), state in states.items():  # the documented exception: [b 3 o H/4 W/4]
    assert state.cache["masks"].shape == (1, 3, 2, hw[0] // 4, hw[1] // 4)


def test_ablations_and_options_build_with_the_parameters_they_need():
  frame = jax.ShapeDtypeStruct((1, H, W, 3), jnp.float32)
  masks, valid = jax.ShapeDtypeStruct((1, 2, H, W), jnp.float32), jax.ShapeDtypeStruct((1, 2), bool)
  for overrides, absent in (({"use_cam": False}, "cam"), ({"use_mem": False}, "mem"), ({}, None),
                            ({"combine": "concat", "mem_stride": 16, "memory": {"normalization": "livos"}}, None)):
    family = registry.build("gam-tiny", **overrides)
    variables = jax.eval_shape(functools.partial(family.init, frame_hw=(H, W)), jax.random.key(0))
    assert (absent not in variables["params"]) and {"frame_encoder", "mask_encoder", "decoder"} <= set(
        variables["params"])
    state = jax.eval_shape(family.init_memory, variables, frame, masks, valid)
    _, output = jax.eval_shape(family.step, variables, state, frame, masks, valid)
    assert output.logits.shape == (1, 3, H, W)
    assert (state.cache == {}) == (overrides.get("use_mem") is False)
  concat = registry.build("gam-tiny", combine="concat")
  concat_vars = jax.eval_shape(functools.partial(concat.init, frame_hw=(H, W)), jax.random.key(0))
  assert concat_vars["params"]["decoder"]["convFM"]["kernel"].shape[2] == 2 * concat.config.value_dim


def test_full_size_registry_entries():
  for name, key_dim, value_dim, feats16 in (("gam", 128, 512, 1024), ("gam-r18", 64, 256, 256)):
    family = registry.build(name)
    variables = jax.eval_shape(functools.partial(family.init, frame_hw=(64, 64)), jax.random.key(0))
    params = variables["params"]
    assert params["key_proj"]["kernel"].shape == (3, 3, feats16, key_dim)
    assert params["mask_encoder"]["conv1"]["kernel"].shape == (7, 7, 2, 64)  # mask + other objects, no RGB
    assert params["mask_encoder"]["fuser"]["block2"]["conv2"]["kernel"].shape[-1] == value_dim
  assert "gam-tiny" in registry.tiny_names()


def test_bad_options_are_clear_errors():
  with pytest.raises(ValueError, match="normalization must be one of"):
    registry.build("gam-tiny", memory={"normalization": "softmax"})
  with pytest.raises(ValueError, match="combine must be sum or concat"):
    registry.build("gam-tiny", combine="add")


def test_figure1_bench_sizes_stcn_all_by_length_and_draws_every_sweep(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from jaxvos.bench import memory as bench  # pylint: disable=g-import-not-at-top
  assert bench._build("stcn-all", 1000).config.memory.slots == 201  # every 5th frame of 1000, + the first
  assert bench._hw("2K") == (1088, 2048) and bench._hw("48x64") == (48, 64)
  results = []
  for model, scale in (("gam", 1.0), ("stcn", 3.0)):
    for i, size in enumerate(("480p", "720p", "4K")):
      run = {"median_ms": 100.0 * scale * (i + 1), "host_peak_mb": 900.0 * scale * (i + 1),
             "device_peak_mb": None, "state_mb": 0.5 * scale ** i, "memory_mb": 0.5}
      results.append({"sweep": "resolution", "model": model, "hw": list(bench._hw(size)), "frames": 3,
                      **({"error": "did not fit in 12 GiB"} if (model, size) == ("stcn", "4K") else run)})
    for length in (100, 1000):
      results.append({"sweep": "length", "model": model, "hw": [48, 64], "frames": length, "median_ms": 5.0,
                      "host_peak_mb": 600.0, "device_peak_mb": None, "state_mb": 0.5, "memory_mb": 0.5})
  bench.plot(results, str(tmp_path / "figure1.png"))
  picture = Image.open(tmp_path / "figure1.png")
  assert picture.size == (2 * bench._PANEL[1], 2 * bench._PANEL[0] + 30)
  colours = {pixel for _, pixel in picture.getcolors(1 << 20)}
  assert bench._COLOURS["gam"] in colours and bench._COLOURS["stcn"] in colours
