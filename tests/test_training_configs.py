"""Every experiment config builds: model, optimizer, train step, data (one real batch) and validation videos."""

import glob
import os
import pathlib

import jax
import pytest

from jaxvos.cli import train as train_cli
from jaxvos.training import data as data_lib
from jaxvos.training.state import create_train_state
from jaxvos.types import check_clip_batch

REPO = pathlib.Path(__file__).resolve().parents[1]
# experiments/<family>/<stage>.py; experiments/device/ (the GPU scripts) and experiments/recipe/ (the recipe
# table's scripts) hold no configs.
SCRIPT_DIRS = tuple(str(REPO / "experiments" / d) + os.sep for d in ("device", "recipe"))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(str(REPO / "experiments" / "*" / "*.py"))
                 if not p.startswith(SCRIPT_DIRS))
VARIANTS = [c + suffix for c in CONFIGS for suffix in ([""] if c.endswith("smoke.py") else ["", ":full"])]


def test_there_are_configs_for_both_families_and_every_stage():
  assert {f"experiments/{family}/{stage}.py" for family in ("stcn", "stm") for stage in ("smoke", "static", "video")
          } <= set(CONFIGS)


@pytest.mark.parametrize("name", VARIANTS)
def test_config_builds(name, shared_data):
  del shared_data  # the DAVIS and static-image configs read ../shared/data
  path = str(REPO / name.split(":")[0]) + (":" + name.split(":")[1] if ":" in name else "")
  config = train_cli.load_config(path)
  text = open(REPO / name.split(":")[0], encoding="utf-8").read()
  assert "python -m jaxvos train --config experiments/" in text and ("not yet run" in text or "Result" in text)
  family, eval_family = train_cli.build_families(config)
  assert getattr(family.config.memory, "every", 1) == 1  # training writes every frame of a clip into memory
  assert eval_family.name == family.name == config.model
  spec = train_cli.build_optimizer_spec(config)
  assert (spec.total_steps, spec.learning_rate) == (config.train.steps, config.optimizer.learning_rate)
  optimizer, _ = train_cli.build_train_step(config, family)
  variables = jax.eval_shape(lambda key: family.init(key, tuple(config.data.crop_hw)), jax.random.PRNGKey(0))
  jax.eval_shape(lambda v: create_train_state(v, optimizer, jax.random.PRNGKey(0)), variables)
  items, static = train_cli.build_items(config)
  assert len(items) >= 8
  spec = train_cli.build_clip_spec(config)
  small = spec.__class__(**{**spec.__dict__, "crop_hw": (64, 64)})  # one real batch, at a small size
  batch = data_lib.clip_dataset(items, small, static=static, global_batch_size=2, seed=0)[0]
  check_clip_batch(batch, num_frames=spec.num_frames, crop_hw=(64, 64), max_objects=spec.max_objects)
  assert config.val.every > 0
  if config.val.source == "davis":  # the held-out sequences are not trained on
    assert set(config.val.sequences) <= set(config.data.exclude)
    assert not {getattr(item, "name", "").split("/")[0] for item in items} & set(config.val.sequences)
  assert config.train.steps >= config.train.checkpoint_every


def test_static_stage_mixes_image_folders_and_single_video_frames():
  config = train_cli.load_config(str(REPO / "experiments" / "stcn" / "static.py"))
  items, static = train_cli.build_items(config)
  frames = [item for item in items if isinstance(item, data_lib.VideoFrame)]
  assert static and 0 < len(frames) < len(items)
  frame, mask = frames[0].load()
  assert frame.shape[:2] == mask.shape and mask.max() >= 1


def flat(config) -> dict:
  """`{"data.crop_hw": (96, 96), ...}` of a config."""
  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict):
        yield from walk(value, f"{prefix}{key}.")
      else:
        yield f"{prefix}{key}", value
  return dict(walk(config.to_dict(), ""))


