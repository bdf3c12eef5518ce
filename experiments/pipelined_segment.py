"""Times `Segmenter.segment_video` (chunks pipelined: the next queued before a chunk's maps are fetched) against
the same chunks run one after the other (`Stream.run_chunk`, what segment_video did before), alternating in one
process, with a consumer that does the host work `jaxvos segment` does per frame (an indexed PNG and an overlay
frame). Prints seconds per video and frames per second for each.

  python experiments/pipelined_segment.py --sequence bmx-trees --repeats 3
"""

import argparse
import io
import os
import time

import numpy as np
from PIL import Image

import jaxvos
from jaxvos.export import geometry as geometry_lib
from jaxvos.inference import engine
from data_pipelines import video_io

DAVIS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "davis2016-240p")


def sequential(segmenter: engine.Segmenter, frames, annotations):
  """segment_video as it was: every chunk fetched before the next is read (annotation at frame 0 assumed)."""
  stream = engine.Stream(segmenter, geometry_lib.object_ids_of(annotations))
  yield stream(frames[0], annotations[0])
  for start in range(1, len(frames) - segmenter.chunk + 1, segmenter.chunk):
    yield from stream.run_chunk([(f, None) for f in frames[start:start + segmenter.chunk]])
  done = 1 + (len(frames) - 1) // segmenter.chunk * segmenter.chunk
  for frame in frames[done:]:
    yield stream(frame)


def consume(maps, frames) -> int:
  """The per-frame host work of `jaxvos segment --overlay`: a palette PNG and an overlay frame."""
  count = 0
  for ids, frame in zip(maps, frames):
    Image.fromarray(ids, mode="P").save(io.BytesIO(), format="PNG")
    video_io.overlay(frame, ids)
    count += 1
  return count


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sequence", default="bmx-trees")
  parser.add_argument("--davis-root", default=DAVIS)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--size", type=int, default=None, help="working size (default: the default model's)")
  args = parser.parse_args()
  folder = os.path.join(args.davis_root, "JPEGImages", "240p", args.sequence)
  names = sorted(os.listdir(folder))
  frames = [np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in names]
  first = np.asarray(Image.open(os.path.join(args.davis_root, "Annotations", "240p", args.sequence,
                                             names[0].replace(".jpg", ".png"))))
  annotations = {0: (first > 0).astype(np.uint8)}
  segmenter = jaxvos.load(size=args.size).segmenter()
  ways = {"pipelined": lambda: segmenter.segment_video(frames, annotations),
          "sequential": lambda: sequential(segmenter, frames, annotations)}
  reference = [list(way()) for way in ways.values()]
  assert all(np.array_equal(a, b) for a, b in zip(*reference)), "the two ways disagree"
  seconds = {name: [] for name in ways}
  for _ in range(args.repeats):
    for name, way in ways.items():
      start = time.perf_counter()
      assert consume(way(), frames) == len(frames)
      seconds[name].append(time.perf_counter() - start)
  print(f"{args.sequence}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, chunk "
        f"{segmenter.chunk}, identical maps")
  for name, values in seconds.items():
    median = float(np.median(values))
    print(f"{name:<10} {median:.2f} s per video ({len(frames) / median:.1f} frames/s; runs "
          f"{', '.join(f'{v:.2f}' for v in values)})")
  print(f"pipelined / sequential: {np.median(seconds['pipelined']) / np.median(seconds['sequential']):.2f}")


if __name__ == "__main__":
  main()
