"""The suite runs on 8 simulated CPU devices, so sharding code is always exercised."""

import jax


def test_eight_simulated_devices():
  assert jax.device_count() == 8
  assert {d.platform for d in jax.devices()} == {"cpu"}
