"""`jaxvos bench segment --backends jax,onnx,torch`: per-frame latency of one model run by each backend of
`segment`, side by side in one process.

One registered model (`--model`, random weights) is exported once for each backend: jaxvos runs its streaming
API (`Segmenter.stream`, one jitted step per frame), `onnx` the graphs of `convert to-onnx` through onnxruntime
(`jaxvos.export.onnx_runner`), `torch` the family's PyTorch twin (`jaxvos.export.torch_runner`; families with a
twin only). Every backend sees the same synthetic frames (`jaxvos.bench.segment`'s drifting noise, `--size`
high, 16:9) at their own size (`--size -1` in `segment` terms), the first with `--objects` objects. The backends
are interleaved frame by frame, so a machine whose load changes during the run slows them alike. Latency is a
frame's wall time from uint8 RGB in to a uint8 id map out; the median and 90th percentile leave out the first
`WARMUP` frames (compilation, session warm-up). `agree` is the fraction of pixels whose id equals jaxvos's, over
the timed frames. Export and compilation are not timed. onnxruntime's threads do not spin between frames
(`NO_SPINNING`); for PyTorch's OpenMP threads set `OMP_WAIT_POLICY=PASSIVE` (otherwise each runtime's idle
threads spin while the next one runs, which a loaded CPU shows as latency).
"""

import os
import tempfile
import time

import numpy as np

from jaxvos.bench import segment as segment_bench

WARMUP = 3
BACKENDS = ("jax", "onnx", "torch")
# onnxruntime's threads otherwise spin after each frame, taking the cores from the runtimes timed next.
NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def run(args) -> int:
  backends = [name.strip() for name in args.backends.split(",") if name.strip()]
  unknown = sorted(set(backends) - set(BACKENDS))
  if unknown or not backends:
    args.benchmark_parser.error(f"--backends: choose from {','.join(BACKENDS)}, got {args.backends!r}")
  length = max(int(n) for n in args.lengths.split(","))
  if length <= WARMUP:
    args.benchmark_parser.error(f"--lengths: give more than {WARMUP} frames (the first {WARMUP} are not timed)")
  h, w = segment_bench._frame_hw(args.size)  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as tmp:
    streams = _streams(args.model, backends, (h, w), args.objects, tmp)
    times, agree = _time(streams, length, args.size, args.objects)
  print(f"{args.model} at {w}x{h}, {args.objects} objects, {length} frames (first {WARMUP} not timed), float32; "
        f"{os.cpu_count()} CPU cores; {_device()}")
  print(f"{'backend':8} {'median ms':>10} {'p90 ms':>9} {'vs jax':>7} {'agree':>7}")
  reference = np.median(times["jax"][WARMUP:]) if "jax" in times else None
  for name in backends:
    steady = np.asarray(times[name][WARMUP:]) * 1e3
    ratio = f"{np.median(steady) / (reference * 1e3):7.2f}" if reference else f"{'-':>7}"
    share = f"{agree[name]:7.4f}" if name in agree else f"{'-':>7}"
    print(f"{name:8} {np.median(steady):10.1f} {np.percentile(steady, 90):9.1f} {ratio} {share}", flush=True)
  return 0


def _streams(model: str, backends: list[str], frame_hw: tuple[int, int], objects: int, tmp: str) -> dict:
  """{backend: a stream of `objects` objects} of one model with random variables, exported per backend."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.export import geometry  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  family = registry.build(model)
  variables = family.init(jax.random.PRNGKey(0))
  ids = range(1, objects + 1)
  streams = {}
  for name in backends:
    if name == "jax":
      streams[name] = Segmenter(family, variables, size=-1).stream(ids)
    elif name == "onnx":
      from jaxvos.export import onnx_runner, to_onnx  # pylint: disable=g-import-not-at-top
      spec = to_onnx.ExportSpec(geometry.plan_geometry(frame_hw, -1).model_hw, objects, -1)
      to_onnx.export(family, variables, os.path.join(tmp, "onnx"), spec)
      streams[name] = onnx_runner.OnnxSegmenter(os.path.join(tmp, "onnx"), session_config=NO_SPINNING).stream(ids)
    else:
      from jaxvos.convert import to_torch_twins  # pylint: disable=g-import-not-at-top
      from jaxvos.export import torch_runner  # pylint: disable=g-import-not-at-top
      to_torch_twins.write(os.path.join(tmp, "model.pth"), family, variables)
      streams[name] = torch_runner.TorchSegmenter(os.path.join(tmp, "model.pth"), size=-1).stream(ids)
  return streams


def _time(streams: dict, length: int, size: int, objects: int) -> tuple[dict, dict]:
  """({backend: per-frame seconds}, {backend: fraction of pixels equal to jax's after the warm-up})."""
  annotation = segment_bench._first_mask(size, objects)  # pylint: disable=protected-access
  times = {name: [] for name in streams}
  same = {name: [] for name in streams if name != "jax"}
  for t, frame in enumerate(segment_bench._frames(length, size)):  # pylint: disable=protected-access
    outputs = {}
    for name, stream in streams.items():
      start = time.perf_counter()
      outputs[name] = stream(frame, annotation if t == 0 else None)  # host NumPy: the work is done
      times[name].append(time.perf_counter() - start)
    if "jax" in outputs and t >= WARMUP:
      for name in same:
        same[name].append(float(np.mean(outputs[name] == outputs["jax"])))
  return times, {name: float(np.mean(values)) for name, values in same.items() if values}


def _device() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  return f"JAX device {jax.devices()[0].device_kind}"
