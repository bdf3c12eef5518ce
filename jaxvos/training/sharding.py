"""Data parallelism on a device mesh: one code path for 1 CPU, 8 simulated devices, a GPU node or a TPU slice.

The mesh has one axis, `data`. Batches are split over it (`NamedSharding(mesh, P("data"))`) and the train state
is replicated (`P()`); `jax.jit` with these shardings inserts the gradient all-reduce, so the step function itself
is written for the global batch and knows nothing about devices (DESIGN.md, "Scale").

Multi-host: `initialize_distributed` starts the JAX multi-process runtime; the mesh then spans every process's
devices, each process reads its own shard of the data (`clip_dataset(..., shard_index=jax.process_index(),
shard_count=jax.process_count())`) and `device_batch` assembles the global batch from the local shards with
`jax.make_array_from_process_local_data`.
"""

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
BATCH_KEYS = ("frames", "labels", "object_valid")  # what the step reads (frame_indices stay on the host)
OPTIONAL_BATCH_KEYS = ("first_frame",)  # read when the data gives them (`jaxvos.types.ClipBatch`)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, local_device_ids: list[int] | None = None) -> None:
  """`jax.distributed.initialize` (arguments from flags, or found by JAX on SLURM, TPU pods, Kubernetes).

  CPU collectives use gloo, so several processes on CPU (tests, a workstation) can all-reduce too.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, local_device_ids=local_device_ids)


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D `data` mesh over all devices (every process's), or the first `num_devices` of a single process."""
  devices = jax.devices()
  if num_devices is not None:
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError("a multi-process run uses every device; leave the device count unset")
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"asked for {num_devices} devices, {len(devices)} available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree (host or single-device arrays, identical on every process) replicated on the mesh."""
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def device_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """The global batch from this process's shard (NumPy, leading axis = local batch), split over `data`."""
  sharding = batch_sharding(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(local_batch[key]))
          for key in BATCH_KEYS + OPTIONAL_BATCH_KEYS if key in local_batch}


def host_copy(tree: Any) -> Any:
  """NumPy copies of replicated arrays, readable on every process (no cross-host transfer)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


def compile_train_step(train_step: Callable, mesh: Mesh, state: Any) -> Callable:
  """`jax.jit` of `train_step(state, batch)`: state replicated and donated, batch split over `data`."""
  state_sharding = jax.tree.map(lambda _: replicated(mesh), state)
  return jax.jit(train_step, in_shardings=(state_sharding, batch_sharding(mesh)),
                 out_shardings=(state_sharding, replicated(mesh)), donate_argnums=0)
