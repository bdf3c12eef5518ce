"""Video files: reading frames back from written mp4 / mkv files, gif overlays, and one-line errors."""

import av
import numpy as np
import pytest
from PIL import Image

from data_pipelines import video_io
from data_pipelines.errors import DataError, DataWarning


def smooth_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
  """Frames of moving colour gradients: easy to compress, so a decoded frame stays close to its original."""
  y, x = np.mgrid[:height, :width].astype(np.float32)
  x, y = x * 192 / width, y * 192 / height
  return [np.stack([x + 5 * i, y + 5 * i, np.full_like(x, 40 + 20 * i)], -1).astype(np.uint8) for i in range(count)]


def noise_video(path, count: int = 20) -> None:
  """An mp4 of random frames (large enough packets that cutting the file loses frames)."""
  rng = np.random.default_rng(0)
  video_io.write_video(str(path), (rng.integers(0, 256, (64, 96, 3), np.uint8) for _ in range(count)), fps=24)


def test_mp4_round_trip_keeps_count_size_rate_and_pixels(tmp_path):
  frames = smooth_frames(6)
  path = tmp_path / "clip.mp4"
  assert video_io.write_video(str(path), iter(frames), fps=12) == 6
  reader = video_io.VideoReader(str(path))
  assert (len(reader), reader.frame_hw, reader.fps) == (6, (48, 64), 12.0)
  assert reader.frame_names == ["00000", "00001", "00002", "00003", "00004", "00005"]
  decoded = list(reader)
  assert len(decoded) == 6 and all(f.dtype == np.uint8 and f.shape == (48, 64, 3) for f in decoded)
  for original, back in zip(frames, decoded):
    assert np.abs(original.astype(int) - back).mean() < 3
  assert len(list(reader)) == 6  # every iteration decodes afresh


def test_odd_sizes_are_padded_to_even_for_yuv420p(tmp_path):
  path = tmp_path / "odd.mp4"
  video_io.write_video(str(path), smooth_frames(2, 33, 47), fps=24)
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
  assert video_io.VideoReader(str(path)).frame_hw == (34, 48)


def test_frame_count_of_a_container_that_does_not_store_it(tmp_path):
  path = tmp_path / "clip.mkv"
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for frame in smooth_frames(4):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
  reader = video_io.VideoReader(str(path))
  assert len(reader) == 4 and len(list(reader)) == 4


@pytest.mark.parametrize("content, message", [
    (None, "video file not found"),
    (b"", "video file is empty"),
    (b"this is not a video\n" * 10, "cannot be read as a video"),
])
def test_bad_files_are_one_line_errors_naming_them(tmp_path, content, message):
  path = tmp_path / "clip.mp4"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(DataError) as error:
    video_io.VideoReader(str(path))
  assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
  assert "\n" not in str(error.value)


def test_truncated_video_names_the_frame_that_cannot_be_decoded(tmp_path):
  whole = tmp_path / "whole.mp4"
  noise_video(whole)
  data = whole.read_bytes()
  cut = tmp_path / "cut.mp4"  # written with the index first (faststart), so the cut file still opens
  cut.write_bytes(data[:len(data) // 2])
  reader = video_io.VideoReader(str(cut))
  assert len(reader) == 20
  with pytest.raises(DataError, match=f"^{cut}: cannot decode frame 000[01][0-9] \\(corrupt or truncated"):
    list(reader)
  index_last = tmp_path / "index_last.mp4"
  with av.open(str(index_last), "w") as container:  # the index at the end: a cut file cannot be opened at all
    stream = container.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for frame in smooth_frames(4):
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
  cut.write_bytes(index_last.read_bytes()[:-200])
  with pytest.raises(DataError, match=f"^{cut}: cannot be read as a video"):
    video_io.VideoReader(str(cut))


def test_a_still_image_is_not_a_video(tmp_path):
  path = tmp_path / "frame.png"
  Image.fromarray(smooth_frames(1)[0]).save(path)
  with pytest.raises(DataError, match="is a still image, not a video"):
    video_io.VideoReader(str(path))


def test_fewer_decoded_frames_than_announced_warn(tmp_path, monkeypatch):
  path = tmp_path / "clip.mp4"
  video_io.write_video(str(path), smooth_frames(3), fps=24)
  reader = video_io.VideoReader(str(path))
  monkeypatch.setattr(reader, "num_frames", 5)
  with pytest.warns(DataWarning, match="only 3 of the 5 frames"):
    assert len(list(reader)) == 3


def test_gif_overlay_keeps_frames_size_and_rate(tmp_path):
  frames = smooth_frames(3, 40, 30)
  labels = np.zeros((3, 40, 30), np.uint8)
  labels[:, 10:20, 5:15] = 3
  path = tmp_path / "sub" / "overlay.gif"
  assert video_io.write_video(str(path), (video_io.overlay(f, ids) for f, ids in zip(frames, labels)), fps=10) == 3
  with Image.open(path) as image:
    assert (image.n_frames, image.size, image.info["duration"], image.info["loop"]) == (3, (30, 40), 100, 0)
    image.seek(1)
    pixels = np.asarray(image.convert("RGB")).astype(int)
  assert np.abs(pixels[0, 0] - frames[1][0, 0]).max() <= 16  # background unchanged (palette rounding)
  expected = 0.5 * frames[1][15, 10] + 0.5 * np.array([128, 128, 0])  # DAVIS colour of id 3
  assert np.abs(pixels[15, 10] - expected).max() <= 16


def test_overlay_blends_only_object_pixels():
  frames = np.full((2, 4, 4, 3), 100, np.uint8)
  labels = np.zeros((2, 4, 4), np.uint8)
  labels[1, 0, 0] = 1
  blended = video_io.overlay(frames, labels)
  assert (blended[0] == 100).all() and blended[1, 0, 0].tolist() == [114, 50, 50]
  assert (blended[1, 1:] == 100).all()


def test_write_video_refuses_what_it_cannot_write(tmp_path):
  with pytest.raises(ValueError, match="can only write"):
    video_io.write_video(str(tmp_path / "x.avi"), smooth_frames(1))
  with pytest.raises(ValueError, match="no frames"):
    video_io.write_video(str(tmp_path / "x.mp4"), [])
  with pytest.raises(ValueError, match="frame 1 is 30x20, the first was 64x48"):
    video_io.write_video(str(tmp_path / "y.gif"), [smooth_frames(1)[0], smooth_frames(1, 20, 30)[0]])
