"""`jaxvos data {inspect,synth,preview}`: look at datasets before training on them.

  inspect  --davis-root DIR [--resolution 480p] [--imageset FILE] | --youtube-vos DIR [--split train] |
           --static DIR           list sequences, frames, sizes and objects (with first appearances)
  synth    --out DIR [--videos 8] [--seed 0] [--frames 24] [--height 240] [--width 432]
                                  write synthetic videos in the DAVIS 2017 layout
  preview  (a dataset option as for inspect, or --synthetic N, or --pseudo-video DIR[,DIR...]) --out FILE.png
           [--batch 4] [--frames 3] [--crop 192] [--max-objects 3] [--max-gap 5] [--seed 0]
                                  sample training clips and save them as one picture with coloured masks
"""

import argparse
import os
import sys
import time

import einops
from PIL import Image

from data_pipelines import davis, pseudo_video, sampling, static_images, synthetic, youtube_vos
from data_pipelines.errors import DataError
from data_pipelines.video_io import overlay

DESCRIPTION = __doc__


def _add_source(parser: argparse.ArgumentParser, synthetic_option: bool = False) -> None:
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--davis-root", metavar="DIR", help="a DAVIS root (JPEGImages/<resolution>/<sequence>, "
                      "Annotations/<resolution>/<sequence>)")
  source.add_argument("--youtube-vos", metavar="DIR", help="a YouTube-VOS root (train/, valid/ with meta.json)")
  source.add_argument("--static", metavar="DIR", help="a static-image root (images/ and masks/)")
  if synthetic_option:
    source.add_argument("--synthetic", type=int, metavar="N", help="N generated videos, in memory")
    source.add_argument("--pseudo-video", metavar="DIR[,DIR...]",
                        help="static-image roots: multi-object pseudo-videos of their objects, pasted over their "
                        "images (data_pipelines.pseudo_video)")
  parser.add_argument("--resolution", default="480p", metavar="NAME",
                      help="the DAVIS resolution folder (default: 480p)")
  parser.add_argument("--imageset", metavar="FILE", help="the DAVIS ImageSets file listing the sequences "
                      "(default: every sequence)")
  parser.add_argument("--split", default="train", metavar="NAME", help="the YouTube-VOS split (default: train)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
  formatter = parser.formatter_class
  _add_source(actions.add_parser("inspect", help="list sequences, frames and objects of a dataset",
                                 formatter_class=formatter,
                                 description="List the sequences of a dataset: frames, size, annotated frames and "
                                 "objects (id@first frame)."))
  synth = actions.add_parser("synth", help="write synthetic videos in the DAVIS 2017 layout",
                             formatter_class=formatter,
                             description="Write synthetic videos (moving textured shapes with their masks) in the "
                             "DAVIS 2017 layout, with ImageSets/2017/train.txt and val.txt.")
  synth.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
  synth.add_argument("--videos", type=int, default=8, metavar="N", help="how many videos (default: 8)")
  synth.add_argument("--seed", type=int, default=0, metavar="N", help="the random seed (default: 0)")
  synth.add_argument("--frames", type=int, default=24, metavar="N", help="frames per video (default: 24)")
  synth.add_argument("--height", type=int, default=240, metavar="N", help="frame height in pixels (default: 240)")
  synth.add_argument("--width", type=int, default=432, metavar="N", help="frame width in pixels (default: 432)")
  preview = actions.add_parser("preview", help="save a picture of sampled training clips",
                               formatter_class=formatter,
                               description="Sample training clips from a dataset as training does (augmented) "
                               "and save them as one picture: one row per clip, masks in colour.")
  _add_source(preview, synthetic_option=True)
  preview.add_argument("--out", required=True, metavar="FILE", help="the picture to write (.png or .jpg)")
  preview.add_argument("--batch", type=int, default=4, metavar="N", help="clips to sample (default: 4)")
  preview.add_argument("--frames", type=int, default=3, metavar="N", help="frames per clip (default: 3)")
  preview.add_argument("--crop", type=int, default=192, metavar="N", help="square crop side in pixels "
                       "(default: 192)")
  preview.add_argument("--max-objects", type=int, default=3, metavar="N", help="objects kept per clip "
                       "(default: 3)")
  preview.add_argument("--max-gap", type=int, default=5, metavar="N", help="largest step between sampled frames "
                       "(default: 5)")
  preview.add_argument("--late-entries", type=float, default=0.0, metavar="P",
                       help="with --pseudo-video: the probability (0 to 1) that a target enters after frame 0, "
                       "annotated from where it shows (default: 0)")
  preview.add_argument("--seed", type=int, default=0, metavar="N", help="the random seed (default: 0)")


def _items(args) -> list:
  """The sequences (or static images) a source option names."""
  if args.davis_root:
    return list(davis.DavisDataset(args.davis_root, args.resolution, args.imageset))
  if args.youtube_vos:
    return list(youtube_vos.YouTubeVOSDataset(args.youtube_vos, args.split))
  if args.static:
    return static_images.list_static_images(args.static)
  if getattr(args, "pseudo_video", None):
    return [pair for root in args.pseudo_video.split(",") for pair in static_images.list_static_images(root)]
  return [synthetic.SyntheticSequence(i) for i in range(args.synthetic)]


def _inspect(args) -> int:
  items = _items(args)
  if isinstance(items[0], static_images.StaticImage):
    print(f"{len(items)} image/mask pairs under {args.static}")
    return 0
  print(f"{'sequence':24s} {'frames':>6s} {'size':>10s} {'annotated':>9s}  objects (id@first frame)")
  for sequence in items:
    h, w = sequence.frame_size()
    objects = " ".join(f"{k}@{v}" for k, v in sorted(sequence.first_appearance.items()))
    print(f"{sequence.name:24s} {len(sequence):6d} {f'{w}x{h}':>10s} {len(sequence.annotated_indices):9d}  "
          f"{objects}")
  print(f"{len(items)} sequences, {sum(len(s) for s in items)} frames")
  return 0


def _synth(args) -> int:
  if os.path.isdir(args.out) and os.listdir(args.out):
    raise DataError(args.out, "folder is not empty; choose a new folder (nothing is overwritten)")
  config = synthetic.SyntheticConfig(height=args.height, width=args.width, num_frames=args.frames)
  start = time.perf_counter()
  names = synthetic.write_davis(args.out, args.videos, args.seed, config)
  print(f"wrote {len(names)} videos of {args.frames} frames ({args.width}x{args.height}) to {args.out} in "
        f"{time.perf_counter() - start:.1f} s; ImageSets/2017/train.txt and val.txt list them")
  return 0


def _preview(args) -> int:
  if args.late_entries and not getattr(args, "pseudo_video", None):
    raise SystemExit("error: --late-entries needs --pseudo-video")
  items = _items(args)
  spec = sampling.ClipSpec(num_frames=args.frames, crop_hw=(args.crop, args.crop), max_objects=args.max_objects,
                           gap_schedule=sampling.GapSchedule((args.max_gap,)))
  if getattr(args, "pseudo_video", None):
    try:
      config = pseudo_video.PseudoVideoConfig(late_entry_probability=args.late_entries,
                                              annotate_late_entries=args.late_entries > 0)
    except ValueError as e:
      raise SystemExit(f"error: --late-entries: {e}") from None
    sampler = pseudo_video.PseudoVideoSampler(spec, args.batch, items, config)
  else:
    kind = sampling.PseudoClipSampler if isinstance(items[0], static_images.StaticImage) else sampling.VideoClipSampler
    sampler = kind(spec, args.batch)
  dataset = sampling.clip_dataset(items, sampler, seed=args.seed)
  start = time.perf_counter()
  batch = dataset[0]
  seconds = time.perf_counter() - start
  picture = einops.rearrange(overlay(batch["frames"], batch["labels"]), "b t h w c -> (b h) (t w) c")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  Image.fromarray(picture).save(args.out)
  valid = batch["object_valid"].sum(axis=1).tolist()
  print(f"sampled {args.batch} clips of {args.frames} frames from {len(items)} items in {seconds:.2f} s "
        f"({args.batch / seconds:.1f} clips/s); objects per clip {valid}; frames {batch['frame_indices'].tolist()}")
  if "first_frame" in batch:
    firsts = [first[:count].tolist() for first, count in zip(batch["first_frame"], valid)]
    print(f"first annotated frame of each object, per clip: {firsts}")
  print(f"wrote {args.out}")
  return 0


def run(args) -> int:
  actions = {"inspect": _inspect, "synth": _synth, "preview": _preview}
  sys.stdout.reconfigure(line_buffering=True)
  return actions[args.action](args)
