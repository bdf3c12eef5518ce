"""Compute dtypes: parameters stay float32, the network may compute in bfloat16.

A family computes in the dtype of the variables and frames it is given (`cast_floats` them); what must stay
float32 does so inside the family whatever it is given: memory affinities and their softmax
(`jaxvos.ops.attention`), soft aggregation and everything after it (masks, losses, metrics).
"""

from typing import Any

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> jnp.dtype:
  """`float32` or `bfloat16` by name; anything else is a ValueError naming the choices."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
  return COMPUTE_DTYPES[name]


def cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
  """Casts the floating-point leaves of a pytree to `dtype` (integer and boolean leaves are kept)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
