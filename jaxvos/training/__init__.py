"""Training for every family: train state, pure train step, optimizer, mesh sharding, orbax checkpoints, loop.

  state.py       TrainState (params, frozen BatchNorm statistics, optimizer state, step, PRNG key)
  step.py        make_train_step: unroll a clip with the family protocol under lax.scan, loss, update
  optimizer.py   AdamW with warmup + cosine / step decay, clipping, gradient accumulation
  sharding.py    the `data` mesh, batch and state shardings, multi-host initialisation and batch assembly
  checkpoint.py  orbax checkpoints of the state and the data iterator's position; the best one by J&F
  data.py        training items (videos, static images, single video frames) -> per-process clip datasets
  validation.py  J&F of held-out videos with the inference engine; the copy-first-mask baseline
  reporting.py   console progress, metrics.jsonl, TensorBoard
  loop.py        train(...): resume or start, steps, reports, validation, checkpoints

`python -m jaxvos train` (jaxvos/cli/train.py) turns a config into these functions' typed arguments.
"""
