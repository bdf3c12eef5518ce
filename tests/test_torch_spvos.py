"""The SpVOS twin (`jaxvos.torch.spvos`, `jaxvos.torch.spvos_processor`): streaming parity with jaxvos, gate
decisions included; key sets, the .pth round trip, `jaxvos.torch.load`, no JAX on import.

Parity: `tests.family_clip`'s 5-frame, 2-object clip (object 2 appears at frame 2) at 64x96, run by jaxvos
(`family.init_memory` / `step`) and by the twin's `step` from a file written by
`jaxvos.convert.twin_families.write`, for `spvos-tiny` and the default `spvos`. Probabilities agree within 1e-4
on every frame, and so does each gated layer's executed fraction (jaxvos's aux `executed/<layer>`), on frames
where the gates decide: the random gates pick all three actions there (asserted), so compute, reuse and skip
are all compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxvos.torch as jaxvos_torch  # noqa: E402
from jaxvos.convert import families, rules, to_torch_twins, twin_families  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from jaxvos.ops import attention  # noqa: E402
from jaxvos.torch import spvos as spvos_lib  # noqa: E402
from jaxvos.torch import spvos_processor  # noqa: E402
from tests import family_clip  # noqa: E402

TOLERANCE = 1e-4
HW = (64, 96)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", ["spvos-tiny", "spvos-r18", "spvos"])
def test_twin_state_dict_keys_and_shapes_are_jaxvos(name):
  family = registry.build(name)
  zeros = rules.unflatten_variables({path: np.zeros(shape, np.float32)
                                     for path, shape in families.variable_shapes(family).items()})
  exported = twin_families.twin_rules(name).export_state_dict(zeros)
  network, memory = jaxvos_torch.build(name, families.config_dict(family))
  assert {key: tuple(np.shape(value)) for key, value in exported.items()} == {
      key: tuple(value.shape) for key, value in network.state_dict().items()}
  assert memory == jaxvos_torch.MemoryConfig(**families.config_dict(family)["memory"])
  assert any(".gate.embed.weight" in key for key in exported)


def jax_clip(family, variables, frames: np.ndarray) -> tuple[list[np.ndarray], list[dict[str, float]]]:
  """jaxvos's probabilities [O+1 h w] and aux (`executed/...`, `gated`) of every frame of the clip."""
  first, second = family_clip.object_masks(HW)
  masks, valid = np.stack([first, np.zeros_like(first)])[None], np.array([[True, False]])
  variables = jax.tree.map(jnp.asarray, variables)
  state = jax.jit(family.init_memory)(variables, frames[:1], masks, valid)
  probs = [np.asarray(jax.nn.softmax(attention.aggregate(jnp.asarray(masks), jnp.asarray(valid)), axis=1))[0]]
  auxes = [{}]
  step = jax.jit(family.step)
  for t in range(1, family_clip.T):
    new_masks, new_valid = np.zeros((1, family_clip.O, *HW), np.float32), np.zeros((1, family_clip.O), bool)
    if t == family_clip.APPEARS:
      new_masks[0, 1], new_valid[0, 1] = second, True
    state, output = step(variables, state, frames[t:t + 1], new_masks, new_valid)
    probs.append(np.asarray(jax.nn.softmax(output.logits, axis=1))[0])
    auxes.append({key: float(value[0]) for key, value in output.aux.items()})
  return probs, auxes


@pytest.mark.parametrize("name,config", [("spvos-tiny", {}), ("spvos", {}),
                                         ("spvos-tiny", {"compute_threshold": 0.4}),
                                         ("spvos-tiny", {"gate_pool": "mean_max", "gated_parts": ("encoder",)}),
                                         ("spvos-tiny", {"change_threshold": 0.6}),
                                         ("spvos-tiny", {"read_threshold": 3.0})])
