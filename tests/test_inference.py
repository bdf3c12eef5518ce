"""The inference engine: scan == streaming, late objects, resizing and ids, a memory that stays bounded."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.inference import Segmenter, plan_geometry
from jaxvos.inference import frames as frames_lib
from jaxvos.models import registry

H, W = 40, 56


@functools.lru_cache(maxsize=None)
def _segmenter(name="stcn-tiny", size=-1, chunk=4):
  family = registry.build(name, memory={"slots": 3, "every": 2, "max_pinned": 2, "temporary": True})
  return Segmenter(family, family.init(jax.random.key(0)), size=size, chunk=chunk)


def _video(num_frames=11, seed=0):
  """Random frames; object 3 annotated at frame 1, object 7 first appears at frame 4."""
  r = np.random.RandomState(seed)
  frames = [r.randint(0, 255, (H, W, 3), np.uint8) for _ in range(num_frames)]
  first, late = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
  first[5:20, 5:30] = 3
  late[22:38, 30:50] = 7
  return frames, {1: first, 4: late}


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_scan_and_streaming_give_identical_masks(name):
  frames, annotations = _video()
  segmenter = _segmenter(name)
  scanned = list(segmenter.segment_video(frames, annotations))
  stream = segmenter.stream([3, 7])
  streamed = [np.zeros((H, W), np.uint8)] + [stream(f, annotations.get(t)) for t, f in enumerate(frames) if t]
  assert len(scanned) == len(frames)
  for t, (a, b) in enumerate(zip(scanned, streamed)):
    np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")


def test_late_object_appears_from_its_first_mask_and_ids_are_kept():
  frames, annotations = _video()
  masks = list(_segmenter().segment_video(frames, annotations))
  assert not masks[0].any()  # before the first annotation
  np.testing.assert_array_equal(masks[1], annotations[1])  # the annotated frame is returned as given
  assert all(7 not in m for m in masks[:4])
  np.testing.assert_array_equal(masks[4] == 7, annotations[4] == 7)  # its ground truth wins at frame 4
  assert all(m.dtype == np.uint8 and m.shape == (H, W) and set(np.unique(m)) <= {0, 3, 7} for m in masks)


def test_new_object_frame_is_pinned_in_memory():
  frames, annotations = _video(num_frames=12)
  stream = _segmenter().stream([3, 7])
  for t, frame in enumerate(frames[1:], start=1):
    stream(frame, annotations.get(t))
  written, pinned = np.asarray(stream.state.memory.written_at[0]), np.asarray(stream.state.memory.pinned[0])
  # Stream frame 0 is video frame 1; object 7 arrives at stream frame 3.
  assert sorted(written[pinned]) == [0, 3]
  assert stream.state.memory.keys.shape[2] == 4  # 3 slots + temporary, whatever the length


def test_memory_shape_is_fixed_over_a_long_video():
  segmenter = _segmenter()
  frames, annotations = _video(num_frames=3)
  stream = segmenter.stream([3])
  stream(frames[1], annotations[1])
  shapes = jax.tree.map(np.shape, stream.state)
  for t in range(40):
    stream(frames[t % 3])
  assert jax.tree.map(np.shape, stream.state) == shapes
  assert int(stream.state.memory.written_at[0, 0]) == 0 and bool(stream.state.memory.pinned[0, 0])


def test_resized_inference_returns_input_size():
  frames, annotations = _video(num_frames=4)
  masks = list(_segmenter(size=32).segment_video(frames, annotations))
  assert all(m.shape == (H, W) for m in masks)
  np.testing.assert_array_equal(masks[1], annotations[1])


def test_geometry_resizes_shorter_side_and_pads_to_16():
  geometry = plan_geometry((1080, 1920), 480)
  assert geometry.resized_hw == (480, 853) and geometry.model_hw == (480, 864)
  assert plan_geometry((480, 854), 480).pads == (0, 0, 5, 5)
  assert plan_geometry((33, 50), -1).model_hw == (48, 64)


def test_stream_rejects_unknown_ids_and_size_changes():
  frames, annotations = _video(num_frames=3)
  stream = _segmenter().stream([3])
  with pytest.raises(ValueError, match="needs an annotation"):
    stream(frames[0])
  stream(frames[0], annotations[1])
  with pytest.raises(ValueError, match=r"ids \[7\]"):
    stream(frames[1], annotations[4])
  with pytest.raises(ValueError, match="frame size"):
    stream(frames[1][:20])



def test_engine_runs_the_family_step():
  """A plain Python loop over a separately jitted `family.step` agrees with the engine (same maths)."""
  segmenter = _segmenter()
  family, variables = segmenter.family, segmenter.variables
  frames, annotations = _video(num_frames=6)
  engine_masks = list(segmenter.segment_video(frames, annotations))
  geometry = plan_geometry((H, W), -1)
  x = [frames_lib.preprocess(jnp.asarray(f[None]), geometry) for f in frames]
  def masks_of(annotation, new_ids):  # one-hot over the slots of ids (3, 7)
    given = np.where(np.isin(annotation, new_ids), annotation, 0)
    slots = frames_lib.masks_at_model_size(given, np.array([3, 7]), geometry)
    return frames_lib.one_hot_slots(jnp.asarray(slots[None]), 2)
  memory = family.init_memory(variables, x[1], masks_of(annotations[1], [3]), jnp.array([[True, False]]))
  step, agree = jax.jit(family.step), []
  for t in range(2, 6):
    new = t == 4
    new_masks = masks_of(annotations[4], [7]) if new else jnp.zeros((1, 2, 48, 64))
    memory, output = step(variables, memory, x[t], new_masks, jnp.array([[False, new]]))
    labels = np.array([0, 3, 7])[np.asarray(frames_lib.postprocess(output.logits, geometry))[0]]
    agree.append((labels == engine_masks[t]).mean())
  assert min(agree) > 0.99, agree


def _reading(frames, log, fail_at=None):
  """Yields `frames`, appending to `log` how many have been read; raises OSError at index `fail_at`."""
  for t, frame in enumerate(frames):
    if t == fail_at:
      raise OSError(f"frame {t} unreadable")
    log.append(t + 1)
    yield frame


def test_the_next_chunk_is_queued_before_a_chunks_masks_are_yielded():
  frames, annotations = _video()  # annotated at 1; chunks of 4: frames 2-5, 6-9; the tail 10 as a stream
  want = list(_segmenter().segment_video(frames, annotations))
  log, read_when = [], []
  for masks in _segmenter().segment_video(_reading(frames, log), annotations):
    read_when.append(log[-1])
    got = len(read_when) - 1
    np.testing.assert_array_equal(masks, want[got], err_msg=f"frame {got}")
  # frames 2-5 are yielded once frame 9 (the last of the next chunk) has been read, 6-9 after the whole video
  assert read_when == [1, 2, 10, 10, 10, 10, 11, 11, 11, 11, 11], read_when


def test_a_frame_that_cannot_be_read_still_gets_the_masks_computed_before_it():
  frames, annotations = _video()
  want = list(_segmenter().segment_video(frames, annotations))
  got = []
  with pytest.raises(OSError, match="frame 10 unreadable"):
    for masks in _segmenter().segment_video(_reading(frames, [], fail_at=10), annotations):
      got.append(masks)
  assert len(got) == 10  # the chunk in flight (frames 6-9) is fetched before the error
  for t, (a, b) in enumerate(zip(got, want)):
    np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")
