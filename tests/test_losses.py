"""Losses against NumPy references: cross-entropy over {background, objects}, bootstrapped CE and its schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvos import losses


def random_case(seed=0, b=3, o=3, h=5, w=7):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2, (b, o + 1, h, w)).astype(np.float32)
  object_valid = np.array([[True, True, False], [True, False, False], [True, True, True]])[:b, :o]
  labels = np.stack([rng.integers(0, object_valid[i].sum() + 1, (h, w)) for i in range(b)]).astype(np.uint8)
  return logits, labels, object_valid


def reference_pixel_ce(logits, labels, object_valid):
  """-log softmax over background + valid objects, pixel by pixel, in float64."""
  b, _, h, w = logits.shape
  out = np.zeros((b, h, w))
  for i in range(b):
    classes = [0] + [k + 1 for k in range(object_valid.shape[1]) if object_valid[i, k]]
    for y in range(h):
      for x in range(w):
        z = logits[i, classes, y, x].astype(np.float64)
        log_z = np.log(np.sum(np.exp(z - z.max()))) + z.max()
        out[i, y, x] = log_z - logits[i, labels[i, y, x], y, x]
  return out


def test_pixel_cross_entropy_matches_numpy_and_ignores_invalid_objects():
  logits, labels, valid = random_case()
  expected = reference_pixel_ce(logits, labels, valid)
  np.testing.assert_allclose(losses.pixel_cross_entropy(logits, labels, valid), expected, rtol=1e-5, atol=1e-6)
  # Whatever an invalid object's logits are, nothing changes.
  changed = logits.copy()
  changed[0, 3] = 50.0
  changed[1, 2:] = -30.0
  np.testing.assert_allclose(losses.pixel_cross_entropy(changed, labels, valid), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, valid), expected.mean(), rtol=1e-5)


def test_cross_entropy_of_a_confident_correct_prediction_is_near_zero():
  labels = np.array([[[0, 1], [2, 1]]], np.uint8)
  logits = 20.0 * np.moveaxis(np.eye(3)[labels], -1, 1).astype(np.float32)  # one-hot * 20
  assert float(losses.cross_entropy(logits, labels, np.array([[True, True]]))) < 1e-7
  np.testing.assert_allclose(losses.cross_entropy(np.zeros_like(logits), labels, np.array([[True, True]])),
                             np.log(3), rtol=1e-6)


@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.15, 0.01])
def test_bootstrapped_cross_entropy_averages_each_videos_hardest_pixels(fraction):
  logits, labels, valid = random_case(seed=1, h=8, w=10)
  per_pixel = reference_pixel_ce(logits, labels, valid).reshape(3, -1)
  count = max(1, int(np.floor(fraction * per_pixel.shape[1])))
  expected = np.mean([np.sort(row)[::-1][:count].mean() for row in per_pixel])
  value = jax.jit(losses.bootstrapped_cross_entropy)(logits, labels, valid, jnp.float32(fraction))
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_bootstrapped_at_fraction_one_is_the_cross_entropy():
  logits, labels, valid = random_case(seed=2)
  np.testing.assert_allclose(losses.bootstrapped_cross_entropy(logits, labels, valid, 1.0),
                             losses.cross_entropy(logits, labels, valid), rtol=1e-6)


def test_bootstrapped_gradient_reaches_only_the_chosen_pixels():
  logits, labels, valid = random_case(seed=3, b=1, h=4, w=5)
  grad = jax.grad(losses.bootstrapped_cross_entropy)(jnp.asarray(logits), labels, valid, 0.25)
  touched = np.abs(np.asarray(grad)).sum(axis=1) > 0  # [b h w]
  per_pixel = reference_pixel_ce(logits, labels, valid)[0]
  hardest = per_pixel >= np.sort(per_pixel.ravel())[::-1][4]  # 25% of 20 pixels = 5
  np.testing.assert_array_equal(touched[0], hardest)


def test_bootstrap_fraction_follows_stcns_schedule():
  schedule = lambda step: float(losses.bootstrap_fraction(step, 20_000, 70_000, 0.15))  # noqa: E731
  assert schedule(0) == 1.0 and schedule(20_000) == 1.0
  np.testing.assert_allclose(schedule(45_000), 0.15 + 0.85 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(schedule(70_000), 0.15, rtol=1e-6)
  np.testing.assert_allclose(schedule(1_000_000), 0.15, rtol=1e-6)
  traced = jax.jit(lambda s: losses.bootstrap_fraction(s, 20_000, 70_000, 0.15))(jnp.int32(57_500))
  np.testing.assert_allclose(traced, 0.15 + 0.85 * 0.25, rtol=1e-6)
