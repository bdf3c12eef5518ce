"""The bounded key/value memory: its policy, pinning and a capacity that never grows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.memory import key_value
from jaxvos.memory.key_value import KeyValueMemory, MemoryConfig


def _run(config: MemoryConfig, num_frames: int, annotated_at=(0,)):
  """Writes `num_frames` frames (frame t's keys are all t) by the policy; returns the final memory."""
  memory = KeyValueMemory.empty(config, batch=1, key_groups=1, objects=2, positions=3, key_dim=2, value_dim=2)
  write = jax.jit(lambda memory, annotated: _write_frame(memory, config, annotated))
  for t in range(num_frames):
    memory = write(memory, jnp.array([t in annotated_at]))
  return memory


def _write_frame(memory, config, annotated):
  slot, pin, do = key_value.plan_write(memory, config, annotated)
  t = memory.num_frames.astype(jnp.float32)
  memory = key_value.write(memory, config, jnp.full((1, 1, 3, 2), t), jnp.full((1, 2, 3, 2), t), slot, pin, do)
  return memory.replace(num_frames=memory.num_frames + 1)


def test_first_frame_is_never_evicted_and_ring_keeps_recent_frames():
  config = MemoryConfig(slots=4, every=5, max_pinned=1, temporary=True)
  memory = _run(config, 103)
  assert memory.keys.shape == (1, 1, 5, 3, 2)  # capacity fixed: 4 slots + the temporary one
  written = np.asarray(memory.written_at[0])
  assert written[0] == 0 and bool(memory.pinned[0, 0]) and not memory.pinned[0, 1:].any()
  assert sorted(written[1:4]) == [90, 95, 100]  # the ring: the last three every-5th frames
  assert written[4] == 102  # temporary: the previous frame
  np.testing.assert_array_equal(memory.keys[0, 0, :, 0, 0], written)  # slot contents match their frames


def test_temporary_slot_empty_when_previous_frame_went_to_the_ring():
  memory = _run(MemoryConfig(slots=3, every=5, max_pinned=1, temporary=True), 11)
  assert memory.written_at[0, -1] == -1 and 10 in np.asarray(memory.written_at[0])


def test_annotated_frames_are_pinned_up_to_max_pinned():
  config = MemoryConfig(slots=4, every=5, max_pinned=2, temporary=False)
  memory = _run(config, 60, annotated_at=(0, 7, 9))
  written, pinned = np.asarray(memory.written_at[0]), np.asarray(memory.pinned[0])
  assert sorted(written[pinned]) == [0, 7]  # 9 came when two slots were pinned: an ordinary ring write
  assert sorted(written[~pinned]) == [50, 55]


def test_valid_positions_cover_written_slots_only():
  memory = _run(MemoryConfig(slots=4, every=5, max_pinned=1, temporary=False), 6)
  np.testing.assert_array_equal(memory.valid_positions()[0], np.repeat([True, True, False, False], 3))


def test_config_rejects_a_policy_without_a_ring_slot():
  with pytest.raises(ValueError, match="max_pinned"):
    MemoryConfig(slots=2, max_pinned=2)


def _late_object_memory(perturb_before: int | None = None):
  """Object 0 from frame 0, object 1 annotated at frame 3, every frame written; frames before `perturb_before`
  get other random keys and values. Returns the memory after frame 4 and its read-out of a random query."""
  from jaxvos.models.family import FrameInfo  # pylint: disable=g-import-not-at-top
  from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
  memory_type = key_value.KeyValueMemoryType(MemoryConfig(slots=6, every=1, max_pinned=2, temporary=False),
                                             attention.l2_affinity, top_k=None)
  r = np.random.RandomState(0)
  frames = [{"keys": r.randn(1, 1, 2, 3, 4), "values": r.randn(1, 2, 2, 3, 5)} for _ in range(5)]
  other = np.random.RandomState(1)
  for t in range(perturb_before or 0):
    frames[t] = {"keys": other.randn(1, 1, 2, 3, 4), "values": other.randn(1, 2, 2, 3, 5)}
  frames = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), f) for f in frames]
  query = {"key16": jnp.asarray(r.randn(1, 2, 3, 4), jnp.float32)}

  def info(t, valid, new):
    return FrameInfo(t=jnp.int32(t), object_valid=jnp.asarray([valid]), new_object_valid=jnp.asarray([new]))

  memory = memory_type.init(frames[0], query, info(0, [True, False], [True, False]))
  for t in range(1, 5):
    new = [False, t == 3]
    memory, _ = memory_type.update(memory, lambda t=t: frames[t], query, None, info(t, [True, t >= 3], new))
  readout, _, _ = memory_type.read(memory, query, info(5, [True, True], [False, False]))
  return memory, np.asarray(readout["readout"])


def test_a_late_object_reads_only_memory_written_since_it_appeared():
  memory, readout = _late_object_memory()
  np.testing.assert_array_equal(memory.object_since[0], [0, 3])
  assert not memory.objects_share_memory()
  _, changed_before = _late_object_memory(perturb_before=3)
  np.testing.assert_allclose(changed_before[:, 1], readout[:, 1], atol=1e-6)  # frames 0-2: not object 1's
  assert np.abs(changed_before[:, 0] - readout[:, 0]).max() > 1e-2  # but object 0 reads them
  _, changed_after = _late_object_memory(perturb_before=4)
  assert np.abs(changed_after[:, 1] - readout[:, 1]).max() > 1e-2  # frame 3 is object 1's


