"""`jaxvos segment`: inputs, outputs, overlays, progress and bad input.

Most tests replace the model with a stand-in engine that copies the last known mask forward (fast, and its output
is known exactly), so they test the command's input and output handling; `test_end_to_end_*` run the real engine
with the real `stcn-tiny` model.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import image_io, synthetic, video_io
from data_pipelines.errors import DataWarning
from jaxvos.cli import main as cli_main
from jaxvos.cli import segment as segment_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HW = (48, 64)
NAMES = ["frame_8", "frame_9", "frame_10", "frame_11", "frame_12"]  # numeric order differs from string order


def square(hw, top, left, size, object_id) -> np.ndarray:
  ids = np.zeros(hw, np.uint8)
  ids[top:top + size, left:left + size] = object_id
  return ids


def frames_of(count: int, hw=HW) -> list[np.ndarray]:
  """Smooth frames (they survive JPEG / H.264) with a bright square moving right."""
  y, x = np.mgrid[:hw[0], :hw[1]].astype(np.float32)
  frames = []
  for i in range(count):
    frame = np.stack([x * 2, y * 2, np.full_like(x, 60)], -1)
    frame[10:26, 4 + 4 * i:20 + 4 * i] = 230
    frames.append(frame.astype(np.uint8))
  return frames


@pytest.fixture
def clip(tmp_path):
  """A folder of 5 frames with masks at frame_8 (object 1) and frame_10 (late object 3, and object 1 again)."""
  frames_dir, masks_dir = tmp_path / "frames", tmp_path / "masks"
  frames_dir.mkdir()
  for name, frame in zip(NAMES, frames_of(5)):
    Image.fromarray(frame).save(frames_dir / f"{name}.jpg", quality=95)
  image_io.write_mask(str(masks_dir / "frame_8.png"), square(HW, 10, 4, 16, 1))
  image_io.write_mask(str(masks_dir / "frame_10.png"), square(HW, 10, 12, 16, 1) + square(HW, 30, 40, 8, 3))
  return tmp_path


class CopyEngine:
  """Stand-in for `jaxvos.inference.Segmenter`: each new object's mask is carried forward unchanged.

  `fail_after` frames, it raises `failure` instead (a run that fails half-way).
  """

  def __init__(self):
    self.calls, self.size, self.models_loaded = [], None, 0
    self.fail_after, self.failure = None, None

  def segment_video(self, frames, annotations, stats=None):
    del stats  # it reports no statistics
    self.calls.append({"annotations": {i: np.unique(m).tolist() for i, m in annotations.items()},
                       "size": self.size})
    current = None
    for index, frame in enumerate(frames):
      if index == self.fail_after:
        raise self.failure
      current = np.zeros(frame.shape[:2], np.uint8) if current is None else current
      if index in annotations:
        current = np.where(annotations[index] > 0, annotations[index], current)
      yield current.copy()


@pytest.fixture
def engine(monkeypatch):
  engine = CopyEngine()

  def load_model(name, checkpoint):
    engine.models_loaded += 1
    return None, {}

  monkeypatch.setattr(segment_cli, "load_model", load_model)
  monkeypatch.setattr(segment_cli, "check_memory", lambda *args: None)
  monkeypatch.setattr(segment_cli, "make_segmenter",
                      lambda family, variables, size, dtype: setattr(engine, "size", size) or engine)
  return engine


def segment(*args) -> int:
  return cli_main.main(["segment", "--model", "stcn-tiny", *map(str, args)])


def read_outputs(folder) -> dict[str, np.ndarray]:
  outputs = {}
  for name in sorted(os.listdir(folder)):
    with Image.open(os.path.join(folder, name)) as image:
      assert image.mode == "P" and image.getpalette()[3:6] == [128, 0, 0]
      outputs[os.path.splitext(name)[0]] = np.asarray(image)
  return outputs


def test_folder_with_a_late_object(clip, engine, capsys):
  assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out",
                 "--overlay", clip / "overlay.gif", "--size", 96) == 0
  assert engine.calls == [{"annotations": {0: [0, 1], 2: [0, 3]}, "size": 96}]  # frame_10: only the new object
  outputs = read_outputs(clip / "out")
  assert list(outputs) == sorted(NAMES)
  assert all(ids.shape == HW for ids in outputs.values())
  assert [sorted(np.unique(outputs[n]).tolist()) for n in NAMES] == [[0, 1]] * 2 + [[0, 1, 3]] * 3
  np.testing.assert_array_equal(outputs["frame_12"], square(HW, 10, 4, 16, 1) + square(HW, 30, 40, 8, 3))
  with Image.open(clip / "overlay.gif") as gif:
    assert (gif.n_frames, gif.size) == (5, (64, 48))
  stderr = capsys.readouterr().err
  assert f"segment: {clip / 'frames'}: 5 frames of 64x48, objects (id@first frame): 1@frame_8 3@frame_10" in stderr
  assert "segment: 5 frames in" in stderr and "frames/s" in stderr and f"wrote {clip / 'overlay.gif'}" in stderr


def test_video_file_with_masks_named_by_index(tmp_path, engine):
  video_io.write_video(str(tmp_path / "clip.mp4"), frames_of(5), fps=10)
  image_io.write_mask(str(tmp_path / "masks" / "00000.png"), square(HW, 10, 4, 16, 1))
  image_io.write_mask(str(tmp_path / "masks" / "3.png"), square(HW, 30, 40, 8, 3))
  assert segment("--frames", tmp_path / "clip.mp4", "--masks", tmp_path / "masks", "--out", tmp_path / "out",
                 "--overlay", tmp_path / "overlay.mp4") == 0
  assert engine.calls[0]["annotations"] == {0: [0, 1], 3: [0, 3]}
  outputs = read_outputs(tmp_path / "out")
  assert list(outputs) == ["00000", "00001", "00002", "00003", "00004"]
  assert [sorted(np.unique(ids).tolist()) for ids in outputs.values()] == [[0, 1]] * 3 + [[0, 1, 3]] * 2
  overlay = video_io.VideoReader(str(tmp_path / "overlay.mp4"))
  assert (len(overlay), overlay.frame_hw, overlay.fps) == (5, HW, 10.0)
  first = next(iter(overlay)).astype(int)
  assert abs(first[15, 10, 1] - 0.5 * 230) < 12  # blended with object 1's red: green halves


def test_one_png_for_the_first_frame_and_binary_masks(clip, engine, capsys):
  Image.fromarray(square(HW, 10, 4, 16, 255)).save(clip / "first.png")  # grey 0/255: DAVIS 2016 style
  assert segment("--frames", clip / "frames", "--masks", clip / "first.png", "--out", clip / "out") == 0
  assert engine.calls[0]["annotations"] == {0: [0, 1]}
  assert all(sorted(np.unique(ids).tolist()) == [0, 1] for ids in read_outputs(clip / "out").values())
  assert "a 0/255 mask (DAVIS 2016 style): one object, written as id 1" in capsys.readouterr().err


def bilinear(ids: np.ndarray, hw) -> np.ndarray:
  """An id map resized with bilinear resampling, as image editors do: anti-aliased edges."""
  return np.asarray(Image.fromarray(ids).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def test_binary_mask_with_soft_edges_is_thresholded_with_a_warning(clip, engine, capsys):
  soft = bilinear(square((24, 32), 5, 2, 8, 255), HW)  # 0/255, with values in between on its edges
  assert len(np.unique(soft)) > 2
  Image.fromarray(soft).save(clip / "first.png")
  with pytest.warns(DataWarning, match="anti-aliased.*thresholded at 128"):
    assert segment("--frames", clip / "frames", "--masks", clip / "first.png", "--out", clip / "out") == 0
  assert engine.calls[0]["annotations"] == {0: [0, 1]}
  np.testing.assert_array_equal(read_outputs(clip / "out")["frame_8"], (soft >= 128).astype(np.uint8))
  assert "a 0/255 mask (DAVIS 2016 style): one object, written as id 1" in capsys.readouterr().err


def test_multi_object_mask_with_anti_aliased_edges_is_repaired_with_a_warning(clip, engine):
  ids = square((24, 32), 2, 2, 10, 3)
  ids[8:20, 12:28] = 6
  soft = bilinear(ids, HW)  # ids 0, 3 and 6, and 1, 2, 4, 5 on the edges between them
  assert np.unique(soft).tolist() == [0, 1, 2, 3, 4, 5, 6]
  Image.fromarray(soft).save(clip / "first.png")
  with pytest.warns(DataWarning, match="values 1, 2, 4, 5 occur only on the edges between other ids"):
    assert segment("--frames", clip / "frames", "--masks", clip / "first.png", "--out", clip / "out") == 0
  assert engine.calls[0]["annotations"] == {0: [0, 3, 6]}
  first = read_outputs(clip / "out")["frame_8"]
  assert (first[soft == 3] == 3).all() and (first[soft == 6] == 6).all() and (first[soft == 0] == 0).all()
  assert (first[soft == 5] == 6).all() and (first[soft == 1] == 0).all()  # each edge value to its nearer id


@pytest.mark.parametrize("failure", ["bad input", "interrupted", "out of memory"])
def test_a_failed_run_leaves_no_partial_output(clip, engine, capsys, failure):
  import jax  # pylint: disable=g-import-not-at-top
  engine.fail_after = 3
  engine.failure = {"bad input": segment_cli.DataError(clip / "frames" / "frame_11.jpg", "went bad"),
                    "interrupted": KeyboardInterrupt(),
                    "out of memory": jax.errors.JaxRuntimeError(
                        "RESOURCE_EXHAUSTED: Out of memory allocating 75647003056 bytes.\nmore details")}[failure]
  status = segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out", "--overlay",
                   clip / "overlay.mp4")
  assert status == {"bad input": 2, "interrupted": 130, "out of memory": 1}[failure]
  assert not (clip / "out").exists() and not (clip / "overlay.mp4").exists()
  assert not [name for name in os.listdir(clip) if "partial" in name]  # the staged outputs are gone too
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert last == {"bad input": f"error: {clip / 'frames' / 'frame_11.jpg'}: went bad", "interrupted": "interrupted",
                  "out of memory": "error: segment: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating "
                  "75647003056 bytes.); try a smaller --size, fewer objects or frames per call, or a family with "
                  "a fixed-size memory (gam)"}[failure]
  # A retry needs no --overwrite, and an existing --out with --overwrite keeps its other files on failure.
  engine.fail_after = None
  assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out") == 0
  assert len(os.listdir(clip / "out")) == 5


def test_a_davis_run_that_fails_keeps_only_the_sequences_it_finished(tmp_path, engine):
  config = synthetic.SyntheticConfig(height=32, width=48, num_frames=4)
  synthetic.write_davis(str(tmp_path / "davis"), 2, 0, config)
  first, second = (tmp_path / "davis" / "ImageSets" / "2017" / "train.txt").read_text().split()
  calls = []

  def fail_on_the_second(frames, annotations, stats=None):
    calls.append(annotations)
    engine.fail_after = 2 if len(calls) == 2 else None
    engine.failure = KeyboardInterrupt()
    return CopyEngine.segment_video(engine, frames, annotations)

  engine.segment_video = fail_on_the_second
  assert segment("--davis-root", tmp_path / "davis", "--imageset", "ImageSets/2017/train.txt", "--out",
                 tmp_path / "out") == 130
  assert os.listdir(tmp_path / "out") == [first] and len(os.listdir(tmp_path / "out" / first)) == 4
  assert sorted(os.listdir(tmp_path)) == ["davis", "out"]  # nothing staged is left behind
  assert second not in os.listdir(tmp_path / "out")


def test_the_bundled_example_from_any_folder(tmp_path, engine, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert segment("--example", "judo", "--out", "judo_masks") == 0
  assert engine.calls[0]["annotations"] == {0: [0, 1], 5: [0, 2], 8: [0, 3], 13: [0, 4]}
  outputs = read_outputs(tmp_path / "judo_masks")
  assert len(outputs) == 16 and outputs["00015"].shape == (480, 854)
  assert np.unique(outputs["00015"]).tolist() == [0, 1, 2, 3, 4]


def test_a_run_that_cannot_fit_is_refused_in_one_line(clip, capsys, monkeypatch):
  from jaxvos.inference import budget  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(budget, "available_bytes", lambda: (2**20, "this machine"))
  assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out", "--size", -1) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: segment: stcn-tiny needs about "), lines
  assert "for 64x48 frames at --size -1 with 2 object(s), but this machine has 0.0 GB free; try " in lines[0]
  assert "or a family whose memory does not grow with the frame size (gam)" in lines[0]
  assert not (clip / "out").exists()  # refused before the model was built (no "initialised" line)


def test_mask_a_pixel_off_is_repaired_with_a_warning(clip, engine):
  path = clip / "masks" / "frame_10.png"
  image_io.write_mask(str(path), square((48, 63), 30, 40, 8, 3))
  with pytest.warns(DataWarning, match="mask is 63x48 but its frame is 64x48; resized"):
    assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out") == 0
  assert len(read_outputs(clip / "out")) == 5


def test_a_gap_in_the_frame_numbers_is_a_warning(clip, engine):
  os.remove(clip / "frames" / "frame_11.jpg")
  with pytest.warns(DataWarning, match="frame_12.jpg: missing frame: the numbering jumps from frame_10.jpg to "
                    "frame_12.jpg; segmenting the frames that are there"):
    assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out") == 0
  assert list(read_outputs(clip / "out")) == ["frame_10", "frame_12", "frame_8", "frame_9"]


def progress_lines(monkeypatch, capsys, clock: list[float], total: int, finish: bool = True) -> list[str]:
  """The lines `Progress` prints for `total` masks, `clock` giving time.monotonic's values: the start, one per mask,
  then (with `finish`) the end."""
  times = iter(clock)
  monkeypatch.setattr(segment_cli.time, "monotonic", lambda: next(times))
  progress = segment_cli.Progress(total, 1)
  for _ in range(total):
    progress.update()
  if finish:
    progress.finish("out")
  return capsys.readouterr().err.splitlines()


def test_progress_lines_at_the_end_of_bursts(monkeypatch, capsys):
  # start; frame 0; two chunks of masks; finish
  assert progress_lines(monkeypatch, capsys, [0.0] + [1.0] + [60.0] * 15 + [90.0] * 16 + [91.0], 32) == [
      "segment: 16/32 frames, 0.27 frames/s, ETA 60 s",
      "segment: 32 frames in 91.0 s (0.35 frames/s, compilation included); masks written to out"]
  # a steady 10 masks/s: no pauses, lines every ~10 s
  lines = progress_lines(monkeypatch, capsys, [0.0] + [0.1 * i for i in range(1, 301)], 300, finish=False)
  assert len(lines) == 2 and all(" frames, 10.00 frames/s, ETA " in line for line in lines), lines
  # Chunks of 4 masks: the first after 20 s of compilation, then one every 4 s. From the second line on, the time
  # left is at the rate since the first line (1 frame/s), not the rate since the start (0.33 at 8 frames).
  assert progress_lines(monkeypatch, capsys, [0.0] + [20.0] * 4 + [24.0] * 4 + [28.0] * 4 + [32.0] * 4 + [33.0],
                        16) == [
      "segment: 4/16 frames, 0.20 frames/s, ETA 60 s",
      "segment: 8/16 frames, 0.33 frames/s, ETA 8 s",
      "segment: 12/16 frames, 0.43 frames/s, ETA 4 s",
      "segment: 16 frames in 33.0 s (0.48 frames/s, compilation included); masks written to out"]


def test_davis_root_writes_one_folder_per_sequence(tmp_path, engine):
  config = synthetic.SyntheticConfig(height=32, width=48, num_frames=4)
  names = synthetic.write_davis(str(tmp_path / "davis"), 2, 0, config)
  val = (tmp_path / "davis" / "ImageSets" / "2017" / "train.txt").read_text().split()
  assert segment("--davis-root", tmp_path / "davis", "--imageset", "ImageSets/2017/train.txt", "--out",
                 tmp_path / "out") == 0
  assert sorted(os.listdir(tmp_path / "out")) == sorted(val) and set(val) <= set(names)
  for name in val:
    outputs = read_outputs(tmp_path / "out" / name)
    assert list(outputs) == ["00000", "00001", "00002", "00003"]
    assert all(ids.shape == (32, 48) for ids in outputs.values())


def test_never_writes_over_user_data_without_overwrite(clip, engine, capsys):
  (clip / "out").mkdir()
  (clip / "out" / "notes.txt").write_text("mine")
  args = ("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "out")
  assert segment(*args) == 2
  assert capsys.readouterr().err.strip().startswith(f"error: {clip / 'out'}: folder is not empty")
  assert segment(*args, "--overwrite") == 0
  assert (clip / "out" / "notes.txt").read_text() == "mine" and len(os.listdir(clip / "out")) == 6
  (clip / "o.gif").write_bytes(b"old")
  assert segment(*args, "--overwrite", "--overlay", clip / "o.gif") == 0
  assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "new", "--overlay",
                 clip / "o.gif") == 2
  assert f"error: {clip / 'o.gif'}: exists;" in capsys.readouterr().err
  assert segment("--frames", clip / "frames", "--masks", clip / "masks", "--out", clip / "masks",
                 "--overwrite") == 2
  assert "is an input folder" in capsys.readouterr().err


def _damage(clip, case: str):
  """Breaks the clip as `case` says; returns (extra options, the path the error names, what it says)."""
  frames, masks = clip / "frames", clip / "masks"
  if case == "missing frames folder":
    return ["--frames", clip / "nope"], clip / "nope", "not found"
  if case == "empty frames folder":
    (clip / "empty").mkdir()
    return ["--frames", clip / "empty"], clip / "empty", "no jpg/jpeg/png/bmp/webp files"
  if case == "corrupt frame":
    (frames / "frame_11.jpg").write_bytes(b"\xff\xd8\xff broken")
    return [], frames / "frame_11.jpg", "cannot be decoded as an image"
  if case == "truncated frame":  # the header is fine: found by decoding every frame up front
    data = (frames / "frame_11.jpg").read_bytes()
    (frames / "frame_11.jpg").write_bytes(data[:len(data) * 7 // 10])
    with Image.open(frames / "frame_11.jpg") as image:
      assert image.size == (HW[1], HW[0])
    return [], frames / "frame_11.jpg", "cannot be decoded as an image"
  if case == "truncated video":  # its header and first frame are fine: found by decoding it all up front
    video_io.write_video(str(clip / "clip.mp4"), frames_of(10), fps=10)
    image_io.write_mask(str(clip / "vmasks" / "00000.png"), square(HW, 10, 4, 16, 1))
    data = (clip / "clip.mp4").read_bytes()
    (clip / "clip.mp4").write_bytes(data[:len(data) * 9 // 10])
    assert len(video_io.VideoReader(str(clip / "clip.mp4"))) == 10
    return ["--frames", clip / "clip.mp4", "--masks", clip / "vmasks"], clip / "clip.mp4", "cannot decode frame 00002"
  if case == "anti-aliased mask after a binary first mask":  # no "note:" about the first mask before the error
    Image.fromarray(square(HW, 10, 4, 16, 255)).save(masks / "frame_8.png")
    Image.fromarray(np.zeros((*HW, 3), np.uint8)).save(masks / "frame_10.png")
    return [], masks / "frame_10.png", "is a colour (RGB) image"
  if case == "frame of another size":
    Image.fromarray(frames_of(1, (40, 64))[0]).save(frames / "frame_11.jpg")
    return [], frames / "frame_11.jpg", "frame is 64x40 but the first frame is 64x48"
  if case == "RGB mask":
    Image.fromarray(np.zeros((*HW, 3), np.uint8)).save(masks / "frame_10.png")
    return [], masks / "frame_10.png", "is a colour (RGB) image"
  if case == "mask of another aspect ratio":
    image_io.write_mask(str(masks / "frame_10.png"), square((48, 48), 30, 40, 8, 3))
    return [], masks / "frame_10.png", "a different aspect ratio"
  if case == "mask without a frame":
    image_io.write_mask(str(masks / "frame_13.png"), square(HW, 30, 40, 8, 3))
    return [], masks / "frame_13.png", "annotation has no frame"
  if case == "no mask for the first frame":
    os.remove(masks / "frame_8.png")
    return [], masks / "frame_10.png", "no mask for the first frame frame_8"
  if case == "empty first mask":
    image_io.write_mask(str(masks / "frame_8.png"), np.zeros(HW, np.uint8))
    return [], masks / "frame_8.png", "holds no object"
  if case == "empty masks folder":
    for name in os.listdir(masks):
      os.remove(masks / name)
    return [], masks, "no png files"
  if case == "masks not a PNG":
    Image.fromarray(square(HW, 10, 4, 16, 1)).save(clip / "first.jpg")
    return ["--masks", clip / "first.jpg"], clip / "first.jpg", "is not a PNG"
  if case == "one image as frames":
    return ["--frames", frames / "frame_8.jpg"], frames / "frame_8.jpg", "is one image"
  if case == "corrupt video":
    (clip / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    return ["--frames", clip / "clip.mp4"], clip / "clip.mp4", "cannot be read as a video"
  if case == "video mask named otherwise":
    video_io.write_video(str(clip / "clip.mp4"), frames_of(5), fps=10)
    return ["--frames", clip / "clip.mp4"], masks / "frame_8.png", "cannot tell which frame"
  if case == "video mask past the end":
    video_io.write_video(str(clip / "clip.mp4"), frames_of(5), fps=10)
    image_io.write_mask(str(clip / "vmasks" / "00000.png"), square(HW, 10, 4, 16, 1))
    image_io.write_mask(str(clip / "vmasks" / "00005.png"), square(HW, 10, 4, 16, 2))
    return (["--frames", clip / "clip.mp4", "--masks", clip / "vmasks"], clip / "vmasks" / "00005.png",
            "the video has 5 frames (00000 to 00004)")
  assert case == "bad overlay name"
  return ["--overlay", clip / "overlay.avi"], clip / "overlay.avi", "must be an .mp4 or a .gif"


@pytest.mark.parametrize("case", [
    "missing frames folder", "empty frames folder", "corrupt frame", "truncated frame", "truncated video",
    "anti-aliased mask after a binary first mask", "frame of another size", "RGB mask",
    "mask of another aspect ratio", "mask without a frame", "no mask for the first frame", "empty first mask",
    "empty masks folder", "masks not a PNG", "one image as frames", "corrupt video", "video mask named otherwise",
    "video mask past the end", "bad overlay name"])
def test_bad_input_is_one_line_naming_the_file(clip, engine, capsys, case):
  extra, path, message = _damage(clip, case)
  options = {"--frames": clip / "frames", "--masks": clip / "masks", "--out": clip / "out"}
  for key, value in zip(extra[::2], extra[1::2]):
    options[key] = value
  assert segment(*[str(item) for pair in options.items() for item in pair]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message in lines[0], lines
  assert engine.models_loaded == 0 and not engine.calls  # found before any model is built
  assert not (clip / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--frames", "f"], "--frames needs --masks"),
    (["--frames", "f", "--masks", "m", "--davis-root", "d"], "give one of --frames (with --masks), --example or"),
    (["--example", "judo", "--frames", "f"], "give one of --frames"),
    (["--example", "judo", "--masks", "m"], "--masks goes with --frames"),
    (["--davis-root", "d"], "--davis-root needs --imageset"),
    (["--frames", "f", "--masks", "m", "--size", "8"], "--size 8"),
])
def test_options_that_do_not_fit_together(engine, capsys, args, message):
  assert segment(*args, "--out", "o") == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: segment: ") and message in lines[0]


def test_unknown_model_lists_the_known_ones(clip, capsys):
  assert cli_main.main(["segment", "--model", "stcn-huge", "--frames", str(clip / "frames"), "--masks",
                        str(clip / "masks"), "--out", str(clip / "out")]) == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --model: unknown model 'stcn-huge'")
  assert "stcn-tiny" in lines[0]


def test_end_to_end_with_the_real_engine_and_stcn_tiny(tmp_path, capsys):
  hw = (64, 96)
  video_io.write_video(str(tmp_path / "clip.mp4"), frames_of(5, hw), fps=10)
  first, late = square(hw, 10, 4, 16, 1), square(hw, 40, 60, 12, 3)
  image_io.write_mask(str(tmp_path / "masks" / "00000.png"), first)
  image_io.write_mask(str(tmp_path / "masks" / "00002.png"), late)
  assert segment("--frames", tmp_path / "clip.mp4", "--masks", tmp_path / "masks", "--out", tmp_path / "out",
                 "--size", 64, "--overlay", tmp_path / "overlay.gif", "--stats") == 0
  captured = capsys.readouterr()
  stderr = captured.err
  # --stats: the family's aux outputs, summarised per clip. STCN reports its memory fill over frames 1-4: 1 slot
  # of 9 (frame 0) at frame 1, then 2 (frame 2, where object 3 appears, is pinned): mean 7/36.
  stats_line = [line for line in captured.out.splitlines() if line.startswith("stats: ")]
  assert len(stats_line) == 1 and "memory_fill mean" in stats_line[0], captured.out
  assert "memory_fill mean 0.1944 (min 0.1111, max 0.2222)" in stats_line[0]
  assert "warning: no --checkpoint: stcn-tiny runs with random weights" in stderr
  assert "segment: 5 frames in " in stderr and "Traceback" not in stderr
  outputs = read_outputs(tmp_path / "out")
  assert list(outputs) == ["00000", "00001", "00002", "00003", "00004"]
  assert all(ids.shape == hw for ids in outputs.values())
  np.testing.assert_array_equal(outputs["00000"], first)  # the annotated frame is its annotation
  assert set(np.unique(outputs["00001"]).tolist()) <= {0, 1}
  assert all(set(np.unique(outputs[n]).tolist()) <= {0, 1, 3} for n in ("00002", "00003", "00004"))
  assert (outputs["00002"][late == 3] == 3).mean() > 0.9  # a new object's mask is taken at its first frame
  with Image.open(tmp_path / "overlay.gif") as gif:
    assert (gif.n_frames, gif.size) == (5, (96, 64))

  # The same random variables saved as a checkpoint give the same masks through --checkpoint.
  import jax  # pylint: disable=g-import-not-at-top
  from jaxvos.convert import io as convert_io  # pylint: disable=g-import-not-at-top
  from jaxvos.models import registry  # pylint: disable=g-import-not-at-top
  family = registry.build("stcn-tiny")
  convert_io.save_model(tmp_path / "checkpoint", family, family.init(jax.random.PRNGKey(0)))
  options = ["--frames", tmp_path / "clip.mp4", "--masks", tmp_path / "masks", "--size", 64]
  assert segment(*options, "--out", tmp_path / "from_checkpoint", "--checkpoint", tmp_path / "checkpoint") == 0
  assert "random weights" not in capsys.readouterr().err
  for name, ids in read_outputs(tmp_path / "from_checkpoint").items():
    np.testing.assert_array_equal(ids, outputs[name])
  # --model may be left out: the checkpoint knows its model.
  assert cli_main.main(["segment", "--checkpoint", str(tmp_path / "checkpoint"), "--out", str(tmp_path / "bare"),
                        *map(str, options)]) == 0
  assert read_outputs(tmp_path / "bare").keys() == outputs.keys()
  # bfloat16 compute: same outputs contract (random weights decide near p = 0.5, so masks are not compared).
  assert segment(*options, "--out", tmp_path / "bfloat16", "--dtype", "bfloat16") == 0
  half = read_outputs(tmp_path / "bfloat16")
  assert list(half) == list(outputs) and all(ids.shape == hw for ids in half.values())
  np.testing.assert_array_equal(half["00000"], first)
  assert (half["00002"][late == 3] == 3).mean() > 0.9
  assert cli_main.main(["segment", "--model", "stm-tiny", "--checkpoint", str(tmp_path / "checkpoint"), "--out",
                        str(tmp_path / "stm"), *map(str, options)]) == 2
  assert capsys.readouterr().err.strip().endswith(f"error: {tmp_path / 'checkpoint'}: holds a stcn-tiny model, "
                                                  "not stm-tiny (--model)")


def test_bad_input_from_the_command_line_has_no_traceback(clip):
  Image.fromarray(np.zeros((*HW, 3), np.uint8)).save(clip / "masks" / "frame_8.png")
  result = subprocess.run([sys.executable, "-m", "jaxvos", "segment", "--model", "stcn-tiny", "--frames",
                           str(clip / "frames"), "--masks", str(clip / "masks"), "--out", str(clip / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip() == (f"error: {clip / 'masks' / 'frame_8.png'}: is a colour (RGB) image; expected an "
                                   "indexed (P) or grey (L) PNG whose pixel values are object ids")
  assert not (clip / "out").exists()
