"""Video files: a lazy frame reader and streaming writers (mp4, gif), through PyAV (`av`, which bundles FFmpeg).

Frames are uint8 [h w 3] RGB, as everywhere in `data_pipelines`. A video's frames are named `00000`, `00001`, ...
(their index, five digits), so masks and predictions pair with them as with a folder of images.

    reader = VideoReader("clip.mp4")           # opens the file and decodes one frame to check it; nothing more
    reader.check()                              # decodes every frame once (a truncated file is found now)
    len(reader), reader.fps, reader.frame_hw
    for frame in reader: ...                    # decodes one frame at a time
    write_video("out.mp4", frames, fps=24)      # frames: any iterable; mp4 streams, gif collects them
"""

import fractions
import os
from collections.abc import Iterable, Iterator

import av
import numpy as np
from PIL import Image

from data_pipelines import image_io
from data_pipelines.errors import DataError, warn

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
OVERLAY_EXTENSIONS = (".mp4", ".gif")
# H.264 constant rate factor of written mp4 files: 18 is visually lossless for overlays and demo clips.
DEFAULT_CRF = 18
# FFmpeg demuxers that read still images; such a file is an image, not a video.
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "gif")


def frame_name(index: int) -> str:
  """The name of frame `index` of a video file (`00012`): what its masks and predictions are called."""
  return f"{index:05d}"


def is_video_file(path: str) -> bool:
  """True for a path whose extension is one of `VIDEO_EXTENSIONS` (case-insensitive)."""
  return path.lower().endswith(VIDEO_EXTENSIONS)


