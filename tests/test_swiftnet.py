"""SwiftNet specifics: the light aggregation encoder and the pixel-adaptive memory (the contract every family
shares: tests/test_family_contract.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.memory import pixel_adaptive as pam
from jaxvos.memory.pixel_adaptive import PixelAdaptiveMemoryType, PixelMemoryConfig
from jaxvos.models import registry
from jaxvos.models.family import FrameInfo
from jaxvos.nn.swiftnet_blocks import reversed_sub_pixel

HW = (64, 64)


@functools.lru_cache(maxsize=None)
def _tiny(**memory):
  family = registry.build("swiftnet-tiny", memory=memory)
  return family, family.init(jax.random.key(0), HW)


def _convolutions(jaxpr) -> list:
  """Every convolution of a (closed) jaxpr, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      found.append(eqn)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _convolutions(inner)
  return found


def test_memory_encoding_runs_no_backbone_convolution():
  family, variables = _tiny()
  module, frame = family.module, jnp.zeros((1, *HW, 3))
  query = jax.eval_shape(lambda v, x: module.apply(v, x, method="encode_query")[0], variables, frame)
  masks = jnp.zeros((1, 2, *HW))
  encode_query = jax.make_jaxpr(lambda v, x: module.apply(v, x, method="encode_query"))(variables, frame)
  encode_memory = jax.make_jaxpr(lambda v, x, q, m: module.apply(v, x, q, m, method="encode_memory"))(
      variables, frame, query, masks)
  in_channels = lambda eqn: eqn.invars[0].aval.shape[-1]  # noqa: E731  (NHWC)
  # ResNet-18 to layer3: conv1 + 6 blocks x 2 + 2 projections = 15, + the query key/value heads.
  assert len(_convolutions(encode_query.jaxpr)) == 17
  # LAE: conv1_m/o, conv_fusion1..5, conv2_m/o, + the memory key/value heads; none sees the RGB frame.
  memory_convs = _convolutions(encode_memory.jaxpr)
  assert len(memory_convs) == 11
  assert sorted(in_channels(eqn) for eqn in memory_convs) == [1, 1, 16, 16, 32, 64, 64, 64, 64, 256, 256]


def test_reversed_sub_pixel_equals_pixel_unshuffle():
  torch = pytest.importorskip("torch")
  mask = np.random.RandomState(0).rand(2, 3, 32, 48).astype(np.float32)
  expected = torch.nn.functional.pixel_unshuffle(torch.from_numpy(mask).reshape(6, 1, 32, 48), 16)
  expected = expected.numpy().reshape(2, 3, 256, 2, 3).transpose(0, 1, 3, 4, 2)
  np.testing.assert_array_equal(np.asarray(reversed_sub_pixel(jnp.asarray(mask))), expected)


def test_released_parameter_names_and_channel_adjusting_kernel():
  shapes = lambda name, **kw: jax.eval_shape(  # noqa: E731
      lambda key: registry.build(name, **kw).init(key, HW), jax.random.key(0))["params"]
  params = shapes("swiftnet")
  assert set(params) == {"Encoder", "LAE", "KV_M_r4", "KV_Q_r4", "aspp", "Decoder"}
  assert params["LAE"]["conv2_m"]["kernel"].shape == (3, 3, 256, 256)
  assert params["LAE"]["conv_fusion3"]["kernel"].shape == (3, 3, 128, 256)
  assert params["KV_M_r4"]["Key"]["kernel"].shape == (3, 3, 256, 32)
  assert params["aspp"]["aspp4"]["atrous_conv"]["kernel"].shape == (3, 3, 256, 128)
  assert params["Decoder"]["convFM"]["kernel"].shape == (3, 3, 128, 64)
  assert {"conv1", "res2_0", "res4_1"} <= set(params["Encoder"])
  assert shapes("swiftnet", rsp_kernel=1)["LAE"]["conv2_m"]["kernel"].shape == (1, 1, 256, 256)
  r50 = shapes("swiftnet-r50")
  assert r50["KV_Q_r4"]["Value"]["kernel"].shape == (3, 3, 1024, 512)
  assert r50["LAE"]["conv2_o"]["kernel"].shape == (3, 3, 256, 1024)