def test_objects_share_one_read_once_the_memory_is_younger_than_all_of_them():
  memory = _run(MemoryConfig(slots=3, every=1, max_pinned=1, temporary=False), 6)
  assert bool(memory.objects_share_memory())  # no object noted: all read everything
  late = memory.replace(object_since=jnp.asarray([[0, 4]]))  # written: frames 0 (pinned), 4 and 5
  assert not late.objects_share_memory()
  written = np.asarray(late.written_at[0])
  assert sorted(written) == [0, 4, 5]
  np.testing.assert_array_equal(late.object_positions()[0, 0], np.repeat(written >= 0, 3))
  np.testing.assert_array_equal(late.object_positions()[0, 1], np.repeat(written >= 4, 3))


def test_read_rows_reads_the_changed_rows_and_keeps_the_others():
  """`attention.read_rows` == where(changed, read(keys), previous) in every bucket: none, some, all rows."""
  from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
  r = np.random.RandomState(0)
  keys = jnp.asarray(r.randn(2, 16, 4), jnp.float32)
  memory_keys, values = jnp.asarray(r.randn(2, 1, 10, 4), jnp.float32), jnp.asarray(r.randn(2, 3, 10, 5), jnp.float32)
  valid = jnp.ones((2, 10), bool)
  read = lambda k: attention.read_memory(attention.l2_affinity, memory_keys, k, values, valid, 3)  # noqa: E731
  previous = jnp.asarray(r.randn(2, 3, 16, 5), jnp.float32)
  for count, bucket in ((0, 0.0), (3, 0.25), (7, 0.5), (16, 1.0)):
    changed = jnp.asarray(np.stack([r.permutation(16) < count, r.permutation(16) < count // 2]))
    got = attention.read_rows(read, keys, changed, previous, buckets=(0.25, 0.5))
    np.testing.assert_allclose(got, jnp.where(changed[:, None, :, None], read(keys), previous), atol=1e-6)
    assert float(attention.rows_read(changed, buckets=(0.25, 0.5))) == bucket


def test_the_read_guard_keeps_the_read_outs_of_keys_that_barely_moved_while_the_memory_stayed():
  """read_threshold 0.5: a key that moved by less than half the mean key norm since the key its read-out was read
  with keeps that read-out (so slow drift adds up until it is read again); the others are read; after a write,
  every position is read."""
  from jaxvos.models.family import FrameInfo  # pylint: disable=g-import-not-at-top
  from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
  memory_type = key_value.KeyValueMemoryType(MemoryConfig(slots=3, every=2, max_pinned=1, temporary=False),
                                             attention.l2_affinity, top_k=None, read_threshold=0.5)
  r = np.random.RandomState(1)
  encode = lambda: {"keys": jnp.asarray(r.randn(1, 1, 2, 3, 4), jnp.float32),  # noqa: E731
                    "values": jnp.asarray(r.randn(1, 1, 2, 3, 5), jnp.float32)}
  info = lambda t: FrameInfo(t=jnp.int32(t), object_valid=jnp.ones((1, 1), bool),  # noqa: E731
                             new_object_valid=jnp.asarray([[t == 0]]))
  keys = r.randn(1, 2, 3, 4).astype(np.float32)
  memory = memory_type.init(encode(), {"key16": jnp.asarray(keys)}, info(0))

  def read(memory, keys, t):
    out, memory, aux = memory_type.read(memory, {"key16": jnp.asarray(keys)}, info(t))
    fresh, _, _ = key_value.KeyValueMemoryType(memory_type.config, attention.l2_affinity).read(
        memory, {"key16": jnp.asarray(keys)}, info(t))
    return np.asarray(out["readout"]), np.asarray(fresh["readout"]), memory, float(aux["read_fraction"][0])

  first, fresh, memory, fraction = read(memory, keys, 1)  # the first read: every position
  np.testing.assert_array_equal(first, fresh)
  assert fraction == 1.0
  memory, _ = memory_type.update(memory, encode, None, None, info(1))  # frame 1: not written (every 2nd)
  scale = float(np.linalg.norm(keys, axis=-1).mean())
  moved = keys.copy()
  moved[0, 0, 0] += 2.0 * scale  # moves far: read again
  moved[0, 1, 2] += 0.3 * scale * np.eye(4, dtype=np.float32)[0]  # moves a little: kept
  out, fresh, memory, fraction = read(memory, moved, 2)
  np.testing.assert_allclose(out[:, :, 0, 0], fresh[:, :, 0, 0], atol=1e-6)
  np.testing.assert_array_equal(out[:, :, 1, 2], first[:, :, 1, 2])
  assert np.abs(fresh[:, :, 1, 2] - first[:, :, 1, 2]).max() > 1e-4 and fraction < 1
  np.testing.assert_array_equal(np.asarray(memory.read_cache.keys)[0, 5], keys[0, 1, 2])  # the key read with
  memory, _ = memory_type.update(memory, encode, None, None, info(2))  # frame 2: written
  out, fresh, memory, fraction = read(memory, moved, 3)
  np.testing.assert_allclose(out, fresh, atol=1e-6)
  assert fraction == 1.0
