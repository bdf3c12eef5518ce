"""Will a segmentation fit in memory? An estimate made before anything is compiled or run.

`estimate_bytes` traces the family's `step` at the model size with abstract inputs (no computation and no
compilation; a second or two) and walks the traced program in order, holding each array from the operation that
makes it to its last use; nested programs (`lax.map`, `scan`, `cond`, `jit`) add their own peak. The estimate is
that walk's peak (the variables and the per-video state included, as they stay in memory throughout) plus the
buffers of a chunk of frames at the input size. XLA fuses elementwise operations and reuses buffers, so the walk
errs on the high side; a test holds it within a small factor of XLA's own memory analysis.

`plan` compares the estimate with the memory of the device that will run it (an accelerator's free memory, or
the host's available memory for the CPU) and, when it does not fit, proposes a `--size` that should.
"""

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvos.inference import frames as frames_lib


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """An estimate against what is available. Bytes; `suggested_size` is a --size that should fit, or None."""
  needed: int
  available: int
  device: str
  suggested_size: int | None

  @property
  def fits(self) -> bool:
    return self.needed <= self.available


def _bytes(aval: Any) -> int:
  shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
  if shape is None or dtype is None:
    return 0
  return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _sub_jaxprs(params: dict) -> list:
  """The jaxprs nested in an equation's parameters (a `jit`'s body, `cond` branches, a `scan` body, ...)."""
  found = []
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax.extend.core.ClosedJaxpr):
        found.append(item.jaxpr)
      elif isinstance(item, jax.extend.core.Jaxpr):
        found.append(item)
  return found


def peak_bytes(jaxpr) -> int:
  """Peak bytes of a jaxpr run in order, each array held from its making to its last use (inputs throughout)."""
  last_use = {}
  for index, eqn in enumerate(jaxpr.eqns):
    for var in eqn.invars:
      if isinstance(var, jax.extend.core.Var):
        last_use[var] = index
  inputs = set(jaxpr.invars) | set(jaxpr.constvars)
  for var in jaxpr.outvars:
    if isinstance(var, jax.extend.core.Var):
      last_use[var] = len(jaxpr.eqns)
  live = sum(_bytes(var.aval) for var in inputs)
  peak = live
  for index, eqn in enumerate(jaxpr.eqns):
    inner = max([peak_bytes(sub) - sum(_bytes(v.aval) for v in sub.invars) for sub in _sub_jaxprs(eqn.params)],
                default=0)
    made = sum(_bytes(var.aval) for var in eqn.outvars)
    peak = max(peak, live + max(inner, 0) + made)
    live += made
    freed = {var for var in eqn.invars if isinstance(var, jax.extend.core.Var) and var not in inputs
             and last_use.get(var) == index}
    freed |= {var for var in eqn.outvars if var not in last_use}
    live -= sum(_bytes(var.aval) for var in freed)
  return peak


def _frame_buffers(geometry: frames_lib.Geometry, num_objects: int) -> int:
  """Bytes an engine holds per frame outside `step`: the uint8 frame, the model-size input, the logits, the
  probabilities at the input size (twice: resized and the one being resized) and the id map."""
  input_pixels = math.prod(geometry.input_hw)
  model_pixels = math.prod(geometry.model_hw)
  return (3 * input_pixels + 12 * model_pixels + 4 * (num_objects + 1) * model_pixels
          + 8 * (num_objects + 1) * input_pixels + 4 * input_pixels)


def estimate_bytes(family, variables, input_hw: tuple[int, int], size: int, num_objects: int, *,
                   chunk: int = 1, compute_dtype=jnp.float32) -> int:
  """Estimated peak bytes of segmenting frames of `input_hw` at `size` with `num_objects` objects.

  `variables` may be arrays or `jax.ShapeDtypeStruct`s (`jax.eval_shape(family.init, rng)`); nothing is computed.
  `chunk` is the number of frames an engine call holds at once.
  """
  geometry = frames_lib.plan_geometry(input_hw, size)
  h, w = geometry.model_hw
  cast = lambda x: jax.ShapeDtypeStruct(  # noqa: E731
      x.shape, compute_dtype if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype)
  variables = jax.tree.map(cast, variables)
  frame = jax.ShapeDtypeStruct((1, h, w, 3), compute_dtype)
  masks = jax.ShapeDtypeStruct((1, num_objects, h, w), jnp.float32)
  valid = jax.ShapeDtypeStruct((1, num_objects), jnp.bool_)
  state = jax.eval_shape(family.init_memory, variables, frame, masks, valid)
  traced = jax.make_jaxpr(lambda *args: family.step(*args))(variables, state, frame, masks, valid)
  return peak_bytes(traced.jaxpr) + chunk * _frame_buffers(geometry, num_objects)


def available_bytes() -> tuple[int, str]:
  """(bytes free for a run, what they are on): an accelerator's free memory, else the host's available memory."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"the {device.device_kind}"
  try:
    with open("/proc/meminfo") as meminfo:
      fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) * 1024, "this machine"
  except (OSError, KeyError, ValueError):
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"


def plan(family, variables, input_hw: tuple[int, int], size: int, num_objects: int, *, chunk: int = 1,
         compute_dtype=jnp.float32) -> MemoryPlan:
  """The estimate against the available memory, with a --size that should fit when it does not (see module)."""
  def needed_at(candidate: int) -> int:
    return estimate_bytes(family, variables, input_hw, candidate, num_objects, chunk=chunk,
                          compute_dtype=compute_dtype)

  needed = needed_at(size)
  available, device = available_bytes()
  suggested = None
  if needed > available:
    short_side = min(input_hw) if size == -1 else size
    suggested = _largest_fitting_size(needed_at, short_side, needed, int(0.9 * available),
                                      fixed=sum(_bytes(leaf) for leaf in jax.tree.leaves(variables)))
  return MemoryPlan(needed, available, device, suggested)


def _largest_fitting_size(needed_at, short_side: int, needed: int, budget: int, *, fixed: int,
                          steps: int = 5) -> int | None:
  """A --size (multiple of 16, below `short_side`) whose estimate is within `budget`, or None if 16 is not.

  The first guess scales with the frame's area (everything but the variables `fixed` does, the affinity faster,
  so the guess errs small); a few bisection steps then look for a larger size that still fits.
  """
  scale = math.sqrt(max(budget - fixed, 0) / max(needed - fixed, 1))
  guess = max(16, min(int(short_side * scale) // 16 * 16, (short_side - 1) // 16 * 16))
  low, high = (guess, short_side) if needed_at(guess) <= budget else (16, guess)
  if low == 16 and needed_at(16) > budget:
    return None
  for _ in range(steps):
    middle = (low + high) // 32 * 16
    if middle <= low:
      break
    low, high = (middle, high) if needed_at(middle) <= budget else (low, middle)
  return low
