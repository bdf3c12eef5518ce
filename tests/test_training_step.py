"""The train step and loop mechanics, with a toy family that compiles in a second: gradient accumulation, remat,
bfloat16 compute, the bootstrapping schedule, non-finite losses, schedules, and what the unroll feeds the model."""

import dataclasses
import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from data_pipelines import sampling, synthetic
from jaxvos import losses
from jaxvos.inference import Segmenter
from jaxvos.models import registry
from jaxvos.models.family import StepOutput
from jaxvos.ops import attention
from jaxvos.training import loop, optimizer as optimizer_lib, sharding, step as step_lib
from jaxvos.training.checkpoint import Checkpointer
from jaxvos.training.state import create_train_state


class ToyNet(nn.Module):
  @nn.compact
  def __call__(self, frame):
    x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv")(frame)
    return nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(x))


@flax.struct.dataclass
class ToyMemory:
  prototypes: jax.Array    # [b o c]
  object_valid: jax.Array  # [b o]
  count: jax.Array         # [] frames written


@dataclasses.dataclass(frozen=True)
class ToyFamily:
  """A protocol-conforming family written by hand (no skeleton): per-object mean features as memory, written
  from detached predictions. It shows the protocol's extension points: an aux output (`prototype_norm`), an
  rng (in training, noise scaled by `noise` is added to the scores and reported as `noise_draw`) and a custom
  loss term (`toy_term`, `term_weight` times the mean prototype norm) on top of the default loss."""
  name: str = "toy"
  config: None = None
  noise: float = 0.0
  term_weight: float = 0.0

  def init(self, rng, frame_hw=(32, 32)):
    return ToyNet().init(rng, jnp.zeros((1, *frame_hw, 3)))

  def _prototypes(self, feats, probs):
    weights = probs / (jnp.sum(probs, axis=(2, 3), keepdims=True) + 1e-3)
    return jnp.einsum("bhwc,bohw->boc", feats, weights.astype(feats.dtype))

  def init_memory(self, variables, frame, masks, object_valid):
    feats = ToyNet().apply(variables, frame)
    return ToyMemory(self._prototypes(feats, masks), object_valid, jnp.ones((), jnp.int32))

  def step(self, variables, memory, frame, new_masks, new_object_valid, *, rng=None):
    feats = ToyNet().apply(variables, frame)
    is_new = new_object_valid[:, :, None]
    memory = memory.replace(prototypes=jnp.where(is_new, self._prototypes(feats, new_masks), memory.prototypes),
                            object_valid=memory.object_valid | new_object_valid)
    scores = jnp.einsum("bhwc,boc->bohw", feats, memory.prototypes).astype(jnp.float32)
    draw = jnp.zeros((frame.shape[0],)) if rng is None else jax.random.normal(rng, (frame.shape[0],))
    scores = scores + self.noise * draw[:, None, None, None]
    logits = attention.aggregate(jax.nn.sigmoid(scores - 1.0), memory.object_valid)
    probs = jax.lax.stop_gradient(jax.nn.softmax(logits, axis=1)[:, 1:])
    count = memory.count.astype(jnp.float32)
    prototypes = (memory.prototypes * count + self._prototypes(feats, probs)) / (count + 1)
    memory = memory.replace(prototypes=prototypes.astype(memory.prototypes.dtype), count=memory.count + 1)
    aux = {"prototype_norm": jnp.linalg.norm(prototypes.astype(jnp.float32), axis=(1, 2)), "noise_draw": draw}
    return memory, StepOutput(logits=logits, aux=aux)

  def loss(self, logits, labels, object_valid, aux, step, spec):
    value, metrics = losses.segmentation_loss(logits, labels, object_valid, step, spec)
    term = self.term_weight * jnp.mean(aux["prototype_norm"])
    return value + term, {**metrics, "toy_term": term, "noise_draw": jnp.mean(jnp.abs(aux["noise_draw"]))}


FAMILY = ToyFamily()
SPEC = sampling.ClipSpec(num_frames=3, crop_hw=(32, 32), max_objects=2)
VIDEOS = [synthetic.SyntheticSequence(seed, synthetic.SyntheticConfig(height=48, width=64, num_frames=8))
          for seed in range(6)]


