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
