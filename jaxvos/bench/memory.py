"""`python -m jaxvos bench memory`: the GAM paper's Figure 1 on jaxvos: peak memory and per-frame latency by
resolution and by video length, GAM beside STCN and SwiftNet.

Each (model, frame size, video length) runs in its own process (`--worker`), so its peak is its own: the host's
peak RSS over the whole process (`ru_maxrss`: compilation included, which dominates at small frames), the
host's peak RSS while segmenting (`VmHWM`, reset once the step is compiled: the runtime, the weights, the state
and the activations) and, on a GPU, the device's peak bytes in use. Beside them, the bytes of the per-video
state itself (`state`: every leaf of the family's state) and of its memory alone (`memory`: for GAM the
context, without the mask history), which is what grows with the video or the frame in a space-time memory.
On the CPU each worker's address space is capped at `--max-gib` (default 12), so a run that would not fit fails
alone ("did not fit") instead of pressing on a shared machine.

Models are the registry's full-size entries with random weights (the compute does not depend on them),
streamed one jitted `step` per frame (`Segmenter.stream`), float32 unless `--dtype bfloat16`. Frames are a
drifting noise texture, with `--objects` rectangles annotated on frame 0. Latency is the median wall time of
a frame from uint8 RGB in to the id map on the host, the first `WARMUP` steps (compilation) excluded; beside it
the median CPU time of a frame (all threads of the worker), the steadier figure on a CPU that other jobs share,
which is what the figure plots when no accelerator was used.

- By resolution (`--sizes`, default 480p 480x854, 720p, 1080p, 2K 1088x2048 and 4K 2160x3840): `--frames`
  frames each (default 6).
- By length (`--lengths`, default 100, 1000, 10000 frames at `--length-hw`, default 64x112): every frame of the
  video runs. `stcn` is jaxvos's bounded STCN (first frame pinned, a ring of every-5th frames: 9 slots, as at
  test time); `stcn-all` keeps every 5th frame of the video, as STM and STCN do without a bound (slots =
  ceil(length / 5) + 1, preallocated), the growth of the paper's Figure 1.

`--out` (default experiments/gam/figure1.json) keeps the results; `--plot` draws them (`--plot-only` redraws).
Also runs as `python -m jaxvos.bench.memory` (how the workers are started).
"""

import argparse
import ctypes
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

DESCRIPTION = __doc__.split("\n\n")[0].split(": ", 1)[1]
WARMUP = 1
SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920), "2K": (1088, 2048), "4K": (2160, 3840)}
EVERY = 5  # the every-5th-frame memory of STM and STCN


def add_arguments(parser):
  parser.add_argument("--models", default="gam,swiftnet,stcn", help="registry names, plus stcn-all (default "
                      "gam,swiftnet,stcn; the length sweep adds stcn-all); models not registered are skipped")
  parser.add_argument("--sizes", default=",".join(SIZES), help=f"resolutions: {', '.join(SIZES)} or HxW; '' skips")
  parser.add_argument("--frames", type=int, default=6, help="frames per resolution (default 6, at least 3)")
  parser.add_argument("--lengths", default="100,1000,10000", help="video lengths (default 100,1000,10000); '' skips")
  parser.add_argument("--length-hw", default="64x112", help="frame size of the length sweep (default 64x112)")
  parser.add_argument("--objects", type=int, default=2, help="objects in the video (default 2)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype")
  parser.add_argument("--max-gib", type=float, default=12.0, help="address-space cap of a CPU worker (GiB)")
  parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a worker is stopped")
  parser.add_argument("--out", default="experiments/gam/figure1.json", help="results JSON")
  parser.add_argument("--plot", default="experiments/gam/figure1.png", help="the figure (PNG); '' for none")
  parser.add_argument("--plot-only", action="store_true", help="redraw --plot from --out without measuring")
  parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: MODEL:HxW:FRAMES in a fresh process


