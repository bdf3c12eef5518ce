"""The train state: everything a training run must checkpoint to resume bit for bit (with the data position).

A frozen `flax.struct.dataclass`, updated by returning a new value. Only `params` are trained; `batch_stats`
(BatchNorm running statistics) are carried unchanged, as VOS training freezes BatchNorm (METHODS.md).
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 [] batches consumed so far (micro-batches under gradient accumulation)
  params: Any              # the trained parameters (float32)
  batch_stats: Any         # frozen BatchNorm statistics, never updated
  opt_state: Any           # optax state
  rng: jax.Array           # uint32 [2] raw PRNG key; each step uses `fold_in(rng, step)`

  def variables(self) -> dict[str, Any]:
    """The `{"params", "batch_stats"}` variables the families' pure functions take."""
    return {"params": self.params, "batch_stats": self.batch_stats}


def create_train_state(variables: dict[str, Any], optimizer: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
  """A fresh state at step 0 from a family's variables (`family.init`) and a raw uint32 [2] key."""
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=optimizer.init(params),
                    rng=jnp.asarray(rng, jnp.uint32))
