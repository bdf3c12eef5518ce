"""YouTube-VOS 2018 / 2019: read `train` / `valid` splits, write the submission layout and its zip.

Layout of a split:

  <root>/<split>/JPEGImages/<video>/00000.jpg 00005.jpg ...  (every 5th frame; `<split>_all_frames/` has all)
  <root>/<split>/Annotations/<video>/00000.png ...           (palette PNGs of object ids, every 5th frame;
                                                               in `valid`, only where an object first appears)
  <root>/<split>/meta.json   {"videos": {video: {"objects": {"1": {"category": "...", "frames": [...]}}}}}

`meta.json` gives each object's category and the frames where it is annotated (its first entry is where the
object first appears), so objects entering late are known without reading any mask.
"""

import json
import os
import zipfile
from collections.abc import Sequence

import numpy as np

from data_pipelines import image_io
from data_pipelines.davis import write_sequence
from data_pipelines.errors import DataError
from data_pipelines.video import VideoSequence, pair_masks_with_frames


class YouTubeVOSDataset:
  """One split of a YouTube-VOS root; sequences are read lazily.

  Args:
    root: the folder holding `train/`, `valid/` (and optionally `valid_all_frames/`).
    split: `train`, `valid` or `test`.
    all_frames: read frames from `<split>_all_frames/JPEGImages` (every frame) instead of every 5th.
  """

  def __init__(self, root: str, split: str = "train", all_frames: bool = False):
    self.root, self.split = root, split
    split_dir = os.path.join(root, split)
    self.frames_dir = os.path.join(root, f"{split}_all_frames" if all_frames else split, "JPEGImages")
    self.masks_dir = os.path.join(split_dir, "Annotations")
    self.meta_path = os.path.join(split_dir, "meta.json")
    for folder in (self.frames_dir, self.masks_dir):
      if not os.path.isdir(folder):
        raise DataError(folder, f"folder not found: is {root} a YouTube-VOS root with a {split} split?")
    self.meta = _read_meta(self.meta_path)
    self.videos = sorted(self.meta)
    for video in self.videos:
      if not os.path.isdir(os.path.join(self.frames_dir, video)):
        raise DataError(self.meta_path, f"lists video {video}, which has no folder in {self.frames_dir}")

  def __len__(self) -> int:
    return len(self.videos)

  def __iter__(self):
    return (self.sequence(video) for video in self.videos)

  def categories(self, video: str) -> dict[int, str]:
    """Object id -> category name (YouTube-VOS reports seen and unseen categories separately)."""
    return {int(k): v.get("category", "") for k, v in self.meta[video]["objects"].items()}

  def sequence(self, video: str) -> VideoSequence:
    frame_paths = image_io.list_frame_files(os.path.join(self.frames_dir, video))
    mask_paths = image_io.list_frame_files(os.path.join(self.masks_dir, video), image_io.MASK_EXTENSIONS)
    annotations = pair_masks_with_frames(frame_paths, mask_paths)
    index_of = {image_io.stem(p): i for i, p in enumerate(frame_paths)}
    first = {}
    for object_id, info in self.meta[video]["objects"].items():
      frames = info.get("frames", [])
      if not frames or frames[0] not in index_of:
        raise DataError(self.meta_path, f"object {object_id} of video {video} first appears in frame "
                        f"{frames[0] if frames else '(none)'}, which is not in {os.path.dirname(frame_paths[0])}")
      first[int(object_id)] = index_of[frames[0]]
    return VideoSequence(video, tuple(frame_paths), annotations, binary=False, known_first_appearance=first)


def _read_meta(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
    videos = meta["videos"]
    if not all(isinstance(info["objects"], dict) for info in videos.values()):
      raise TypeError("objects must map object ids to their annotations")
  except FileNotFoundError:
    raise DataError(path, "file not found") from None
  except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
    raise DataError(path, f"not a YouTube-VOS meta.json ({{\"videos\": {{video: {{\"objects\": ...}}}}}}): "
                    f"{type(error).__name__} {error}") from None
  return videos


def write_submission_video(out_root: str, video: str, frame_names: Sequence[str],
                           masks: Sequence[np.ndarray] | np.ndarray) -> list[str]:
  """Writes one video's predictions as `<out_root>/Annotations/<video>/<frame>.png` palette PNGs."""
  return write_sequence(os.path.join(out_root, "Annotations", video), frame_names, masks)


def zip_submission(out_root: str, zip_path: str, videos_at_root: bool = False) -> str:
  """Zips `<out_root>/Annotations` for the evaluation server.

  By default the archive holds `Annotations/<video>/<frame>.png`; `videos_at_root` stores `<video>/<frame>.png`
  instead (for servers that expect the video folders at the top of the archive). Returns `zip_path`.
  """
  annotations = os.path.join(out_root, "Annotations")
  if not os.path.isdir(annotations):
    raise DataError(annotations, "folder not found: write predictions with write_submission_video first")
  base = annotations if videos_at_root else out_root
  os.makedirs(os.path.dirname(os.path.abspath(zip_path)), exist_ok=True)
  with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
    for folder, _, files in sorted(os.walk(annotations)):
      for name in sorted(files):
        path = os.path.join(folder, name)
        archive.write(path, os.path.relpath(path, base))
  return zip_path

