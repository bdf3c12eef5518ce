"""Multi-host training: two processes on this machine (`jax.distributed` over localhost, gloo CPU collectives),
each with one CPU device and its own shard of the data, match a single process on the same global batches."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxvos.training import checkpoint as checkpoint_lib
from jaxvos.training import sharding
from tests.test_training import REPO, SMOKE_CONFIG, TEST_OVERRIDES, Run, assert_trees_close, metric_lines

STEPS = 3
pytestmark = pytest.mark.filterwarnings("ignore:.*--config.train.steps=:data_pipelines.errors.DataWarning")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch_processes(workdir, count=2):
  """Starts `count` train commands that form one multi-process run; returns their Popen objects."""
  # XLA backend optimisation off: compiling takes a third of the time, and three small steps hardly run slower.
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"}
  coordinator = f"localhost:{free_port()}"
  return [subprocess.Popen(
      [sys.executable, "-m", "jaxvos", "train", "--config", SMOKE_CONFIG, "--workdir", str(workdir),
       "--coordinator", coordinator, "--num-processes", str(count), "--process-id", str(index), *TEST_OVERRIDES,
       f"--config.train.steps={STEPS}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for index in range(count)]


def test_two_processes_train_in_lockstep_and_match_one_process(tmp_path):
  workdir = tmp_path / "two-processes"
  processes = launch_processes(workdir)
  outputs = []
  for process in processes:
    out, _ = process.communicate(timeout=540)
    outputs.append(out.decode())
    assert process.returncode == 0, outputs[-1][-3000:]
  assert "on 2 devices (2 processes, cpu)" in outputs[0] and f"step {STEPS}/{STEPS}" in outputs[0]
  assert "step 1/" not in outputs[1]  # only process 0 reports
  # Each process saved its own data position with the shared checkpoint, at the same place.
  for step in (2, STEPS):
    positions = [json.loads((workdir / "checkpoints" / str(step) / "data" / f"process_{i}-of-2.json").read_text())
                 for i in range(2)]
    assert positions[0] == positions[1] == {"next_index": step}

  run = Run(f"--config.train.steps={STEPS}")
  reference = run.train(tmp_path / "one-process", STEPS)
  checkpointer = checkpoint_lib.Checkpointer(workdir, read_only=True)
  restored = checkpointer.restore(run.state(sharding.make_mesh(1)))
  checkpointer.close()
  assert int(sharding.host_copy(restored.step)) == STEPS
  assert_trees_close(sharding.host_copy(restored.params), sharding.host_copy(reference.params), atol=1e-5)
  ours, theirs = metric_lines(workdir), metric_lines(tmp_path / "one-process")
  assert [s for s, _ in ours] == [s for s, _ in theirs] == list(range(1, STEPS + 1))
  np.testing.assert_allclose([v for _, v in ours], [v for _, v in theirs], rtol=1e-5)
