"""The family contract, checked for every registered family's `-tiny` variant (a new family is tested by
registering it): shapes and dtypes, scan == streaming, object permutation, padded objects, late objects, a state
of constant size, bfloat16 compute, no recompilation for a second video, checkpoint round trip, one train step
(with an object that enters at frame 1)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvos import losses
from jaxvos.convert import io as convert_io
from jaxvos.inference import Segmenter
from jaxvos.models import registry
from jaxvos.training import step as step_lib
from jaxvos.training.state import create_train_state

H, W = 48, 64
FAMILIES = registry.tiny_names()


@functools.lru_cache(maxsize=None)
def _family(name):
  family = registry.build(name)
  return family, family.init(jax.random.key(0), (H, W)), jax.jit(family.init_memory), jax.jit(family.step)


@functools.lru_cache(maxsize=None)
def _segmenter(name):
  family, variables, _, _ = _family(name)
  return Segmenter(family, variables, size=-1, chunk=4)


def _clip(num_objects=2, seed=0, num_frames=3):
  """Frames [t 1 h w 3] (normalised-looking noise with a moving square per object) and first masks [1 o h w]."""
  r = np.random.RandomState(seed)
  frames = r.randn(num_frames, 1, H, W, 3).astype(np.float32) * 0.5
  masks = np.zeros((1, num_objects, H, W), np.float32)
  for i in range(num_objects):
    y, x = r.randint(0, H - 16), r.randint(0, W - 16)
    masks[0, i, y:y + 16, x:x + 16] = 1
    for t in range(num_frames):
      frames[t, 0, y:y + 16, x + t:x + t + 16] += 1.5 * (i + 1)
  return jnp.asarray(frames), jnp.asarray(masks)


def _segment(name, frames, masks, valid):
  """StepOutputs of frames 1 .. t-1 (logits stacked [t-1 b o+1 h w]) after initialising on frame 0."""
  _, variables, init_memory, step = _family(name)
  state = init_memory(variables, frames[0], masks, valid)
  no_new = (jnp.zeros_like(masks), jnp.zeros_like(valid))
  outputs = []
  for frame in frames[1:]:
    state, output = step(variables, state, frame, *no_new)
    outputs.append(output)
  return jax.tree.map(lambda *x: jnp.stack(x), *outputs)


def _probs(logits):
  """Compared as probabilities: logits of saturated pixels (p ~ 1 - 1e-4) amplify float32 rounding."""
  return np.asarray(jax.nn.softmax(logits, axis=2))


def _video(num_frames=9, seed=0):
  """uint8 frames with two moving squares; object 3 annotated at frame 1, object 7 first appears at frame 4."""
  r = np.random.RandomState(seed)
  frames = []
  for t in range(num_frames):
    frame = r.randint(0, 60, (H, W, 3)).astype(np.uint8)
    frame[5 + t:20 + t, 5:30] = (220, 40, 40)
    frame[22:38, 30 - t:50 - t] = (40, 220, 40)
    frames.append(frame)
  first, late = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
  first[6:21, 5:30] = 3
  late[22:38, 26:46] = 7
  return frames, {1: first, 4: late}


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_dtypes_and_probabilities(name):
  frames, masks = _clip()
  outputs = _segment(name, frames, masks, jnp.array([[True, True]]))
  assert outputs.logits.shape == (2, 1, 3, H, W) and outputs.logits.dtype == jnp.float32
  np.testing.assert_allclose(jax.nn.softmax(outputs.logits, axis=2).sum(axis=2), 1.0, rtol=1e-5)
  for key, value in outputs.aux.items():
    assert value.shape[:2] == (2, 1), key  # [t b ...]: per frame and video
    assert np.all(np.isfinite(np.asarray(value, np.float32))), key


@pytest.mark.parametrize("name", FAMILIES)
def test_scan_and_streaming_give_identical_masks(name):
  frames, annotations = _video()
  segmenter = _segmenter(name)
  scanned = list(segmenter.segment_video(frames, annotations))
  stream = segmenter.stream([3, 7])
  streamed = [np.zeros((H, W), np.uint8)] + [stream(f, annotations.get(t)) for t, f in enumerate(frames) if t]
  for t, (a, b) in enumerate(zip(scanned, streamed)):
    np.testing.assert_array_equal(a, b, err_msg=f"frame {t}")


@pytest.mark.parametrize("name", FAMILIES)
def test_an_object_that_first_appears_at_frame_k(name):
  frames, annotations = _video()
  masks = list(_segmenter(name).segment_video(frames, annotations))
  assert not masks[0].any()  # before the first annotation
  np.testing.assert_array_equal(masks[1], annotations[1])  # the annotated frame is returned as given
  assert all(7 not in m for m in masks[:4])
  np.testing.assert_array_equal(masks[4] == 7, annotations[4] == 7)  # its ground truth wins at frame 4
  assert all(m.dtype == np.uint8 and m.shape == (H, W) and set(np.unique(m)) <= {0, 3, 7} for m in masks)


@pytest.mark.parametrize("name", FAMILIES)
def test_permuting_objects_permutes_outputs(name):
  frames, masks = _clip(num_objects=3, seed=1)
  valid = jnp.ones((1, 3), bool)
  order = np.array([2, 0, 1])
  probs = _probs(_segment(name, frames, masks, valid).logits)
  permuted = _probs(_segment(name, frames, masks[:, order], valid).logits)
  np.testing.assert_allclose(permuted[:, :, 1:], probs[:, :, 1:][:, :, order], atol=1e-4)
  np.testing.assert_allclose(permuted[:, :, 0], probs[:, :, 0], atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_padded_objects_change_nothing(name):
  frames, masks = _clip(num_objects=2, seed=2)
  probs = _probs(_segment(name, frames, masks, jnp.array([[True, True]])).logits)
  padded_masks = jnp.concatenate([masks, jnp.zeros_like(masks)], axis=1)
  padded = _probs(_segment(name, frames, padded_masks, jnp.array([[True, True, False, False]])).logits)
  # XLA rounds a convolution over 4 objects slightly differently from one over 2 (~5e-7 relative) and an
  # untrained decoder amplifies that about a hundredfold; a leak of a padded object would differ by far more.
  np.testing.assert_allclose(padded[:, :, :3], probs, atol=1e-3)
  assert (padded.argmax(axis=2) == probs.argmax(axis=2)).mean() > 0.999
  assert float(padded[:, :, 3:].max()) == 0.0


@pytest.mark.parametrize("name", FAMILIES)
def test_state_shapes_and_bytes_are_constant_over_300_frames(name):
  frames, annotations = _video(num_frames=2)
  stream = _segmenter(name).stream([3, 7])
  stream(frames[0], annotations[1])
  shapes = jax.tree.map(lambda x: (x.shape, x.dtype), stream.state)
  size = sum(x.nbytes for x in jax.tree.leaves(stream.state))
  long_video = [frames[t % 2] for t in range(300)]
  stream.run_chunk([(frame, None) for frame in long_video[:296]])  # one scan of 296 frames
  for frame in long_video[296:]:
    stream(frame)
  assert jax.tree.map(lambda x: (x.shape, x.dtype), stream.state) == shapes
  assert sum(x.nbytes for x in jax.tree.leaves(stream.state)) == size


def _primitive_dtypes(jaxpr, primitives=("conv_general_dilated", "dot_general")):
  """(primitive, input dtypes, output dtype) of every convolution and matmul, inside cond/scan/jit bodies too."""
  found = set()
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in primitives:
      found.add((eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype)))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
        if hasattr(sub, "eqns"):
          found |= _primitive_dtypes(sub, primitives)
  return found


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_runs_every_convolution_in_bfloat16(name):
  """Given bfloat16 variables and frames, no convolution silently promotes back to float32, the logits come
  back float32 and finite."""
  family, variables, _, _ = _family(name)
  half = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x, variables)
  frames, masks = _clip()
  valid = jnp.array([[True, True]])
  frames = frames.astype(jnp.bfloat16)
  state = jax.eval_shape(family.init_memory, half, frames[0], masks, valid)
  jaxpr = jax.make_jaxpr(family.step)(half, state, frames[1], masks, valid).jaxpr
  convs = {f for f in _primitive_dtypes(jaxpr) if f[0] == "conv_general_dilated"}
  assert convs == {("conv_general_dilated", ("bfloat16", "bfloat16"), "bfloat16")}
  _, _, init_memory, step = _family(name)
  _, output = step(half, init_memory(half, frames[0], masks, valid), frames[1], jnp.zeros_like(masks),
                   jnp.zeros_like(valid))
  assert output.logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(output.logits)))


def _cache_sizes(segmenter):
  return [f._cache_size() for f in (segmenter._init_memory, segmenter._scan, segmenter._preprocess,
                                    segmenter._postprocess)]


@pytest.mark.parametrize("name", FAMILIES)
def test_a_second_video_of_the_same_size_compiles_nothing_new(name):
  segmenter = _segmenter(name)
  frames, annotations = _video(num_frames=7, seed=0)
  list(segmenter.segment_video(frames, annotations))
  before = _cache_sizes(segmenter)
  frames, annotations = _video(num_frames=7, seed=1)
  list(segmenter.segment_video(frames[::-1], annotations))
  assert _cache_sizes(segmenter) == before


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip(name, tmp_path):
  family, variables, init_memory, step = _family(name)
  convert_io.save_model(tmp_path / "model", family, variables)
  loaded_family, loaded = convert_io.load_model(tmp_path / "model")
  assert loaded_family.name == family.name and loaded_family.config == family.config
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(variables))
  frames, masks = _clip()
  valid = jnp.array([[True, True]])
  outputs = [step(v, init_memory(v, frames[0], masks, valid), frames[1], jnp.zeros_like(masks),
                  jnp.zeros_like(valid))[1].logits for v in (variables, loaded)]
  np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", FAMILIES)
def test_one_train_step_has_finite_loss_and_gradients(name):
  family, variables, _, _ = _family(name)
  optimizer = optax.adam(1e-3)
  train_step = jax.jit(step_lib.make_train_step(family, optimizer, loss=losses.LossSpec()))
  state = create_train_state(variables, optimizer, jax.random.PRNGKey(1))
  frames, masks = _clip(num_objects=2, num_frames=3)
  labels = np.zeros((1, 3, H, W), np.uint8)
  for t in range(3):
    labels[0, t] = np.where(np.asarray(masks[0, 1]) > 0, 2, np.where(np.asarray(masks[0, 0]) > 0, 1, 0))
  labels[0, 0][labels[0, 0] == 2] = 0  # object 2 enters at frame 1, where the unroll gives it to the model
  frames_uint8 = np.clip(np.moveaxis(np.asarray(frames), 0, 1) * 60 + 120, 0, 255).astype(np.uint8)
  batch = {"frames": frames_uint8, "labels": labels, "object_valid": np.ones((1, 2), bool),
           "first_frame": np.array([[0, 1]], np.int32)}
  new_state, metrics = train_step(state, batch)
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), new_state.params, state.params)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(new_state.params))
  # Parameters with no gradient path at all would stay put; some (a zero-initialised gate) may legitimately
  # not move on the first step, so most, not all, must.
  assert np.mean(jax.tree.leaves(moved)) > 0.8, name
