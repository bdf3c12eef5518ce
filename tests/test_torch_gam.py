"""The GAM twin (`jaxvos.torch.gam`, `jaxvos.torch.gam_processor`): streaming parity with jaxvos, key sets, the
.pth round trip, `jaxvos.torch.load`, no JAX on import.

Parity: `tests.family_clip`'s 5-frame, 2-object clip (object 2 appears at frame 2, so its context and its mask
history start there) at 64x96, run by jaxvos (`family.init_memory` / `step`) and by the twin's `step` from a
file written by `jaxvos.convert.twin_families.write`; probabilities agree within 1e-4 on every frame, for
`gam-tiny` (also with a context update every 2nd frame and LiVOS's normalisation) and the default `gam`. CAM's
alpha is set to 0.5: at its initial 0 the block is the identity and would be left untested.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jaxvos.torch as jaxvos_torch  # noqa: E402
from jaxvos.convert import families, rules, to_torch_twins, twin_families  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from jaxvos.torch import gam as gam_lib  # noqa: E402
from jaxvos.torch import gam_processor  # noqa: E402
from tests import family_clip  # noqa: E402

TOLERANCE = 1e-4
HW = (64, 96)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gam_variables(family, seed: int = 0) -> dict:
  """`family_clip.random_variables` with CAM's alpha at 0.5 (it would act as the identity at 0 or below)."""
  flat = rules.flatten_variables(family_clip.random_variables(family, seed))
  flat[("params", "cam", "alpha")] = np.float32(0.5)
  return rules.unflatten_variables(flat)


@pytest.mark.parametrize("name", ["gam-tiny", "gam-r18", "gam"])
def test_twin_state_dict_keys_and_shapes_are_jaxvos(name):
  family = registry.build(name)
  zeros = rules.unflatten_variables({path: np.zeros(shape, np.float32)
                                     for path, shape in families.variable_shapes(family).items()})
  exported = twin_families.twin_rules(name).export_state_dict(zeros)
  network, context = jaxvos_torch.build(name, families.config_dict(family))
  assert {key: tuple(np.shape(value)) for key, value in exported.items()} == {
      key: tuple(value.shape) for key, value in network.state_dict().items()}
  assert context == gam_lib.ContextConfig(**families.config_dict(family)["memory"])


CASES = [("gam-tiny", None), ("gam-tiny", {"every": 2, "normalization": "livos"}), ("gam", None)]


@pytest.mark.parametrize("name,memory", CASES)
def test_twin_streams_the_probabilities_of_jaxvos(tmp_path, name, memory):
  family = registry.build(name, **({"memory": memory} if memory else {}))
  variables = gam_variables(family)
  frames = family_clip.normalised_frames(HW)
  expected = family_clip.jax_probabilities(family, variables, frames)
  path = tmp_path / "gam.pth"
  twin_families.write(path, family, variables)
  processor = jaxvos_torch.load(path, max_objects=family_clip.O)
  assert isinstance(processor, gam_processor.GAMProcessor)
  annotations = family_clip.id_maps(HW)
  for t, frame in enumerate(frames):
    out = processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t)).numpy()
    error = float(np.abs(out - expected[t][:out.shape[0]]).max())
    assert error <= TOLERANCE, f"{name}: frame {t}: max error {error:.3g} > {TOLERANCE}"
    assert np.all(expected[t][out.shape[0]:] <= TOLERANCE)  # object 2 before it appears
  assert processor.object_ids == [1, 2]
  every = (memory or {}).get("every", 1)
  memorised = [t for t in range(family_clip.T) if t % every == 0 or t == family_clip.APPEARS]
  # Object 2's context is the mean over the frames memorised since it appeared.
  since_appearing = [t for t in memorised if t >= family_clip.APPEARS]
  assert processor.context.count.tolist() == [len(memorised), len(since_appearing)]
  assert processor.history.shape == (1, 3, family_clip.O, HW[0] // 4, HW[1] // 4)


def test_a_late_objects_history_is_its_mask_until_predictions_push_it_out():
  family = registry.build("gam-tiny")
  network, context = jaxvos_torch.build(family.name, families.config_dict(family))
  processor = gam_processor.GAMProcessor(network, context, max_objects=2)
  frames = family_clip.normalised_frames(HW, seed=2)
  annotations = family_clip.id_maps(HW)
  histories = []
  for t, frame in enumerate(frames[:4]):
    processor.step(torch.from_numpy(frame).permute(2, 0, 1), annotations.get(t))
    histories.append(processor.history[0, :, 1].clone())
  np.testing.assert_array_equal(histories[1].numpy(), 0.0)  # object 2 not there yet
  mask = histories[2][0]
  assert float(mask.max()) > 0.9 and torch.equal(histories[2][1], mask) and torch.equal(histories[2][2], mask)
  assert torch.equal(histories[3][:2], histories[2][1:])  # pushed: the annotated mask, twice, then frame 3's


def bit_identical(a, b) -> bool:
  """Same paths, shapes, dtypes and bits (`to_torch_twins.variables_equal` cannot view CAM's 0-d alpha as bytes)."""
  flat_a = {path: np.asarray(value) for path, value in rules.flatten_variables(a).items()}
  flat_b = {path: np.asarray(value) for path, value in rules.flatten_variables(b).items()}
  return flat_a.keys() == flat_b.keys() and all(
      flat_a[k].dtype == flat_b[k].dtype and flat_a[k].shape == flat_b[k].shape
      and np.array_equal(np.atleast_1d(flat_a[k]).view(np.uint8), np.atleast_1d(flat_b[k]).view(np.uint8))
      for k in flat_a)


def test_round_trip_is_bit_identical_and_load_returns_the_gam_processor(tmp_path):
  family = registry.build("gam-tiny", memory={"every": 3})
  variables = gam_variables(family, seed=7)
  path = tmp_path / "gam.pth"
  count = twin_families.write(path, family, variables)
  payload = to_torch_twins.read_twin(path)
  assert payload["family"] == "gam-tiny" and len(payload["state_dict"]) == count
  back_family, back, notes = twin_families.import_twin(payload, str(path))
  assert notes == [] and back_family.name == family.name and back_family.config == family.config
  assert bit_identical(back, variables)
  processor = jaxvos_torch.load(path)
  assert processor.context_config == gam_lib.ContextConfig(every=3)
  assert processor.network.cam.alpha.item() == 0.5
