"""STM, main training stage: video clips of the DAVIS 2016 training sequences with a growing frame gap.

Two variants (`--config experiments/stm/video.py[:VARIANT]`):

- `cpu` (default): the run that shows training learns on real video on the 2-core CPU build machine, from
  random weights: `stm-tiny`, 3-frame 128x128 clips, batch 4, 4000 steps. 27 of the 30 training sequences of
  `../shared/data/davis2016-240p` are trained on; dog-agility, motorbike and soccerball are held out for the
  periodic validation J&F (the best checkpoint is kept in `<workdir>/best`). The DAVIS 2016 val sequences
  (blackswan, bmx-trees) are never seen: evaluate them afterwards with `jaxvos segment` + `jaxvos evaluate`
  (`experiments/README.md`). Validation and evaluation resize frames to a shorter side of 96: the random crops
  (36-100% of a 240p frame resized to 128x128) train at 0.4-0.67 of the 240p scale, and after 400 steps the
  held-out J&F was 0.39 at 96, 0.22 at 128 and 0.19 at 240.

    python -m jaxvos train --config experiments/stm/video.py --workdir /tmp/jaxvos-runs/stm-davis-cpu

- `full`: STM's main training at its sizes (ResNet-50 encoders, 3-frame 384x384 clips, Adam lr 1e-5, plain
  cross-entropy, the maximum frame gap grown from 1 to 25 over training), batch 16 and 150k steps as the STCN
  config, for a GPU or TPU host; start it from the static stage with `--config.train.init_from=<static workdir>`
  or from imported weights (a `jaxvos convert` model directory).

    python -m jaxvos train --config experiments/stm/video.py:full --workdir RUNS/stm-video \
        --config.train.init_from=RUNS/stm-static

Hardware and result: not yet run.
"""

import os

import ml_collections

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"))
DAVIS = os.path.join(DATA, "davis2016-240p")
HELD_OUT = ("dog-agility", "motorbike", "soccerball")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  if variant not in ("cpu", "full"):
    raise ValueError(f"variant must be cpu or full, got {variant!r}")
  cpu = variant == "cpu"
  c = ml_collections.ConfigDict()
  c.model = "stm-tiny" if cpu else "stm"
  c.train_model = dict(memory=dict(slots=4, every=1, max_pinned=1, temporary=False))
  c.eval_model = {}  # STM at test time: every 5th frame and the previous one

  steps = 4000 if cpu else 150_000
  c.data = dict(
      source="davis", davis_root=DAVIS, resolution="240p", imageset="ImageSets/2016/train.txt", exclude=HELD_OUT,
      num_frames=3, crop_hw=(128, 128) if cpu else (384, 384), max_objects=1,  # DAVIS 2016: one object
      gaps=(1, 5, 10, 15, 20, 25) if not cpu else (3, 5, 8, 10, 3),
      gap_boundaries=tuple(int(f * steps) for f in ((0.1, 0.3, 0.5, 0.9) if cpu else (0.1, 0.2, 0.3, 0.4, 0.9))),
      batch_size=4 if cpu else 16, seed=0, threads=2 if cpu else 8, prefetch=4 if cpu else 16,
      static_roots=(), davis_frames_every=0,
      synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0)
  c.val = dict(source="davis", davis_root=DAVIS, resolution="240p", sequences=HELD_OUT, every=500 if cpu else 5000,
               size=96 if cpu else -1,  # cpu: the scale the random 128x128 crops train at
               max_frames=0, synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0)

  c.optimizer = dict(learning_rate=5e-4 if cpu else 1e-5, schedule="cosine" if cpu else "steps",
                     warmup_steps=100 if cpu else 0, final_fraction=0.05, decay_boundaries=() if cpu else (125_000,),
                     decay_factor=0.1, weight_decay=1e-4 if cpu else 1e-7, clip_norm=1.0, accumulate_steps=1)
  c.loss = dict(bootstrapped=False, start_step=0, end_step=0, final_fraction=1.0)  # STM: plain cross-entropy
  c.train = dict(steps=steps, log_every=25 if cpu else 100, checkpoint_every=250 if cpu else 5000,
                 keep_checkpoints=3, async_checkpoints=True, remat=not cpu, compute_dtype="float32", seed=0,
                 init_from="")
  return ml_collections.ConfigDict(c)
