"""Parameter-free ops against independent references: PyTorch for resizing/pixel shuffles, NumPy for reads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos.ops import attention
from jaxvos.ops.resize import depth_to_space, pad_to_multiple, resize_bilinear, space_to_depth, unpad

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _nchw(x):
  return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


def _nhwc(t):
  return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("size,scale", [((17, 23), None), ((5, 7), None), ((3, 40), None), (None, 2.0),
                                        (None, 4.0), (None, 0.5)])
def test_resize_bilinear_matches_torch(size, scale):
  x = np.random.RandomState(0).rand(2, 8, 12, 3).astype(np.float32)
  expected = _nhwc(F.interpolate(_nchw(x), size=size, scale_factor=scale, mode="bilinear", align_corners=False))
  np.testing.assert_allclose(resize_bilinear(jnp.asarray(x), size, scale_factor=scale), expected, atol=1e-6)


def test_space_to_depth_matches_pixel_unshuffle_and_inverts():
  x = np.random.RandomState(1).rand(2, 8, 12, 3).astype(np.float32)
  packed = space_to_depth(jnp.asarray(x), 4)
  np.testing.assert_array_equal(packed, _nhwc(F.pixel_unshuffle(_nchw(x), 4)))
  np.testing.assert_array_equal(depth_to_space(packed, 4), x)


def test_pad_to_multiple_pads_evenly_and_unpads():
  x = jnp.ones((1, 33, 50, 2))
  padded, pads = pad_to_multiple(x, 16)
  assert padded.shape == (1, 48, 64, 2) and pads == (7, 8, 7, 7)
  np.testing.assert_array_equal(unpad(padded, pads), x)


def _reference_read(affinity, values, valid, top_k):
  """Loops over positions in float64: softmax over the (top-k) valid memory positions, weighted sum."""
  b, g, n, m = affinity.shape
  out = np.zeros((b, values.shape[1], n, values.shape[-1]))
  for bi in range(b):
    for oi in range(values.shape[1]):
      for ni in range(n):
        allowed = valid[bi] if valid.ndim == 2 else valid[bi, oi]
        logits = np.where(allowed, affinity[bi, oi if g > 1 else 0, ni], -np.inf).astype(np.float64)
        keep = np.argsort(-logits)[:top_k or m]
        keep = keep[np.isfinite(logits[keep])]
        weights = np.exp(logits[keep] - logits[keep].max())
        out[bi, oi, ni] = weights @ values[bi, oi, keep] / weights.sum()
  return out


@pytest.mark.parametrize("per_object", [False, True])
@pytest.mark.parametrize("groups,top_k", [(1, None), (1, 5), (3, None), (3, 4), (1, 50)])
def test_read_matches_reference(groups, top_k, per_object):
  r = np.random.RandomState(2)
  memory_keys = r.randn(2, groups, 30, 8).astype(np.float32)
  query_keys = r.randn(2, 6, 8).astype(np.float32)
  values = r.randn(2, 3, 30, 4).astype(np.float32)
  valid = np.ones((2, 30), bool)
  valid[0, 20:], valid[1, 7:] = False, False  # fewer valid positions than top_k in video 1
  if per_object:  # objects 1 and 2 of video 0 may read fewer positions than object 0
    valid = np.repeat(valid[:, None], 3, axis=1)
    valid[0, 1, :12], valid[0, 2, :3] = False, False
  for affinity_fn in (attention.l2_affinity, attention.dot_affinity):
    affinity = affinity_fn(jnp.asarray(memory_keys), jnp.asarray(query_keys))
    got = attention.read(affinity, jnp.asarray(values), jnp.asarray(valid), top_k)
    np.testing.assert_allclose(got, _reference_read(np.asarray(affinity), values, valid, top_k), atol=1e-5)


def test_affinities_match_their_formulas():
  r = np.random.RandomState(3)
  mk, qk = r.randn(1, 1, 5, 4).astype(np.float32), r.randn(1, 3, 4).astype(np.float32)
  dots = np.einsum("nc,mc->nm", qk[0], mk[0, 0])
  np.testing.assert_allclose(attention.dot_affinity(mk, qk)[0, 0], dots / 2, rtol=1e-5)
  l2 = (2 * dots - (mk[0, 0] ** 2).sum(-1)[None]) / 2
  np.testing.assert_allclose(attention.l2_affinity(mk, qk)[0, 0], l2, rtol=1e-5, atol=1e-5)
  # The dropped |k_q|^2 term is constant over memory: softmax equals that of -|k_m - k_q|^2 / sqrt(ck).
  full = -((qk[0][:, None] - mk[0, 0][None]) ** 2).sum(-1) / 2
  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  np.testing.assert_allclose(softmax(np.asarray(attention.l2_affinity(mk, qk)[0, 0])), softmax(full), atol=1e-6)


def test_aggregate_is_stm_soft_aggregation_and_ignores_invalid_objects():
  r = np.random.RandomState(4)
  probs = r.rand(1, 3, 4, 4).astype(np.float32)
  valid = np.array([[True, True, False]])
  logits = attention.aggregate(jnp.asarray(probs), jnp.asarray(valid))
  p = probs[:, :2]
  full = np.clip(np.concatenate([np.prod(1 - p, axis=1, keepdims=True), p], 1), 1e-7, 1 - 1e-7)
  odds = full / (1 - full)
  expected = odds / odds.sum(1, keepdims=True)
  got = np.asarray(jnp.exp(logits) / jnp.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(got[:, :3], expected, rtol=1e-5)
  assert (got[:, 3] == 0).all()


def test_aggregate_of_bfloat16_probabilities_is_finite():
  probs = jnp.array([[[[1.0, 0.0]], [[0.0, 1.0]]]], jnp.bfloat16)  # [b=1 o=2 h=1 w=2], saturated
  logits = attention.aggregate(probs, jnp.array([[True, True]]))
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
  np.testing.assert_array_equal(jnp.argmax(logits, axis=1), [[[1, 2]]])


@pytest.mark.parametrize("groups,top_k", [(1, None), (1, 5), (3, None), (3, 4)])
def test_read_memory_in_query_chunks_equals_the_whole_read(groups, top_k):
  r = np.random.RandomState(5)
  b, n, m = 2, 23, 37
  memory_keys = jnp.asarray(r.randn(b, groups, m, 8).astype(np.float32))
  query_keys = jnp.asarray(r.randn(b, n, 8).astype(np.float32))
  values = jnp.asarray(r.randn(b, 3, m, 4).astype(np.float32))
  valid = jnp.asarray(r.rand(b, m) > 0.3)
  for affinity_fn in (attention.l2_affinity, attention.dot_affinity):
    whole = jax.jit(lambda k, q, v, ok: attention.read(affinity_fn(k, q), v, ok, top_k))
    expected = whole(memory_keys, query_keys, values, valid)
    for rows in (7, n):  # query positions per chunk (4 chunks, the last padded); n: the very program of `read`
      chunked = jax.jit(lambda k, q, v, ok: attention.read_memory(  # noqa: B023
          affinity_fn, k, q, v, ok, top_k, chunk_bytes=4 * b * groups * m * rows))
      got = chunked(memory_keys, query_keys, values, valid)
      if rows == n:
        np.testing.assert_array_equal(got, expected)
      np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
  if top_k is not None or groups > 1:
    return
  # Training reads through it too (a full softmax): the gradients agree.
  loss = lambda read_fn: jax.grad(lambda v, q: jnp.sum(read_fn(v, q) ** 2), argnums=(0, 1))  # noqa: E731
  whole_grads = loss(lambda v, q: attention.read(attention.l2_affinity(memory_keys, q), v, valid, top_k))(
      values, query_keys)
  chunk_grads = loss(lambda v, q: attention.read_memory(attention.l2_affinity, memory_keys, q, v, valid, top_k,
                                                        chunk_bytes=4 * b * groups * m * 5))(values, query_keys)
  for got, expected in zip(chunk_grads, whole_grads):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_read_memory_never_holds_the_affinity_of_a_4k_frame_whole():
  """STCN at 3840x2160 (--size -1): 240x135 query positions against 9 memory frames of as many positions."""
  from jaxvos.inference import budget  # pylint: disable=g-import-not-at-top
  n, m = 240 * 135, 9 * 240 * 135
  args = (jax.ShapeDtypeStruct((1, 1, m, 64), jnp.float32), jax.ShapeDtypeStruct((1, n, 64), jnp.float32),
          jax.ShapeDtypeStruct((1, 1, m, 512), jnp.float32), jax.ShapeDtypeStruct((1, m), jnp.bool_))
  inputs = sum(np.prod(a.shape) * a.dtype.itemsize for a in args)
  whole = jax.make_jaxpr(lambda k, q, v, ok: attention.read(attention.l2_affinity(k, q), v, ok, 20))(*args)
  chunked = jax.make_jaxpr(lambda k, q, v, ok: attention.read_memory(attention.l2_affinity, k, q, v, ok, 20))(
      *args)
  assert budget.peak_bytes(whole.jaxpr) - inputs > 4 * n * m  # the 37.8 GB affinity, and more
  # A few chunk-sized temporaries (the walk does not fuse elementwise operations as XLA does): ~1 GB, not 38.
  assert budget.peak_bytes(chunked.jaxpr) - inputs < 6 * attention.QUERY_CHUNK_BYTES
