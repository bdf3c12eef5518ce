"""The PyTorch twins (`jaxvos.torch`): key sets, streaming parity with jaxvos, the .pth round trip, no JAX.

Parity: a 5-frame, 2-object clip whose second object appears at frame 2, run by jaxvos (`family.init_memory` /
`step`) and by the twin's `Processor.step` from a file `convert to-torch` wrote; probabilities agree within 1e-4
on every frame, with the family's own memory policy and with a small one that uses every part of it.
"""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxvos.torch as jaxvos_torch  # noqa: E402
from data_pipelines.errors import DataError  # noqa: E402
from jaxvos.cli import main as cli_main  # noqa: E402
from jaxvos.convert import families, io, rules, to_torch_twins  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from tests import family_clip  # noqa: E402
from tests.conftest import REPO  # noqa: E402

TOLERANCE = 1e-4
HW = (64, 64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_importing_the_twins_starts_no_jax():
  """Every twin, its processor and `load` run with torch and NumPy alone."""
  modules = ["jaxvos.torch", "jaxvos.torch.swiftnet", "jaxvos.torch.swiftnet_memory", "jaxvos.torch.gam",
             "jaxvos.torch.gam_processor", "jaxvos.torch.spvos", "jaxvos.torch.spvos_processor"]
  code = (f"import sys, {', '.join(modules)}; "
          "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny", "stcn-r18", "stm-r18", "stcn", "stm"])
def test_twin_state_dict_keys_and_shapes_are_jaxvos(name):
  family = registry.build(name)
  exported = to_torch_twins.state_dict(family, random_shapes_only(family), "twin")
  network, memory = jaxvos_torch.build(name, families.config_dict(family))
  twin = {key: tuple(value.shape) for key, value in network.state_dict().items()}
  assert {key: tuple(np.shape(value)) for key, value in exported.items()} == twin
  assert memory == jaxvos_torch.MemoryConfig(**families.config_dict(family)["memory"])


def random_shapes_only(family) -> dict:
  """Zero variables of the family's shapes (the key check needs no values)."""
  return rules.unflatten_variables({path: np.zeros(shape, np.float32)
                                    for path, shape in families.variable_shapes(family).items()})



def assert_probabilities_close(actual: list[np.ndarray], expected: list[np.ndarray], what: str) -> None:
  for t, (a, e) in enumerate(zip(actual, expected)):
    error = float(np.abs(a - e).max())
    assert error <= TOLERANCE, f"{what}: frame {t}: max error {error:.3g} > {TOLERANCE}"
  assert len(actual) == len(expected) == family_clip.T


