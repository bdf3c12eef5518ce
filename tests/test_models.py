"""Family contracts on tiny models: shapes, object-permutation equivariance, padded objects change nothing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.models import registry

H, W = 48, 64


@functools.lru_cache(maxsize=None)
def _family(name):
  family = registry.build(name)
  return family, family.init(jax.random.key(0), (H, W)), jax.jit(family.init_memory), jax.jit(family.step)


def _clip(num_objects=2, seed=0):
  r = np.random.RandomState(seed)
  frames = jnp.asarray(r.randn(3, 1, H, W, 3).astype(np.float32))
  masks = np.zeros((1, num_objects, H, W), np.float32)
  for i in range(num_objects):
    y, x = r.randint(0, H - 16), r.randint(0, W - 16)
    masks[0, i, y:y + 16, x:x + 16] = 1
  return frames, jnp.asarray(masks)


def _segment(name, frames, masks, valid):
  """Logits of frames 1 and 2 after initialising on frame 0."""
  _, variables, init_memory, step = _family(name)
  memory = init_memory(variables, frames[0], masks, valid)
  no_new = (jnp.zeros_like(masks), jnp.zeros_like(valid))
  memory, logits1 = step(variables, memory, frames[1], *no_new)
  memory, logits2 = step(variables, memory, frames[2], *no_new)
  return jnp.stack([logits1, logits2])


def _probs(logits):
  """Compared as probabilities: logits of saturated pixels (p ~ 1 - 1e-4) amplify float32 rounding."""
  return np.asarray(jax.nn.softmax(logits, axis=2))


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_logits_shape_and_probabilities(name):
  frames, masks = _clip()
  logits = _segment(name, frames, masks, jnp.array([[True, True]]))
  assert logits.shape == (2, 1, 3, H, W)
  np.testing.assert_allclose(jax.nn.softmax(logits, axis=2).sum(axis=2), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_permuting_objects_permutes_outputs(name):
  frames, masks = _clip(num_objects=3, seed=1)
  valid = jnp.ones((1, 3), bool)
  order = np.array([2, 0, 1])
  probs = _probs(_segment(name, frames, masks, valid))
  permuted = _probs(_segment(name, frames, masks[:, order], valid))
  np.testing.assert_allclose(permuted[:, :, 1:], probs[:, :, 1:][:, :, order], atol=1e-4)
  np.testing.assert_allclose(permuted[:, :, 0], probs[:, :, 0], atol=1e-4)


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_padded_objects_change_nothing(name):
  frames, masks = _clip(num_objects=2, seed=2)
  probs = _probs(_segment(name, frames, masks, jnp.array([[True, True]])))
  padded_masks = jnp.concatenate([masks, jnp.zeros_like(masks)], axis=1)
  padded = _probs(_segment(name, frames, padded_masks, jnp.array([[True, True, False, False]])))
  # XLA rounds a convolution over 4 objects slightly differently from one over 2 (values differ by ~5e-7
  # relative) and the untrained decoder amplifies that about a hundredfold; a leak of a padded object into
  # the others' masks or the background would differ by far more.
  np.testing.assert_allclose(padded[:, :, :3], probs, atol=1e-3)
  assert (padded.argmax(axis=2) == probs.argmax(axis=2)).mean() > 0.999
  assert float(padded[:, :, 3:].max()) == 0.0


@pytest.mark.parametrize("name", ["stcn", "stcn-r18", "stm", "stm-r18"])
def test_full_size_variables_and_features(name):
  family = registry.build(name)
  variables = jax.eval_shape(functools.partial(family.init, frame_hw=(64, 64)), jax.random.key(0))
  query = jax.eval_shape(lambda v, f: family.module.apply(v, f, method="encode_query"), variables,
                         jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert query["key16"].shape == (1, 4, 4, family.config.key_dim)
  assert set(variables) == {"params", "batch_stats"}


def test_unknown_model_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown model 'stcm'"):
    registry.build("stcm")


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


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_bfloat16_compute_runs_every_layer_in_bfloat16_and_attention_in_float32(name):
  """Given bfloat16 variables and frames, no layer silently promotes back to float32 (the value encoder once
  did, from the float32 probabilities), while affinities accumulate in float32."""
  family, variables, _, _ = _family(name)
  half = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x, variables)
  frames, masks = _clip()
  valid = jnp.array([[True, True]])
  memory = jax.eval_shape(family.init_memory, half, frames[0].astype(jnp.bfloat16), masks, valid)
  jaxpr = jax.make_jaxpr(family.step)(half, memory, frames[1].astype(jnp.bfloat16), masks, valid).jaxpr
  found = _primitive_dtypes(jaxpr)
  convs = {f for f in found if f[0] == "conv_general_dilated"}
  assert convs == {("conv_general_dilated", ("bfloat16", "bfloat16"), "bfloat16")}
  assert ("dot_general", ("bfloat16", "bfloat16"), "float32") in found  # the affinity
  assert not any("float32" in f[1] for f in found)

  # Same function to bfloat16's precision (8-bit mantissa, ~0.4% per op): the encoders' features. The decoded
  # masks of random weights sit near p = 0.5, where any rounding flips argmaxes, so they are only checked finite.
  frame = frames[1]
  query = family.module.apply(variables, frame, method="encode_query")
  query_half = family.module.apply(half, frame.astype(jnp.bfloat16), method="encode_query")
  for key, value in query.items():
    value, value_half = np.asarray(value), np.asarray(query_half[key], np.float32)
    assert np.linalg.norm(value_half - value) / np.linalg.norm(value) < 0.02, key
  _, _, init_memory, step = _family(name)
  memory = init_memory(half, frames[0].astype(jnp.bfloat16), masks, valid)
  _, logits = step(half, memory, frame.astype(jnp.bfloat16), jnp.zeros_like(masks), jnp.zeros_like(valid))
  assert logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))
