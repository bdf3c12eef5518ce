"""Training with the real `stcn-tiny`: sharded == single device, learning, kill-and-resume, the CLI, every config.

Every test here runs the smoke config with `TEST_OVERRIDES` (8 clips of 3 frames at 32x32), so they all compile
the same programs: the persistent compilation cache (a per-session folder) makes each compile happen once.
"""

import glob
import json
import os
import pathlib
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

from data_pipelines.errors import DataWarning

from jaxvos.cli import main as cli_main
from jaxvos.cli import train as train_cli
from jaxvos.training import checkpoint as checkpoint_lib
from jaxvos.training import data as data_lib
from jaxvos.training import loop, sharding

# The tests shorten runs with --config.train.steps, which warns that derived schedules do not follow (checked in
# test_overrides_are_parsed_by_the_type_of_their_field).
pytestmark = pytest.mark.filterwarnings("ignore:.*--config.train.steps=:data_pipelines.errors.DataWarning")

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE_CONFIG = str(REPO / "experiments" / "stcn" / "smoke.py")
TEST_OVERRIDES = [
    "--config.data.batch_size=8", "--config.data.crop_hw=32,32", "--config.data.synthetic_videos=8",
    "--config.data.synthetic_hw=48,64", "--config.data.synthetic_frames=8", "--config.data.threads=1",
    "--config.data.prefetch=2", "--config.optimizer.learning_rate=1e-4", "--config.optimizer.schedule=constant",
    "--config.optimizer.warmup_steps=0", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
    "--config.val.every=0",
]


class Run:
  """The smoke config with the test overrides, built the way the train command builds it."""

  def __init__(self, *extra: str):
    self.config = train_cli.load_config(SMOKE_CONFIG, TEST_OVERRIDES + list(extra))
    self.family, _ = train_cli.build_families(self.config)
    self.optimizer, self.train_step = train_cli.build_train_step(self.config, self.family)
    self.items, _ = train_cli.build_items(self.config)
    self.options = train_cli.build_loop_options(self.config)

  def dataset(self, shard_index=0, shard_count=1):
    return data_lib.clip_dataset(self.items, train_cli.build_clip_spec(self.config), static=False,
                                 global_batch_size=self.config.data.batch_size, seed=self.config.data.seed,
                                 shard_index=shard_index, shard_count=shard_count)

  def state(self, mesh):
    return loop.initial_state(self.family, self.optimizer, mesh, seed=0, init_hw=self.options.init_hw)

  def steps(self, mesh, batches, state=None):
    """(state, [metrics]) after training on `batches` (NumPy global batches)."""
    state = self.state(mesh) if state is None else state
    compiled = sharding.compile_train_step(self.train_step, mesh, state)
    history = []
    for batch in batches:
      state, metrics = compiled(state, sharding.device_batch(batch, mesh))
      history.append(sharding.host_copy(metrics))
    return state, history

  def train(self, workdir, total_steps, mesh=None):
    options = loop.LoopOptions(**{**self.options.__dict__, "total_steps": total_steps})
    return loop.train(self.family, self.optimizer, self.train_step, dataset=self.dataset(), workdir=str(workdir),
                      mesh=mesh or sharding.make_mesh(1), options=options, clips_per_step=8)


@pytest.fixture(scope="module")
def run():
  return Run()


def assert_trees_close(a, b, atol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0, err_msg=jax.tree_util.keystr(path))


def assert_trees_equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_sharded_step_matches_single_device_step(run):
  assert len(jax.devices()) == 8
  batches = [run.dataset()[i] for i in range(2)]
  single, single_metrics = run.steps(sharding.make_mesh(1), batches)
  sharded, sharded_metrics = run.steps(sharding.make_mesh(8), batches)
  assert sharded.params["decoder"]["pred"]["kernel"].sharding.mesh.size == 8
  assert int(sharding.host_copy(sharded.step)) == 2
  changed = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(), sharded.params,
                         run.state(sharding.make_mesh(1)).params)
  assert max(jax.tree.leaves(changed)) > 1e-5  # the step did move the parameters
  assert_trees_close(sharding.host_copy(sharded.params), sharding.host_copy(single.params), atol=1e-5)
  for ours, theirs in zip(sharded_metrics, single_metrics):
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)


