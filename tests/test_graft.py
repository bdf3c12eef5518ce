"""Weight grafting (`jaxvos.convert.graft`, `checkpoint.init_variables`): which values are copied, which stay.

Variables are random NumPy arrays of the real models' shapes (`stcn-tiny`, a ResNet-18/50 trunk at width 16), so
nothing is compiled: every test checks values, copied ones equal to the source's and the others untouched.
"""

import dataclasses
import json

import numpy as np
import optax
import pytest

from data_pipelines.errors import DataError
from jaxvos.convert import families, graft, io
from jaxvos.convert.rules import unflatten_variables
from jaxvos.models import registry
from jaxvos.training import checkpoint
from jaxvos.training.state import create_train_state


def random_variables(family, seed: int) -> dict:
  """Flat random variables of `family`'s shapes."""
  rng = np.random.default_rng(seed)
  return {path: rng.normal(size=shape).astype(np.float32)
          for path, shape in families.variable_shapes(family).items()}


def resnet(depth: int, width: int = 16):
  return families.Backbone(families.BackboneConfig(depth=depth, width=width))


@pytest.fixture(scope="module")
def stcn_tiny():
  family = registry.build("stcn-tiny")
  return family, random_variables(family, 0)


@pytest.fixture(scope="module")
def resnet18():
  family = resnet(18)
  return family, random_variables(family, 1)


def changed(before: dict, after: dict) -> set:
  return {path for path in before if not np.array_equal(before[path], after[path])}


def test_a_resnet18_fills_every_encoder_it_fits_and_nothing_else(stcn_tiny, resnet18):
  family, target = stcn_tiny
  _, source = resnet18
  out, notes = graft.graft(source, target, graft.rules_for("resnet18", family.name), source_name="r18",
                           model=family.name)
  kernel = ("params", "layer1_0", "conv1", "kernel")
  np.testing.assert_array_equal(out[("params", "key_encoder", "res2_0", "conv1", "kernel")], source[kernel])
  np.testing.assert_array_equal(out[("params", "value_encoder", "layer1_0", "conv1", "kernel")], source[kernel])
  np.testing.assert_array_equal(out[("batch_stats", "key_encoder", "layer3_1", "bn2", "var")],
                                source[("batch_stats", "layer3_1", "bn2", "var")])
  # conv1 of the value encoder: RGB from the trunk, the two mask channels keep their initial values.
  conv1 = ("params", "value_encoder", "conv1", "kernel")
  np.testing.assert_array_equal(out[conv1][:, :, :3], source[("params", "conv1", "kernel")])
  np.testing.assert_array_equal(out[conv1][:, :, 3:], target[conv1][:, :, 3:])
  # Everything the trunk has was written twice (both encoders), nothing else changed.
  assert len(changed(target, out)) == 2 * len(source)
  assert all(path[1] in ("key_encoder", "value_encoder") for path in changed(target, out))
  for path in (("params", "value_encoder", "conv1", "bias"), ("params", "value_encoder", "fuser", "block1",
                                                               "conv1", "kernel"),
               ("params", "decoder", "pred", "kernel"), ("params", "key_proj", "key_proj", "kernel")):
    np.testing.assert_array_equal(out[path], target[path])
  assert notes[0].startswith(f"r18: ResNet into key_encoder: copied {len(source)} variables")
  assert "value_encoder/conv1/bias" in notes[1] and "kept at their initial values" in notes[1]
  assert notes[2] == "params/value_encoder/conv1/kernel: the first 3 of 5 input channels copied, the others initialised"


@pytest.mark.parametrize("name", registry.tiny_names())
def test_every_registered_family_takes_an_imagenet_resnet_in_an_encoder(name, resnet18):
  family = registry.build(name)
  target = random_variables(family, 6)
  _, source = resnet18
  out, notes = graft.graft(source, target, graft.rules_for("resnet18", name), source_name="r18", model=name)
  written = changed(target, out)
  encoders = {path[1] for path in written}
  assert len(written) == len(encoders) * len(source) and len(notes) >= len(encoders)
  for encoder in encoders:
    np.testing.assert_array_equal(out[("params", encoder, "conv1", "kernel")][:, :, :3],
                                  source[("params", "conv1", "kernel")])


