"""`bench segment --model A --against B[,C...]`: jaxvos families side by side in one process.

Both families get random weights (compute does not depend on the values) and the same synthetic video as
`bench segment` (a drifting noise texture, 16:9, objects as boxes in the first frame). Two tables:

1. **Latency**: the median wall time of a frame (uint8 RGB in, uint8 id map out, streaming: one jitted step per
   frame) at `--size` with each of `--object-counts` objects, over `--timed-frames` frames after 3 warm-up
   frames. The families run interleaved, frame by frame, so load on a shared machine hits both alike. A family
   whose memory has a pixel-wise match (`match_fraction`, SwiftNet) runs twice: full match and a budget of
   `--match-fraction` of the positions. A family that memorises every frame (`every` = 1, GAM's context) also
   runs with `--update-every` (default 5: the interval at which STCN writes its memory).
2. **Memory by video length**: memory positions in use (entries), the memory's fill and the state's bytes after
   each of `--lengths` frames at a shorter side of `--entries-size` (whole chunks under `lax.scan`, 2 objects).
   Bounded memories stay flat; the numbers show where each family's capacity saturates.
"""

import dataclasses
import resource
import time

import numpy as np

WARMUP = 3


def add_arguments(parser) -> None:
  """The options `bench segment` adds for family comparisons (`--against` switches them on)."""
  parser.add_argument("--against", metavar="NAME[,NAME...]", help="registered models timed side by side with "
                      "--model in one process, interleaved frame by frame (jaxvos.bench.families)")
  parser.add_argument("--object-counts", default="1,2,5", metavar="LIST", help="with --against: object counts to "
                      "time (default: 1,2,5)")
  parser.add_argument("--timed-frames", type=int, default=20, metavar="N", help="with --against: frames timed per "
                      "run (default: 20)")
  parser.add_argument("--match-fraction", type=float, default=0.25, metavar="F", help="with --against: the "
                      "pixel-wise match budget of a family's 'match' variant (default: 0.25)")
  parser.add_argument("--update-every", type=int, default=5, metavar="N", help="with --against: the memory "
                      "interval of the variant of a family that memorises every frame (default: 5)")
  parser.add_argument("--entries-size", type=int, default=64, metavar="N", help="with --against: shorter side of "
                      "the memory-by-length table over --lengths (default: 64; 0 skips it)")


def run(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.bench.segment import _frame_hw  # pylint: disable=g-import-not-at-top
  names = [args.model] + (args.against.split(",") if args.against else [])
  variants = [v for name in names for v in _variants(name, args.match_fraction, args.update_every)]
  h, w = _frame_hw(args.size)
  print(f"{' vs '.join(names)} at {w}x{h}, {args.dtype}, random weights, median of {args.timed_frames} frames; "
        f"{jax.devices()[0].device_kind}", flush=True)
  print(f"{'objects':>7} " + " ".join(f"{label:>22}" for label, _ in variants) + "   (ms per frame)")
  for objects in (int(n) for n in args.object_counts.split(",")):
    medians = _latencies(variants, args, objects)
    ratio = "   " + ", ".join(f"{label} / {variants[0][0]}: {m / medians[0]:.2f}x"
                              for (label, _), m in zip(variants[1:], medians[1:]))
    print(f"{objects:7d} " + " ".join(f"{m:22.1f}" for m in medians) + ratio, flush=True)
  if args.entries_size:
    _entries_table(variants, args)
  print(f"host peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
  return 0


def _variants(name: str, match_fraction: float, update_every: int) -> list[tuple[str, object]]:
  """[(label, family)]: the model, plus its pixel-wise-match variant when its memory has one, or its variant
  memorising every `update_every`-th frame when it memorises every frame."""
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  family = registry.build(name)
  memory = getattr(family.config, "memory", None)
  fields = {f.name for f in dataclasses.fields(memory)} if memory is not None else set()
  if "match_fraction" in fields:
    full = registry.build(name, memory={"match_fraction": None})
    match = registry.build(name, memory={"match_fraction": match_fraction})
    return [(name, full), (f"{name} match {match_fraction:g}", match)]
  if "every" in fields and memory.every == 1 and update_every > 1:
    return [(name, family), (f"{name} every {update_every}", registry.build(name, memory={"every": update_every}))]
  return [(name, family)]


def _streams(variants, args, size: int, objects: int):
  """A started stream per variant (first frame annotated with `objects` boxes) and the video's frame source."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos import precision  # pylint: disable=g-import-not-at-top
  from jaxvos.bench.segment import _first_mask  # pylint: disable=g-import-not-at-top
  from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top
  annotation = _first_mask(size, objects)
  streams = []
  for _, family in variants:
    variables = jax.device_put(family.init(jax.random.key(0), (64, 64)))
    segmenter = Segmenter(family, variables, size=-1, compute_dtype=precision.compute_dtype(args.dtype))
    streams.append(segmenter.stream(range(1, objects + 1)))
  return streams, annotation


def _latencies(variants, args, objects: int) -> list[float]:
  """Median ms per frame of each variant, interleaved frame by frame."""
  from jaxvos.bench.segment import _frames  # pylint: disable=g-import-not-at-top
  streams, annotation = _streams(variants, args, args.size, objects)
  times = [[] for _ in streams]
  for t, frame in enumerate(_frames(WARMUP + args.timed_frames + 1, args.size)):
    for stream, spent in zip(streams, times):
      start = time.perf_counter()
      stream(frame, annotation if t == 0 else None)  # a host array: the work is done
      if t > WARMUP:
        spent.append(time.perf_counter() - start)
  return [float(np.median(spent)) * 1e3 for spent in times]


def _entries_table(variants, args) -> None:
  """Memory positions in use, fill and state bytes after each of `args.lengths` frames (2 objects)."""
  from jaxvos.bench.segment import _frames  # pylint: disable=g-import-not-at-top
  lengths = sorted(int(n) for n in args.lengths.split(","))
  streams, annotation = _streams(variants, args, args.entries_size, 2)
  print(f"\nmemory by video length at a shorter side of {args.entries_size}, 2 objects "
        f"(entries = memory positions in use; fill; state MB)")
  print(f"{'frames':>7} " + " ".join(f"{label:>28}" for label, _ in variants))
  frames, chunk = _frames(lengths[-1], args.entries_size), 50
  first = next(frames)
  for stream in streams:
    stream(first, annotation)
  done = 1
  for length in lengths:
    while done < length:
      batch = [(next(frames), None) for _ in range(min(chunk, length - done))]
      for stream in streams:
        stream.run_chunk(batch)
      done += len(batch)
    cells = [_memory_cell(stream) for stream in streams]
    print(f"{length:7d} " + " ".join(f"{cell:>28}" for cell in cells), flush=True)


def _memory_cell(stream) -> str:
  """'entries  fill  MB' of a stream's state (entries: '-' for a memory without positions, e.g. GAM's context)."""
  import jax  # pylint: disable=g-import-not-at-top
  memory = getattr(stream.state, "memory", stream.state)
  if hasattr(memory, "valid_positions"):
    entries = int(np.asarray(memory.valid_positions()).sum())
  elif hasattr(memory, "written_at"):  # one entry per memory position (the pixel-adaptive memory)
    entries = int(np.asarray(memory.written_at >= 0).sum())
  else:
    entries = None
  fill = stream.aux_stats().get("memory_fill", {}).get("max", float("nan"))
  size = sum(x.nbytes for x in jax.tree.leaves(stream.state)) / 2**20
  return f"{'-' if entries is None else entries:>8} {fill:6.2f} {size:8.2f}"