def run(args) -> int:
  if args.worker:
    return _worker(args)
  if args.plot_only:
    with open(args.out, encoding="utf-8") as f:
      plot(json.load(f), args.plot)
    return 0
  models = _available(args.models.split(","))
  sweeps = [("resolution", m, _hw(s), args.frames) for s in filter(None, args.sizes.split(",")) for m in models]
  lengths = [int(n) for n in filter(None, args.lengths.split(","))]
  length_models = models + ["stcn-all"] if "stcn" in models and "stcn-all" not in models else models
  sweeps += [("length", m, _hw(args.length_hw), n) for n in lengths for m in length_models]
  print(f"{args.objects} objects, {args.dtype}; {os.cpu_count()} CPU cores; {_device()}", flush=True)
  print(f"{'sweep':10} {'model':13} {'frame':>10} {'frames':>6} {'median ms':>10} {'CPU ms':>9} {'host peak MB':>12} "
        f"{'steady MB':>9} {'device MB':>10} {'state MB':>9} {'memory MB':>9}", flush=True)
  results = []
  for sweep, model, hw, frames in sweeps:
    result = {"sweep": sweep, "model": model, "hw": list(hw), "frames": frames, **_spawn(args, model, hw, frames)}
    results.append(result)
    print(_row(result), flush=True)
    _save(results, args.out)
  if args.plot:
    plot(results, args.plot)
  return 0


def _available(models: list[str]) -> list[str]:
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  known = set(registry.names()) | {"stcn-all"}
  for model in models:
    if model not in known:
      print(f"skipping {model}: not registered", flush=True)
  return [m for m in models if m in known]


def _hw(text: str) -> tuple[int, int]:
  if text in SIZES:
    return SIZES[text]
  h, w = text.lower().split("x")
  return int(h), int(w)


def _row(r: dict) -> str:
  frame = f"{r['hw'][0]}x{r['hw'][1]}"
  if "error" in r:
    return f"{r['sweep']:10} {r['model']:13} {frame:>10} {r['frames']:6d} {r['error']}"
  nan = float("nan")
  device, steady = (r[key] if r.get(key) is not None else nan for key in ("device_peak_mb", "steady_peak_mb"))
  return (f"{r['sweep']:10} {r['model']:13} {frame:>10} {r['frames']:6d} {r['median_ms']:10.1f} {r['cpu_ms']:9.1f} "
          f"{r['host_peak_mb']:12.0f} {steady:9.0f} {device:10.0f} {r['state_mb']:9.3f} {r['memory_mb']:9.3f}")


def _save(results: list[dict], path: str) -> None:
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)


def _spawn(args, model: str, hw: tuple[int, int], frames: int) -> dict:
  """One measured run in a fresh process: its JSON line, or {"error": why}."""
  command = [sys.executable, "-m", "jaxvos.bench.memory", "--worker", f"{model}:{hw[0]}x{hw[1]}:{frames}",
             "--objects", str(args.objects), "--dtype", args.dtype, "--max-gib", str(args.max_gib)]
  try:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {args.timeout:.0f} s"}
  if done.returncode != 0:
    oom = "RESOURCE_EXHAUSTED" in done.stderr or "MemoryError" in done.stderr or done.returncode in (-9, 137)
    reason = f"did not fit in {args.max_gib:g} GiB" if oom else f"failed: {done.stderr.strip()[-300:]}"
    return {"error": reason}
  return json.loads(done.stdout.strip().splitlines()[-1])


def _build(model: str, frames: int):
  """The family to measure: a registry entry, or `stcn-all` (STCN keeping every 5th frame of the video)."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  if model == "stcn-all":
    slots = math.ceil(frames / EVERY) + 1
    return registry.build("stcn", memory={"slots": slots, "every": EVERY, "max_pinned": 1, "temporary": False})
  return registry.build(model)


def _worker(args) -> int:
  model, hw, frames = args.worker.split(":")
  hw, frames = _hw(hw), int(frames)
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() == "cpu":
    cap = int(args.max_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
  times, stream, compile_peak = _run(args, model, hw, frames)
  steady, steady_cpu = (np.asarray(times[WARMUP:])[:, i] * 1e3 for i in (0, 1))
  state = jax.tree.leaves(stream.state)
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  print(json.dumps({
      "median_ms": float(np.median(steady)), "p90_ms": float(np.percentile(steady, 90)),
      "cpu_ms": float(np.median(steady_cpu)),
      "host_peak_mb": max(compile_peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
      "steady_peak_mb": _steady_peak_mb(),
      "device_peak_mb": peak / 2**20 if peak else None,
      "state_mb": sum(x.nbytes for x in state) / 2**20,
      "memory_mb": sum(x.nbytes for x in jax.tree.leaves(stream.state.memory)) / 2**20}))
  return 0


def _run(args, model: str, hw: tuple[int, int], frames: int):
  """Streams `frames` frames; -> ([(wall, CPU) seconds] of each step after the first frame, the stream, the
  peak RSS (MB) up to the end of compilation)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  family = _build(model, frames)
  variables = jax.device_put(family.init(jax.random.key(0), (64, 64)))
  segmenter = Segmenter(family, variables, size=-1, compute_dtype=precision.compute_dtype(args.dtype))
  stream = segmenter.stream(range(1, args.objects + 1))
  stream(_frame(0, hw), _first_mask(hw, args.objects))
  times, compile_peak = [], None
  for t in range(1, max(frames, WARMUP + 2)):
    if t == WARMUP + 1:  # compiled: from here on the peak is that of segmenting
      compile_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the reset clears it too
      _reset_peak_rss()
    frame = _frame(t, hw)
    start, start_cpu = time.perf_counter(), time.process_time()
    stream(frame)  # returns a host NumPy array: the work is done
    times.append((time.perf_counter() - start, time.process_time() - start_cpu))
  return times, stream, compile_peak