def test_lae_norm_gives_the_memory_heads_the_encoding_at_one_norm_everywhere():
  family = registry.build("swiftnet-tiny", lae_norm=3.0)
  variables = family.init(jax.random.key(0), HW)
  module, frame = family.module, jax.random.normal(jax.random.key(1), (1, *HW, 3))
  masks = jax.random.uniform(jax.random.key(2), (1, 2, *HW))
  query = module.apply(variables, frame, method="encode_query")[0]
  encoded = np.asarray(module.apply(variables, query, masks, method=lambda m, q, p: m.LAE(q, p)))
  rescaled = encoded * 3.0 / np.maximum(np.linalg.norm(encoded, axis=-1, keepdims=True), 1e-6)  # NumPy's norm
  keys, values = module.apply(variables, jnp.asarray(rescaled), method=lambda m, x: m.KV_M_r4(x))
  memory = module.apply(variables, frame, query, masks, method="encode_memory")
  np.testing.assert_allclose(memory["keys"], keys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(memory["values"], values, rtol=1e-5, atol=1e-5)
  assert np.ptp(np.linalg.norm(encoded, axis=-1)) > 0.1  # the rescaling had something to do
  with pytest.raises(ValueError, match="lae_norm"):
    registry.build("swiftnet-tiny", lae_norm=0.0)


# --- the pixel-adaptive memory, driven directly with tiny arrays -----------------------------------------------

def _info(t, annotated=False, objects=2):
  valid = jnp.ones((1, objects), bool)
  return FrameInfo(t=jnp.asarray(t, jnp.int32), object_valid=valid, new_object_valid=valid & annotated)


def _encoded(keys, values):
  """keys [o n ck], values [o n cv] as `encode()` returns them (a 2 x (n/2) frame), masks at 2x2."""
  o, n = keys.shape[:2]
  return {"keys": keys.reshape(1, o, 2, n // 2, -1), "values": values.reshape(1, o, 2, n // 2, -1),
          "masks_small": jnp.zeros((1, o, 2, 2))}


def _query(frame_value, n=8):
  return {"key16": jnp.zeros((1, 2, n // 2, 4)), "frame_small": jnp.full((1, 2, 2, 3), frame_value, jnp.float32)}


def test_pixel_update_appends_exactly_the_k_least_similar_pixels():
  config = PixelMemoryConfig(pinned=1, beta=0.25, pool_updates=3)
  rng = np.random.RandomState(0)
  first, new = rng.randn(2, 8, 4).astype(np.float32), rng.randn(2, 8, 4).astype(np.float32)
  memory_type = PixelAdaptiveMemoryType(config)
  memory = memory_type.init(_encoded(first, first[..., :3]), _query(0.0), _info(0, True))
  memory = pam.pixel_update(memory, config, jnp.asarray(new)[None], jnp.asarray(new[..., :3])[None],
                            jnp.array([True]), jnp.asarray(5))
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  pool, capacity = config.layout(8).pool, config.layout(8).capacity
  assert (pool, capacity) == (16, 22)  # first frame 8 + temporary 8 + 3 updates of k = 2
  for o in range(2):
    best = (unit(new[o]) @ unit(first[o]).T).max(axis=1)
    expected = np.argsort(best, kind="stable")[:2]
    np.testing.assert_allclose(memory.keys[0, o, pool:pool + 2], new[o, expected])
    np.testing.assert_allclose(memory.values[0, o, pool:pool + 2], new[o, expected, :3])
  written = np.asarray(memory.written_at[0])
  assert (written[:8] == 0).all() and (written[8:16] == -1).all()  # the temporary slot is not touched here
  assert (written[16:18] == 5).all() and (written[18:] == -1).all() and int(memory.pool_writes[0]) == 1


def test_pixel_update_compares_against_pool_but_not_the_temporary_slot():
  config = PixelMemoryConfig(pinned=1, beta=0.25, pool_updates=3)
  one_hot = lambda *kinds: jnp.eye(4)[jnp.array(kinds)][None, None]  # noqa: E731  [1 1 8 4]
  first = one_hot(0, 0, 0, 0, 0, 0, 1, 1)
  memory = PixelAdaptiveMemoryType(config).init(_encoded(first[0], first[0]), _query(0.0), _info(0, True, 1))
  previous = one_hot(2, 3, 2, 3, 2, 3, 2, 3)  # the temporary slot holds kinds 2 and 3
  memory = pam.write(memory, previous, previous, jnp.array([8]), jnp.array([True]), 3)
  novel = one_hot(0, 0, 0, 0, 1, 1, 2, 3)
  memory = pam.pixel_update(memory, config, novel, novel, jnp.array([True]), jnp.asarray(4))
  np.testing.assert_array_equal(memory.keys[0, 0, 16:18], novel[0, 0, 6:])  # novel against pinned + pool
  again = one_hot(0, 1, 2, 3, 0, 1, 2, 3)  # 2 and 3 are in the pool now: nothing is novel, ties -> lowest
  assert float(jnp.min(pam.best_similarity(again, memory.keys, memory.written_at >= 0))) == 1.0
  memory = pam.pixel_update(memory, config, again, again, jnp.array([True]), jnp.asarray(5))
  np.testing.assert_array_equal(memory.keys[0, 0, 18:20], again[0, 0, :2])


def _run_trigger(config, frames, annotated_at=(), objects=2, n=8):
  """Feeds frame intensities [t] (constant frames) to `update`; returns the trigger of every later frame."""
  memory_type = PixelAdaptiveMemoryType(config)
  rng = np.random.RandomState(1)
  encoded = lambda: _encoded(jnp.asarray(rng.randn(objects, n, 4), jnp.float32),  # noqa: E731
                             jnp.asarray(rng.randn(objects, n, 3), jnp.float32))
  memory = memory_type.init(encoded(), _query(frames[0], n), _info(0, True, objects))

  @jax.jit
  def update(memory, value, t, annotated, keys, values):
    encode = lambda: _encoded(keys, values)  # noqa: E731
    probs = jnp.zeros((1, objects, 4, 4))
    return memory_type.update(memory, encode, _query(value, n), probs, _info(t, annotated, objects))

  triggers, memories = [], []
  for t in range(1, len(frames)):
    e = encoded()
    memory, aux = update(memory, frames[t], t, t in annotated_at, e["keys"][0].reshape(objects, n, 4),
                         e["values"][0].reshape(objects, n, 3))
    triggers.append(bool(aux["trigger"][0]))
    memories.append(memory)
  return np.array([False] + triggers), memories


def test_trigger_never_fires_on_a_static_video_but_at_the_maximum_interval():
  config = PixelMemoryConfig(max_interval=7)
  triggers, _ = _run_trigger(config, np.full(30, 0.4))
  assert np.flatnonzero(triggers).tolist() == [7, 14, 21, 28]


def test_trigger_fires_at_a_cut_and_restarts_the_interval():
  config = PixelMemoryConfig(max_interval=7, frame_threshold=0.1, variation_threshold=0.5)
  frames = np.where(np.arange(20) < 5, 0.2, 0.8)  # a cut at frame 5
  triggers, _ = _run_trigger(config, frames)
  assert np.flatnonzero(triggers).tolist() == [5, 12, 19]
  slow = 0.2 + 0.11 * (np.arange(12) // 1)  # every frame changes by 0.11 > th_f: P grows by 1 per frame
  assert np.flatnonzero(_run_trigger(config, slow)[0]).tolist() == list(range(1, 12))


def test_trigger_schedule_accumulates_variation_until_the_threshold_or_the_maximum_interval():
  config = PixelMemoryConfig(variation_threshold=1.0, max_interval=4)
  fractions = jnp.array([0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.0, 0.3, 1.2, 0.0])
  # P: 0.6, 1.2 > 1 fires and resets; frame 6 is 4 frames after 2; 0.3 + 1.2 fires at 8.
  assert np.flatnonzero(pam.trigger_schedule(fractions, config)).tolist() == [0, 2, 6, 8]


def test_capacity_never_exceeded_and_annotated_frames_never_evicted_over_1000_frames():
  config = PixelMemoryConfig(pinned=2, beta=0.25, pool_updates=4, max_interval=3)
  frames = np.random.RandomState(2).rand(1000)  # changes big and small: many triggers
  triggers, memories = _run_trigger(config, frames, annotated_at=(400, 700))
  layout = config.layout(8)  # [first 0:8 | temporary 8:16 | pool 16:24 | later pinned 24:32]
  assert (layout.pool, layout.later_pinned, layout.capacity) == (16, 24, 32)
  first_keys = memories[0].keys[:, :, :8]
  for t, memory in enumerate(memories, start=1):
    assert memory.keys.shape == (1, 2, 32, 4) and memory.written_at.shape == (1, 32)
    written = np.asarray(memory.written_at[0])
    assert (written[:8] == 0).all()  # the first frame, never evicted
    np.testing.assert_array_equal(memory.keys[:, :, :8], first_keys)
    if t >= 400:
      assert (written[24:] == 400).all()  # the late annotated frame, pinned
    if t == 700:  # annotated with every pinned slot taken: a forced pixel update
      assert triggers[700] and int(memory.num_pinned[0]) == 2
    assert written.max() <= t and (written[8:16] == t).all() == (t != 400)  # the temporary slot
  pool = np.asarray(memories[-1].written_at[0, 16:24]).reshape(4, 2)
  assert sorted(pool[:, 0]) == np.flatnonzero(triggers)[-4:].tolist()  # the 4 latest updates, FIFO
  assert int(memories[-1].pool_writes[0]) == triggers.sum() - 1  # every update but the pinned frame 400


def test_reads_run_over_the_shortest_prefix_holding_the_valid_memory():
  config = PixelMemoryConfig(pinned=2, beta=0.25, pool_updates=4, read_buckets=2)
  layout = config.layout(8)
  assert layout.read_ends == (20, 24, 32)  # half the pool, all of it, the later pinned frame
  _, memories = _run_trigger(config, np.where(np.arange(12) % 2, 0.9, 0.1), annotated_at=(10,))
  length = lambda memory: int(pam.over_filled_prefix(  # noqa: E731
      memory, memory.written_at >= 0, layout.read_ends, lambda keys, values, valid: jnp.asarray(keys.shape[2])))
  updates = [int(memory.pool_writes[0]) for memory in memories]
  expected = [32 if t >= 10 else 20 if u <= 2 else 24 for t, u in zip(range(1, 12), updates)]
  assert [length(memory) for memory in memories] == expected and 20 in expected and 24 in expected
  query = jnp.asarray(np.random.RandomState(4).randn(1, 8, 4), jnp.float32)
  for memory in memories[:3]:
    np.testing.assert_allclose(pam.full_read(memory, query, layout.read_ends), pam.full_read(memory, query),
                               rtol=1e-5, atol=1e-6)


def test_a_top_k_read_is_a_softmax_over_each_positions_k_best_matches():
  """`PixelMemoryConfig.top_k`: against a NumPy read of each query position's k largest dot products / sqrt(ck)
  among the positions its object may attend to; k at least the memory's size is the full read. `key_norm`: the
  read of the memory with its keys rescaled."""
  config = PixelMemoryConfig(pinned=2, beta=0.25, pool_updates=4)
  _, memories = _run_trigger(config, np.where(np.arange(8) % 2, 0.9, 0.1))
  memory = memories[-1]
  rng = np.random.RandomState(5)
  memory = memory.replace(keys=jnp.asarray(rng.randn(*memory.keys.shape), jnp.float32),
                          values=jnp.asarray(rng.randn(*memory.values.shape), jnp.float32))
  query = rng.randn(1, 8, memory.keys.shape[-1]).astype(np.float32)
  keys, values, allowed = (np.asarray(a)[0] for a in (memory.keys, memory.values, memory.object_positions()))
  for k in (1, 3):
    expected = np.zeros((keys.shape[0], 8, values.shape[-1]), np.float32)
    for o in range(keys.shape[0]):
      positions = np.flatnonzero(allowed[o])
      assert len(positions) > 3
      scores = query[0] @ keys[o, positions].T / np.sqrt(keys.shape[-1])  # [n m]
      for n, row in enumerate(scores):
        best = np.argsort(-row)[:k]
        weights = np.exp(row[best] - row[best].max())
        expected[o, n] = (weights / weights.sum()) @ values[o, positions[best]]
    np.testing.assert_allclose(pam.full_read(memory, jnp.asarray(query), top_k=k)[0], expected, rtol=1e-4,
                               atol=1e-5)
  np.testing.assert_allclose(pam.full_read(memory, jnp.asarray(query), top_k=keys.shape[1]),
                             pam.full_read(memory, jnp.asarray(query)), rtol=1e-6)
  # key_norm: the same read over memory keys rescaled to norm 2
  rescaled = memory.replace(keys=memory.keys * 2.0 / jnp.linalg.norm(memory.keys, axis=-1, keepdims=True))
  np.testing.assert_allclose(pam.full_read(memory, jnp.asarray(query), key_norm=2.0),
                             pam.full_read(rescaled, jnp.asarray(query)), rtol=1e-5, atol=1e-6)


def test_pixel_match_with_every_position_equals_the_full_match():
  family_full, variables = _tiny()
  family_match, _ = _tiny(match_fraction=1.0)
  frames = jax.random.normal(jax.random.key(1), (4, 1, *HW, 3))
  masks = jnp.zeros((1, 2, *HW)).at[:, 0, 8:30, 8:40].set(1.0).at[:, 1, 40:60, 20:50].set(1.0)
  valid, none = jnp.ones((1, 2), bool), jnp.zeros((1, 2), bool)

  @jax.jit
  def logits(variables):
    def run(family):
      state = family.init_memory(variables, frames[0], masks, valid)
      step = lambda state, frame: family.step(variables, state, frame, jnp.zeros_like(masks), none)  # noqa: E731
      return jax.lax.scan(step, state, frames[1:])[1].logits
    return run(family_full), run(family_match)

  full, matched = logits(variables)
  np.testing.assert_allclose(full, matched, atol=1e-4)
  assert float(jnp.std(full)) > 0.1  # the frames were segmented, not all alike


def test_pixel_match_rereads_only_the_most_changed_positions():
  config = PixelMemoryConfig(pinned=1, match_fraction=0.25)
  rng = np.random.RandomState(3)
  keys = jnp.asarray(rng.randn(2, 16, 4), jnp.float32)
  query = {"key16": jnp.asarray(rng.randn(1, 4, 4, 4), jnp.float32), "frame_small": jnp.zeros((1, 4, 4, 3))}
  encoded = {"keys": keys.reshape(1, 2, 4, 4, 4), "values": keys.reshape(1, 2, 4, 4, 4),
             "masks_small": jnp.zeros((1, 2, 4, 4))}
  memory_type = PixelAdaptiveMemoryType(config)
  memory = memory_type.init(encoded, query, _info(0, True))
  moved = query["frame_small"].at[:, 1, 2].set(1.0).at[:, 3, 0].set(0.5).at[:, 0, 0].set(0.2).at[:, 2, 3].set(0.9)
  new_query = {"key16": jnp.asarray(rng.randn(1, 4, 4, 4), jnp.float32), "frame_small": moved}
  readout, _, aux = memory_type.read(memory, new_query, _info(1))
  full = pam.full_read(memory, new_query["key16"].reshape(1, 16, 4)).reshape(1, 2, 4, 4, 4)
  changed = np.zeros((4, 4), bool)
  changed[1, 2] = changed[3, 0] = changed[0, 0] = changed[2, 3] = True
  np.testing.assert_allclose(readout["readout"][:, :, changed], full[:, :, changed], rtol=1e-5)
  previous = memory.readout.reshape(1, 2, 4, 4, 4)
  np.testing.assert_allclose(readout["readout"][:, :, ~changed], previous[:, :, ~changed])
  assert float(aux["matched_fraction"][0]) == 0.25


def test_dropout_only_in_training():
  family, variables = _tiny()
  frame, masks = jax.random.normal(jax.random.key(1), (1, *HW, 3)), jnp.zeros((1, 1, *HW)).at[:, 0, 8:40].set(1)
  state = family.init_memory(variables, frame, masks, jnp.ones((1, 1), bool))
  step = jax.jit(lambda rng: family.step(variables, state, frame, jnp.zeros_like(masks), jnp.zeros((1, 1), bool),
                                         rng=rng)[1].logits)
  inference = jax.jit(lambda: family.step(variables, state, frame, jnp.zeros_like(masks),
                                          jnp.zeros((1, 1), bool))[1].logits)
  a, b = step(jax.random.key(1)), step(jax.random.key(2))
  assert float(jnp.max(jnp.abs(a - b))) > 1e-3 and float(jnp.max(jnp.abs(a - inference()))) > 1e-3
  np.testing.assert_array_equal(inference(), inference())


def test_a_late_object_reads_only_memory_written_since_it_appeared():
  config = PixelMemoryConfig(pinned=2, beta=0.25, pool_updates=4, max_interval=2)
  _, memories = _run_trigger(config, np.where(np.arange(12) % 2, 0.9, 0.1))
  memory = memories[-1]
  written = np.asarray(memory.written_at[0])
  since = int(np.median(written[written >= 0]))  # entries both before and since
  assert (written[written >= 0] < since).any() and (written >= since).any()
  memory = memory.replace(object_since=jnp.asarray([[0, since]], jnp.int32))
  query = jnp.asarray(np.random.RandomState(5).randn(1, 8, 4), jnp.float32)
  readout = np.asarray(pam.full_read(memory, query))
  r = np.random.RandomState(6)
  before = jnp.asarray((written >= 0) & (written < since))[None, None, :, None]
  noise = lambda x: jnp.where(before, jnp.asarray(r.randn(*x.shape), jnp.float32), x)  # noqa: E731
  changed = memory.replace(keys=noise(memory.keys), values=noise(memory.values))
  changed_readout = np.asarray(pam.full_read(changed, query))
  np.testing.assert_allclose(changed_readout[:, 1], readout[:, 1], atol=1e-6)  # not object 1's memory
  assert np.abs(changed_readout[:, 0] - readout[:, 0]).max() > 1e-2  # but object 0's
