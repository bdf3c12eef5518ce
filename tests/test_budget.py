"""`jaxvos.inference.budget`: the memory estimate `jaxvos segment` checks before a run, and its way out."""

import jax
import jax.numpy as jnp

from jaxvos.inference import budget
from jaxvos.models import registry


def test_memory_estimate_is_near_what_xla_allocates():
  family = registry.build("stcn-tiny")
  variables = jax.eval_shape(family.init, jax.random.PRNGKey(0))
  estimate = budget.estimate_bytes(family, variables, (96, 128), -1, 2, chunk=0)
  frame = jax.ShapeDtypeStruct((1, 96, 128, 3), jnp.float32)
  masks = jax.ShapeDtypeStruct((1, 2, 96, 128), jnp.float32)
  valid = jax.ShapeDtypeStruct((1, 2), jnp.bool_)
  state = jax.eval_shape(family.init_memory, variables, frame, masks, valid)
  compiled = jax.jit(lambda *args: family.step(*args)).lower(variables, state, frame, masks, valid).compile()
  analysis = compiled.memory_analysis()
  xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
         - analysis.alias_size_in_bytes)
  assert 0.8 < estimate / xla < 2.0, (estimate, xla)  # 1.2 here; 1.3 for stcn-r18 at 854x480


def test_suggested_size_is_the_largest_that_fits():
  needed_at = lambda size: 100 + size ** 4 // 1000  # noqa: E731  (a quadratic-in-area term, as an affinity)
  largest = budget._largest_fitting_size  # pylint: disable=protected-access
  size = largest(needed_at, 2160, needed_at(2160), 10**9, fixed=100)
  assert size % 16 == 0 and needed_at(size) <= 10**9 < needed_at(size + 64)
  assert largest(needed_at, 2160, needed_at(2160), 50, fixed=100) is None
