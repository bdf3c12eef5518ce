"""Where one streamed frame's time goes: upload, preprocess, the model's step, postprocess and download.

`bench memory` times `Stream.__call__` end to end (a host uint8 frame in, a host id map out). On a GPU the model
itself may be a fraction of that; this splits the same call into its stages, each timed alone with
`block_until_ready` (median of --frames), random weights, 2 objects, as `bench memory` runs them:

  python experiments/device/frame_stages.py --models gam,stcn --sizes 1088x2048,480x854 --dtype bfloat16

With --video-frames N it also times a whole video of N frames through `Segmenter.segment_video`, whose chunks
are pipelined (the next queued on the device before a chunk's maps are fetched): frames per second for a file,
where the stages above are one live frame's latency.

Session 17 ran the version before the id mapping moved onto the device (`git show 9ecac78:` this file; its
"download" re-read a cached host copy, so read 0): experiments/README.md ("Session 17").
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")
from jaxvos import precision  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvos.bench import memory as bench_memory  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvos.inference import Segmenter  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxvos.models import registry  # pylint: disable=g-import-not-at-top,wrong-import-position

OBJECTS = 2


def _median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compiled, warm, and nothing queued before the first timed call
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e3)


def stages(model: str, hw: tuple[int, int], dtype: str, repeats: int, video_frames: int = 0
           ) -> dict[str, float]:
  family = registry.build(model)
  variables = jax.device_put(family.init(jax.random.key(0), (64, 64)))
  seg = Segmenter(family, variables, size=-1, compute_dtype=precision.compute_dtype(dtype))
  stream = seg.stream(range(1, OBJECTS + 1))
  frame = bench_memory._frame(0, hw)  # pylint: disable=protected-access
  stream(frame, bench_memory._first_mask(hw, OBJECTS))  # pylint: disable=protected-access
  geometry = stream.geometry
  slot_map, valid = (jnp.asarray(a[None]) for a in stream._new_objects(None))  # pylint: disable=protected-access
  x_in = jax.device_put(frame[None])
  x = seg._preprocess(x_in, geometry)  # pylint: disable=protected-access
  state = [stream.state]

  def step():
    state[0], (logits, _) = seg._scan(seg.variables, state[0], x, slot_map, valid)  # pylint: disable=protected-access
    return logits

  logits = jax.block_until_ready(step())
  times = {
      "upload": _median_ms(lambda: jax.device_put(frame[None]), repeats),
      "preprocess": _median_ms(lambda: seg._preprocess(x_in, geometry), repeats),  # pylint: disable=protected-access
      "model step": _median_ms(step, repeats),
      "postprocess + download": _median_ms(lambda: np.asarray(seg._postprocess(logits, stream._ids, geometry)),
                                           repeats),  # pylint: disable=protected-access
  }
  stream.state = state[0]
  times["whole call"] = _median_ms(lambda: stream(frame), repeats)
  if video_frames:
    times[f"video of {video_frames}, per frame"] = _video_ms(seg, hw, video_frames)
  return times


def _video_ms(seg: Segmenter, hw: tuple[int, int], count: int) -> float:
  """ms per frame of `Segmenter.segment_video` over `count` host frames (chunks of `seg.chunk` pipelined: the
  throughput of a whole video, where `whole call` is one live frame's latency); the second of two runs."""
  frames = [bench_memory._frame(t, hw) for t in range(count)]  # pylint: disable=protected-access
  annotations = {0: bench_memory._first_mask(hw, OBJECTS)}  # pylint: disable=protected-access
  for _ in range(2):  # the first compiles the chunk's scan
    start = time.perf_counter()
    for _ in seg.segment_video(frames, annotations):
      pass
    seconds = time.perf_counter() - start
  return seconds / count * 1e3


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="gam,stcn")
  parser.add_argument("--sizes", default="1088x2048,480x854", help="HxW, comma-separated")
  parser.add_argument("--dtype", default="bfloat16", choices=sorted(precision.COMPUTE_DTYPES))
  parser.add_argument("--frames", type=int, default=20, help="timed repeats per stage (median)")
  parser.add_argument("--video-frames", type=int, default=0, help="also time `segment_video` over this many "
                      "frames (pipelined chunks: a whole video's throughput); 0: not")
  args = parser.parse_args()
  print(f"{OBJECTS} objects, {args.dtype}, {jax.devices()[0].device_kind}; ms per frame, median of {args.frames}")
  for hw_text in args.sizes.split(","):
    hw = tuple(int(v) for v in hw_text.split("x"))
    for model in args.models.split(","):
      times = stages(model, hw, args.dtype, args.frames, args.video_frames)
      print(f"{model:9} {hw_text:>10}  " + "  ".join(f"{k} {v:7.2f}" for k, v in times.items()), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
