"""SpVOS, gated stage: mixed sparse training of a trained dense STCN on DAVIS video clips with small frame gaps.

Two variants (`--config experiments/spvos/video.py[:VARIANT]`; the recipe is `experiments/common.py`'s `video`,
this file sets SpVOS's stage on top of it):

- `cpu` (default): `spvos-tiny` from the default model (`jaxvos/default/`: the trained `stcn-tiny`, grafted 1:1,
  the gates at their initialisation; sessions 6-11 ran from the static -> video one, the default until session
  16), 3-frame 128x128 clips of the 27 DAVIS 2016 training sequences with frame gaps 1-3, batch 4, 2000 steps of
  AdamW at 1e-4; validated on the held-out dog-agility, motorbike and soccerball at the default model's working
  size, a shorter side of 160 (argmax gates through the sparse executor).

    python -m jaxvos train --config experiments/spvos/video.py --workdir /tmp/jaxvos-runs/spvos-davis-cpu

- `full`: `spvos` (ResNet-50 key encoder) from a trained full STCN (pass its workdir or model directory),
  384x384 clips, batch 16, Adam 1e-5 for 50k steps, frame gaps 1-5, for a GPU or TPU host.

    python -m jaxvos train --config experiments/spvos/video.py:full --workdir RUNS/spvos-video \
        --config.train.init_from=RUNS/stcn-video

Both: each clip runs dense with probability 0.5 (mixed sparse training, so the shared weights stay valid dense
and gated), and the loss adds `lambda * sum_l w_l (rho_l - rho*)^2` (rho* = 0.58: 42% of the gated layers' MACs
saved; `jaxvos.models.spvos.sparsity_terms`) and `mu * sum_l w_l H_l`, the gates' mean entropy (mu = 0.1, ramped
up over the first quarter of the steps): without it the sampled gates of training executed 0.64 of the MACs
while inference's argmax of the same gates computed 0.97 (session 6, `experiments/README.md`); decisive gates
make the two agree, so the sparsity the objective trains is the one inference gets. Afterwards compare the sparse
model with its dense twin on the held-out sequences: J&F, MACs and wall-clock per frame side by side (`jaxvos
bench davis --checkpoints RUN/export/final,default --dense-twins ...`).

`--config.train_model.sparsity_on=argmax` puts the objective on the argmax decisions (what inference executes)
instead of the samples (session 9: the gated layers then executed 0.51 of their MACs at inference, at 0.29 J&F
below the dense twin on the held-out sequences); with `--config.train_model.entropy_weight=0.5` as well
(session 10) the gates became decisive and sparse on the training crops (0.62 of the MACs) but executed 0.84 of
the model's MACs on DAVIS frames, 0.17 J&F below the dense twin held-out, level with it on val.

Gates alone (session 19): `--config.optimizer.trainable=/gate/` trains only the gates' parameters,
so the grafted weights stay exactly the default model's and the dense twin is the default model itself (mixed
training, there to keep the shared weights valid dense, has nothing left to do: `dense_clip_probability=0`); the
gated layers' target rho* = 0.35, what 40% fewer MACs of the whole tiny model needs (the ungated stem, value
encoder and key projections are 39% of them):

    python -m jaxvos train --config experiments/spvos/video.py --workdir RUNS/spvos-gates-only-cpu \
        --config.optimizer.trainable=/gate/ --config.train_model.dense_clip_probability=0 \
        --config.train_model.target=0.35 --config.train_model.sparsity_on=argmax \
        --config.train_model.entropy_weight=0.5 --config.optimizer.learning_rate=1e-3

Result: the dense twin is the default model to the digit; the gated model executes 0.57 of its MACs on DAVIS
frames at 160 but scores 0.289 held-out (dense 0.577) and 0.537 on val (0.667); 750 more steps on 6-frame clips
(`--config.data.num_frames=6`, `init_from` this run) give 0.380 and 0.588 at 0.60 of the MACs.

Session 21: `--config.train_model.distill_weight=0.3` (each gated layer's output error against its convolution
in the loss), otherwise as the 6-frame run above from the gates-alone run: see `experiments/README.md`
(session 21). The change guard (`--config.model_overrides.change_threshold=0.4
--config.model_overrides.tile_pixels=16,16`, unchanged tiles reuse, the gates decide the changed ones), gates
alone from the default model on 6-frame clips (`--workdir RUNS/spvos-guard-gates-cpu`, 750 steps). Result:
distillation held-out 0.382, val 0.550 (without: 0.380 / 0.588); gates with the guard 0.450 / 0.625 at 0.62 /
0.75 of the MACs, where the guard alone, untrained (`experiments/spvos_guarded.py`), scores 0.574 / 0.674 at
0.64 / 0.81 (the dense model 0.577 / 0.667).

Results: `experiments/README.md` (the SpVOS sections; the 2-core CPU, sessions 6-21).
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module
from jaxvos.convert import io

common = config_module(__file__, "../common.py")

DENSE_MODEL = io.DEFAULT_MODEL  # the packaged stcn-tiny


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  cpu = common.check_variant(variant)
  c = common.video("spvos", variant)
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.train_model.dense_clip_probability = 0.5
  c.train_model.target = 0.58
  c.train_model.sparsity_weight = 1.0
  c.train_model.sparsity_on = "sample"  # the paper's; "expected" / "argmax": jaxvos.models.spvos.sparsity_terms
  c.train_model.entropy_weight = 0.1
  c.train_model.distill_weight = 0.0  # the gated layers' output error (jaxvos.models.spvos.sparsity_terms)
  # the gates' shape and the change guard: the model trained, validated and exported alike
  c.model_overrides.tile_pixels = (32, 96)
  c.model_overrides.gate_pool = "mean"  # "mean_max": gates also see their embedding's maximum over a tile
  c.model_overrides.change_threshold = config_dict.placeholder(float)  # the change guard (jaxvos.models.spvos)
  c.eval_model.top_k = 20
  steps = 2000 if cpu else 50_000
  c.data.gaps = (1, 2, 3) if cpu else (1, 2, 3, 5)
  c.data.gap_boundaries = tuple(int(f * steps) for f in ((0.3, 0.6) if cpu else (0.2, 0.4, 0.6)))
  c.train_model.entropy_ramp_steps = steps // 4
  c.train.update(steps=steps, init_from=DENSE_MODEL if cpu else "")
  if cpu:
    c.val.size = io.working_size(DENSE_MODEL)
    c.optimizer.update(learning_rate=1e-4, warmup_steps=50)
    c.loss = common.bootstrapped_loss(0, int(0.5 * steps))
  else:
    c.optimizer.decay_boundaries = (40_000,)
    c.loss = common.bootstrapped_loss(0, 20_000)
  return c