def _reset_peak_rss() -> None:
  """Restarts the kernel's peak-RSS count (VmHWM) of this process, where Linux allows it, after handing the heap
  that compilation freed back to the system (glibc keeps it otherwise, and it would count as resident)."""
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
  except OSError:
    pass


def _steady_peak_mb() -> float | None:
  """VmHWM (MB): the peak RSS since `_reset_peak_rss`, or None where /proc does not say."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
  except (OSError, StopIteration):
    return None


_TEXTURES = {}


def _frame(t: int, hw: tuple[int, int]) -> np.ndarray:
  """A noise texture that drifts by a few pixels per frame (the compute does not depend on content)."""
  h, w = hw
  if hw not in _TEXTURES:
    _TEXTURES[hw] = np.random.RandomState(0).randint(0, 256, (h + 64, w + 64, 3), np.uint8)
  dy, dx = (3 * t) % 64, (5 * t) % 64
  return _TEXTURES[hw][dy:dy + h, dx:dx + w]


def _first_mask(hw: tuple[int, int], objects: int) -> np.ndarray:
  h, w = hw
  mask = np.zeros((h, w), np.uint8)
  for i in range(objects):
    x0 = w * (2 * i + 1) // (2 * objects + 1)
    mask[h // 4:3 * h // 4, x0:x0 + w // (2 * objects + 1)] = i + 1
  return mask


def _device() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  return f"JAX device {jax.devices()[0].device_kind}"


_COLOURS = {"stcn-all": (148, 103, 189), "gam": (31, 119, 180), "swiftnet": (44, 160, 44), "stcn": (214, 39, 40),
            "stm": (255, 127, 14), "spvos": (140, 86, 75)}
_PANEL = (330, 560)  # h, w
_MARGIN = (40, 64, 40, 16)  # top, left, bottom, right


def plot(results: list[dict], path: str) -> None:
  """Figure 1 as a PNG (Pillow): peak memory and latency (log scales) by resolution and by length (the sweeps
  that `results` holds), one colour per model. Memory panels: solid, the peak while segmenting (the device's on
  a GPU, else the host RSS after compilation); dashed, the bytes of the state itself. Runs that did not fit are
  marked with an x on the top edge."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  sweeps = [sweep for sweep in ("resolution", "length") if any(r["sweep"] == sweep for r in results)]
  picture = Image.new("RGB", (2 * _PANEL[1], len(sweeps) * _PANEL[0] + 30), "white")
  draw = ImageDraw.Draw(picture)
  models = list(dict.fromkeys(r["model"] for r in results))
  for i, model in enumerate(models):
    x = 10 + 150 * i
    draw.line([(x, 15), (x + 30, 15)], fill=family_colour(model), width=3)
    draw.text((x + 36, 9), model, fill="black")
  draw.text((10 + 150 * len(models), 9), "solid: peak while segmenting   dashed: the state's own bytes",
            fill="black")
  for row, sweep in enumerate(sweeps):
    rows = [r for r in results if r["sweep"] == sweep]
    latency = "CPU time per frame (ms)" if all(r.get("device_peak_mb") is None for r in results) else (
        "latency per frame (ms)")
    for col, (key, title) in enumerate((("peak", "peak memory (MB)"), ("latency", latency))):
      box = (col * _PANEL[1], 30 + row * _PANEL[0])
      _panel(draw, box, f"{title} by {sweep}", rows, models, key, sweep)
  picture.save(path)


