"""The SwiftNet twin (`jaxvos.torch.swiftnet`): key layout, streaming parity with jaxvos with its pixel-adaptive
memory, the .pth round trip, `jaxvos.torch.load`, no JAX on import.

Parity: the 5-frame, 2-object clip of `tests.family_clip` (object 2 appears at frame 2) at 64x96, run by jaxvos
(`family.init_memory` / `step`) and by `SwiftNetProcessor.step`; probabilities agree within 1e-4 on every frame,
and the memory makes the same decisions: on this clip every position varies, so frame 2 (annotated) is pinned or
forced into the pool, and the trigger fires at frame 4 (running variation 2 > 1.54), a pixel-wise update.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxvos.torch as jaxvos_torch  # noqa: E402
from jaxvos.cli import main as cli_main  # noqa: E402
from jaxvos.convert import families, io, rules, swiftnet_torch, to_torch_twins  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from jaxvos.ops import attention  # noqa: E402
from jaxvos.torch import swiftnet as twin  # noqa: E402
from jaxvos.torch import swiftnet_memory  # noqa: E402
from tests import family_clip  # noqa: E402

TOLERANCE = 1e-4
HW = (64, 96)
# Frame 2's annotation finds the one pinned slot taken (a forced pixel update), frame 4's update evicts it from
# the one-update pool, and the pixel-wise match reads half the positions (a full match after frame 2).
SMALL_MEMORY = dict(pinned=1, pool_updates=1, match_fraction=0.5, read_buckets=1)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def twin_state_dict(family, variables) -> dict[str, np.ndarray]:
  flat = {path: np.asarray(value) for path, value in rules.flatten_variables(variables).items()}
  return rules.flax_to_torch(flat, swiftnet_torch.SWIFTNET)


@pytest.mark.parametrize("name,config", [("swiftnet-tiny", {}), ("swiftnet", {}), ("swiftnet", {"rsp_kernel": 1}),
                                         ("swiftnet-r50", {})])
def test_twin_state_dict_keys_and_shapes_are_jaxvos(name, config):
  family = registry.build(name, **config)
  shapes = families.variable_shapes(family)
  exported = twin_state_dict(family, rules.unflatten_variables(
      {path: np.zeros(shape, np.float32) for path, shape in shapes.items()}))
  network, memory = jaxvos_torch.build(name, families.config_dict(family))
  assert {key: np.shape(value) for key, value in exported.items()} == {
      key: tuple(value.shape) for key, value in network.state_dict().items()}
  assert memory == swiftnet_memory.PixelMemoryConfig(**families.config_dict(family)["memory"])


@pytest.mark.parametrize("memory", [{}, SMALL_MEMORY, dict(temporary=False, beta=0.25, pinned=3)])
def test_memory_layout_is_jaxvos(memory):
  from jaxvos.memory.pixel_adaptive import PixelMemoryConfig  # pylint: disable=g-import-not-at-top
  config = PixelMemoryConfig(**memory)
  twin_config = swiftnet_memory.PixelMemoryConfig(**dataclasses.asdict(config))
  for n in (12, 24, 30, 1350):
    expected, actual = config.layout(n), twin_config.layout(n)
    assert (actual.n, actual.k, actual.temporary, actual.pool, actual.later_pinned, actual.capacity) == (
        expected.n, expected.k, expected.temporary, expected.pool, expected.later_pinned, expected.capacity)


def test_default_config_has_the_released_r18_keys():
  """Names (and sizes) read from haochenheheda/SwiftNet `swiftnet.py`: the official layout loads there."""
  family = registry.build("swiftnet")
  shapes = families.variable_shapes(family)
  exported = swiftnet_torch.official_state_dict(twin_state_dict(family, rules.unflatten_variables(
      {path: np.zeros(shape, np.float32) for path, shape in shapes.items()})))
  assert {key.split(".")[0] for key in exported} == {"Encoder", "LAE", "KV_M_r4", "KV_Q_r4", "aspp", "Decoder"}
  released = {"Encoder.mean": (1, 3, 1, 1), "Encoder.conv1.weight": (64, 3, 7, 7),
              "Encoder.res4.0.downsample.0.weight": (256, 128, 1, 1), "Encoder.res2.1.bn2.running_var": (64,),
              "LAE.conv1_o.weight": (64, 1, 7, 7), "LAE.conv2_m.weight": (256, 256, 3, 3),
              "LAE.conv_fusion2.weight": (128, 64, 3, 3), "KV_M_r4.Key.weight": (32, 256, 3, 3),
              "KV_Q_r4.Value.bias": (128,), "aspp.aspp4.atrous_conv.weight": (128, 256, 3, 3),
              "aspp.conv1.weight": (128, 512, 1, 1), "Decoder.convFM.weight": (64, 128, 3, 3),
              "Decoder.RF2.convFS.weight": (64, 64, 3, 3), "Decoder.RF3.ResFS.conv2.bias": (64,),
              "Decoder.pred2.weight": (2, 64, 3, 3)}
  assert {key: np.shape(exported[key]) for key in released} == released
  assert not any("bias" in key for key in exported if key.startswith(("LAE.", "aspp.")))
  assert swiftnet_torch.config_from_state_dict(exported) == dict(depth=18, width=64, key_dim=32, value_dim=128,
                                                                 aspp_dim=128, decoder_dim=64, rsp_kernel=3)
  _, notes = rules.torch_to_flax(exported, swiftnet_torch.SWIFTNET)
  assert notes == ["dropped 2 keys (Encoder.mean, Encoder.std): the ImageNet normalisation constants (jaxvos "
                   "normalises frames before the network)"]


def jax_run(family, variables, frames: np.ndarray) -> tuple[list[np.ndarray], list[int], object]:
  """jaxvos's probabilities [O+1 h w] of every frame, the frames its memory wrote as updates, the last state."""
  first, second = family_clip.object_masks(frames.shape[1:3])
  masks, valid = np.stack([first, np.zeros_like(first)])[None], np.array([[True, False]])
  variables = jax.tree.map(jnp.asarray, variables)
  state = jax.jit(family.init_memory)(variables, frames[:1], masks, valid)
  probs = [np.asarray(jax.nn.softmax(attention.aggregate(jnp.asarray(masks), jnp.asarray(valid)), axis=1))[0]]
  updates, step = [0], jax.jit(family.step)
  for t in range(1, family_clip.T):
    new_masks, new_valid = np.zeros((1, family_clip.O, *frames.shape[1:3]), np.float32), np.zeros((1, 2), bool)
    if t == family_clip.APPEARS:
      new_masks[0, 1], new_valid[0, 1] = second, True
    state, output = step(variables, state, frames[t:t + 1], new_masks, new_valid)
    probs.append(np.asarray(jax.nn.softmax(output.logits, axis=1))[0])
    updates += [t] if float(output.aux["trigger"][0]) else []
  return probs, updates, state



