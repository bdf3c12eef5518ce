"""`jaxvos bench segment`: per-frame latency and peak memory of jaxvos against PyTorch STCN.

The PyTorch reference is the STCN network of the `stcnbuf` package (an MIT fork of hkchengrex/STCN; its
torchvision imports are served by the stand-in in `tests/torch_reference`, so run this from a checkout with
the test requirements installed), driven frame by frame with the same bounded memory policy as jaxvos: the
first frame pinned, every `--every`-th frame into a ring of `--slots` - 1 slots, top-k read (k = 20), read with
stcnbuf's own `MemoryBank` matching code. Both load the same random weights (calibrated so activations stay
in range), jaxvos through `jaxvos.convert`.

Each (implementation, video length) runs in its own process, so peak memory is that run's alone: host peak RSS,
and on a GPU the device's peak bytes in use. Latency is the median wall time of a frame from uint8 RGB in to a
uint8 id map out (the first 3 frames, which compile, excluded); jaxvos runs its streaming API, one jitted
step per frame. Frames are synthetic (a moving noise texture): compute does not depend on content.

`--components` instead times the stages of one frame side by side in one process, interleaved (median of
`--repeats`): the key encoder, the value encoder, the memory read-out over a full memory (affinity, top-k and
weighted sum) and the decoder, jaxvos's jitted module methods against stcnbuf's `encode_key`, `encode_value`,
`MemoryBank.match_memory` and `segment_with_query`, with the same weights and inputs.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from jaxvos.bench import families

DESCRIPTION = __doc__.split("\n\n")[0].split(": ", 1)[1]
WARMUP = 3


def add_arguments(parser):
  parser.add_argument("--model", default="stcn", metavar="NAME",
                      help="a registered model; stcn alone is timed against PyTorch STCN, any other (or --against) "
                      "against a second jaxvos family (default: stcn)")
  parser.add_argument("--size", type=int, default=480, metavar="N", help="frame height in pixels; the width is "
                      "16:9 (default: 480, i.e. 854x480)")
  parser.add_argument("--lengths", default="100,500,1000", metavar="LIST", help="comma-separated video lengths "
                      "to run (default: 100,500,1000)")
  parser.add_argument("--objects", type=int, default=2, metavar="N", help="objects in the video (default: 2)")
  parser.add_argument("--slots", type=int, default=9, metavar="N", help="memory slots, the first frame and the "
                      "ring (default: 9)")
  parser.add_argument("--every", type=int, default=5, metavar="N", help="write every N-th frame into memory "
                      "(default: 5)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="compute dtype of both sides: jaxvos's compute dtype, PyTorch's autocast "
                      "(default: float32)")
  parser.add_argument("--impl", default="jaxvos,torch", metavar="LIST", help="the implementations to run "
                      "(default: jaxvos,torch)")
  parser.add_argument("--components", action="store_true",
                      help="time the stages of one frame (encoders, read-out, decoder) instead of whole videos")
  parser.add_argument("--repeats", type=int, default=5, metavar="N", help="with --components: timed repeats per "
                      "stage (default: 5)")
  parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measured run in a fresh process
  families.add_arguments(parser)


def run(args) -> int:
  if args.worker:
    return _worker(args)
  if args.against or args.model != "stcn":
    return families.run(args)
  if args.components:
    return _components(args)
  lengths = [int(n) for n in args.lengths.split(",")]
  impls = args.impl.split(",")
  with tempfile.TemporaryDirectory() as tmp:
    weights = os.path.join(tmp, "stcn.pth")
    _write_reference_weights(weights, args)
    print(f"STCN at {_frame_hw(args.size)[1]}x{_frame_hw(args.size)[0]}, {args.objects} objects, memory "
          f"{args.slots} slots every {args.every} frames, top-k 20, {args.dtype}; {os.cpu_count()} CPU cores; "
          f"{_device()}",
          flush=True)
    print(f"{'impl':8} {'frames':>7} {'median ms':>10} {'p90 ms':>9} {'host peak MB':>13} {'device peak MB':>15}")
    results = {}
    for length in lengths:
      for impl in impls:
        results[impl, length] = result = _spawn(args, impl, length, weights)
        print(f"{impl:8} {length:7d} {result['median_ms']:10.1f} {result['p90_ms']:9.1f} "
              f"{result['host_peak_mb']:13.0f} {result['device_peak_mb'] or float('nan'):15.0f}", flush=True)
  for length in lengths:
    if ("jaxvos", length) in results and ("torch", length) in results:
      ratio = results["jaxvos", length]["median_ms"] / results["torch", length]["median_ms"]
      print(f"{length} frames: jaxvos / PyTorch median latency = {ratio:.2f}")
  return 0


def _spawn(args, impl: str, length: int, weights: str) -> dict:
  command = [sys.executable, "-m", "jaxvos", "bench", "segment", "--worker", f"{impl}:{length}:{weights}",
             "--size", str(args.size), "--objects", str(args.objects), "--slots", str(args.slots),
             "--every", str(args.every), "--dtype", args.dtype]
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode != 0:
    raise RuntimeError(f"{impl} worker failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _components(args) -> int:
  """Per-stage median times of one frame, jaxvos and PyTorch interleaved in this process (module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  device = _torch_device(torch)
  stages = _stages(args, device)
  times = {(stage, impl): [] for stage in stages for impl in (0, 1)}
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
  with torch.inference_mode(), autocast:
    for repeat in range(args.repeats + 1):  # the first round compiles and warms up
      for stage, fns in stages.items():
        for impl, fn in enumerate(fns):
          start = time.perf_counter()
          jax.block_until_ready(fn())
          if impl == 1 and device == "cuda":
            torch.cuda.synchronize()
          if repeat:
            times[stage, impl].append(time.perf_counter() - start)
  h, w = _frame_hw(args.size)
  print(f"STCN stages of one {w}x{h} frame, {args.dtype}, median of {args.repeats}; {os.cpu_count()} CPU cores; "
        f"{_device()}")
  print(f"{'stage':32} {'jaxvos ms':>10} {'torch ms':>9} {'ratio':>6}")
  for stage in stages:
    ours, theirs = (float(np.median(times[stage, impl])) * 1e3 for impl in (0, 1))
    print(f"{stage:32} {ours:10.1f} {theirs:9.1f} {ours / theirs:6.2f}")
  return 0


def _torch_device(torch) -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"


def _stages(args, device: str = "cpu") -> dict:
  """{stage: (jaxvos thunk, PyTorch thunk)} computing the same stage of one frame from the same weights and
  inputs (the PyTorch thunks run under `torch.inference_mode`, on `device`). Outputs: key encoder (jaxvos's query dict,
  stcnbuf's (k16, f16_thin, f16, f8, f4)), value encoder (keys and values, values), read-out (per-object
  read-out), decoder (logits, probabilities)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.from_torch import import_torch  # pylint: disable=g-import-not-at-top
  from jaxvos.ops import attention  # pylint: disable=g-import-not-at-top
  from tests.torch_reference import torchvision_standin  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    weights = os.path.join(tmp, "stcn.pth")
    _write_reference_weights(weights, args)
    family, variables, _ = import_torch("stcn", weights, top_k=20)
    with torchvision_standin.installed():
      from stcnbuf.inference_memory_bank import MemoryBank  # pylint: disable=g-import-not-at-top
      from stcnbuf.model import eval_network  # pylint: disable=g-import-not-at-top
      model = eval_network.STCN()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
  model = model.to(device).eval()
  dtype = precision.compute_dtype(args.dtype)
  variables = precision.cast_floats(variables, dtype)
  o, slots, module = args.objects, args.slots, family.module
  x_torch, _ = _pad16_torch(torch, _normalize_torch(torch, next(_frames(1, args.size))))
  x = jnp.asarray(x_torch.permute(0, 2, 3, 1).numpy(), dtype)
  x_torch = x_torch.to(device)
  masks = jnp.full((1, o, *x.shape[1:3]), 0.4, dtype)
  encode_query = jax.jit(lambda v, x: module.apply(v, x, method="encode_query")[0])
  encode_memory = jax.jit(lambda v, x, q, m: module.apply(v, x, q, m, method="encode_memory"))
  decode = jax.jit(lambda v, r, q: module.apply(v, q, {"readout": r}, method="decode")[0])
  query = encode_query(variables, x)
  encoded = encode_memory(variables, x, query, masks)
  keys, values = encoded["keys"], encoded["values"]
  n = keys.shape[2] * keys.shape[3]  # the frame's positions at /16
  memory_keys = jnp.tile(keys.reshape(1, 1, n, -1), (1, 1, slots, 1))  # a full memory: `slots` copies
  memory_values = jnp.tile(values.reshape(1, o, n, -1), (1, 1, slots, 1))
  valid = jnp.ones((1, slots * n), bool)
  read = jax.jit(lambda mk, mv, qk: attention.read(
      attention.l2_affinity(mk, qk.reshape(1, n, -1)), mv, valid, family.config.top_k))
  readout = read(memory_keys, memory_values, query["key16"]).reshape(*values.shape)
  with torch.inference_mode():
    k16, f16_thin, f16, f8, f4 = model.encode_key(x_torch)
    bank = MemoryBank(k=o, top_k=20)
    bank.mem_k = k16.reshape(1, k16.shape[1], -1).repeat(1, 1, slots)
    values_torch = torch.from_numpy(np.array(values[0].astype(jnp.float32))).to(device)
    bank.mem_v = values_torch.reshape(o, n, -1).permute(0, 2, 1).repeat(1, 1, slots)
    bank.has_mem = True
    readout_torch = bank.match_memory(k16)
    masks_torch = torch.full((o, 1, *x_torch.shape[-2:]), 0.4, device=device)
  return {
      "key encoder": (lambda: encode_query(variables, x), lambda: model.encode_key(x_torch)),
      f"value encoder ({o} objects)": (lambda: encode_memory(variables, x, query, masks),
                                       lambda: model.encode_value(x_torch, f16, masks_torch)),
      f"read-out ({slots} slots, top-k)": (lambda: read(memory_keys, memory_values, query["key16"]),
                                          lambda: bank.match_memory(k16)),
      f"decoder ({o} objects)": (lambda: decode(variables, readout, query),
                                 lambda: model.segment_with_query(readout_torch, f8, f4, k16, f16_thin)),
  }


def _frame_hw(size: int) -> tuple[int, int]:
  """16:9 with an even width: 480 -> 854 (DAVIS), 1080 -> 1920."""
  return size, 2 * math.ceil(size * 16 / 9 / 2)


def _frames(length: int, size: int):
  """Deterministic synthetic frames: a noise texture that drifts by a few pixels per frame."""
  h, w = _frame_hw(size)
  texture = np.random.RandomState(0).randint(0, 256, (h + 64, w + 64, 3), np.uint8)
  for t in range(length):
    dy, dx = (3 * t) % 64, (5 * t) % 64
    yield texture[dy:dy + h, dx:dx + w]


def _first_mask(size: int, objects: int) -> np.ndarray:
  h, w = _frame_hw(size)
  mask = np.zeros((h, w), np.uint8)
  for i in range(objects):
    x0 = w * (2 * i + 1) // (2 * objects + 1)
    mask[h // 4:3 * h // 4, x0:x0 + w // (2 * objects + 1)] = i + 1
  return mask


def _write_reference_weights(path: str, args) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  from tests.torch_reference import stcn_reference  # pylint: disable=g-import-not-at-top
  frame = next(_frames(1, args.size))
  x = _normalize_torch(torch, frame)
  masks = torch.stack([torch.from_numpy(_first_mask(args.size, args.objects) == i + 1).float()
                       for i in range(args.objects)])[:, None]
  model = stcn_reference.build(_pad16_torch(torch, x)[0], _pad16_torch(torch, masks)[0])
  torch.save(model.state_dict(), path)


def _normalize_torch(torch, frame: np.ndarray):
  x = torch.from_numpy(frame).permute(2, 0, 1).float()[None] / 255.0
  mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
  std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
  return (x - mean) / std


def _pad16_torch(torch, x):
  h, w = x.shape[-2:]
  ph, pw = (-h) % 16, (-w) % 16
  pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
  return torch.nn.functional.pad(x, pads), pads


def _worker(args) -> int:
  impl, length, weights = args.worker.split(":", 2)
  run_frames = _run_jaxvos if impl == "jaxvos" else _run_torch
  times, device_peak = run_frames(args, int(length), weights)
  steady = np.asarray(times[WARMUP:]) * 1e3
  print(json.dumps({"median_ms": float(np.median(steady)), "p90_ms": float(np.percentile(steady, 90)),
                    "host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "device_peak_mb": device_peak}))
  return 0


def _run_jaxvos(args, length: int, weights: str):
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.convert.from_torch import import_torch  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  memory = {"slots": args.slots, "every": args.every, "max_pinned": 1, "temporary": False}
  family, variables, _ = import_torch("stcn", weights, memory=memory, top_k=20)
  variables = jax.device_put(variables)
  segmenter = Segmenter(family, variables, size=-1, compute_dtype=precision.compute_dtype(args.dtype))
  stream = segmenter.stream(range(1, args.objects + 1))
  annotation, times = _first_mask(args.size, args.objects), []
  for t, frame in enumerate(_frames(length, args.size)):
    start = time.perf_counter()
    stream(frame, annotation if t == 0 else None)  # returns a host NumPy array: the work is done
    times.append(time.perf_counter() - start)
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return times, peak / 2**20 if peak else None


def _run_torch(args, length: int, weights: str):
  import torch  # pylint: disable=g-import-not-at-top
  from tests.torch_reference import torchvision_standin  # pylint: disable=g-import-not-at-top
  with torchvision_standin.installed():
    from stcnbuf.model import eval_network  # pylint: disable=g-import-not-at-top
    model = eval_network.STCN()
  model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
  device = _torch_device(torch)
  model = model.to(device).eval()
  runner = _TorchBoundedSTCN(model, args.objects, args.slots, args.every, device)
  annotation, times = _first_mask(args.size, args.objects), []
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
  with torch.inference_mode(), autocast:
    for t, frame in enumerate(_frames(length, args.size)):
      start = time.perf_counter()
      runner(frame, annotation if t == 0 else None)
      times.append(time.perf_counter() - start)
  peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
  return times, peak


class _TorchBoundedSTCN:
  """stcnbuf's STCN driven with jaxvos's memory policy (pinned first frame, ring of every-k frames)."""

  def __init__(self, model, objects: int, slots: int, every: int, device: str):
    import torch  # pylint: disable=g-import-not-at-top
    from stcnbuf.inference_memory_bank import MemoryBank  # pylint: disable=g-import-not-at-top
    from stcnbuf.model.eval_network import aggregate  # pylint: disable=g-import-not-at-top
    self.torch, self.model, self.aggregate = torch, model, aggregate
    self.bank = MemoryBank(k=objects, top_k=20)
    self.objects, self.slots, self.every, self.device = objects, slots, every, device
    self.keys = self.values = None
    self.t, self.written = 0, 0

  def __call__(self, frame: np.ndarray, annotation: np.ndarray | None) -> np.ndarray:
    torch = self.torch
    x, pads = _pad16_torch(torch, _normalize_torch(torch, frame).to(self.device))
    k16, f16_thin, f16, f8, f4 = self.model.encode_key(x)
    if annotation is not None:
      masks = torch.stack([torch.from_numpy(annotation == i + 1) for i in range(self.objects)]).float()
      probs = self.aggregate(_pad16_torch(torch, masks[:, None].to(self.device))[0])
    else:
      self.bank.mem_k, self.bank.mem_v = self._flat(self.keys), self._flat(self.values)
      self.bank.has_mem = True
      readout = self.bank.match_memory(k16)
      probs = self.aggregate(self.model.segment_with_query(readout, f8, f4, k16, f16_thin))
    if self.t % self.every == 0:
      self._write(k16[0], self.model.encode_value(x, f16, probs[1:]).squeeze(1))
    self.t += 1
    top, bottom = pads[2], probs.shape[-2] - pads[3]
    return torch.argmax(probs[:, 0, top:bottom, pads[0]:probs.shape[-1] - pads[1]], dim=0).byte().cpu().numpy()

  def _write(self, key, value):
    """Slot 0 pinned; later writes go round slots 1..slots-1."""
    torch = self.torch
    if self.keys is None:
      self.keys = torch.zeros((self.slots, *key.shape), device=self.device)
      self.values = torch.zeros((self.slots, *value.shape), device=self.device)
    slot = 0 if self.written == 0 else 1 + (self.written - 1) % (self.slots - 1)
    self.keys[slot], self.values[slot] = key, value
    self.written += 1

  def _flat(self, store):
    """The written slots as stcnbuf's bank layout: keys [1 ck (s h w)], values [o cv (s h w)]."""
    used = store[:min(self.written, self.slots)]
    if used.dim() == 4:  # keys [s ck h w]
      return used.permute(1, 0, 2, 3).reshape(1, used.shape[1], -1)
    return used.permute(1, 2, 0, 3, 4).reshape(used.shape[1], used.shape[2], -1)


def _device() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  return f"JAX device {jax.devices()[0].device_kind}"
