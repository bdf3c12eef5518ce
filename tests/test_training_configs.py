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
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(str(REPO / "experiments" / "*" / "*.py")))
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
  assert family.config.memory.every == 1 and eval_family.name == family.name == config.model
  optimizer, train_step = train_cli.build_train_step(config, family)
  assert callable(train_step)
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
