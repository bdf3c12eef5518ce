"""Calibrates SwiftNet's variation-aware trigger: the thresholds giving a mean interval between memory updates of
about `--target` frames on the DAVIS 2016 training sequences, without a network.

Frames go through inference's preprocessing (shorter side `--size`, padded to 16) and, as the model sees them
for the trigger, are average-pooled by `--stride`; the ground-truth masks stand in for the model's predictions
(a perfect model). For each image threshold th_f in `--frame-thresholds` (th_m fixed), the per-frame fractions
of varied positions (the indicators of `jaxvos.memory.pixel_adaptive.varied_fraction`) drive the trigger
(`accumulate`, in NumPy here and checked against `trigger_schedule`), and P_th is found by bisection so that the
mean interval over all sequences is `--target`.

  python experiments/calibrate_swiftnet_trigger.py            (from the repository root; ~2 minutes on 2 cores)

Not an experiment config (it has no `get_config`): it sits beside them, outside experiments/<family>/.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from data_pipelines import image_io  # noqa: E402
from data_pipelines.davis import DavisDataset  # noqa: E402
from jaxvos.inference import frames as frames_lib  # noqa: E402
from jaxvos.memory import pixel_adaptive as pam  # noqa: E402

DAVIS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                                      "davis2016-240p"))


def sequence_changes(sequence, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-position image change (mean over RGB of |x_t - x_{t-1}|, intensities in [0, 1]) and mask change
  |y_t - y_{t-1}| of frames 1 .. t-1 at the model's working size pooled by `stride`: two float32 [t-1 h w]."""
  first = image_io.read_frame(sequence.frame_paths[0])
  geometry = frames_lib.plan_geometry(first.shape[:2], size)

  @jax.jit
  def small(frame, mask):
    x = frames_lib.preprocess(frame[None], geometry)[0] * frames_lib.IMAGENET_STD + frames_lib.IMAGENET_MEAN
    m = jax.image.resize(mask.astype(jnp.float32), geometry.resized_hw, "linear")
    top, bottom, left, right = geometry.pads
    m = jnp.pad(m, ((top, bottom), (left, right)))
    return pam.average_pool(x, stride), pam.pool_masks(m[None, None], stride)[0, 0]

  pooled = [small(image_io.read_frame(path), image_io.read_mask(sequence.mask_paths[t], binary=True) > 0)
            for t, path in enumerate(sequence.frame_paths)]
  images = np.stack([np.asarray(p[0]) for p in pooled])
  masks = np.stack([np.asarray(p[1]) for p in pooled])
  return np.mean(np.abs(np.diff(images, axis=0)), axis=-1), np.abs(np.diff(masks, axis=0))


def schedule(fractions: np.ndarray, variation_threshold: float, max_interval: int) -> np.ndarray:
  """Update frames of a video (0 included) from fractions [t] (entry 0 unused): `pam.accumulate` in NumPy."""
  variation, last, frames = 0.0, 0, [0]
  for t in range(1, len(fractions)):
    variation += fractions[t]
    if variation > variation_threshold or t - last >= max_interval:
      variation, last = 0.0, t
      frames.append(t)
  return np.asarray(frames)


def intervals(fractions: list[np.ndarray], threshold: float, max_interval: int) -> tuple[np.ndarray, float]:
  """Intervals between consecutive updates over all sequences, and the share forced by the maximum interval."""
  gaps = [np.diff(schedule(f, threshold, max_interval)) for f in fractions]
  gaps = np.concatenate(gaps)
  return gaps, float(np.mean(gaps >= max_interval))


def calibrate(fractions: list[np.ndarray], max_interval: int, target: float) -> float:
  """P_th for a mean interval of `target` frames, by bisection (the mean interval grows with P_th)."""
  low, high = 0.0, float(max_interval)
  for _ in range(30):
    middle = 0.5 * (low + high)
    low, high = (middle, high) if intervals(fractions, middle, max_interval)[0].mean() < target else (low, middle)
  return round(0.5 * (low + high), 3)


def check_against_library(fractions: np.ndarray, config: pam.PixelMemoryConfig) -> None:
  """The NumPy schedule is the library's (`trigger_schedule`, what `update` decides frame by frame)."""
  ours = schedule(fractions, config.variation_threshold, config.max_interval)
  theirs = np.flatnonzero(np.asarray(pam.trigger_schedule(jnp.asarray(fractions, jnp.float32), config)))
  assert np.array_equal(ours, theirs), (ours, theirs)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", default=DAVIS)
  parser.add_argument("--resolution", default="240p")
  parser.add_argument("--imageset", default="ImageSets/2016/train.txt")
  parser.add_argument("--size", type=int, default=480, help="working size (shorter side), as `segment --size`")
  parser.add_argument("--stride", type=int, default=4, help="SwiftNetConfig.variation_stride")
  parser.add_argument("--frame-thresholds", default="0.02,0.04,0.06,0.08,0.1,0.15")
  parser.add_argument("--mask-threshold", type=float, default=0.5)
  parser.add_argument("--max-interval", type=int, default=10)
  parser.add_argument("--target", type=float, default=5.0)
  args = parser.parse_args(argv)
  dataset = DavisDataset(args.root, args.resolution, args.imageset, single_object=True)
  changes = [sequence_changes(sequence, args.size, args.stride) for sequence in dataset]
  print(f"{len(changes)} sequences, {sum(len(c[0]) + 1 for c in changes)} frames at size {args.size}, "
        f"stride {args.stride}, th_m {args.mask_threshold}, max interval {args.max_interval}, target {args.target}")
  print(f"{'th_f':>6} {'varied/frame':>13} {'P_th':>7} {'mean gap':>9} {'median':>7} {'forced':>7} "
        f"{'per-sequence mean gaps (min..max)':>34}")
  for th_f in (float(x) for x in args.frame_thresholds.split(",")):
    fractions = [np.concatenate([[0.0], np.mean((image > th_f) | (mask > args.mask_threshold), axis=(1, 2))])
                 for image, mask in changes]
    threshold = calibrate(fractions, args.max_interval, args.target)
    check_against_library(fractions[0], pam.PixelMemoryConfig(
        frame_threshold=th_f, mask_threshold=args.mask_threshold, variation_threshold=threshold,
        max_interval=args.max_interval))
    gaps, forced = intervals(fractions, threshold, args.max_interval)
    per_sequence = [np.diff(schedule(f, threshold, args.max_interval)).mean() for f in fractions]
    print(f"{th_f:6.2f} {np.mean(np.concatenate([f[1:] for f in fractions])):13.3f} {threshold:7.3f} "
          f"{gaps.mean():9.2f} {np.median(gaps):7.1f} {forced:7.1%} "
          f"{min(per_sequence):17.1f} .. {max(per_sequence):.1f}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
