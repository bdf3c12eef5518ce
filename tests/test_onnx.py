"""ONNX export (`jaxvos.export.to_onnx`, jax2onnx) and the onnxruntime runner (`jaxvos.export.onnx_runner`).

Parity: the clip of `tests.family_clip` (5 frames, object 2 appearing at frame 2), given at an input size that
the runner resizes and pads as `segment` does, run by onnxruntime and by jaxvos; probabilities within 1e-4 on
every frame, and the id maps of `Segmenter.segment_video` and `OnnxSegmenter.segment_video` agree. The `-tiny`
model of every registered family exports and is held to parity, each with a memory small enough that 5 frames
reach every part of its policy (`FAMILY_MEMORY`); none is skipped. A family with an operation that cannot be
exported fails with one line naming it and the primitive (`test_an_operation_onnx_cannot_take_is_one_line`).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")

from data_pipelines import image_io  # noqa: E402
from jaxvos.cli import main as cli_main  # noqa: E402
from jaxvos.convert import io  # noqa: E402
from jaxvos.export import geometry, onnx_runner, to_onnx  # noqa: E402
from jaxvos.inference import engine, frames as frames_lib  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from tests import family_clip  # noqa: E402
from tests.conftest import REPO  # noqa: E402

TOLERANCE = 1e-4
INPUT_HW, SIZE = (48, 72), 64  # resized to 64x96: the model size of the exported graphs


def test_the_runner_imports_no_jax():
  code = ("import sys, jaxvos.export.onnx_runner; "
          "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("input_hw,size", [((48, 72), 64), ((100, 70), 32), ((37, 50), 48), ((40, 56), -1),
                                           ((30, 20), 45)])
def test_numpy_geometry_is_the_engines(input_hw, size):
  plan = geometry.plan_geometry(input_hw, size)
  jax_plan = frames_lib.plan_geometry(input_hw, size)
  assert (plan.input_hw, plan.resized_hw, plan.pads) == (jax_plan.input_hw, jax_plan.resized_hw, jax_plan.pads)
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, size=(*input_hw, 3), dtype=np.uint8)
  np.testing.assert_allclose(geometry.preprocess(frame, plan),
                             np.asarray(frames_lib.preprocess(jnp.asarray(frame[None]), jax_plan))[0], atol=1e-5)
  logits = jnp.asarray(rng.normal(size=(1, 3, *plan.model_hw)), jnp.float32)
  np.testing.assert_array_equal(geometry.postprocess(np.asarray(jax.nn.softmax(logits, axis=1))[0], plan),
                                np.asarray(frames_lib.postprocess(logits, jax_plan))[0])
  ids = np.zeros(input_hw, np.uint8)
  ids[: input_hw[0] // 2, : input_hw[1] // 3] = 4
  ids[input_hw[0] // 2:, input_hw[1] // 2:] = 9
  slot_ids = np.array([4, 9])
  np.testing.assert_array_equal(geometry.masks_at_model_size(ids, slot_ids, plan),
                                frames_lib.masks_at_model_size(ids, slot_ids, jax_plan))


def uint8_clip() -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """Frames uint8 [t H W 3] at the input size and the annotations (object 1 at frame 0, 2 at frame 2)."""
  rng = np.random.default_rng(7)
  coarse = rng.integers(0, 256, size=(family_clip.T, INPUT_HW[0] // 4, INPUT_HW[1] // 4, 3), dtype=np.uint8)
  return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2), family_clip.id_maps(INPUT_HW)


def jaxvos_reference(family, variables, frames: np.ndarray, annotations) -> list[np.ndarray]:
  """jaxvos's probabilities at the model size, from the engine's own preprocessing of the uint8 clip."""
  plan = frames_lib.plan_geometry(INPUT_HW, SIZE)
  x = np.asarray(frames_lib.preprocess(jnp.asarray(frames), plan))
  masks = tuple(frames_lib.masks_at_model_size(annotations[t], np.array([i]), plan).astype(np.float32)
                for i, t in ((1, 0), (2, family_clip.APPEARS)))
  return family_clip.jax_probabilities(family, variables, x, masks)


# Per family: a memory small enough that the 5-frame clip reaches every part of its policy, and what its state
# holds after the clip (a state leaf, its first video's value) to show it did.
FAMILY_MEMORY = {
    # Frame 0 pinned, the temporary slot, frame 2 (annotated) to the ring (pinned quota full), evicted by frame 4.
    "stcn": (family_clip.SMALL_MEMORY, ("state.memory.written_at", [0, 4, -1])),
    "stm": (family_clip.SMALL_MEMORY, ("state.memory.written_at", [0, 4, -1])),
    "spvos": (family_clip.SMALL_MEMORY, ("state.memory.written_at", [0, 4, -1])),
    # Frame 2 pinned in the second (last) pinned slot, pixel-wise updates by the trigger (at the latest every 2
    # frames) into a pool of 2 updates read in 3 buckets (a 3-way switch), the pixel-wise match on half of the
    # positions (top-k, scatter into the carried read-out).
    "swiftnet": (dict(pool_updates=2, max_interval=2, read_buckets=3, match_fraction=0.5),
                 ("state.memory.num_pinned", 2)),
    # Every second frame into the global context (frame 2 too: annotated frames always are).
    "gam": (dict(every=2), ("state.memory.count", [3, 2])),
}
FAMILIES = registry.tiny_names()
# SpVOS's sparse executor with three slot counts (no tile, half of them, all: a 3-way switch), not eight; its read
# guard on, so that every branch of its row-sparse read is in the graph ONNX Runtime loads (the clip's memory
# changes every frame, so each frame reads all rows; kept read-outs are checked against the PyTorch twin).
FAMILY_OPTIONS = {"spvos": dict(buckets=(0.5,), read_threshold=3.0)}


def test_every_family_has_a_clip_memory():
  assert {name.split("-")[0] for name in FAMILIES} == set(FAMILY_MEMORY)


def export_tiny(name: str, folder) -> tuple:
  """(family, variables, folder, onnx.json) of `name` with its clip memory and random variables, exported."""
  kind = name.split("-")[0]
  family = registry.build(name, memory=FAMILY_MEMORY[kind][0], **FAMILY_OPTIONS.get(kind, {}))
  variables = family_clip.random_variables(family, seed=11)
  spec = to_onnx.ExportSpec(geometry.plan_geometry(INPUT_HW, SIZE).model_hw, family_clip.O, SIZE)
  meta = to_onnx.export(family, variables, folder / name, spec)
  return family, variables, folder / name, meta


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """`exported(name)`: `export_tiny(name)`, once per module for each name."""
  cache = {}

  def get(name: str) -> tuple:
    if name not in cache:
      cache[name] = export_tiny(name, tmp_path_factory.mktemp("onnx"))
    return cache[name]

  return get


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_probabilities_match_jaxvos(exported, name):
  family, variables, out, meta = exported(name)
  assert sorted(os.listdir(out)) == ["init.onnx", "onnx.json", "step.onnx"]
  assert meta["family"] == family.name and meta["model_hw"] == [64, 96] and meta["exporter"] == to_onnx.EXPORTER
  frames, annotations = uint8_clip()
  expected = jaxvos_reference(family, variables, frames, annotations)
  stream = onnx_runner.OnnxSegmenter(out).stream([1, 2])
  for t, frame in enumerate(frames):
    stream(frame, annotations.get(t))
    error = float(np.abs(stream.probs - expected[t]).max())
    assert error <= TOLERANCE, f"{family.name}: frame {t}: max error {error:.3g} > {TOLERANCE}"
  leaf, value = FAMILY_MEMORY[name.split("-")[0]][1]
  assert stream.state[leaf][0].tolist() == value


def test_an_operation_onnx_cannot_take_is_one_line(tmp_path, monkeypatch, capsys):
  """A family whose step needs a primitive that jax2onnx does not lower and jaxvos does not rewrite (here a
  search in a float table: `le_to` on floats) fails to export with one line naming the family and the primitive,
  and writes nothing."""
  from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(convert_io, "load_model", lambda path: (_FloatSearch(), {}))
  out = tmp_path / "g"
  assert cli_main.main(["convert", "to-onnx", "--checkpoint", str(tmp_path), "--out", str(out), "--input-hw",
                        "32x32", "--size", "-1", "--objects", "1"]) == 2
  assert capsys.readouterr().err == (
      f"error: float-search: cannot be exported to ONNX: {to_onnx.EXPORTER} has no lowering for the primitive "
      "'le_to' (in its step graph) and jaxvos has no exact rewrite of it\n")
  assert not out.exists()


class _FloatSearch:
  """A stand-in family: its step looks the frame's mean up in a float table (`jnp.searchsorted`)."""
  name = "float-search"

  def init_memory(self, variables, frame, masks, object_valid):
    return {"count": jnp.zeros((), jnp.int32)}

  def step(self, variables, state, frame, new_masks, new_object_valid):
    bucket = jnp.searchsorted(jnp.linspace(-1.0, 1.0, 8), jnp.mean(frame))
    logits = jnp.zeros((1, new_masks.shape[1] + 1, *frame.shape[1:3])) + bucket.astype(jnp.float32)
    return {"count": state["count"] + 1}, logits


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stcn", "stm"])
def test_default_configs_export_with_parity(tmp_path, name):
  """The ResNet-50 models of the default configs (graphs of about 200 MB) at 64x96, the family's own memory."""
  family = registry.build(name)
  variables = family_clip.random_variables(family, seed=13)
  spec = to_onnx.ExportSpec(geometry.plan_geometry(INPUT_HW, SIZE).model_hw, family_clip.O, SIZE)
  to_onnx.export(family, variables, tmp_path / name, spec)
  frames, annotations = uint8_clip()
  expected = jaxvos_reference(family, variables, frames, annotations)
  stream = onnx_runner.OnnxSegmenter(tmp_path / name).stream([1, 2])
  for t, frame in enumerate(frames):
    stream(frame, annotations.get(t))
    error = float(np.abs(stream.probs - expected[t]).max())
    assert error <= TOLERANCE, f"{name}: frame {t}: max error {error:.3g} > {TOLERANCE}"


