"""What every experiment config shares: the data paths, the set of fields, and one recipe per training stage.

Not a config itself (it has no `get_config`): each `experiments/<family>/<stage>.py` loads it with

    common = config_module(__file__, "../common.py")      # from jaxvos.cli.train

(experiments/ is not a package, so the file is loaded by its path beside the config), starts from the stage's
recipe and sets only what differs for its family: `common.video("stm", variant)` is the whole DAVIS video stage of
the `stm-tiny` (`cpu`) or `stm` (`full`) model, and the STM config then swaps the bootstrapped loss for plain
cross-entropy. Every config has the same fields, so `--config.key=value` works on any of them.

The recipes are STCN's (Cheng et al. 2021): bootstrapped cross-entropy, 3-frame clips, AdamW; the `cpu` variants
are the sizes measured on the 2-core CPU build machine (experiments/README.md), the `full` ones the papers' sizes
for a GPU or TPU host.
"""

import os

import ml_collections

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
DAVIS = os.path.join(DATA, "davis2016-240p")
STATIC = tuple(os.path.join(DATA, "static-images", name) for name in ("ECSSD", "PASCAL-S", "DAVIS2017-first-frames"))
HELD_OUT = ("dog-agility", "motorbike", "soccerball")  # DAVIS 2016 training sequences kept for validation
VARIANTS = ("cpu", "full")

# Training unrolls 3-frame clips: every frame is written into memory (the first pinned), no temporary slot.
TRAIN_MEMORY = dict(slots=4, every=1, max_pinned=1, temporary=False)
PLAIN_LOSS = dict(bootstrapped=False, start_step=0, end_step=0, final_fraction=1.0)

# Multi-object pseudo-videos (data_pipelines/pseudo_video.py): `data_pipelines.pseudo_video.PseudoVideoConfig`'s
# fields, at its defaults (annotated objects visible from frame 0: the training unroll annotates frame 0 only).
PSEUDO_VIDEO = dict(
    min_objects=1, same_source_probability=0.5, max_distractors=2, twin_probability=0.6,
    late_entry_probability=0.0, annotate_late_entries=False, object_size=(0.15, 0.45), max_speed=0.06,
    max_acceleration=0.01, max_rotation=20.0, max_spin=4.0, max_zoom=0.05, camera_speed=0.02, camera_zoom=0.02,
    background_area=(0.4, 1.0), min_source_pixels=400, min_visible_pixels=40, max_source_side=512, cache_size=128)


def bootstrapped_loss(start_step: int, end_step: int) -> dict:
  """STCN's loss: plain cross-entropy until `start_step`, then the hardest pixels, down to 15% at `end_step`."""
  return dict(bootstrapped=True, start_step=start_step, end_step=end_step, final_fraction=0.15)


def base(model: str) -> ml_collections.ConfigDict:
  """Every field of a config, at neutral values (no data source, no validation) that the recipes fill in."""
  c = ml_collections.ConfigDict()
  c.model = model
  c.train_model = dict(memory=TRAIN_MEMORY)  # config overrides of the model trained
  c.eval_model = {}                          # ... and of the model validated and exported (test-time memory)
  c.model_overrides = {}                     # ... of both (ablations: one flag changes training and test time)
  c.data = dict(
      source="", num_frames=3, crop_hw=(96, 96), max_objects=1, gaps=(1,), gap_boundaries=(), batch_size=4,
      seed=0, threads=2, prefetch=4,
      synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0,  # source "synthetic"
      davis_root="", resolution="240p", imageset="", exclude=(),                      # source "davis"
      static_roots=(), davis_frames_every=0,                                          # source "static"
      pseudo_video=PSEUDO_VIDEO)                       # source "pseudo_video" (+ the static fields for its images)
  c.val = dict(source="none", every=0, size=-1, max_frames=0,
               synthetic_videos=0, synthetic_seed=0, synthetic_hw=(0, 0), synthetic_frames=0,
               davis_root="", resolution="240p", sequences=())
  c.optimizer = dict(learning_rate=5e-4, schedule="cosine", warmup_steps=100, final_fraction=0.05,
                     decay_boundaries=(), decay_factor=0.1, weight_decay=1e-4, clip_norm=1.0, accumulate_steps=1,
                     trainable="")
  c.loss = PLAIN_LOSS
  c.train = dict(steps=1000, log_every=25, checkpoint_every=250, keep_checkpoints=3, async_checkpoints=True,
                 remat=False, compute_dtype="float32", seed=0, init_from="")
  return c


def check_variant(variant: str) -> bool:
  """True for `cpu`; raises ValueError for anything but `cpu` or `full`."""
  if variant not in VARIANTS:
    raise ValueError(f"variant must be cpu or full, got {variant!r}")
  return variant == "cpu"


