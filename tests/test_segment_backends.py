"""`jaxvos segment --backend jax|torch|onnx`: one command, three runtimes of the same model.

stcn-tiny with random variables, saved as a jaxvos checkpoint, exported by `convert to-torch` (a twin .pth) and
`convert to-onnx`, segments the clip of `tests.family_clip` (5 frames of 48x72, object 1 given at frame 0,
object 2 at frame 2) from folders of frames and masks through each backend; the masks agree but for a tiny
fraction of pixels (float32 runtimes may flip a pixel at a near-tie). Checkpoints of another backend, missing
files and videos the exported graphs do not take are one-line errors.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")

from data_pipelines import image_io  # noqa: E402
from jaxvos.cli import main as cli_main  # noqa: E402
from jaxvos.convert import io  # noqa: E402
from jaxvos.models import registry  # noqa: E402
from tests import family_clip  # noqa: E402
from tests.conftest import REPO  # noqa: E402

MODEL = "stcn-tiny"
INPUT_HW, SIZE = (48, 72), 64  # the model size is 64x96
MAX_DIFFERING = 0.001  # fraction of the clip's pixels where two backends may disagree


def write_clip(folder) -> None:
  """frames/00000.png ... and masks/00000.png, masks/00002.png (the late object) under `folder`."""
  rng = np.random.default_rng(3)
  coarse = rng.integers(0, 256, size=(family_clip.T, INPUT_HW[0] // 4, INPUT_HW[1] // 4, 3), dtype=np.uint8)
  frames = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
  os.makedirs(folder / "frames")
  os.makedirs(folder / "masks")
  for t, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / "frames" / f"{t:05d}.png")
  for t, ids in family_clip.id_maps(INPUT_HW).items():
    image_io.write_mask(str(folder / "masks" / f"{t:05d}.png"), ids)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """{backend: checkpoint} of one stcn-tiny model, and the clip's folder."""
  folder = tmp_path_factory.mktemp("backends")
  family = registry.build(MODEL)
  io.save_model(folder / "ckpt", family, family_clip.random_variables(family, seed=5))
  assert cli_main.main(["convert", "to-torch", "--checkpoint", str(folder / "ckpt"),
                        "--out", str(folder / "model.pth")]) == 0
  assert cli_main.main(["convert", "to-onnx", "--checkpoint", str(folder / "ckpt"), "--out", str(folder / "onnx"),
                        "--input-hw", "x".join(map(str, INPUT_HW)), "--size", str(SIZE), "--objects", "2"]) == 0
  write_clip(folder / "clip")
  return {"jax": folder / "ckpt", "torch": folder / "model.pth", "onnx": folder / "onnx"}, folder / "clip"


def segment(*args) -> int:
  return cli_main.main(["segment", *map(str, args)])


def read_masks(folder) -> list[np.ndarray]:
  return [image_io.read_mask(str(folder / name)) for name in sorted(os.listdir(folder))]


def test_the_torch_runner_imports_no_jax():
  code = ("import sys, jaxvos.export.torch_runner, jaxvos.torch; "
          "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr


def test_the_three_backends_give_the_same_masks(models, tmp_path, capsys):
  checkpoints, clip = models
  outputs = {}
  for backend, checkpoint in checkpoints.items():
    size = [] if backend == "onnx" else ["--size", SIZE]  # the ONNX graphs know their size
    assert segment("--backend", backend, "--checkpoint", checkpoint, "--model", "stcn", "--frames", clip / "frames",
                   "--masks", clip / "masks", "--out", tmp_path / backend, "--overlay", tmp_path / f"{backend}.gif",
                   *size) == 0, capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / backend)) == [f"{t:05d}.png" for t in range(family_clip.T)]
    assert Image.open(tmp_path / f"{backend}.gif").n_frames == family_clip.T
    outputs[backend] = np.stack(read_masks(tmp_path / backend))
  err = capsys.readouterr().err
  assert "objects (id@first frame): 1@00000 2@00002" in err
  reference = outputs["jax"]
  assert reference.shape == (family_clip.T, *INPUT_HW) and set(np.unique(reference)) <= {0, 1, 2}
  np.testing.assert_array_equal(reference[0], family_clip.id_maps(INPUT_HW)[0])  # the annotated first frame
  assert 2 in reference[-1]  # the late object is segmented after it appears
  for backend in ("torch", "onnx"):
    differing = float(np.mean(outputs[backend] != reference))
    assert differing <= MAX_DIFFERING, f"{backend}: {differing:.2%} of the pixels differ from jax's"