@pytest.mark.parametrize("name", ["stcn-tiny", "stm-tiny"])  # the runner's object handling: any family's
def test_onnx_segments_the_video_as_the_engine_does(exported, name):
  family, variables, out, _ = exported(name)
  frames, annotations = uint8_clip()
  ours = list(onnx_runner.segment_video(out, iter(frames), annotations))
  theirs = list(engine.Segmenter(family, jax.tree.map(jnp.asarray, variables), size=SIZE).segment_video(
      iter(frames), annotations))
  assert len(ours) == len(theirs) == family_clip.T
  for t, (a, b) in enumerate(zip(ours, theirs)):
    assert a.shape == INPUT_HW and a.dtype == np.uint8
    assert np.mean(a == b) >= 0.999, f"frame {t}: {np.mean(a != b):.2%} of the pixels differ"
  assert set(np.unique(ours[-1])) <= {0, 1, 2}


def test_a_video_that_does_not_fit_the_graphs_is_refused(exported):
  _, _, out, _ = exported("stcn-tiny")
  stream = onnx_runner.OnnxSegmenter(out).stream([1])
  with pytest.raises(ValueError, match=r"exported for 96x64; export again with --input-hw 64x64"):
    stream(np.zeros((64, 64, 3), np.uint8), np.ones((64, 64), np.uint8))
  with pytest.raises(ValueError, match=r"3 objects .* at most 2; export again with --objects 3"):
    onnx_runner.OnnxSegmenter(out).stream([1, 2, 3])


