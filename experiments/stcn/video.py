"""STCN, main training stage: video clips of the DAVIS 2016 training sequences with a growing frame gap.

Two variants (`--config experiments/stcn/video.py[:VARIANT]`):

- `cpu` (default): the run that shows training learns on real video on the 2-core CPU build machine, from
  random weights: `stcn-tiny`, 3-frame 128x128 clips, batch 4, 4000 steps. 27 of the 30 training sequences of
  `../shared/data/davis2016-240p` are trained on; dog-agility, motorbike and soccerball are held out for the
  periodic validation J&F (the best checkpoint is kept in `<workdir>/best`). The DAVIS 2016 val sequences
  (blackswan, bmx-trees) are never seen: evaluate them afterwards with `jaxvos segment` + `jaxvos evaluate`
  (`experiments/README.md`). Validation and evaluation resize frames to a shorter side of 96: the random crops
  (36-100% of a 240p frame resized to 128x128) train at 0.4-0.67 of the 240p scale, and after 400 steps the
  held-out J&F was 0.39 at 96, 0.22 at 128 and 0.19 at 240.

    python -m jaxvos train --config experiments/stcn/video.py --workdir /tmp/jaxvos-runs/stcn-davis-cpu

- `full`: STCN's main-training recipe at its sizes (ResNet-50 key encoder, 3-frame 384x384 clips, batch 16,
  Adam lr 1e-5 decayed x0.1 at 125k of 150k steps, bootstrapped CE from 20k to 70k, max frame gap 10 -> 25 then
  5), for a GPU or TPU host; start it from the static stage with `--config.train.init_from=<static workdir>` or
  from imported weights (a `jaxvos convert` model directory).

    python -m jaxvos train --config experiments/stcn/video.py:full --workdir RUNS/stcn-video \
        --config.train.init_from=RUNS/stcn-static

Hardware and result (`cpu`): the 2-core CPU, 45 minutes; J&F 0.409 on blackswan + bmx-trees against 0.306 for
copying the first-frame mask (`experiments/README.md`, with the loss curve). `full`: not yet run.
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
  c.model = "stcn-tiny" if cpu else "stcn"
  c.train_model = dict(top_k=None, memory=dict(slots=4, every=1, max_pinned=1, temporary=False))
  c.eval_model = dict(top_k=20)

  steps = 4000 if cpu else 150_000
  c.data = dict(
      source="davis", davis_root=DAVIS, resolution="240p", imageset="ImageSets/2016/train.txt", exclude=HELD_OUT,
      num_frames=3, crop_hw=(128, 128) if cpu else (384, 384), max_objects=1,  # DAVIS 2016: one object
      gaps=(5, 10, 15, 20, 25, 5) if not cpu else (3, 5, 8, 10, 3),
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
  c.loss = dict(bootstrapped=True, start_step=int(0.2 * steps) if cpu else 20_000,
                end_step=int(0.6 * steps) if cpu else 70_000, final_fraction=0.15)
  c.train = dict(steps=steps, log_every=25 if cpu else 100, checkpoint_every=250 if cpu else 5000,
                 keep_checkpoints=3, async_checkpoints=True, remat=not cpu, compute_dtype="float32", seed=0,
                 init_from="")
  return ml_collections.ConfigDict(c)