def test_a_few_steps_on_synthetic_video_reduce_the_loss(run):
  batch = run.dataset()[0]
  _, history = run.steps(sharding.make_mesh(1), [batch] * 6)
  losses = [float(m["loss"]) for m in history]
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0], losses


def metric_lines(workdir, key="loss"):
  """[(step, value)] of the training reports in a run's metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [(r["step"], r[key]) for r in map(json.loads, f) if key in r]


def data_position(workdir, step):
  with open(os.path.join(workdir, "checkpoints", str(step), "data", "process_0-of-1.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def straight(run, tmp_path_factory):
  """An uninterrupted run of 8 steps: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp("straight")
  return workdir, run.train(workdir, 8)


def test_kill_during_a_save_then_resume_is_bit_identical(run, straight, tmp_path):
  straight_dir, straight_state = straight
  workdir = tmp_path / "interrupted"
  run.train(workdir, 4)
  # The process died while saving step 4: orbax's unfinished folder, nothing under the final name.
  checkpoints = workdir / "checkpoints"
  os.rename(checkpoints / "4", checkpoints / "4.orbax-checkpoint-tmp-1790000000123456")
  (checkpoints / "4.orbax-checkpoint-tmp-1790000000123456" / "commit_success.txt").unlink(missing_ok=True)
  resumed = run.train(workdir, 8)
  assert int(sharding.host_copy(resumed.step)) == 8
  assert_trees_equal(sharding.host_copy(resumed.params), sharding.host_copy(straight_state.params))
  assert_trees_equal(sharding.host_copy(resumed.opt_state), sharding.host_copy(straight_state.opt_state))
  # The same data order: every step's loss, bit for bit, and the iterator position at the end.
  assert metric_lines(workdir) == metric_lines(straight_dir)
  assert [s for s, _ in metric_lines(workdir)] == list(range(1, 9))
  assert data_position(workdir, 8) == data_position(straight_dir, 8)
  assert not glob.glob(str(checkpoints / "*tmp*"))


def test_a_killed_train_command_resumes_where_its_last_checkpoint_was(run, straight, tmp_path):
  """SIGKILL the train command as soon as it has saved a checkpoint (possibly mid-way through the next save)."""
  straight_dir, straight_state = straight
  workdir = tmp_path / "killed"
  command = [sys.executable, "-m", "jaxvos", "train", "--config", SMOKE_CONFIG, "--workdir", str(workdir),
             "--devices", "1", *TEST_OVERRIDES, "--config.train.steps=1000"]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    deadline = time.monotonic() + 240
    while not (workdir / "checkpoints" / "2").is_dir():
      assert process.poll() is None, process.stderr.read().decode()[-2000:]
      assert time.monotonic() < deadline, "no checkpoint within 240 s"
      time.sleep(0.02)
  finally:
    process.kill()
    process.wait()
  # A leftover temporary folder of the killed save (when there is one) is the resuming writer's to clean up;
  # a reader leaves it alone (two cleanups of one folder once raced into a FileNotFoundError here).
  reader = checkpoint_lib.Checkpointer(workdir, read_only=True)
  latest = reader.latest_step()
  reader.close()
  assert latest is not None and latest < 8
  resumed = run.train(workdir, 8)
  assert_trees_equal(sharding.host_copy(resumed.params), sharding.host_copy(straight_state.params))
  assert metric_lines(workdir) == metric_lines(straight_dir)


def test_train_command_end_to_end(tmp_path, capsys):
  workdir = tmp_path / "cli"
  status = cli_main.main([
      "train", "--config", SMOKE_CONFIG, "--workdir", str(workdir), "--devices", "1", *TEST_OVERRIDES,
      "--config.train.steps=2", "--config.val.every=2", "--config.val.synthetic_videos=2",
      "--config.val.synthetic_hw=48,64", "--config.val.synthetic_frames=6", "--config.val.size=40"])
  out = capsys.readouterr().out
  assert status == 0, out
  assert "step 2/2" in out and "steps/s" in out and "ETA" in out and "validation at step 2: j_and_f" in out
  assert "copy-first-mask baseline" in out and "exported" in out
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r] == [1, 2]
  val = [r for r in records if "val/j_and_f" in r]
  assert len(val) == 1 and 0.0 <= val[0]["val/j_and_f"] <= 1.0
  assert (workdir / "checkpoints" / "2" / "state").is_dir() and (workdir / "best" / "2" / "state").is_dir()
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  assert Image.open(workdir / "curves.png").size == (760, 660)
  baseline = json.loads((workdir / "baseline.json").read_text())["copy_first_mask"]
  assert 0.0 < baseline["j_and_f"] <= 1.0
  assert json.loads((workdir / "config.json").read_text())["model"] == "stcn-tiny"
  # The exports load as inference models with the test-time configuration (top-k 20) and validation's size.
  from jaxvos.convert.io import load_model, working_size  # pylint: disable=g-import-not-at-top
  for name in ("final", "best"):
    family, variables = load_model(workdir / "export" / name)
    assert family.name == "stcn-tiny" and family.config.top_k == 20 and working_size(workdir / "export" / name) == 40
  state = checkpoint_lib.Checkpointer(workdir, read_only=True).restore(Run().state(sharding.make_mesh(1)))
  assert_trees_equal(variables, sharding.host_copy(state.variables()))


