"""STM, static-image stage: 3-frame pseudo-clips made from one image + mask by random affine transforms.

Images: ECSSD, PASCAL-S and the DAVIS 2017 first frames of `../shared/data/static-images`, plus every 5th
annotated frame of the DAVIS 2016 training sequences (the held-out validation sequences excluded) used as single
images. Validation (J&F on video) on three held-out DAVIS 2016 training sequences.

- `cpu` (default): `stm-tiny` from random weights, 96x96 pseudo-clips, batch 4, 2000 steps (2-core CPU):

    python -m jaxvos train --config experiments/stm/static.py --workdir /tmp/jaxvos-runs/stm-static-cpu

  then the video stage from it: `--config experiments/stm/video.py --config.train.init_from=<this workdir>`.

- `full`: STM's pre-training at its sizes (ResNet-50 query and memory encoders, 384x384, Adam lr 1e-5, plain
  cross-entropy; STM does not publish its step counts: 300k steps with a x0.1 decay at 150k as STCN), for a GPU
  or TPU host:

    python -m jaxvos train --config experiments/stm/static.py:full --workdir RUNS/stm-static

Hardware and result: not yet run.
"""

import os

import ml_collections

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
DAVIS = os.path.join(DATA, "davis2016-240p")
STATIC = tuple(os.path.join(DATA, "static-images", name) for name in ("ECSSD", "PASCAL-S", "DAVIS2017-first-frames"))
HELD_OUT = ("dog-agility", "motorbike", "soccerball")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  if variant not in ("cpu", "full"):
    raise ValueError(f"variant must be cpu or full, got {variant!r}")
  cpu = variant == "cpu"
  c = ml_collections.ConfigDict()
  c.model = "stm-tiny" if cpu else "stm"
  c.train_model = dict(memory=dict(slots=4, every=1, max_pinned=1, temporary=False))
  c.eval_model = {}  # STM at test time: every 5th frame and the previous one

  steps = 2000 if cpu else 300_000
  c.data = dict(
      source="static", static_roots=STATIC, davis_root=DAVIS, resolution="240p",
      imageset="ImageSets/2016/train.txt", exclude=HELD_OUT, davis_frames_every=5,
      num_frames=3, crop_hw=(96, 96) if cpu else (384, 384), max_objects=3, gaps=(1,), gap_boundaries=(),
      batch_size=4 if cpu else 16, seed=0, threads=2 if cpu else 8, prefetch=4 if cpu else 16,
      synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0)
  c.val = dict(source="davis", davis_root=DAVIS, resolution="240p", sequences=HELD_OUT, every=500 if cpu else 10_000,
               size=96 if cpu else -1, max_frames=0,
               synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0)

  c.optimizer = dict(learning_rate=5e-4 if cpu else 1e-5, schedule="cosine" if cpu else "steps",
                     warmup_steps=100 if cpu else 0, final_fraction=0.05, decay_boundaries=() if cpu else (150_000,),
                     decay_factor=0.1, weight_decay=1e-4 if cpu else 1e-7, clip_norm=1.0, accumulate_steps=1)
  c.loss = dict(bootstrapped=False, start_step=0, end_step=0, final_fraction=1.0)  # STM: plain cross-entropy
  c.train = dict(steps=steps, log_every=25 if cpu else 100, checkpoint_every=250 if cpu else 5000,
                 keep_checkpoints=3, async_checkpoints=True, remat=not cpu, compute_dtype="float32", seed=0,
                 init_from="")
  return ml_collections.ConfigDict(c)