CASES = [("stcn-tiny", None), ("stcn-tiny", family_clip.SMALL_MEMORY), ("stm-tiny", None),
         ("stm-tiny", family_clip.SMALL_MEMORY),
         pytest.param("stcn", None, marks=pytest.mark.slow), pytest.param("stm", None, marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,memory", CASES)
def test_twin_streams_the_probabilities_of_jaxvos(tmp_path, name, memory):
  family = registry.build(name, **({"memory": memory} if memory else {}))
  variables = family_clip.random_variables(family)
  frames = family_clip.normalised_frames(HW)
  expected = family_clip.jax_probabilities(family, variables, frames)
  path = tmp_path / "twin.pth"
  assert to_torch_twins.write(path, family, variables) == ("twin", len(to_torch_twins.state_dict(
      family, variables, "twin")))
  processor = jaxvos_torch.load(path, max_objects=family_clip.O)
  actual = family_clip.twin_probabilities(processor, frames)
  assert_probabilities_close(actual, expected, name)
  assert processor.object_ids == [1, 2]
  # The memory was used as jaxvos uses it: the same frames in the same slots.
  written = processor.memory.written_at.tolist()
  if memory:  # frame 0 pinned, frame 2 evicted by frame 4 (the ring has one slot), the temporary slot emptied
    assert written == [0, 4, -1]
  assert processor.memory.pinned.tolist()[0]


def test_padded_object_slots_change_nothing():
  family = registry.build("stcn-tiny", memory=family_clip.SMALL_MEMORY)
  network, memory = jaxvos_torch.build(family.name, families.config_dict(family))
  exported = to_torch_twins.state_dict(family, family_clip.random_variables(family, seed=3), "twin")
  network.load_state_dict({key: torch.from_numpy(value) for key, value in exported.items()}, strict=True)
  frames = family_clip.normalised_frames(HW, seed=4)
  two = family_clip.twin_probabilities(jaxvos_torch.Processor(network, memory, max_objects=2), frames)
  five = family_clip.twin_probabilities(jaxvos_torch.Processor(network, memory, max_objects=5), frames)
  assert_probabilities_close(five, two, "5 slots vs 2")


def test_processor_input_checks():
  family = registry.build("stm-tiny")
  network, memory = jaxvos_torch.build(family.name, families.config_dict(family))
  processor = jaxvos_torch.Processor(network, memory)
  image = np.zeros((40, 56, 3), np.uint8)  # not a multiple of 16: padded and cropped back
  with pytest.raises(ValueError, match="the first frame needs a mask"):
    processor.step(image)
  mask = np.zeros((40, 56), np.uint8)
  mask[5:20, 5:20] = 3
  probs = processor.step(image, mask)
  assert probs.shape == (2, 40, 56) and processor.object_ids == [3]
  np.testing.assert_array_equal(processor.ids_of(probs), mask)
  assert processor.step(image).shape == (2, 40, 56)
  mask[30:35, 30:40] = 7
  with pytest.raises(ValueError, match=r"objects \[7\] appear but the processor holds 1 objects"):
    processor.step(image, mask)
  with pytest.raises(ValueError, match="frame size"):
    processor.step(np.zeros((48, 56, 3), np.uint8))


def save_checkpoint(tmp_path, name: str, **config) -> tuple[str, dict]:
  family = registry.build(name, **config)
  variables = family_clip.random_variables(family, seed=5)
  io.save_model(tmp_path / name, family, variables)
  return str(tmp_path / name), variables


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])
def test_convert_to_torch_and_back_is_bit_identical(tmp_path, capsys, name):
  checkpoint, variables = save_checkpoint(tmp_path, name, memory=family_clip.SMALL_MEMORY)
  twin = tmp_path / "twin.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", checkpoint, "--out", str(twin)]) == 0
  assert f"{name}, twin layout" in capsys.readouterr().out
  assert cli_main.main(["convert", "from-torch", "--checkpoint", str(twin), "--out", str(tmp_path / "back")]) == 0
  family, back = io.load_model(tmp_path / "back")
  original, _ = io.load_model(checkpoint)
  assert family.name == name and family.config == original.config
  assert to_torch_twins.variables_equal(back, variables)
  # The official layout: a bare state dict (STM's also holds its encoders' normalisation buffers).
  official = tmp_path / "official.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", checkpoint, "--out", str(official), "--layout",
                        "official"]) == 0
  state_dict = torch.load(official, weights_only=True)
  twin_keys = set(torch.load(twin, weights_only=True)["state_dict"])
  extra = {f"Encoder_{e}.{b}" for e in "MQ" for b in ("mean", "std")} if name.startswith("stm") else set()
  assert set(state_dict) == twin_keys | extra
  base = name.split("-")[0]
  capsys.readouterr()
  assert cli_main.main(["convert", "from-torch", "--family", base, "--checkpoint", str(official), "--out",
                        str(tmp_path / "from_official")]) == 0
  if extra:
    assert "dropped 4 keys (Encoder_M.mean" in capsys.readouterr().err
  family, back = io.load_model(tmp_path / "from_official")
  assert family.name == base and to_torch_twins.variables_equal(back, variables)


def test_from_torch_needs_the_family_of_a_bare_state_dict(tmp_path, capsys):
  path = tmp_path / "bare.pth"
  torch.save({"conv1.weight": torch.zeros(1, 3, 7, 7)}, path)
  assert cli_main.main(["convert", "from-torch", "--checkpoint", str(path), "--out", str(tmp_path / "x")]) == 2
  assert capsys.readouterr().err == f"error: {path}: is a bare state dict: say what it holds with --family\n"


def test_a_twin_file_of_another_family_is_refused(tmp_path):
  checkpoint, _ = save_checkpoint(tmp_path, "stm-tiny")
  family, variables = io.load_model(checkpoint)
  to_torch_twins.write(tmp_path / "stm.pth", family, variables)
  with pytest.raises(DataError, match=r"stm.pth: holds a stm-tiny model, not stcn \(--family\)"):
    to_torch_twins.import_twin(to_torch_twins.read_twin(tmp_path / "stm.pth"), "stcn", str(tmp_path / "stm.pth"))
  with pytest.raises(ValueError, match="not a jaxvos twin checkpoint"):
    torch.save({"a": torch.zeros(1)}, tmp_path / "bare.pth")
    jaxvos_torch.load(tmp_path / "bare.pth")


@pytest.mark.parametrize("name", ["gam-tiny", "spvos-tiny"])
def test_convert_families_without_official_code_round_trip(tmp_path, capsys, name):
  """GAM and SpVOS have no official PyTorch code: the twin layout only, bit-identical there and back."""
  checkpoint, variables = save_checkpoint(tmp_path, name)
  twin = tmp_path / "twin.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", checkpoint, "--out", str(twin)]) == 0
  assert cli_main.main(["convert", "from-torch", "--checkpoint", str(twin), "--out", str(tmp_path / "back")]) == 0
  family, back = io.load_model(tmp_path / "back")
  assert family.name == name and family.config == io.load_model(checkpoint)[0].config
  assert to_torch_twins.variables_equal(back, variables)
  capsys.readouterr()
  assert cli_main.main(["convert", "to-torch", "--checkpoint", checkpoint, "--out", str(tmp_path / "o.pth"),
                        "--layout", "official"]) == 2
  assert "has no official PyTorch code" in capsys.readouterr().err
