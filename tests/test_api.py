"""The Python API (`jaxvos.load`, processors, `jaxvos.segment_video`) and the README's example of it."""

import contextlib
import io
import os
import pathlib
import pydoc
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import jaxvos
from jaxvos import api

REPO = pathlib.Path(__file__).resolve().parents[1]
HW = (48, 64)


def frames_of(count: int) -> list[np.ndarray]:
  """Frames with a bright square moving right, and a dark one (object 3's) still."""
  frames = []
  for i in range(count):
    frame = np.full((*HW, 3), 60, np.uint8)
    frame[10:26, 4 + 4 * i:20 + 4 * i] = 230
    frame[30:40, 40:50] = 10
    frames.append(frame)
  return frames


def masks_of() -> dict[int, np.ndarray]:
  """Object 1 at frame 0, object 3 (new) at frame 2 in a mask that repeats object 1."""
  first = np.zeros(HW, np.uint8)
  first[10:26, 4:20] = 1
  late = np.zeros(HW, np.uint8)
  late[10:26, 12:28] = 1
  late[30:40, 40:50] = 3
  return {0: first, 2: late}


@pytest.fixture(scope="module")
def model():
  with pytest.warns(UserWarning, match="random weights"):
    return jaxvos.load("stcn-tiny", size=64)


def test_readme_python_example_runs(monkeypatch):
  """The README's "Python API" block, run as written: the default model (small, at its working size)."""
  readme = (REPO / "README.md").read_text()
  section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  assert "jaxvos.load()" in code
  monkeypatch.chdir(REPO)
  printed = io.StringIO()
  with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
    warnings.simplefilter("error")  # trained weights: no random-weights warning
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})  # pylint: disable=exec-used
  assert printed.getvalue().splitlines() == ["[2] (480, 854) (2, 480, 854)", "(16, 480, 854) uint8"]


def test_processor_with_fixed_room_gives_the_masks_of_segment_video(model):
  frames, masks = frames_of(5), masks_of()
  whole = jaxvos.segment_video(model, frames, masks)
  assert whole.shape == (5, *HW) and whole.dtype == np.uint8
  processor = model.processor(max_objects=2)
  streamed = [processor.step(frame, masks.get(index)) for index, frame in enumerate(frames)]
  np.testing.assert_array_equal(np.stack(streamed), whole)
  np.testing.assert_array_equal(streamed[0], masks[0])  # the first frame is its mask
  assert processor.object_ids == [1, 3] and processor.capacity == 2
  assert (streamed[2][masks[2] == 3] == 3).mean() > 0.9  # a new object takes its mask where it appears
  with pytest.raises(ValueError, match="max_objects=2"):
    extra = np.zeros(HW, np.uint8)
    extra[0:4, 0:4] = 7
    processor.step(frames[4], extra)


def test_processor_makes_room_for_new_objects_and_drops_them(model):
  frames, masks = frames_of(5), masks_of()
  fixed = model.processor(max_objects=2)
  growing = model.processor()
  for index, frame in enumerate(frames):
    expected = fixed.step(frame, masks.get(index))
    ids, probs = growing.step(frame, masks.get(index), return_probs=True)
    assert growing.capacity == (1 if index < 2 else 2)  # one slot for object 1, then doubled for object 3
    assert probs.shape == (len(growing.object_ids) + 1, *HW) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(ids, np.argmax(probs, axis=0).choose([0, *growing.object_ids]))
    if index < 2:
      np.testing.assert_array_equal(ids, expected)  # before any growth: the same program's masks
    if index == 2:
      np.testing.assert_array_equal(ids[masks[2] == 3], 3)
  growing.drop(1)
  ids, probs = growing.step(frames[4], return_probs=True)
  assert growing.object_ids == [3] and probs.shape == (2, *HW) and 1 not in np.unique(ids)
  with pytest.raises(KeyError):
    growing.drop(1)


def test_frames_before_any_mask_and_bad_inputs(model):
  processor = model.processor()
  ids, probs = processor.step(frames_of(1)[0], return_probs=True)
  assert not ids.any() and probs.shape == (1, *HW) and (probs == 1).all()
  with pytest.raises(ValueError, match="must be uint8"):
    processor.step(np.zeros((*HW, 3), np.float32))
  with pytest.raises(ValueError, match="mask is 64x40 but its frame is 64x48"):
    processor.step(frames_of(1)[0], np.zeros((40, 64), np.uint8))
  with pytest.raises(ValueError, match="frame is 32x48 but the video's first frame was 64x48"):
    processor.step(np.zeros((48, 32, 3), np.uint8))
  with pytest.raises(ValueError, match="neither a checkpoint directory nor a model name"):
    jaxvos.load("no-such-model")


def test_help_lands_on_the_api():
  text = pydoc.render_doc(jaxvos, renderer=pydoc.plaintext)
  for needle in ("jaxvos.load(", "model.processor()", "processor.step(", "jaxvos.segment_video(",
                 "load(name_or_checkpoint", "segment_video(model, frames, masks)"):
    assert needle in text, needle
  assert set(jaxvos.__all__) >= {"load", "segment_video", "Model", "Processor", "configure_jax"}


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  for name in ("JAX_COMPILATION_CACHE_DIR", "JAXVOS_CACHE_DIR", "XDG_CACHE_HOME"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert api.cache_dir() == str(tmp_path / ".cache" / "jaxvos" / "xla")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert api.cache_dir() == str(tmp_path / "xdg" / "jaxvos" / "xla")
  monkeypatch.setenv("JAXVOS_CACHE_DIR", str(tmp_path / "mine"))
  assert api.cache_dir() == str(tmp_path / "mine" / "xla")
  monkeypatch.setenv("JAXVOS_CACHE_DIR", "")
  assert api.cache_dir() is None
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert api.cache_dir() == str(tmp_path / "jax")


def test_load_uses_the_compilation_cache_and_never_imports_torch(tmp_path):
  """A fresh process: `jaxvos.load` fills the cache folder; PyTorch is not imported; nothing noisy is printed."""
  env = {key: value for key, value in os.environ.items()
         if key not in ("JAX_COMPILATION_CACHE_DIR", "TF_CPP_MIN_LOG_LEVEL")}
  env.update(JAXVOS_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  script = ("import sys, warnings; warnings.simplefilter('ignore'); import jaxvos; "
            "jaxvos.load('stcn-tiny', size=32); print('torch' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "False" and result.stderr == ""
  assert os.listdir(tmp_path / "cache" / "xla")  # the compiled initialiser was cached