def save_twin(path, family, variables) -> None:
  tensors = {key: torch.from_numpy(np.array(value, order="C")) for key, value in twin_state_dict(
      family, variables).items()}
  jaxvos_torch.save(path, family.name, families.config_dict(family), tensors)


CASES = [("swiftnet-tiny", {}, 1, {}), ("swiftnet-tiny", SMALL_MEMORY, 2, {}), ("swiftnet", {}, 1, {}),
         ("swiftnet-tiny", dict(SMALL_MEMORY, top_k=3, key_norm=4.0), 2, dict(lae_norm=5.0))]  # the size options


@pytest.mark.parametrize("name,memory,pool_writes,options", CASES)
def test_twin_streams_the_probabilities_and_memory_of_jaxvos(tmp_path, name, memory, pool_writes, options):
  family = registry.build(name, memory=memory, **options)
  variables = family_clip.random_variables(family)
  frames = family_clip.normalised_frames(HW)
  expected, updates, state = jax_run(family, variables, frames)
  save_twin(tmp_path / "twin.pth", family, variables)
  processor = jaxvos_torch.load(tmp_path / "twin.pth", max_objects=family_clip.O)
  assert isinstance(processor, twin.SwiftNetProcessor)
  actual = family_clip.twin_probabilities(processor, frames)
  for t, (a, e) in enumerate(zip(actual, expected)):
    error = float(np.abs(a - e).max())
    assert error <= TOLERANCE, f"{name} {memory} {options}: frame {t}: max error {error:.3g} > {TOLERANCE}"
  assert processor.object_ids == [1, 2]
  # The policy ran, the same way: frame 2 annotated, frame 4 triggered (not annotated) into the pixel pool.
  assert updates == processor.triggers == [0, 2, 4]
  memory_state = processor.memory
  assert int(state.memory.pool_writes[0]) == memory_state.pool_writes == pool_writes
  assert int(state.memory.num_pinned[0]) == memory_state.num_pinned == (1 if memory else 2)
  written = np.asarray(state.memory.written_at[0])
  assert memory_state.written_at.tolist() == written.tolist()
  if memory:  # frame 2's pixels were evicted by frame 4's; the temporary slot holds frame 4
    layout = memory_state.layout
    assert set(written[layout.pool:layout.later_pinned]) == {4} and set(written[layout.n:layout.pool]) == {4}