def family_colour(model: str) -> tuple[int, int, int]:
  """The family's colour (`gam-tiny` is drawn as `gam`)."""
  return next((c for name, c in _COLOURS.items() if model.startswith(name)), (0, 0, 0))


def _label(r: dict) -> str:
  if r["sweep"] == "length":
    return str(r["frames"])
  names = {hw: name for name, hw in SIZES.items()}
  return names.get(tuple(r["hw"]), f"{r['hw'][0]}x{r['hw'][1]}")


def _value(r: dict, key: str) -> float | None:
  if "error" in r:
    return None
  if key == "peak":
    return r["device_peak_mb"] or r.get("steady_peak_mb") or r["host_peak_mb"]
  if key == "latency":
    return r["median_ms"] if r["device_peak_mb"] is not None else r.get("cpu_ms", r["median_ms"])
  return r[key]


def _panel(draw, origin, title, rows, models, key, sweep) -> None:
  """One panel: categorical x (resolutions or lengths in run order), log y."""
  x0, y0 = origin
  h, w = _PANEL
  top, left, bottom, right = _MARGIN
  labels = list(dict.fromkeys(_label(r) for r in rows))
  series = {m: {_label(r): r for r in rows if r["model"] == m} for m in models}
  values = [v for r in rows for v in (_value(r, key), r.get("state_mb") if key == "peak" else None) if v]
  draw.text((x0 + left, y0 + 8), title + (" (frames)" if sweep == "length" else ""), fill="black")
  draw.rectangle([x0 + left, y0 + top, x0 + w - right, y0 + h - bottom], outline="black")
  if not values or not labels:
    return
  low, high = math.log10(min(values)) - 0.1, math.log10(max(values)) + 0.1
  to_x = lambda i: x0 + left + (i + 0.5) / len(labels) * (w - left - right)  # noqa: E731
  to_y = lambda v: y0 + h - bottom - (math.log10(v) - low) / (high - low) * (h - top - bottom)  # noqa: E731
  for e in range(math.floor(low), math.ceil(high) + 1):
    for m in (1, 2, 5):
      if low <= math.log10(m * 10.0**e) <= high:
        y = to_y(m * 10.0**e)
        draw.line([(x0 + left, y), (x0 + w - right, y)], fill=(225, 225, 225))
        draw.text((x0 + 4, y - 6), f"{m * 10.0**e:g}", fill="black")
  for i, label in enumerate(labels):
    draw.text((to_x(i) - 3 * len(label), y0 + h - bottom + 6), label, fill="black")
  for model, by_label in series.items():
    colour = family_colour(model)
    curves = [(_value, False)] + ([(lambda r, _: None if "error" in r else r["state_mb"], True)]
                                  if key == "peak" else [])
    for get, dashed in curves:
      points = [(to_x(i), to_y(get(by_label[l], key))) for i, l in enumerate(labels)
                if l in by_label and get(by_label[l], key)]
      _polyline(draw, points, colour, dashed)
    for i, l in enumerate(labels):
      if l in by_label and "error" in by_label[l]:
        x, y = to_x(i), y0 + top + 6
        draw.line([(x - 5, y - 5), (x + 5, y + 5)], fill=colour, width=2)
        draw.line([(x - 5, y + 5), (x + 5, y - 5)], fill=colour, width=2)


def _polyline(draw, points, colour, dashed: bool) -> None:
  for (xa, ya), (xb, yb) in zip(points, points[1:]):
    if not dashed:
      draw.line([(xa, ya), (xb, yb)], fill=colour, width=2)
      continue
    pieces = max(1, int(math.hypot(xb - xa, yb - ya) // 8))
    for k in range(0, pieces, 2):
      f, g = k / pieces, min(1.0, (k + 1) / pieces)
      draw.line([(xa + f * (xb - xa), ya + f * (yb - ya)), (xa + g * (xb - xa), ya + g * (yb - ya))],
                fill=colour, width=2)
  for x, y in points:
    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


if __name__ == "__main__":  # the workers, and `python -m jaxvos.bench.memory` until the CLI lists it
  _parser = argparse.ArgumentParser(description=DESCRIPTION)
  add_arguments(_parser)
  sys.exit(run(_parser.parse_args()))