def test_convert_to_onnx_and_run_onnx_commands(tmp_path, capsys):
  family = registry.build("stcn-tiny")
  io.save_model(tmp_path / "ckpt", family, family_clip.random_variables(family, seed=12))
  assert cli_main.main(["convert", "to-onnx", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "g"),
                        "--input-hw", "48x72", "--size", "64", "--objects", "3"]) == 0
  assert "stcn-tiny at 96x64 with 3 object slots" in capsys.readouterr().out
  frames, annotations = uint8_clip()
  os.makedirs(tmp_path / "frames")
  os.makedirs(tmp_path / "masks")
  for t, frame in enumerate(frames):
    Image.fromarray(frame).save(tmp_path / "frames" / f"{t:05d}.png")
  for t, ids in annotations.items():
    image_io.write_mask(str(tmp_path / "masks" / f"{t:05d}.png"), ids)
  assert cli_main.main(["convert", "run-onnx", "--model", str(tmp_path / "g"), "--frames", str(tmp_path / "frames"),
                        "--masks", str(tmp_path / "masks"), "--out", str(tmp_path / "out")]) == 0
  written = sorted(os.listdir(tmp_path / "out"))
  assert written == [f"{t:05d}.png" for t in range(family_clip.T)]
  expected = list(onnx_runner.segment_video(tmp_path / "g", iter(frames), annotations))
  for name, ids in zip(written, expected):
    np.testing.assert_array_equal(image_io.read_mask(str(tmp_path / "out" / name)), ids)
  # A video of another size: one line naming the model folder and what to export.
  os.makedirs(tmp_path / "big")
  for t in range(2):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big" / f"{t:05d}.png")
  image_io.write_mask(str(tmp_path / "big_mask.png"), np.ones((64, 64), np.uint8))
  capsys.readouterr()
  assert cli_main.main(["convert", "run-onnx", "--model", str(tmp_path / "g"), "--frames", str(tmp_path / "big"),
                        "--masks", str(tmp_path / "big_mask.png"), "--out", str(tmp_path / "out2")]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {tmp_path / 'g'}: a 64x64 video is segmented at 64x64") and err.count("\n") == 1


def test_convert_takes_every_registered_family():
  parser = cli_main.build_parser()
  for name in [*registry.names(), "resnet50"]:
    args = parser.parse_args(["convert", "from-torch", "--family", name, "--checkpoint", "m.pth", "--out", "o"])
    assert args.family == name