def dataset(batch_size=8):
  return sampling.clip_dataset(VIDEOS, sampling.VideoClipSampler(SPEC, batch_size), seed=0)


def fresh_state(optimizer):
  return create_train_state(FAMILY.init(jax.random.PRNGKey(0)), optimizer, jax.random.PRNGKey(1))


def run_steps(train_step, state, batches):
  compiled = jax.jit(train_step)
  history = []
  for batch in batches:
    state, metrics = compiled(state, {k: jnp.asarray(batch[k]) for k in sharding.BATCH_KEYS})
    history.append(jax.device_get(metrics))
  return state, history


def max_difference(a, b):
  return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_gradient_accumulation_equals_one_step_on_the_whole_batch():
  batch = dataset(8)[0]
  halves = [{k: v[:4] for k, v in batch.items()}, {k: v[4:] for k, v in batch.items()}]
  whole_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant"))
  accum_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant",
                                                                       accumulate_steps=2))
  whole, _ = run_steps(step_lib.make_train_step(FAMILY, whole_opt), fresh_state(whole_opt), [batch])
  accumulated, _ = run_steps(step_lib.make_train_step(FAMILY, accum_opt), fresh_state(accum_opt), halves[:1])
  assert max_difference(accumulated.params, fresh_state(accum_opt).params) == 0.0  # no update after one half
  accumulated, _ = run_steps(step_lib.make_train_step(FAMILY, accum_opt), accumulated, halves[1:])
  assert max_difference(whole.params, fresh_state(whole_opt).params) > 1e-3
  assert max_difference(accumulated.params, whole.params) < 1e-6


def test_trainable_pattern_updates_only_the_matching_parameters_as_the_full_optimizer_would():
  batches = [dataset()[0]]
  spec = dict(learning_rate=1e-2, schedule="constant", clip_norm=None)  # no clipping: Adam is per parameter
  everything_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(**spec))
  kernel_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(**spec, trainable="^conv/kernel$"))
  start = fresh_state(kernel_opt).params
  everything, _ = run_steps(step_lib.make_train_step(FAMILY, everything_opt), fresh_state(everything_opt), batches)
  kernel_only, _ = run_steps(step_lib.make_train_step(FAMILY, kernel_opt), fresh_state(kernel_opt), batches)
  assert max_difference(kernel_only.params["conv"]["kernel"], start["conv"]["kernel"]) > 1e-3
  np.testing.assert_allclose(kernel_only.params["conv"]["kernel"], everything.params["conv"]["kernel"], atol=1e-7)
  for path in (("conv", "bias"), ("bn", "scale"), ("bn", "bias")):
    assert max_difference(everything.params[path[0]][path[1]], start[path[0]][path[1]]) > 1e-3
    np.testing.assert_array_equal(kernel_only.params[path[0]][path[1]], start[path[0]][path[1]])


def test_a_trainable_pattern_that_matches_nothing_is_an_error():
  optimizer = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(trainable="gate"))
  with pytest.raises(ValueError, match="matches no parameter"):
    fresh_state(optimizer)
  with pytest.raises(ValueError, match="not a regular expression"):
    optimizer_lib.OptimizerSpec(trainable="conv/(")


def test_remat_changes_nothing_but_memory():
  optimizer = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant"))
  batches = [dataset()[0]]
  plain, plain_metrics = run_steps(step_lib.make_train_step(FAMILY, optimizer, remat=False), fresh_state(optimizer),
                                   batches)
  remat, remat_metrics = run_steps(step_lib.make_train_step(FAMILY, optimizer, remat=True), fresh_state(optimizer),
                                   batches)
  assert max_difference(plain.params, remat.params) < 1e-6
  np.testing.assert_allclose(plain_metrics[0]["loss"], remat_metrics[0]["loss"], rtol=1e-6)


def test_bfloat16_compute_keeps_float32_parameters_and_a_close_loss():
  optimizer = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant"))
  batches = [dataset()[0]]
  full, full_metrics = run_steps(step_lib.make_train_step(FAMILY, optimizer), fresh_state(optimizer), batches)
  half, half_metrics = run_steps(step_lib.make_train_step(FAMILY, optimizer, compute_dtype=jnp.bfloat16),
                                 fresh_state(optimizer), batches)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(half.params))
  assert np.isfinite(half_metrics[0]["loss"])
  np.testing.assert_allclose(half_metrics[0]["loss"], full_metrics[0]["loss"], rtol=0.03)
  assert max_difference(half.params, full.params) < 0.05  # one step of lr 1e-2 moves each weight by ~1e-2