@pytest.mark.parametrize("stage, variant, also", [
    ("smoke", "", set()), ("static", "", set()), ("static", ":full", set()), ("video", "", set()),
    ("video", ":full", {"data.gaps"}),
])
def test_the_families_configs_differ_only_where_the_families_do(stage, variant, also):
  stcn = flat(train_cli.load_config(f"{REPO}/experiments/stcn/{stage}.py{variant}"))
  stm = flat(train_cli.load_config(f"{REPO}/experiments/stm/{stage}.py{variant}"))
  assert set(stcn) - set(stm) == {"train_model.top_k", "eval_model.top_k"} and set(stm) <= set(stcn)
  differ = {key for key in stm if stm[key] != stcn[key]}
  assert differ == {"model", "loss.bootstrapped", "loss.start_step", "loss.end_step", "loss.final_fraction"} | also
  assert stcn["model"] == ("stcn-tiny" if variant != ":full" else "stcn") and stm["loss.bootstrapped"] is False


def test_the_shared_recipes_values():
  video = train_cli.load_config(f"{REPO}/experiments/stcn/video.py")
  assert (video.train.steps, video.data.crop_hw, video.data.gap_boundaries) == (4000, (128, 128),
                                                                                 (400, 1200, 2000, 3600))
  assert (video.loss.start_step, video.loss.end_step, video.val.size, video.train.remat) == (800, 2400, 96, False)
  full = train_cli.load_config(f"{REPO}/experiments/stcn/video.py:full")
  assert (full.train.steps, full.optimizer.decay_boundaries, full.data.batch_size) == (150_000, (125_000,), 16)
  assert (full.loss.start_step, full.loss.end_step, full.train.remat, full.val.every) == (20_000, 70_000, True, 5000)
  static = train_cli.load_config(f"{REPO}/experiments/stm/static.py:full")
  assert (static.train.steps, static.optimizer.decay_boundaries, static.data.source) == (300_000, (150_000,), "static")
  assert video.data.davis_root == static.data.davis_root == str(REPO.parent / "shared" / "data" / "davis2016-240p")


def test_configs_load_their_shared_base_beside_them_once():
  common = train_cli.config_module(f"{REPO}/experiments/stcn/video.py", "../common.py")
  assert common.__file__ == str(REPO / "experiments" / "common.py")
  assert train_cli.config_module(f"{REPO}/experiments/stm/smoke.py", "../common.py") is common
  with pytest.raises(FileNotFoundError, match="experiments/nothing.py"):
    train_cli.config_module(f"{REPO}/experiments/stm/smoke.py", "../nothing.py")


def test_one_ablation_flag_changes_the_trained_and_the_validated_model():
  config = train_cli.load_config(f"{REPO}/experiments/gam/video.py")
  config.model_overrides.use_cam = False
  config.model_overrides.memory.normalization = "raw"
  config.eval_model = {"memory": {"every": 5}}
  family, eval_family = train_cli.build_families(config)
  for f in (family, eval_family):
    assert f.config.use_cam is False and f.config.use_mem is True and f.config.memory.normalization == "raw"
  assert (family.config.memory.every, eval_family.config.memory.every) == (1, 5)  # nested dicts merged


def test_swiftnet_size_options_reach_both_models_and_no_later_config():
  config = train_cli.load_config(f"{REPO}/experiments/swiftnet/video.py")
  config.model_overrides.lae_norm = 8.0
  config.model_overrides.memory.key_norm = 13.3
  for family in train_cli.build_families(config):
    assert (family.config.lae_norm, family.config.memory.key_norm, family.config.memory.top_k) == (8.0, 13.3, None)
  for stage in ("video", "static"):  # placeholders are references: a shared one would carry the override along
    family, _ = train_cli.build_families(train_cli.load_config(f"{REPO}/experiments/swiftnet/{stage}.py"))
    assert (family.config.lae_norm, family.config.memory.key_norm) == (None, None)