@pytest.mark.parametrize("arguments, message", [
    ([SMOKE_CONFIG, "--config.optimizer.learning_rate=fast"],
     "--config.optimizer.learning_rate=fast: could not convert string to float: 'fast'"),
    ([SMOKE_CONFIG, "--config.optimizer.no_such_field=1"],
     "--config.optimizer.no_such_field=1: no such field 'no_such_field' in config.optimizer (fields: "
     "accumulate_steps, clip_norm, decay_boundaries, decay_factor, final_fraction, learning_rate, schedule, "
     "trainable, warmup_steps, weight_decay)"),
    ([SMOKE_CONFIG, "--config.optimizer.trainable=/gaate/", "--config.data.batch_size=8"],
     "config.optimizer: trainable '/gaate/' matches no parameter path"),
    ([SMOKE_CONFIG, "--config.optimizer.trainable=conv/(", "--config.data.batch_size=8"],
     "config.optimizer: trainable 'conv/(' is not a regular expression: missing ), unterminated subpattern"),
    ([SMOKE_CONFIG, "--confg.train.steps=3"],
     "--confg.train.steps=3: unrecognized argument (config overrides look like --config.key=value)"),
    ([SMOKE_CONFIG, "--config.data.crop_hw=(32, 32", "--config.train.steps=2"],
     "--config.data.crop_hw=(32, 32: Error while parsing string: (32, 32 as tuple."),
    (["experiments/stcn/missing.py"], "experiments/stcn/missing.py: config file not found"),
    ([str(REPO / "experiments" / "stcn" / "video.py") + ":gpu"],
     str(REPO / "experiments" / "stcn" / "video.py") + ": variant must be cpu or full, got 'gpu'"),
])
def test_train_command_refuses_a_bad_config_in_one_line(arguments, message, tmp_path, capsys):
  status = cli_main.main(["train", "--workdir", str(tmp_path / "w"), "--config", *arguments])
  captured = capsys.readouterr()
  assert status == 2 and captured.out == ""
  assert captured.err.startswith(f"error: {message}") and captured.err.count("\n") == 1, captured.err
  assert not (tmp_path / "w").exists()


def test_train_command_refuses_a_bad_pseudo_video_field_in_one_line(tmp_path):
  arguments = ["train", "--workdir", str(tmp_path / "w"), "--config", str(REPO / "experiments" / "stcn" / "pseudo.py"),
               "--config.data.batch_size=8", "--config.data.pseudo_video.late_entry_probability=2"]
  with pytest.raises(SystemExit, match=r"^error: data.pseudo_video: PseudoVideoConfig's late_entry_probability "
                     r"must be in \[0, 1\], got 2.0$"):
    cli_main.main(arguments)
  assert not (tmp_path / "w").exists()