def test_bootstrapped_fraction_follows_the_step_and_reports_the_learning_rate():
  spec = optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="cosine", warmup_steps=2, total_steps=6)
  optimizer = optimizer_lib.make_optimizer(spec)
  train_step = step_lib.make_train_step(
      FAMILY, optimizer, loss=step_lib.LossSpec(bootstrapped=True, start_step=1, end_step=3, final_fraction=0.2),
      learning_rate=optimizer_lib.learning_rate_schedule(spec))
  _, history = run_steps(train_step, fresh_state(optimizer), [dataset()[i] for i in range(5)])
  np.testing.assert_allclose([m["bootstrap_fraction"] for m in history], [1.0, 1.0, 0.6, 0.2, 0.2], rtol=1e-6)
  np.testing.assert_allclose([m["learning_rate"] for m in history[:3]], [0.0, 5e-3, 1e-2], rtol=1e-6)


def test_schedules():
  cosine = optimizer_lib.learning_rate_schedule(optimizer_lib.OptimizerSpec(
      learning_rate=1.0, warmup_steps=10, total_steps=110, final_fraction=0.1))
  np.testing.assert_allclose([cosine(0), cosine(5), cosine(10), cosine(60), cosine(110)],
                             [0.0, 0.5, 1.0, 0.55, 0.1], rtol=1e-5, atol=1e-7)
  steps = optimizer_lib.learning_rate_schedule(optimizer_lib.OptimizerSpec(
      learning_rate=1.0, schedule="steps", decay_boundaries=(100, 200), decay_factor=0.1))
  np.testing.assert_allclose([steps(99), steps(100), steps(250)], [1.0, 0.1, 0.01], rtol=1e-6)
  with pytest.raises(ValueError, match="schedule"):
    optimizer_lib.OptimizerSpec(schedule="linear")


def test_unroll_sees_only_the_first_frames_labels():
  variables = FAMILY.init(jax.random.PRNGKey(0))
  batch = dataset()[0]
  frames = jnp.asarray(batch["frames"]).astype(jnp.float32) / 255.0
  logits = step_lib.unroll_clip(FAMILY, variables, frames, batch["labels"], batch["object_valid"]).logits
  assert logits.shape == (2, 8, 3, 32, 32)
  scrambled = batch["labels"].copy()
  scrambled[:, 1:] = np.flip(scrambled[:, 1:], axis=-1)
  again = step_lib.unroll_clip(FAMILY, variables, frames, scrambled, batch["object_valid"]).logits
  np.testing.assert_array_equal(logits, again)
  first_changed = batch["labels"].copy()
  first_changed[:, 0] = 0
  first_changed[:, 0, :8, :8] = 1
  changed = step_lib.unroll_clip(FAMILY, variables, frames, first_changed, batch["object_valid"]).logits
  assert not np.allclose(changed, logits)


def late_entry_clip(b=2, t=4, hw=48):
  """Clips where object 1 is there from frame 0 and object 2 enters at frame 2."""
  frames = np.random.default_rng(0).integers(0, 256, (b, t, hw, hw, 3), np.uint8)
  labels = np.zeros((b, t, hw, hw), np.uint8)
  labels[:, :, 4:20, 4:20] = 1
  labels[:, 2:, 28:44, 24:40] = 2
  return {"frames": frames, "labels": labels, "object_valid": np.ones((b, 2), bool),
          "frame_indices": np.tile(np.arange(t, dtype=np.int32), (b, 1)), "first_frame": np.tile([0, 2], (b, 1))}


