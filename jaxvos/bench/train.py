"""`jaxvos bench train`: training throughput (clips per second) of a config on N devices.

The config's model, clips, global batch and train step, exactly as `jaxvos train` builds them, on a `data` mesh
of the first N devices. Three numbers: the compile time of the step; clips/s of the step alone (batches read
beforehand, so the data pipeline is out of the measurement); and clips/s end to end, the step fed by the grain
iterator as in training. Nothing is written to disk.

    jaxvos bench train --config experiments/stcn/smoke.py [--devices N] [--steps 20] [--config.data.batch_size=8]
"""

import argparse
import time

import numpy as np

DESCRIPTION = """Training throughput of a config: the compile time of its train step, then clips per second of
the step alone and of the step fed by the data pipeline, as `jaxvos train` builds them, on the first N devices.
Nothing is written to disk. Config fields are overridden as for `jaxvos train`: --config.KEY=VALUE.

  jaxvos bench train --config experiments/stcn/smoke.py --steps 20 --config.data.batch_size=8"""
ACCEPTS_EXTRA = True  # the --config.KEY=VALUE overrides, as `jaxvos train` takes them


def add_arguments(parser):
  parser.add_argument("--config", required=True, metavar="FILE", help="an experiments/<family>/<stage>.py file, "
                      "or FILE.py:VARIANT (e.g. video.py:cpu)")
  parser.add_argument("--devices", type=int, metavar="N", help="use the first N devices (default: all)")
  parser.add_argument("--steps", type=int, default=20, metavar="N", help="timed steps (default: 20)")
  parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed steps after the compile "
                      "(default: 2)")
  # The older spelling of --config.KEY=VALUE, still accepted.
  parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)


def _timed_steps(compiled, state, batches, mesh, sharding):
  """(state, seconds) of running the step on each host batch in turn, synchronised at the end."""
  start, metrics = time.perf_counter(), None
  for batch in batches:
    state, metrics = compiled(state, sharding.device_batch(batch, mesh))
  if metrics is not None:
    sharding.host_copy(metrics["loss"])
  return state, time.perf_counter() - start


def run(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top  (JAX starts only when benchmarking)
  from data_pipelines import sampling  # pylint: disable=g-import-not-at-top
  from jaxvos.cli import train as train_cli  # pylint: disable=g-import-not-at-top
  from jaxvos.training import loop, sharding  # pylint: disable=g-import-not-at-top
  overrides = [*getattr(args, "extra", []), *(f"--config.{item}" for item in args.override)]
  config = train_cli.load_config(args.config, overrides)
  mesh = sharding.make_mesh(args.devices)
  family, _ = train_cli.build_families(config)
  optimizer, train_step = train_cli.build_train_step(config, family)
  items, static = train_cli.build_items(config)
  batch_size = config.data.batch_size
  dataset = train_cli.build_dataset(config, items, static, shard_index=0, shard_count=1)  # pseudo-videos too
  iterator = sampling.clip_iterator(dataset, num_threads=config.data.threads, prefetch=config.data.prefetch)
  batches = [next(iterator) for _ in range(args.warmup + args.steps + 1)]
  state = loop.initial_state(family, optimizer, mesh, seed=0, init_hw=tuple(config.data.crop_hw))
  compiled = sharding.compile_train_step(train_step, mesh, state)
  state, compile_seconds = _timed_steps(compiled, state, batches[:1], mesh, sharding)
  state, _ = _timed_steps(compiled, state, batches[1:1 + args.warmup], mesh, sharding)
  state, step_seconds = _timed_steps(compiled, state, batches[1 + args.warmup:], mesh, sharding)
  state, loader_seconds = _timed_steps(compiled, state, (next(iterator) for _ in range(args.steps)), mesh, sharding)
  clip = f"{config.data.num_frames}x{config.data.crop_hw[0]}x{config.data.crop_hw[1]}"
  print(f"{config.model}, global batch {batch_size} clips of {clip}, {mesh.size} {jax.default_backend()} "
        f"device(s) ({jax.devices()[0].device_kind}), remat {config.train.remat}, {config.train.compute_dtype}")
  print(f"compile + first step      {compile_seconds:8.1f} s")
  for label, seconds in (("step only", step_seconds), ("with data loading", loader_seconds)):
    print(f"{label:<25} {args.steps / seconds:8.2f} steps/s  {args.steps * batch_size / seconds:8.2f} clips/s")
  return 0 if np.isfinite(step_seconds) else 1