def test_padded_object_slots_change_nothing():
  family = registry.build("swiftnet-tiny", memory=SMALL_MEMORY)
  network, memory = jaxvos_torch.build(family.name, families.config_dict(family))
  exported = twin_state_dict(family, family_clip.random_variables(family, seed=3))
  network.load_state_dict({key: torch.from_numpy(value) for key, value in exported.items()}, strict=True)
  frames = family_clip.normalised_frames(HW, seed=4)
  two = family_clip.twin_probabilities(twin.SwiftNetProcessor(network, memory, max_objects=2), frames)
  five = family_clip.twin_probabilities(twin.SwiftNetProcessor(network, memory, max_objects=5), frames)
  for t, (a, b) in enumerate(zip(five, two)):
    assert float(np.abs(a - b).max()) <= TOLERANCE, f"frame {t}"


def test_processor_pads_crops_and_resets():
  family = registry.build("swiftnet-tiny")
  network, memory = jaxvos_torch.build(family.name, families.config_dict(family))
  processor = twin.SwiftNetProcessor(network, memory)
  image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)  # padded to 48x64
  mask = np.zeros((40, 56), np.uint8)
  mask[5:20, 5:20] = 3
  probs = processor.step(image, mask)
  assert probs.shape == (2, 40, 56) and processor.object_ids == [3]
  np.testing.assert_array_equal(processor.ids_of(probs), mask)
  for _ in range(3):
    assert processor.step(image).shape == (2, 40, 56)
  assert processor.memory.num_frames == 4 and processor.memory.layout.n == 3 * 4
  processor.reset()
  assert processor.memory is None and processor.object_ids == [] and processor.triggers == []


def test_twin_file_round_trip_is_bit_identical(tmp_path):
  family = registry.build("swiftnet-tiny", memory=SMALL_MEMORY)
  variables = family_clip.random_variables(family, seed=5)
  save_twin(tmp_path / "twin.pth", family, variables)
  payload = to_torch_twins.read_twin(tmp_path / "twin.pth")
  back = registry.from_config(payload["family"], dict(payload["config"]))
  assert back.name == family.name and back.config == family.config
  flat, notes = rules.torch_to_flax(payload["state_dict"], swiftnet_torch.SWIFTNET)
  assert notes == []
  rules.check_variables({path: value.shape for path, value in flat.items()}, families.variable_shapes(back),
                        swiftnet_torch.SWIFTNET, "twin.pth", back.name)
  assert to_torch_twins.variables_equal(rules.unflatten_variables(flat), variables)


@pytest.mark.skipif(not to_torch_twins.has_twin("swiftnet"),
                    reason="convert is not wired to swiftnet yet (jaxvos.convert.swiftnet_torch.SWIFTNET unregistered)")
def test_convert_to_torch_and_back_is_bit_identical(tmp_path, capsys):
  family = registry.build("swiftnet-tiny", memory=SMALL_MEMORY)
  variables = family_clip.random_variables(family, seed=5)
  io.save_model(tmp_path / "ckpt", family, variables)
  twin_path = tmp_path / "twin.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(twin_path)]) == 0
  assert "swiftnet-tiny, twin layout" in capsys.readouterr().out
  assert isinstance(jaxvos_torch.load(twin_path), twin.SwiftNetProcessor)
  assert cli_main.main(["convert", "from-torch", "--checkpoint", str(twin_path), "--out", str(tmp_path / "back")]) == 0
  back_family, back = io.load_model(tmp_path / "back")
  assert back_family.config == family.config and to_torch_twins.variables_equal(back, variables)
  # The released layout: a bare state dict with the encoder's normalisation buffers, read back by --family.
  official = tmp_path / "official.pth"
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(official),
                        "--layout", "official"]) == 0
  twin_keys = set(torch.load(twin_path, weights_only=True)["state_dict"])
  assert set(torch.load(official, weights_only=True)) == twin_keys | {"Encoder.mean", "Encoder.std"}
  capsys.readouterr()
  assert cli_main.main(["convert", "from-torch", "--family", "swiftnet", "--checkpoint", str(official), "--out",
                        str(tmp_path / "from_official")]) == 0
  assert "dropped 2 keys (Encoder.mean, Encoder.std)" in capsys.readouterr().err
  back_family, back = io.load_model(tmp_path / "from_official")
  assert back_family.name == "swiftnet" and to_torch_twins.variables_equal(back, variables)
  # A model the released code would compute differently has no official layout.
  io.save_model(tmp_path / "normed", registry.build("swiftnet-tiny", lae_norm=5.0), variables)
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(tmp_path / "normed"), "--out",
                        str(tmp_path / "normed.pth"), "--layout", "official"]) == 2
  assert "lae_norm=5.0" in capsys.readouterr().err and not (tmp_path / "normed.pth").exists()
