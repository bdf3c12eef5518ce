"""SpVOS (tiny) on synthetic video, on a CPU: mixed sparse training of a trained dense stcn-tiny, in minutes.

Command (from the repository root), after the STCN smoke run (`experiments/stcn/smoke.py`, whose workdir is
grafted in: `train.init_from`):

  python -m jaxvos train --config experiments/spvos/smoke.py --workdir /tmp/jaxvos-runs/spvos-smoke

Hardware: the 2-core CPU build machine (no GPU). Starts `spvos-tiny` from the trained `stcn-tiny` (every STCN
variable copied 1:1, the gates at their initialisation: `jaxvos.convert.graft.EXTENDS`) and trains on the STCN
smoke run's 64 generated videos: 3-frame 96x96 clips with small frame gaps (1-2: reuse needs similar
neighbours), each clip dense with probability 0.5 (mixed sparse training), the sparsity objective
`lambda * sum_l w_l (rho_l - 0.58)^2` added to the bootstrapped cross-entropy. The metrics `sparsity`,
`executed_mac_fraction` (gated frames) and `gated_frames` are logged with the loss; validation on 4 held-out
videos runs the argmax gates through the sparse executor.

Result: not yet run.
"""

import ml_collections
from ml_collections import config_dict

from jaxvos.cli.train import config_module

common = config_module(__file__, "../common.py")

DENSE_RUN = "/tmp/jaxvos-runs/stcn-smoke"  # experiments/stcn/smoke.py's workdir


def get_config() -> ml_collections.ConfigDict:
  c = common.smoke("spvos")
  c.train_model.top_k = config_dict.placeholder(int)  # None: training reads all of memory (full softmax)
  c.train_model.dense_clip_probability = 0.5
  c.train_model.target = 0.58
  c.train_model.sparsity_weight = 1.0
  c.eval_model.top_k = 20
  c.data.gaps, c.data.gap_boundaries = (1, 2), (500,)
  c.optimizer.update(learning_rate=2e-4, warmup_steps=50)  # fine-tuning a trained model
  c.loss = common.PLAIN_LOSS
  c.train.update(steps=500, checkpoint_every=250, init_from=DENSE_RUN)
  return c
