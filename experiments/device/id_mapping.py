"""The label maps' id mapping on the host (NumPy, as before session 17) against on the device (`engine._labels`).

One 2048x1088 frame segmented at 480 with 2 objects (ids 3 and 7), from the same random logits: checks that both
give the same map, then times each (median of 15, twice, alternating):

  python experiments/device/id_mapping.py

Result (session 17, the 2-core CPU while a training run shared it; two runs at different loads): host 117.1 /
108.2 ms, device 82.1 / 77.3 ms (a first version of this script); host 76.4 / 81.2 ms, device 66.5 / 69.4 ms.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from jaxvos.export import geometry as geometry_lib  # pylint: disable=wrong-import-position
from jaxvos.inference import engine  # pylint: disable=wrong-import-position
from jaxvos.inference import frames as frames_lib  # pylint: disable=wrong-import-position


def main() -> int:
  geometry = geometry_lib.plan_geometry((1088, 2048), 480)
  logits = jax.random.normal(jax.random.key(0), (1, 3, *geometry.model_hw))
  table = np.array([0, 3, 7], np.uint8)
  on_host = jax.jit(frames_lib.postprocess, static_argnums=1)
  on_device = jax.jit(engine._labels, static_argnums=2)  # pylint: disable=protected-access
  paths = {"host": lambda: table[np.asarray(on_host(logits, geometry))[0]],
           "device": lambda: np.asarray(on_device(logits, jnp.asarray(table), geometry))[0]}
  np.testing.assert_array_equal(paths["host"](), paths["device"]())
  for name in list(paths) * 2:
    times = []
    for _ in range(15):
      start = time.perf_counter()
      paths[name]()
      times.append(time.perf_counter() - start)
    print(f"{name:6} {np.median(times) * 1e3:.1f} ms")
  return 0


if __name__ == "__main__":
  sys.exit(main())