def test_twin_streams_the_probabilities_and_gate_decisions_of_jaxvos(tmp_path, name, config):
  family = registry.build(name, **config)
  variables = family_clip.random_variables(family)
  frames = family_clip.normalised_frames(HW)
  expected, auxes = jax_clip(family, variables, frames)
  path = tmp_path / "spvos.pth"
  twin_families.write(path, family, variables)
  processor = jaxvos_torch.load(path, max_objects=family_clip.O)
  assert isinstance(processor, spvos_processor.SpVOSProcessor)
  annotations = family_clip.id_maps(HW)
  counts = np.zeros(3, np.int64)  # actions taken on frames where the gates decide
  for t, frame in enumerate(frames):
    out = processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t)).numpy()
    error = float(np.abs(out - expected[t][:out.shape[0]]).max())
    assert error <= TOLERANCE, f"{name}: frame {t}: max error {error:.3g} > {TOLERANCE}"
    if t == 0:
      continue
    executed = processor.executed
    assert set(executed) == {key.removeprefix("executed/") for key in auxes[t] if key.startswith("executed/")}
    for path, fraction in executed.items():
      assert abs(fraction - auxes[t][f"executed/{path}"]) < 1e-6, f"{name}: frame {t}: {path}"
    # Dense: the decoder at t = 1 (its first run) and after the annotation at frame 2; nothing else here.
    assert {part: gates.dense for part, gates in processor.gates.items()} == {
        "encoder": False, "decoder": t in (1, family_clip.APPEARS + 1) or "decoder" not in family.config.gated_parts}
    assert auxes[t]["gated"] == 1.0
    for gates in processor.gates.values():
      if not gates.dense:
        counts += sum(np.bincount(a.flatten().numpy(), minlength=3) for a in gates.actions.values())
  assert np.all(counts > 0), f"{name}: the gates took (compute, reuse, skip) = {counts.tolist()}: not a mix"
  if family.config.read_threshold is not None:  # the read guard kept read-outs on some frame
    assert min(aux["read_fraction"] for aux in auxes[1:]) < 1
  assert processor.object_ids == [1, 2]


def stcn_and_spvos_twins(seed: int = 3, **config):
  """The STCN twin and an SpVOS twin (with `config`) of one set of random weights; the gates' own weights are
  random too."""
  family = registry.build("spvos-tiny", **config)
  exported = twin_families.twin_rules("spvos").export_state_dict(family_clip.random_variables(family, seed))
  tensors = {key: torch.from_numpy(value) for key, value in exported.items()}
  spvos, memory = jaxvos_torch.build(family.name, families.config_dict(family))
  spvos.load_state_dict(tensors, strict=True)
  stcn, _ = jaxvos_torch.build("stcn-tiny", registry.config_dict(registry.build("stcn-tiny")))
  stcn.load_state_dict({key: value for key, value in tensors.items() if ".gate." not in key}, strict=True)
  return spvos, stcn, memory


def stream(processor, frames) -> list[torch.Tensor]:
  annotations = family_clip.id_maps(HW)
  return [processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t)) for t, frame in
          enumerate(frames)]


def test_gates_forced_to_compute_give_the_stcn_twin():
  spvos, stcn, memory = stcn_and_spvos_twins(force="compute")
  frames = family_clip.normalised_frames(HW, seed=5)
  gated = stream(spvos_processor.SpVOSProcessor(spvos, memory, max_objects=2), frames)
  dense = stream(jaxvos_torch.Processor(stcn, memory, max_objects=2), frames)
  for a, b in zip(gated, dense):
    torch.testing.assert_close(a, b, rtol=0.0, atol=1e-6)


def test_dense_refresh_frames_and_forced_reuse():
  spvos, _, memory = stcn_and_spvos_twins(force="reuse", refresh_every=2)
  processor = spvos_processor.SpVOSProcessor(spvos, memory, max_objects=2)
  frames = family_clip.normalised_frames(HW, seed=6)
  annotations = family_clip.id_maps(HW)
  for t, frame in enumerate(frames):
    previous = {path: cache["y"] for path, cache in processor.caches["encoder"].items()}
    processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t))
    if t == 0:
      continue
    encoder = processor.gates["encoder"]
    assert encoder.dense == (t % 2 == 0), t
    assert set(processor.executed.values()) == ({1.0} if t % 2 == 0 else {0.0, 1.0})  # decoder dense at t = 1
    if not encoder.dense:  # every gated layer repeats its output of the previous frame
      for path, cache in encoder.new_caches.items():
        assert torch.equal(cache["y"], previous[path]), path
  assert processor.memory.num_frames == family_clip.T


def test_round_trip_is_bit_identical_and_load_returns_the_spvos_processor(tmp_path):
  family = registry.build("spvos-tiny", refresh_every=4, tile_pixels=(16, 32), memory={"every": 2})
  variables = family_clip.random_variables(family, seed=7)
  path = tmp_path / "spvos.pth"
  count = twin_families.write(path, family, variables)
  payload = to_torch_twins.read_twin(path)
  assert payload["family"] == "spvos-tiny" and len(payload["state_dict"]) == count
  back_family, back, notes = twin_families.import_twin(payload, str(path))
  assert notes == [] and back_family.name == family.name and back_family.config == family.config
  assert to_torch_twins.variables_equal(back, variables)
  processor = jaxvos_torch.load(path)
  assert isinstance(processor, spvos_processor.SpVOSProcessor) and isinstance(processor.network, spvos_lib.SpVOS)
  assert processor.network.refresh_every == 4 and processor.network.tile_pixels == (16, 32)
  assert processor.memory_config.every == 2