def test_part_picks_one_encoder_and_mask_channels_can_start_at_zero(stcn_tiny, resnet18):
  family, target = stcn_tiny
  _, source = resnet18
  (rule,) = graft.rules_for("resnet18", family.name, "value_encoder")
  out, _ = graft.graft(source, target, [dataclasses.replace(rule, extra_in_channels="zeros")], source_name="r18",
                       model=family.name)
  assert {path[1] for path in changed(target, out)} == {"value_encoder"}
  conv1 = out[("params", "value_encoder", "conv1", "kernel")]
  np.testing.assert_array_equal(conv1[:, :, :3], source[("params", "conv1", "kernel")])
  assert not conv1[:, :, 3:].any()
  with pytest.raises(DataError, match=r"^r18: no decoder of stcn-tiny takes a ResNet trunk \(its encoders .*: "
                     r"key_encoder, value_encoder\)$"):
    graft.rules_for("resnet18", family.name, "decoder", source_name="r18")


def test_a_trunk_that_fits_no_encoder_is_one_line_naming_the_first_keys(stcn_tiny):
  family, target = stcn_tiny
  source = random_variables(resnet(50), 2)
  with pytest.raises(DataError) as error:
    graft.graft(source, target, graft.rules_for("resnet50", family.name), source_name="r50.ckpt",
                model=family.name)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith("r50.ckpt: does not fit the stcn-tiny model (ResNet into ")
  assert ("140 source variables with no place in the model (params/layer1_0/bn3/bias -> "
          "params/key_encoder/res2_0/") in message
  assert "with the wrong shape" in message and "and " in message and " more" in message


def sparse_of(dense: dict, seed: int = 3) -> dict:
  """A sparse model's variables: the dense ones plus gate parameters beside some convolutions."""
  rng = np.random.default_rng(seed)
  gates = {("params", "key_encoder", "layer2_0", "gate", "kernel"): (3, 3, 16, 3),
           ("params", "value_encoder", "layer1_1", "gate_conv", "bias"): (3,),
           ("params", "decoder", "up_16_8", "gate", "kernel"): (1, 1, 16, 3)}
  return {**dense, **{path: rng.normal(size=shape).astype(np.float32) for path, shape in gates.items()}}


def test_a_dense_model_into_its_sparse_family_copies_all_and_leaves_the_gates(stcn_tiny):
  _, dense = stcn_tiny
  target = sparse_of({path: np.zeros_like(value) for path, value in dense.items()})
  out, notes = graft.graft(dense, target, graft.rules_for("stcn-tiny", "spvos-tiny"), source_name="run",
                           model="spvos-tiny")
  for path, value in dense.items():
    np.testing.assert_array_equal(out[path], value)
  gates = set(target) - set(dense)
  assert len(gates) == 3 and all(np.array_equal(out[path], target[path]) for path in gates)
  assert notes == [f"run: dense STCN into SpVOS: copied {len(dense)} variables, 3 kept at their initial values "
                   "(params/key_encoder/layer2_0/gate/kernel, params/value_encoder/layer1_1/gate_conv/bias, "
                   "params/decoder/up_16_8/gate/kernel)"]
  # A sparse variable that is not a gate must come from the dense model; every dense variable must land.
  extra = {**target, ("params", "decoder", "extra", "kernel"): np.zeros((1, 1, 2, 2), np.float32)}
  with pytest.raises(DataError, match=r"^run: does not fit the spvos-tiny model \(dense STCN into SpVOS\): 1 model "
                     r"variables the source does not have \(params/decoder/extra/kernel\)$"):
    graft.graft(dense, extra, graft.rules_for("stcn-tiny", "spvos-tiny"), source_name="run", model="spvos-tiny")
  missing = {path: value for path, value in target.items() if path[-2:] != ("pred", "bias")}
  with pytest.raises(DataError, match=r"1 source variables with no place in the model \(params/decoder/pred/bias\)"):
    graft.graft(dense, missing, graft.rules_for("stcn-tiny", "spvos-tiny"), source_name="run", model="spvos-tiny")


def test_renames_map_a_tree_into_another_layout():
  rules = graft.GraftRules(name="nest", renames=((r"^key_encoder/", "encoders/key/"), (r"/conv1/", "/conv1/dense/")))
  source = {("params", "key_encoder", "conv1", "kernel"): np.ones((1, 1, 1, 2), np.float32)}
  target = {("params", "encoders", "key", "conv1", "dense", "kernel"): np.zeros((1, 1, 1, 2), np.float32)}
  out, _ = graft.graft(source, target, [rules], source_name="s", model="m")
  assert out[("params", "encoders", "key", "conv1", "dense", "kernel")].tolist() == [[[[1.0, 1.0]]]]


