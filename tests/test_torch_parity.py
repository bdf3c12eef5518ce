"""Import parity with independent PyTorch references: torchvision-layout ResNets and stcnbuf's STCN.

Random PyTorch weights (BatchNorm statistics included) are converted with `jaxvos.convert` and both sides run
on the same inputs. Features are compared relative to their magnitude, probabilities absolutely, within 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxvos.convert import from_torch  # noqa: E402
from jaxvos.memory.key_value import MemoryConfig  # noqa: E402
from tests.torch_reference import torchvision_standin  # noqa: E402

TOLERANCE = 1e-4
H, W, T, O = 64, 96, 5, 2
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_close(actual, expected, name: str, relative: bool = True) -> None:
  """max |actual - expected| <= TOLERANCE, times max |expected| (at least 1) when `relative`."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
  scale = max(1.0, float(np.abs(expected).max())) if relative else 1.0
  error = float(np.abs(actual - expected).max())
  assert error <= TOLERANCE * scale, f"{name}: max error {error:.3g} > {TOLERANCE * scale:.3g}"


def nhwc(x: np.ndarray) -> np.ndarray:
  return np.moveaxis(np.asarray(x), -3, -1)


def state_dict_numpy(model) -> dict[str, np.ndarray]:
  return {key: value.numpy() for key, value in model.state_dict().items()}


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_features(depth):
  model = getattr(torchvision_standin, f"resnet{depth}")()
  torchvision_standin.randomize_batchnorm(model, torch.Generator().manual_seed(depth)).eval()
  family, variables, notes = from_torch.import_state_dict(f"resnet{depth}", state_dict_numpy(model))
  assert any("layer4" in note for note in notes) and any("fc.weight" in note for note in notes)
  image = np.random.default_rng(depth).normal(size=(1, 3, 64, 64)).astype(np.float32)
  with torch.no_grad():
    feats2 = model.relu(model.bn1(model.conv1(torch.from_numpy(image))))
    feats4 = model.layer1(model.maxpool(feats2))
    feats8 = model.layer2(feats4)
    feats16 = model.layer3(feats8)
  feats = family.module.apply(variables, jnp.asarray(nhwc(image)))
  for name, expected in (("feats2", feats2), ("feats4", feats4), ("feats8", feats8), ("feats16", feats16)):
    assert_close(feats[name], nhwc(expected.numpy()), f"resnet{depth} {name}")


def _clip() -> tuple[np.ndarray, np.ndarray]:
  """Normalised random frames [t 3 h w] and two elliptic blobs [o h w] as the first frame's masks."""
  rng = np.random.default_rng(0)
  frames = rng.normal(size=(T, 3, H, W)).astype(np.float32)
  y, x = np.mgrid[:H, :W]
  masks = np.stack([((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1.0
                    for cy, cx, ry, rx in ((20, 30, 12, 15), (42, 66, 14, 18))]).astype(np.float32)
  return frames, masks


@pytest.fixture(scope="module")
def stcn_reference():
  """(reference model, its state dict, the clip, the reference outputs of every frame)."""
  pytest.importorskip("stcnbuf")
  from tests.torch_reference import stcn_reference as reference  # pylint: disable=g-import-not-at-top
  frames, masks = _clip()
  model = reference.build(torch.from_numpy(frames), torch.from_numpy(masks)[:, None])
  outputs = reference.run(model, torch.from_numpy(frames), torch.from_numpy(masks)[:, None], every=1, top_k=20)
  return model, state_dict_numpy(model), (frames, masks), outputs


def test_stcn_clip_matches_stcnbuf(stcn_reference):
  _, state_dict, (frames, masks), expected = stcn_reference
  # Every frame into memory, nothing evicted, no temporary frame: the reference's schedule above.
  memory = MemoryConfig(slots=T, every=1, max_pinned=1, temporary=False)
  family, variables, notes = from_torch.import_state_dict("stcn", state_dict, memory=memory, top_k=20)
  assert notes == [] and not family.config.single_object
  frames = jnp.asarray(nhwc(frames))
  masks, valid, no_masks = jnp.asarray(masks)[None], jnp.ones((1, O), bool), jnp.zeros((1, O, H, W))
  # Compiled: op-by-op dispatch of a ResNet-50 compiles every op for its shapes, which takes longer.
  state = jax.jit(family.init_memory)(variables, frames[:1], masks, valid)
  encode_query = jax.jit(lambda variables, frame: family.module.apply(variables, frame, method="encode_query")[0])
  step = jax.jit(family.step)
  for t in range(T):
    query = encode_query(variables, frames[t:t + 1])
    for name, ref_name in (("key16", "k16"), ("value16", "f16_thin"), ("feats16", "f16"), ("feats8", "f8"),
                           ("feats4", "f4")):
      assert_close(query[name], nhwc(expected[t][ref_name]), f"frame {t} {name}")
    if t == 0:
      continue
    readout, _, _ = family.memory.read(state.memory, query, None)
    assert_close(readout["readout"][0], nhwc(expected[t]["readout"]), f"frame {t} read-out")
    state, output = step(variables, state, frames[t:t + 1], no_masks, jnp.zeros((1, O), bool))
    assert_close(jax.nn.softmax(output.logits, axis=1)[0], expected[t]["probs"], f"frame {t} probabilities",
                 relative=False)
  assert int(np.sum(np.asarray(state.memory.written_at) >= 0)) == T


def test_stcn_exports_back_to_stcnbuf(stcn_reference):
  model, state_dict, _, _ = stcn_reference
  family, variables, _ = from_torch.import_state_dict("stcn", state_dict)
  exported = from_torch.export_state_dict(family, variables)
  assert set(exported) == set(state_dict)
  model.load_state_dict({key: torch.from_numpy(value) for key, value in exported.items()}, strict=True)
  for key, value in state_dict.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_stcn_single_object_variant(stcn_reference):
  """The old single-object checkpoints: a value encoder on RGB and the mask only (4 input channels)."""
  model, state_dict, (frames, masks), _ = stcn_reference
  state_dict = dict(state_dict, **{"value_encoder.conv1.weight": state_dict["value_encoder.conv1.weight"][:, :4]})
  family, variables, notes = from_torch.import_state_dict("stcn", state_dict)
  assert family.config.single_object and "single-object" in notes[0]
  frame, mask = torch.from_numpy(frames[:1]), torch.from_numpy(masks[:1, None])
  encoder = model.value_encoder
  with torch.no_grad():
    _, _, f16, _, _ = model.encode_key(frame)
    x = torch.nn.functional.conv2d(torch.cat([frame, mask], 1), torch.from_numpy(state_dict[
        "value_encoder.conv1.weight"]), encoder.conv1.bias, stride=2, padding=3)
    x = encoder.layer3(encoder.layer2(encoder.layer1(encoder.maxpool(encoder.relu(encoder.bn1(x))))))
    expected = encoder.fuser(x, f16).numpy()
  # The key encoder is checked above; its feats16 is the value encoder's other input.
  query = {"feats16": jnp.asarray(nhwc(f16.numpy())), "key16": jnp.zeros((1, H // 16, W // 16, 64))}
  values = family.module.apply(variables, jnp.asarray(nhwc(frames[:1])), query, jnp.asarray(masks[None, :1]),
                               method="encode_memory")["values"]
  assert_close(values[0], nhwc(expected), "single-object values")