def test_overrides_are_parsed_by_the_type_of_their_field():
  with pytest.warns(DataWarning, match=r"smoke.py: --config.train.steps=6: what the config derives from its 1000 "):
    config = train_cli.load_config(SMOKE_CONFIG, [
        "--config.data.crop_hw=64,48", "--config.train.remat=true", "--config.optimizer.learning_rate=2e-4",
        "--config.val.sequences=blackswan,bmx-trees", "--config.train.init_from=key_encoder=a/r50,value_encoder=b",
        "--config.train_model.top_k=7", "--config.train.steps=5", "--config.train.steps=6"])
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    train_cli.load_config(SMOKE_CONFIG, ["--config.train.steps=1000"])  # the file's own count: no warning
  assert not [w for w in caught if issubclass(w.category, DataWarning)]
  assert config.data.crop_hw == (64, 48) and config.train.remat is True and config.optimizer.learning_rate == 2e-4
  assert config.val.sequences == ("blackswan", "bmx-trees")
  assert config.train.init_from == "key_encoder=a/r50,value_encoder=b"
  assert config.train_model.top_k == 7 and config.train.steps == 6  # the last of repeated overrides wins
  assert train_cli.load_config(SMOKE_CONFIG).train_model.top_k is None


def test_training_can_start_from_imported_weights(run, tmp_path):
  from jaxvos.convert.io import save_model  # pylint: disable=g-import-not-at-top
  imported = run.family.init(jax.random.PRNGKey(5), (32, 32))
  save_model(tmp_path / "imported", run.family, imported, source="test")
  start = loop.train(run.family, run.optimizer, run.train_step, dataset=run.dataset(), workdir=str(tmp_path / "w"),
                     mesh=sharding.make_mesh(1), options=loop.LoopOptions(total_steps=0, init_hw=(32, 32)),
                     clips_per_step=8, init_from=str(tmp_path / "imported"))
  assert_trees_equal(sharding.host_copy(start.variables()), imported)


def test_train_command_starts_an_encoder_from_an_imported_resnet(tmp_path, capsys):
  from jaxvos.convert import families, io  # pylint: disable=g-import-not-at-top
  backbone = families.Backbone(families.BackboneConfig(depth=18, width=16))
  trunk = backbone.init(jax.random.PRNGKey(3), (32, 32))
  io.save_model(tmp_path / "r18", backbone, trunk, source="test")
  status = cli_main.main(["train", "--config", SMOKE_CONFIG, "--workdir", str(tmp_path / "w"), "--devices", "1",
                          *TEST_OVERRIDES, "--config.train.steps=0",
                          f"--config.train.init_from=value_encoder={tmp_path / 'r18'}"])
  out = capsys.readouterr().out
  assert status == 0, out
  assert f"starting from the parameters of value_encoder={tmp_path / 'r18'}\n" in out
  assert (f"{tmp_path / 'r18'}: ResNet into value_encoder: copied 75 variables, 31 kept at their initial values "
          "(params/value_encoder/conv1/bias, params/value_encoder/fuser/") in out
  assert "params/value_encoder/conv1/kernel: the first 3 of 5 input channels copied, the others initialised" in out
  _, exported = io.load_model(tmp_path / "w" / "export" / "final")
  encoder, params = exported["params"]["value_encoder"], trunk["params"]
  np.testing.assert_array_equal(encoder["layer2_0"]["conv1"]["kernel"], params["layer2_0"]["conv1"]["kernel"])
  np.testing.assert_array_equal(encoder["conv1"]["kernel"][:, :, :3], params["conv1"]["kernel"])
  assert not np.array_equal(exported["params"]["key_encoder"]["conv1"]["kernel"], params["conv1"]["kernel"])


def test_bench_train_prints_clips_per_second(capsys, monkeypatch):
  sources, build_dataset = [], train_cli.build_dataset

  def recorded(config, *args, **kwargs):  # bench train reads the clips `jaxvos train` reads (pseudo-videos too)
    sources.append(config.data.source)
    return build_dataset(config, *args, **kwargs)
  monkeypatch.setattr(train_cli, "build_dataset", recorded)
  overrides = [arg for o in TEST_OVERRIDES for arg in ("--override", o[len("--config."):])]
  status = cli_main.main(["bench", "train", "--config", SMOKE_CONFIG, "--devices", "1", "--steps", "2",
                          "--warmup", "0", *overrides])
  out = capsys.readouterr().out
  assert status == 0, out
  assert sources == ["synthetic"]
  assert "global batch 8 clips of 3x32x32, 1 cpu device(s)" in out
  for label in ("step only", "with data loading"):
    line = next(line for line in out.splitlines() if line.startswith(label))
    steps = float(line.split("steps/s")[0].split()[-1])
    clips = float(line.split("steps/s")[1].split("clips/s")[0])
    assert steps > 0 and clips == pytest.approx(8 * steps, abs=0.05), line  # 8 clips a step; 2-decimal rounding