def one_line_error(capsys) -> str:
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1, lines
  return lines[0]


@pytest.mark.parametrize("backend, checkpoint, message", [
    (None, "torch", "{ckpt}: is a PyTorch twin checkpoint (.pth, written by `jaxvos convert to-torch`), not a "
     "jaxvos checkpoint directory: run it with --backend torch, or import it with `jaxvos convert from-torch`"),
    ("jax", "onnx", "{ckpt}: is an exported ONNX folder (written by `jaxvos convert to-onnx`), not a jaxvos "
     "checkpoint directory: run it with --backend onnx"),
    ("torch", "onnx", "{ckpt}: is an exported ONNX folder (written by `jaxvos convert to-onnx`), not a PyTorch twin "
     "checkpoint (.pth, written by `jaxvos convert to-torch`): run it with --backend onnx"),
    ("onnx", "jax", "{ckpt}: is a jaxvos checkpoint directory, not an exported ONNX folder (written by `jaxvos "
     "convert to-onnx`): run it with --backend jax, or export it with `jaxvos convert to-onnx`"),
    ("torch", "jax", "{ckpt}: is a jaxvos checkpoint directory, not a PyTorch twin checkpoint (.pth, written by "
     "`jaxvos convert to-torch`): run it with --backend jax, or export it with `jaxvos convert to-torch`"),
    ("torch", "missing", "{ckpt}: not found (--checkpoint of --backend torch: a PyTorch twin checkpoint (.pth, "
     "written by `jaxvos convert to-torch`))"),
    ("onnx", "missing", "{ckpt}: not found (--checkpoint of --backend onnx: an exported ONNX folder"),
    ("torch", "garbage", "{ckpt}: cannot be read as a PyTorch file ("),
    ("torch", None, "segment: --backend torch needs --checkpoint: a PyTorch twin checkpoint (.pth"),
], ids=["pth-to-jax", "onnx-to-jax", "onnx-to-torch", "jax-to-onnx", "jax-to-torch", "missing-pth", "missing-onnx",
        "corrupt-pth", "no-checkpoint"])
def test_a_checkpoint_for_another_backend_is_one_line(models, tmp_path, capsys, backend, checkpoint, message):
  checkpoints, clip = models
  paths = {**checkpoints, "missing": tmp_path / "missing.pth", "garbage": tmp_path / "garbage.pth"}
  paths["garbage"].write_bytes(b"not a pickle")
  options = ["--backend", backend] if backend else []
  options += ["--checkpoint", paths[checkpoint]] if checkpoint else ["--model", MODEL]
  assert segment(*options, "--frames", clip / "frames", "--masks", clip / "masks", "--out", tmp_path / "out") == 2
  line = one_line_error(capsys)
  assert line.startswith("error: " + message.format(ckpt=paths.get(checkpoint))), line
  assert not (tmp_path / "out").exists()


def test_onnx_graphs_refuse_what_they_were_not_exported_for(models, tmp_path, capsys):
  checkpoints, clip = models
  common = ["--backend", "onnx", "--checkpoint", checkpoints["onnx"], "--masks", clip / "masks"]
  assert segment(*common, "--frames", clip / "frames", "--size", 32, "--out", tmp_path / "a") == 2
  assert one_line_error(capsys) == (f"error: segment: --size 32: {checkpoints['onnx']} was exported for --size 64; "
                                    "leave --size out, or export again with `jaxvos convert to-onnx --size`")
  os.makedirs(tmp_path / "big")
  for t in range(family_clip.T):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "big" / f"{t:05d}.png")
  os.makedirs(tmp_path / "big_masks")
  image_io.write_mask(str(tmp_path / "big_masks" / "00000.png"), np.ones((64, 64), np.uint8))
  assert segment("--backend", "onnx", "--checkpoint", checkpoints["onnx"], "--frames", tmp_path / "big", "--masks",
                 tmp_path / "big_masks", "--out", tmp_path / "b") == 2
  assert one_line_error(capsys).startswith(f"error: {checkpoints['onnx']}: a 64x64 video is segmented at 64x64")
  assert segment(*common, "--frames", clip / "frames", "--dtype", "bfloat16", "--out", tmp_path / "c") == 2
  assert one_line_error(capsys) == ("error: segment: --dtype bfloat16 is for --backend jax; the onnx backend runs "
                                    "float32")