def test_a_family_into_a_larger_config_of_itself_copies_what_has_the_same_shape(stcn_tiny):
  family, source = stcn_tiny
  larger = registry.build("stcn-tiny", decoder_dims=(48, 16, 16), value_dim=48)
  target = random_variables(larger, 4)
  out, notes = graft.graft(source, target, graft.rules_for(family.name, larger.name), source_name="small",
                           model="stcn-tiny")
  same = [path for path in target if path in source and source[path].shape == target[path].shape]
  different = [path for path in target if path not in same]
  assert all(np.array_equal(out[path], source[path]) for path in same)
  assert all(np.array_equal(out[path], target[path]) for path in different)
  assert ("params", "decoder", "compress", "conv1", "kernel") in different
  assert (len(same), len(different)) == (183, 24)  # the decoder's compress block and the value dimension
  assert notes == ["small: into another config of the same family: copied 183 variables, 24 kept at their initial "
                   "values (params/decoder/compress/conv1/bias, params/decoder/compress/conv1/kernel, "
                   "params/decoder/compress/conv2/bias, and 21 more)"]
  with pytest.raises(DataError, match="no rule grafts stm-tiny into stcn-tiny"):
    graft.rules_for("stm-tiny", "stcn-tiny")
  # PART= limits the copy; a part the model does not have copies nothing, which is an error.
  out, _ = graft.graft(source, target, graft.rules_for(family.name, larger.name, "key_encoder"), source_name="s",
                       model="stcn-tiny")
  assert {path[1] for path in changed(target, out)} == {"key_encoder"}
  with pytest.raises(DataError, match=r"^s: does not fit .*: no variable of the source fits the model$"):
    graft.graft(source, target, graft.rules_for(family.name, larger.name, "encoder"), source_name="s",
                model="stcn-tiny")


def test_init_from_names_sources_and_parts():
  assert graft.parse_sources("runs/a") == [("", "runs/a")]
  assert graft.parse_sources("key_encoder=ckpt/r50, value_encoder=ckpt/r18,") == [
      ("key_encoder", "ckpt/r50"), ("value_encoder", "ckpt/r18")]


def save_run(workdir, family, flat: dict) -> None:
  """A training run's workdir holding `flat` (params and batch statistics) as its latest checkpoint."""
  variables = unflatten_variables(flat)
  state = create_train_state(variables, optax.sgd(0.1), np.zeros(2, np.uint32))
  writer = checkpoint.Checkpointer(str(workdir), async_save=False)
  writer.save(state, _Position())
  writer.close()
  (workdir / "config.json").write_text(json.dumps({"model": family.name}))


class _Position:
  """A data iterator's position, as the checkpointer reads it."""

  def get_state(self):
    return {"next_index": 0}


def test_init_variables_reads_model_directories_and_run_workdirs(stcn_tiny, resnet18, tmp_path):
  family, initial = stcn_tiny
  backbone, trunk = resnet18
  io.save_model(tmp_path / "r18", backbone, unflatten_variables(trunk), source="test")
  variables, notes = checkpoint.init_variables(f"key_encoder={tmp_path / 'r18'}", family,
                                               unflatten_variables(initial))
  np.testing.assert_array_equal(variables["params"]["key_encoder"]["layer3_1"]["conv2"]["kernel"],
                                trunk[("params", "layer3_1", "conv2", "kernel")])
  np.testing.assert_array_equal(variables["params"]["value_encoder"]["layer3_1"]["conv2"]["kernel"],
                                initial[("params", "value_encoder", "layer3_1", "conv2", "kernel")])
  assert len(notes) == 1
  # A run of the small model starts the larger one (orbax checkpoint, model named by its config.json).
  save_run(tmp_path / "run", family, initial)
  larger = registry.build("stcn-tiny", decoder_dims=(48, 16, 16))
  fresh = random_variables(larger, 5)
  variables, _ = checkpoint.init_variables(str(tmp_path / "run"), larger, unflatten_variables(fresh))
  np.testing.assert_array_equal(variables["params"]["key_comp"]["kernel"], initial[("params", "key_comp", "kernel")])
  np.testing.assert_array_equal(variables["params"]["decoder"]["compress"]["conv1"]["kernel"],
                                fresh[("params", "decoder", "compress", "conv1", "kernel")])
  with pytest.raises(DataError, match=r"stcn\.pth: is neither a model directory \(model\.json\) nor a training "
                     r"run's workdir \(checkpoints/\) \(a PyTorch file\? import it with"):
    checkpoint.init_variables(str(tmp_path / "stcn.pth"), family, unflatten_variables(initial))