def test_an_object_entering_late_is_given_to_the_model_at_its_first_frame():
  """With `first_frame` the unroll is the protocol loop inference runs: object 2 is given to the model at frame 2
  through `step`'s new masks, its labels are read there only, and before it the model has no object 2."""
  family = registry.build("stcn-tiny")
  variables = family.init(jax.random.PRNGKey(0), (48, 48))
  clip = late_entry_clip()
  frames = jnp.asarray(clip["frames"], jnp.float32) / 255.0
  labels, valid, first = clip["labels"], clip["object_valid"], clip["first_frame"]
  unroll = jax.jit(lambda labels, first: step_lib.unroll_clip(family, variables, frames, labels, valid,
                                                              first_frame=first, remat=False).logits)
  logits = np.asarray(unroll(labels, first))

  def given(i):  # masks [b o h w] and validity [b o] of the objects first annotated at frame i, by hand
    new = valid & (first == i)
    masks = np.stack([labels[:, i] == k for k in (1, 2)], axis=1) & new[:, :, None, None]
    return jnp.asarray(masks, jnp.float32), jnp.asarray(new)

  state = jax.jit(functools.partial(family.init_memory, variables))(frames[:, 0], *given(0))
  step = jax.jit(functools.partial(family.step, variables))
  expected = []
  for i in range(1, 4):
    state, out = step(state, frames[:, i], *given(i))
    expected.append(out.logits)
  np.testing.assert_allclose(logits, np.stack(expected), atol=1e-4)
  probs = jax.nn.softmax(logits, axis=2)
  assert float(probs[0, :, 2].max()) < 1e-3  # frame 1: no object 2 yet
  np.testing.assert_allclose(probs[1, :, 2], labels[:, 2] == 2, atol=1e-3)  # frame 2: given
  later = labels.copy()
  later[:, 3] = np.where(later[:, 3] == 2, 0, later[:, 3])  # object 2's labels after its first frame
  np.testing.assert_array_equal(unroll(later, first), logits)
  absent = labels.copy()
  absent[:, 2:] = np.where(absent[:, 2:] == 2, 0, absent[:, 2:])
  assert not np.allclose(unroll(absent, first), logits)


def test_first_frame_reaches_the_train_step_through_the_device_batch():
  clip = late_entry_clip(hw=32)
  batch = sharding.device_batch(clip, sharding.make_mesh(1))
  assert sorted(batch) == ["first_frame", "frames", "labels", "object_valid"]
  optimizer = optax.sgd(1e-2)
  train_step = jax.jit(step_lib.make_train_step(FAMILY, optimizer))
  state = fresh_state(optimizer)
  _, given_late = train_step(state, batch)
  _, all_at_zero = train_step(state, {**batch, "first_frame": jnp.zeros_like(batch["first_frame"])})
  del batch["first_frame"]
  _, without = train_step(state, batch)
  assert float(given_late["loss"]) != float(without["loss"])
  assert float(all_at_zero["loss"]) == float(without["loss"])


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  optimizer = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant"))
  healthy = step_lib.make_train_step(FAMILY, optimizer)

  def poisoned(state, batch):  # from the 5th step on, the loss and the parameters are NaN
    state, metrics = healthy(state, batch)
    bad = state.step >= 5
    metrics["loss"] = jnp.where(bad, jnp.nan, metrics["loss"])
    return state.replace(params=jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), state.params)), metrics

  options = loop.LoopOptions(total_steps=10, log_every=3, checkpoint_every=2, init_hw=(32, 32), data_threads=1)
  with pytest.raises(loop.NonFiniteLoss, match="non-finite loss at step 5; .* last good checkpoint is step 4"):
    loop.train(FAMILY, optimizer, poisoned, dataset=dataset(), workdir=str(tmp_path), mesh=sharding.make_mesh(1),
               options=options, clips_per_step=8)
  checkpointer = Checkpointer(str(tmp_path))
  assert checkpointer.latest_step() == 4
  like = loop.initial_state(FAMILY, optimizer, sharding.make_mesh(1), seed=0, init_hw=(32, 32))
  restored = checkpointer.restore(like)
  checkpointer.close()
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.params))
  assert max_difference(restored.params, like.params) > 0  # it did train before the failure