class VideoReader:
  """The frames of a video file, decoded lazily, one at a time, each time the reader is iterated.

  Opening reads the container header and decodes the first frame, so a missing, empty or corrupt file, or one
  that is not a video, fails here with a `DataError` naming it. The frame count comes from the container (mp4,
  mov, avi) or, where the container does not store it (mkv, webm), from counting packets without decoding them.

  Attributes:
    path: the video file.
    num_frames: the number of frames (also `len(reader)`).
    fps: frames per second (the stream's average rate; 25 if the file does not say).
    frame_hw: (height, width) of the decoded frames.
  """

  def __init__(self, path: str):
    self.path = os.fspath(path)
    if not os.path.exists(self.path):
      raise DataError(self.path, "video file not found")
    if os.path.isdir(self.path):
      raise DataError(self.path, "is a folder, not a video file")
    if os.path.getsize(self.path) == 0:
      raise DataError(self.path, "video file is empty (0 bytes)")
    with self._open() as container:
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate
      self.fps = float(rate) if rate else 25.0
      self.num_frames = stream.frames or _count_packets(self.path, container)
    with self._open() as container:
      decoder = self._decode(container)
      first = next(decoder, None)
      decoder.close()
    if first is None or self.num_frames == 0:
      raise DataError(self.path, "video has no frames")
    self.frame_hw = first.shape[:2]

  def __len__(self) -> int:
    return self.num_frames

  @property
  def frame_names(self) -> list[str]:
    """`00000`, `00001`, ...: one name per frame."""
    return [frame_name(i) for i in range(self.num_frames)]

  def __iter__(self) -> Iterator[np.ndarray]:
    """Yields every frame as uint8 [h w 3] RGB, decoding one at a time (a fresh pass over the file each time).

    A file that ends before the frames its header announces warns (once: `len(self)` then becomes the frames
    that decode, and `frame_names` with it).

    Raises:
      DataError: a frame that cannot be decoded (a truncated or corrupt file) or whose size differs from the
        first frame's, naming the file and the frame.
    """
    with self._open() as container:
      count = 0
      for count, frame in enumerate(self._decode(container), start=1):
        if frame.shape[:2] != self.frame_hw:
          raise DataError(self.path, f"frame {frame_name(count - 1)} is {frame.shape[1]}x{frame.shape[0]} but the "
                          f"first is {self.frame_hw[1]}x{self.frame_hw[0]}; videos that change size are not supported")
        yield frame
    if count < self.num_frames:
      warn(self.path, f"only {count} of the {self.num_frames} frames the file announces could be decoded "
           "(a truncated file?)")
      self.num_frames = count

  def check(self) -> None:
    """Decodes every frame once, so that a corrupt or truncated file fails (or is cut short) before any work.

    Raises what `__iter__` raises; a file that ends early warns once and `len(self)` becomes the frames that
    decode (see `__iter__`).
    """
    for _ in self:
      pass

  def _open(self) -> av.container.InputContainer:
    """Opens the container and checks it holds a video stream."""
    try:
      container = av.open(self.path, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
      raise DataError(self.path, f"cannot be read as a video (corrupt, truncated or not a video file?): "
                      f"{_reason(error)}") from None
    if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
      container.close()
      raise DataError(self.path, "is a still image, not a video (pass the folder of frames instead)")
    if not container.streams.video:
      container.close()
      raise DataError(self.path, "has no video stream (an audio-only file?)")
    return container

  def _decode(self, container: av.container.InputContainer) -> Iterator[np.ndarray]:
    """Decodes the first video stream of an open container frame by frame."""
    index = 0
    warned = False
    try:
      for frame in container.decode(video=0):
        if frame.rotation and not warned:
          warned = True
          warn(self.path, f"the file asks players to rotate it by {frame.rotation} degrees; frames are read as "
               "stored (unrotated), so masks must be drawn on the unrotated frames")
        yield frame.to_ndarray(format="rgb24")
        index += 1
    except (av.error.FFmpegError, ValueError) as error:
      raise DataError(self.path, f"cannot decode frame {frame_name(index)} (corrupt or truncated file?): "
                      f"{_reason(error)}") from None


def _count_packets(path: str, container: av.container.InputContainer) -> int:
  """Counts the video packets of a container that does not store its frame count (no decoding)."""
  try:
    count = sum(1 for packet in container.demux(video=0) if packet.size)
  except av.error.FFmpegError as error:
    raise DataError(path, f"cannot be read as a video (corrupt or truncated file?): {_reason(error)}") from None
  return count


def _reason(error: Exception) -> str:
  """FFmpeg's message without the errno prefix and the repeated file name."""
  return getattr(error, "strerror", None) or str(error)


def write_video(path: str, frames: Iterable[np.ndarray], fps: float = 24.0, *, crf: int = DEFAULT_CRF) -> int:
  """Writes frames (uint8 [h w 3] RGB, all the same size) as an mp4 or a gif; returns the number written.

  mp4: H.264 in yuv420p (plays everywhere, browsers too), encoded as the frames arrive, so a long video is never
  held in memory; odd heights and widths are padded by one edge row / column (yuv420p needs even sizes). gif: Pillow,
  a per-frame adaptive palette, looping; its frames are kept in memory until written, so use mp4 for long videos.
  Parent folders are created.

  Raises:
    ValueError: an extension other than .mp4 / .gif, no frames, or frames of different sizes.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension not in OVERLAY_EXTENSIONS:
    raise ValueError(f"{path}: can only write {' or '.join(OVERLAY_EXTENSIONS)} files")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if extension == ".gif":
    return _write_gif(path, frames, fps)
  return _write_mp4(path, frames, fps, crf)


def _write_mp4(path: str, frames: Iterable[np.ndarray], fps: float, crf: int) -> int:
  """H.264 / yuv420p mp4, frame by frame (see `write_video`)."""
  # faststart: the index goes before the frames, so players can start before the whole file has arrived.
  container = av.open(path, "w", options={"movflags": "faststart"})
  try:
    stream, size_hw, count = None, None, 0
    for frame in frames:
      size_hw = _check_size(path, frame, size_hw, count)
      if stream is None:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = (s + s % 2 for s in size_hw)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
      even = np.pad(frame, ((0, size_hw[0] % 2), (0, size_hw[1] % 2), (0, 0)), mode="edge")
      for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24")):
        container.mux(packet)
      count += 1
    if stream is None:
      raise ValueError(f"{path}: no frames to write")
    for packet in stream.encode():
      container.mux(packet)
  finally:
    container.close()
  return count


def _write_gif(path: str, frames: Iterable[np.ndarray], fps: float) -> int:
  """Looping gif with a per-frame adaptive palette (see `write_video`)."""
  images, size_hw = [], None
  for frame in frames:
    size_hw = _check_size(path, frame, size_hw, len(images))
    images.append(Image.fromarray(frame).quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=0))
  if not images:
    raise ValueError(f"{path}: no frames to write")
  images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                 optimize=False, disposal=1)
  return len(images)


def _check_size(path: str, frame: np.ndarray, size_hw: tuple[int, int] | None, index: int) -> tuple[int, int]:
  """The frame size the video is written at; refuses a frame that is not uint8 RGB of that size."""
  if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
    raise ValueError(f"{path}: frame {index} is {frame.dtype}{frame.shape}, expected uint8 [h w 3]")
  if size_hw is not None and frame.shape[:2] != size_hw:
    raise ValueError(f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                     f"{size_hw[1]}x{size_hw[0]}")
  return frame.shape[:2]


def overlay(frames: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """Frames uint8 [... h w 3] with object ids [... h w] blended in DAVIS palette colours (0 stays as it is)."""
  colours = image_io.DAVIS_PALETTE[labels].astype(np.float32)
  blended = np.where(labels[..., None] > 0, (1 - alpha) * frames + alpha * colours, frames)
  return blended.astype(np.uint8)