def smoke(family: str) -> ml_collections.ConfigDict:
  """`<family>-tiny` on 64 generated videos for 1000 steps, validated on 4 held-out ones (2-core CPU, minutes).

  Crops keep the /16 feature maps near the validation frames' (6x6 against 6x8).
  """
  c = base(f"{family}-tiny")
  c.data.update(source="synthetic", synthetic_videos=64, synthetic_seed=0, synthetic_hw=(96, 128),
                synthetic_frames=12, crop_hw=(96, 96), max_objects=2, gaps=(1, 2, 3), gap_boundaries=(300, 700))
  c.val.update(source="synthetic", synthetic_videos=4, synthetic_seed=10_000, synthetic_hw=(96, 128),
               synthetic_frames=12, every=250)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=50)
  c.loss = bootstrapped_loss(300, 800)
  c.train.update(steps=1000, keep_checkpoints=2)
  return c


def _davis_stage(family: str, variant: str, *, steps: int, decay_at: int, val_every: int
                 ) -> ml_collections.ConfigDict:
  """What the static and video stages share: sizes, optimizer and validation on the held-out DAVIS sequences.

  `cpu`: `<family>-tiny` from random weights, batch 4, AdamW 5e-4 with warmup and cosine decay, validated at a
  shorter side of 96. `full`: `<family>` at 384x384, batch 16, Adam 1e-5 decayed x0.1 at `decay_at`, remat.
  """
  cpu = check_variant(variant)
  c = base(f"{family}-tiny" if cpu else family)
  c.data.update(davis_root=DAVIS, resolution="240p", imageset="ImageSets/2016/train.txt", exclude=HELD_OUT,
                crop_hw=(96, 96) if cpu else (384, 384), batch_size=4 if cpu else 16, threads=2 if cpu else 8,
                prefetch=4 if cpu else 16)
  c.val.update(source="davis", davis_root=DAVIS, resolution="240p", sequences=HELD_OUT,
               every=500 if cpu else val_every, size=96 if cpu else -1)
  if not cpu:
    c.optimizer.update(learning_rate=1e-5, schedule="steps", warmup_steps=0, decay_boundaries=(decay_at,),
                       weight_decay=1e-7)
  c.loss = bootstrapped_loss(int(0.2 * steps), int(0.6 * steps)) if cpu else bootstrapped_loss(20_000, 70_000)
  c.train.update(steps=steps, log_every=25 if cpu else 100, checkpoint_every=250 if cpu else 5000, remat=not cpu)
  return c


def static(family: str, variant: str) -> ml_collections.ConfigDict:
  """Pseudo-clips (random affine transforms of one image and its mask) of ECSSD, PASCAL-S, the DAVIS 2017 first
  frames and every 5th annotated frame of the DAVIS 2016 training sequences; `cpu` 2000 steps, `full` 300k."""
  cpu = check_variant(variant)
  c = _davis_stage(family, variant, steps=2000 if cpu else 300_000, decay_at=150_000, val_every=10_000)
  c.data.update(source="static", static_roots=STATIC, davis_frames_every=5, max_objects=3)
  return c


def pseudo_video(family: str, variant: str) -> ml_collections.ConfigDict:
  """Multi-object pseudo-videos: objects cut out of the static stage's images (ECSSD, PASCAL-S, DAVIS 2017 first
  frames split per object, every 5th DAVIS 2016 training frame) pasted over other images with independent
  motion, scale change, occlusion and unannotated look-alikes (STM's COCO recipe at this scale); up to 3 objects,
  3-frame clips. `cpu` 2000 steps, `full` 300k; the video stage starts from it (`train.init_from`)."""
  cpu = check_variant(variant)
  c = _davis_stage(family, variant, steps=2000 if cpu else 300_000, decay_at=150_000, val_every=10_000)
  c.data.update(source="pseudo_video", static_roots=STATIC, davis_frames_every=5, max_objects=3)
  return c


def video(family: str, variant: str) -> ml_collections.ConfigDict:
  """3-frame clips of the DAVIS 2016 training sequences with a growing maximum frame gap; `cpu` 4000 steps of
  128x128 clips, `full` 150k steps (STCN's gap schedule 5 -> 25 then 5)."""
  cpu = check_variant(variant)
  steps = 4000 if cpu else 150_000
  c = _davis_stage(family, variant, steps=steps, decay_at=125_000, val_every=5000)
  c.data.update(source="davis", max_objects=1)  # DAVIS 2016: one object
  c.data.gaps = (3, 5, 8, 10, 3) if cpu else (5, 10, 15, 20, 25, 5)
  c.data.gap_boundaries = tuple(int(f * steps) for f in ((0.1, 0.3, 0.5, 0.9) if cpu else (0.1, 0.2, 0.3, 0.4, 0.9)))
  if cpu:
    c.data.crop_hw = (128, 128)  # validated at 96: random crops of 36-100% of a 240p frame train at 0.4-0.67
  return c