def test_loss_is_mean_over_frames_and_videos():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 4, 5)), jnp.float32)  # [t b o+1 h w]
  labels = jnp.asarray(np.random.default_rng(1).integers(0, 3, (2, 3, 4, 5)), jnp.uint8)
  valid = jnp.ones((3, 2), bool)
  per_frame = [float(optax.softmax_cross_entropy_with_integer_labels(
      jnp.moveaxis(logits[t], 1, -1), labels[t].astype(jnp.int32)).mean()) for t in range(2)]
  plain_spec = losses.LossSpec()
  value, metrics = losses.segmentation_loss(logits, labels, valid, jnp.int32(0), plain_spec)
  np.testing.assert_allclose([value, metrics["cross_entropy"]], [np.mean(per_frame)] * 2, rtol=1e-6)
  hard_spec = losses.LossSpec(bootstrapped=True, start_step=0, end_step=10, final_fraction=0.3)
  value, metrics = losses.segmentation_loss(logits, labels, valid, jnp.int32(10), hard_spec)
  np.testing.assert_allclose(metrics["bootstrap_fraction"], 0.3, rtol=1e-6)
  assert value > metrics["cross_entropy"]


def test_aux_outputs_rng_and_a_custom_loss_term_flow_through_training():
  """The toy family's aux reaches its loss, its loss metrics reach the step's metrics, and the step's rng
  reaches the family: a different draw every step (and none in inference)."""
  family = ToyFamily(noise=0.5, term_weight=0.25)
  optimizer = optax.sgd(1e-2)
  train_step = jax.jit(step_lib.make_train_step(family, optimizer))
  state = create_train_state(family.init(jax.random.PRNGKey(0)), optimizer, jax.random.PRNGKey(1))
  batches = [dataset(batch_size=2)[i] for i in range(2)]
  draws = []
  for batch in batches:
    state, metrics = train_step(state, sharding.device_batch(batch, sharding.make_mesh(1)))
    assert float(metrics["toy_term"]) > 0
    np.testing.assert_allclose(float(metrics["loss"]),
                               float(metrics["cross_entropy"]) + float(metrics["toy_term"]), rtol=1e-5)
    draws.append(float(metrics["noise_draw"]))
  assert draws[0] > 0 and draws[0] != draws[1]
  without_term = jax.jit(step_lib.make_train_step(ToyFamily(noise=0.5), optimizer))
  _, metrics = without_term(state, sharding.device_batch(batches[0], sharding.make_mesh(1)))
  assert float(metrics["toy_term"]) == 0.0


def test_a_new_stage_starts_from_a_previous_runs_parameters_with_a_fresh_optimizer(tmp_path):
  first_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-2, schedule="constant"))
  options = loop.LoopOptions(total_steps=2, log_every=1, checkpoint_every=2, init_hw=(32, 32), data_threads=1)
  mesh = sharding.make_mesh(1)
  first = loop.train(FAMILY, first_opt, step_lib.make_train_step(FAMILY, first_opt), dataset=dataset(),
                     workdir=str(tmp_path / "static"), mesh=mesh, options=options, clips_per_step=8)
  second_opt = optimizer_lib.make_optimizer(optimizer_lib.OptimizerSpec(learning_rate=1e-3, accumulate_steps=2))
  start = loop.train(FAMILY, second_opt, step_lib.make_train_step(FAMILY, second_opt), dataset=dataset(),
                     workdir=str(tmp_path / "video"), mesh=mesh, options=dataclasses.replace(options, total_steps=0),
                     clips_per_step=8, init_from=str(tmp_path / "static"))
  assert max_difference(start.params, first.params) == 0.0
  assert int(start.step) == 0 and int(start.opt_state.mini_step) == 0


def test_aux_outputs_reach_the_inference_engine_without_rng():
  """The engine collects a family's aux per video (what `segment --stats` prints); inference draws nothing."""
  family = ToyFamily(noise=0.5)
  segmenter = Segmenter(family, family.init(jax.random.PRNGKey(0)), size=-1, chunk=2)
  video = VIDEOS[0]
  frames = [np.asarray(video.frame(t)) for t in range(5)]
  annotation = np.asarray(video.mask(0))
  list(segmenter.segment_video(frames, {0: annotation}))
  stream = segmenter.stream(np.unique(annotation)[1:])
  for t, frame in enumerate(frames):
    stream(frame, annotation if t == 0 else None)
  stats = stream.aux_stats()
  assert set(stats) == {"prototype_norm", "noise_draw"}
  assert stats["noise_draw"] == {"mean": 0.0, "min": 0.0, "max": 0.0}
  assert stats["prototype_norm"]["min"] > 0
