"""Checkpoint conversion: the rule table, the fit check, checkpoint directories and the `convert` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines.errors import DataError
from jaxvos.cli import main as cli_main
from jaxvos.convert import families, io, rules

# A little of everything the rules cover: a Sequential stage and shortcut, a BatchNorm with its buffers, a
# linear layer inside a Sequential, and module names with digits that are not Sequential indices.
STATE_DICT_SHAPES = {
    "layer1.0.downsample.0.weight": (8, 4, 1, 1),
    "layer1.0.downsample.1.weight": (8,),
    "layer1.0.downsample.1.bias": (8,),
    "layer1.0.downsample.1.running_mean": (8,),
    "layer1.0.downsample.1.running_var": (8,),
    "layer1.0.downsample.1.num_batches_tracked": (),
    "fuser.attention.ChannelGate.mlp.1.weight": (2, 8),
    "fuser.attention.ChannelGate.mlp.1.bias": (2,),
    "decoder.up_16_8.skip_conv.weight": (6, 5, 3, 3),
    "decoder.up_16_8.skip_conv.bias": (6,),
}
EXPECTED_PATHS = {
    "layer1.0.downsample.0.weight": ("params", "layer1_0", "downsample_0", "kernel"),
    "layer1.0.downsample.1.weight": ("params", "layer1_0", "downsample_1", "scale"),
    "layer1.0.downsample.1.bias": ("params", "layer1_0", "downsample_1", "bias"),
    "layer1.0.downsample.1.running_mean": ("batch_stats", "layer1_0", "downsample_1", "mean"),
    "layer1.0.downsample.1.running_var": ("batch_stats", "layer1_0", "downsample_1", "var"),
    "fuser.attention.ChannelGate.mlp.1.weight": ("params", "fuser", "attention", "ChannelGate", "mlp_1", "kernel"),
    "fuser.attention.ChannelGate.mlp.1.bias": ("params", "fuser", "attention", "ChannelGate", "mlp_1", "bias"),
    "decoder.up_16_8.skip_conv.weight": ("params", "decoder", "up_16_8", "skip_conv", "kernel"),
    "decoder.up_16_8.skip_conv.bias": ("params", "decoder", "up_16_8", "skip_conv", "bias"),
}


def _state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  state_dict = {key: rng.normal(size=shape).astype(np.float32) for key, shape in STATE_DICT_SHAPES.items()}
  state_dict["layer1.0.downsample.1.num_batches_tracked"] = np.asarray(0, np.int64)
  return state_dict


def test_rule_table_names_and_layouts():
  state_dict = _state_dict()
  flat, notes = rules.torch_to_flax(state_dict, rules.STCN)
  assert notes == []
  assert set(flat) == set(EXPECTED_PATHS.values())  # num_batches_tracked dropped
  for key, path in EXPECTED_PATHS.items():
    assert flat[path].dtype == np.float32
  np.testing.assert_array_equal(flat[EXPECTED_PATHS["layer1.0.downsample.0.weight"]],
                                state_dict["layer1.0.downsample.0.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(flat[EXPECTED_PATHS["fuser.attention.ChannelGate.mlp.1.weight"]],
                                state_dict["fuser.attention.ChannelGate.mlp.1.weight"].T)
  kernel = flat[EXPECTED_PATHS["decoder.up_16_8.skip_conv.weight"]]
  assert kernel.shape == (3, 3, 5, 6)
  assert kernel[0, 2, 4, 1] == state_dict["decoder.up_16_8.skip_conv.weight"][1, 4, 0, 2]


def test_rule_table_round_trip_is_exact():
  state_dict = _state_dict()
  flat, _ = rules.torch_to_flax(state_dict, rules.STCN)
  back = rules.flax_to_torch(flat, rules.STCN)
  assert set(back) == set(state_dict)
  for key, value in state_dict.items():
    assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
    np.testing.assert_array_equal(back[key], value)
  # Nested variables and back.
  assert rules.flatten_variables(rules.unflatten_variables(flat)).keys() == flat.keys()


def test_sequential_names_are_per_family():
  # `up_16_8` stays one module: it is not a Sequential container of STCN; `layer3_5` is.
  flat = {("params", "decoder", "up_16_8", "pred", "kernel"): np.zeros((3, 3, 2, 1), np.float32),
          ("params", "layer3_5", "conv1", "kernel"): np.zeros((1, 1, 2, 2), np.float32)}
  assert set(rules.flax_to_torch(flat, rules.STCN)) == {"decoder.up_16_8.pred.weight", "layer3.5.conv1.weight"}


def test_renames_and_dropped_keys_both_ways():
  table = rules.FamilyRules(sequential=r"layer\d+|res2", renames=(("layer1", "res2"),), dropped=((r"fc\..*", "head"),))
  state_dict = {"layer1.0.conv1.weight": np.ones((2, 2, 3, 3), np.float32), "fc.weight": np.ones((3, 2))}
  flat, notes = rules.torch_to_flax(state_dict, table)
  assert list(flat) == [("params", "res2_0", "conv1", "kernel")]
  assert notes == ["dropped 1 keys (fc.weight): head"]
  assert list(rules.flax_to_torch(flat, table)) == ["layer1.0.conv1.weight"]


def test_unknown_layer_kind_is_an_error_naming_the_key():
  with pytest.raises(DataError, match=r"ckpt.pth: no conversion rule for norm.weight \(shape \[4\]"):
    rules.torch_to_flax({"norm.weight": np.ones(4, np.float32)}, rules.STCN, "ckpt.pth")


def test_fit_check_names_the_first_offending_keys_in_one_line():
  flat, _ = rules.torch_to_flax(_state_dict(), rules.STCN)
  expected = {path: value.shape for path, value in flat.items()}
  del expected[("params", "decoder", "up_16_8", "skip_conv", "bias")]
  expected[("params", "decoder", "up_16_8", "skip_conv", "kernel")] = (3, 3, 4, 6)
  for i in range(5):
    expected[("params", "extra", f"conv{i}", "kernel")] = (1, 1, 2, 2)
  shapes = {path: value.shape for path, value in flat.items()}
  with pytest.raises(DataError) as error:
    rules.check_variables(shapes, expected, rules.STCN, "stcn.pth", "stcn")
  message = str(error.value)
  assert "\n" not in message and message.startswith("stcn.pth: does not fit the stcn model: 5 missing (")
  assert "extra.conv0.weight (jaxvos params/extra/conv0/kernel), " in message and "and 2 more" in message
  assert "1 unexpected (decoder.up_16_8.skip_conv.bias (jaxvos params/decoder/up_16_8/skip_conv/bias))" in message
  assert ("1 with the wrong shape (decoder.up_16_8.skip_conv.weight (jaxvos params/decoder/up_16_8/skip_conv/"
          "kernel) is [6, 5, 3, 3], the model has [6, 4, 3, 3])") in message
  rules.check_variables(shapes, shapes, rules.STCN, "stcn.pth", "stcn")


def _backbone(width: int = 8):
  """A small ResNet-18 backbone and random variables of its shapes (no initialisation to compile)."""
  family = families.Backbone(families.BackboneConfig(depth=18, width=width))
  rng = np.random.default_rng(1)
  flat = {path: rng.normal(size=shape).astype(np.float32) for path, shape in families.variable_shapes(family).items()}
  return family, rules.unflatten_variables(flat)


def test_model_directory_round_trip(tmp_path):
  family, variables = _backbone()
  io.save_model(tmp_path / "ckpt", family, variables, source="test", notes=["a note"])
  meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
  assert meta["family"] == "resnet18" and meta["config"] == {"depth": 18, "width": 8, "in_channels": 3,
                                                             "conv_bias": False}
  assert meta["notes"] == ["a note"] and meta["jaxvos_version"]
  loaded_family, loaded = io.load_model(tmp_path / "ckpt")
  assert loaded_family == family
  flat, flat_loaded = rules.flatten_variables(variables), rules.flatten_variables(loaded)
  assert flat.keys() == flat_loaded.keys()
  for path, value in flat.items():
    np.testing.assert_array_equal(flat_loaded[path], value)
  with pytest.raises(DataError, match="exists and is not an empty directory; nothing is overwritten"):
    io.save_model(tmp_path / "ckpt", family, variables)


def test_bad_model_directories_name_the_file(tmp_path):
  family, variables = _backbone()
  with pytest.raises(DataError, match="not a jaxvos checkpoint directory .a PyTorch file"):
    io.load_model(tmp_path / "stcn.pth")
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match=r"empty/model.json: not found"):
    io.load_model(tmp_path / "empty")
  io.save_model(tmp_path / "ckpt", family, variables)
  meta_path, variables_path = tmp_path / "ckpt" / "model.json", tmp_path / "ckpt" / "variables.safetensors"
  good_meta = meta_path.read_text()
  meta_path.write_text(good_meta.replace('"width": 8', '"width": 16'))
  with pytest.raises(DataError, match=r"variables.safetensors: does not fit the resnet18 model: .* with the wrong "
                     r"shape \(params/bn1/bias is \[8\], the model has \[16\]"):
    io.load_model(tmp_path / "ckpt")
  meta_path.write_text(good_meta.replace('"width": 8', '"colour": 8'))
  with pytest.raises(DataError, match=r"model.json: cannot build family 'resnet18': unknown resnet18 config fields"):
    io.load_model(tmp_path / "ckpt")
  meta_path.write_text("{")
  with pytest.raises(DataError, match=r"model.json: cannot be read as JSON"):
    io.load_model(tmp_path / "ckpt")
  meta_path.write_text(good_meta)
  variables_path.write_bytes(b"\x00" * 20)
  with pytest.raises(DataError, match=r"variables.safetensors: cannot be read as safetensors"):
    io.load_model(tmp_path / "ckpt")


def _torchvision_resnet18(tmp_path, transform=None, name="resnet18.pth"):
  """A torchvision-layout ResNet-18 state dict (the test stand-in) saved as a .pth; returns (path, state)."""
  torch = pytest.importorskip("torch")
  from tests.torch_reference import torchvision_standin  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torchvision_standin.randomize_batchnorm(torchvision_standin.resnet18(), torch.Generator().manual_seed(0))
  state = model.state_dict()
  path = tmp_path / name
  torch.save(transform(state) if transform else state, path)
  return path, state


def test_convert_command_imports_and_exports_torchvision_weights(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  # A DataParallel-style checkpoint inside a training-script wrapper.
  path, state = _torchvision_resnet18(tmp_path, lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()},
                                                           "epoch": 3})
  assert cli_main.main(["convert", "from-torch", "--family", "resnet18", "--checkpoint", str(path), "--out",
                        str(tmp_path / "r18")]) == 0
  captured = capsys.readouterr()
  assert "note: dropped 30 keys (layer4.0.conv1.weight" in captured.err and "fc.weight, fc.bias" in captured.err
  family, _ = io.load_model(tmp_path / "r18")
  assert family.config == families.BackboneConfig(depth=18, width=64, in_channels=3, conv_bias=False)
  out = tmp_path / "back.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "r18"), "--out", str(out)]) == 0
  back = torch.load(out, weights_only=True)
  trunk = {key: value for key, value in state.items() if not key.startswith(("layer4.", "fc."))}
  assert set(back) == set(trunk)
  for key, value in trunk.items():
    assert torch.equal(back[key], value), key
  capsys.readouterr()
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "r18"), "--out", str(out)]) == 2
  assert capsys.readouterr().err == f"error: {out}: exists; nothing is overwritten\n"


def test_convert_command_mismatch_is_one_line_without_traceback(tmp_path, capsys):
  pytest.importorskip("torch")

  def damage(state):
    state = dict(state)
    del state["layer2.0.downsample.1.running_var"]
    state["layer1.1.conv2.weight"] = state["layer1.1.conv2.weight"][:, :32]
    return state

  path, _ = _torchvision_resnet18(tmp_path, damage)
  result = subprocess.run([sys.executable, "-m", "jaxvos", "convert", "from-torch", "--family", "resnet50",
                           "--checkpoint", str(path), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, cwd=cli_main.__file__.rsplit("/jaxvos/", 1)[0], timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.count("\n") == 1
  assert result.stderr.startswith(f"error: {path}: does not fit the resnet50 model: ")
  # ResNet-18 weights given as ResNet-50: the bottlenecks' third layers are missing, the first are 1x1.
  assert "141 missing (layer1.0.bn3.bias (jaxvos params/layer1_0/bn3/bias), " in result.stderr
  assert ("16 with the wrong shape (layer1.0.conv1.weight (jaxvos params/layer1_0/conv1/kernel) is [64, 64, 3, 3], "
          "the model has [64, 64, 1, 1], ") in result.stderr
  assert not (tmp_path / "out").exists()
  assert cli_main.main(["convert", "from-torch", "--family", "resnet18", "--checkpoint", str(path), "--out",
                        str(tmp_path / "out")]) == 2
  stderr = capsys.readouterr().err
  assert stderr.count("\n") == 1
  assert ("1 missing (layer2.0.downsample.1.running_var (jaxvos batch_stats/layer2_0/downsample_1/var)); "
          "1 with the wrong shape (layer1.1.conv2.weight (jaxvos params/layer1_1/conv2/kernel) is [64, 32, 3, 3], "
          "the model has [64, 64, 3, 3])") in stderr


def test_convert_command_bad_files(tmp_path, capsys):
  torch = pytest.importorskip("torch")
  missing = tmp_path / "missing.pth"
  assert cli_main.main(["convert", "from-torch", "--family", "stcn", "--checkpoint", str(missing), "--out",
                        str(tmp_path / "out")]) == 2
  assert capsys.readouterr().err == f"error: {missing}: PyTorch checkpoint not found\n"
  not_state = tmp_path / "list.pth"
  torch.save([1, 2], not_state)
  assert cli_main.main(["convert", "from-torch", "--family", "resnet18", "--checkpoint", str(not_state), "--out",
                        str(tmp_path / "out")]) == 2
  assert "is not a PyTorch state dict" in capsys.readouterr().err
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a checkpoint")
  assert cli_main.main(["convert", "from-torch", "--family", "resnet18", "--checkpoint", str(garbage), "--out",
                        str(tmp_path / "out")]) == 2
  assert capsys.readouterr().err.startswith(f"error: {garbage}: cannot be read as a PyTorch checkpoint (")
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.pth")]) == 2
  assert capsys.readouterr().err == f"error: {tmp_path / 'model.json'}: not found: a jaxvos checkpoint directory " \
      "holds model.json and variables.safetensors\n"


def test_registry_model_to_torch_and_back(tmp_path, capsys):
  """A small jaxvos STCN goes to PyTorch and comes back with its sizes read from the state dict."""
  pytest.importorskip("torch")
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  family = registry.build("stcn-tiny")
  rng = np.random.default_rng(2)
  flat = {path: rng.normal(size=shape).astype(np.float32) for path, shape in families.variable_shapes(family).items()}
  io.save_model(tmp_path / "tiny", family, rules.unflatten_variables(flat))
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "tiny"), "--out",
                        str(tmp_path / "tiny.pth")]) == 0
  assert cli_main.main(["convert", "from-torch", "--family", "stcn", "--checkpoint", str(tmp_path / "tiny.pth"),
                        "--out", str(tmp_path / "back")]) == 0
  back_family, back = io.load_model(tmp_path / "back")
  assert back_family.name == "stcn" and back_family.config == family.config
  back = rules.flatten_variables(back)
  assert back.keys() == flat.keys()
  for path, value in flat.items():
    np.testing.assert_array_equal(back[path], value)
  stm = registry.build("stm-tiny")
  flat = {path: np.zeros(shape, np.float32) for path, shape in families.variable_shapes(stm).items()}
  io.save_model(tmp_path / "stm", stm, rules.unflatten_variables(flat))
  # STM has rules too (issue 16); its round trip is tested with the twins (tests/test_torch_twins.py).
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "stm"), "--out",
                        str(tmp_path / "stm.pth")]) == 0
  assert cli_main.main(["convert", "from-torch", "--checkpoint", str(tmp_path / "stm.pth"), "--out",
                        str(tmp_path / "stm_back")]) == 0
  assert io.load_model(tmp_path / "stm_back")[0].config == stm.config


def test_without_pytorch_the_error_says_how_to_install_it(tmp_path, monkeypatch):
  path = tmp_path / "stcn.pth"
  path.write_bytes(b"anything")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  from jaxvos.convert import from_torch  # pylint: disable=g-import-not-at-top
  with pytest.raises(DataError, match=r"stcn.pth: reading and writing PyTorch checkpoints needs PyTorch: "
                     r"pip install torch==2.13.0"):
    from_torch.read_state_dict(path)


def test_checkpoint_names_are_the_registrys_and_the_backbones():
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  assert families.names() == [*registry.names(), "resnet18", "resnet50"]
  assert [families.family_of(name) for name in ("stcn-tiny", "stm", "resnet50")] == ["stcn", "stm", "resnet50"]
  with pytest.raises(ValueError, match=r"unknown model 'stnc'; known: stcn, .*, resnet18, resnet50$"):
    families.build("stnc", {})
  family = families.build("stcn-tiny", families.config_dict(registry.build("stcn-tiny", top_k=5)))
  assert family.name == "stcn-tiny" and family.config == registry.build("stcn-tiny", top_k=5).config
