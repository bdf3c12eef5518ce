"""YouTube-VOS: reading a split (every 5th frame annotated, late objects from meta.json) and the submission zip."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_pipelines import image_io, youtube_vos
from data_pipelines.errors import DataError


def make_split(root, split="train", num_frames=16, late_object_at=10):
  """A one-video split: JPEGs every frame, masks every 5th frame, object 2 appearing late."""
  video = "a1b2c3"
  frames_dir = root / split / "JPEGImages" / video
  frames_dir.mkdir(parents=True)
  objects = {"1": {"category": "cat", "frames": []}, "2": {"category": "dog", "frames": []}}
  for t in range(num_frames):
    Image.fromarray(np.full((24, 40, 3), 10 * t, np.uint8)).save(frames_dir / f"{t:05d}.jpg")
    if t % 5:
      continue
    ids = np.zeros((24, 40), np.uint8)
    ids[2:8, 2:8] = 1
    objects["1"]["frames"].append(f"{t:05d}")
    if t >= late_object_at:
      ids[12:20, 20:30] = 2
      objects["2"]["frames"].append(f"{t:05d}")
    image_io.write_mask(str(root / split / "Annotations" / video / f"{t:05d}.png"), ids)
  (root / split / "meta.json").write_text(json.dumps({"videos": {video: {"objects": objects}}}))
  return video


def test_read_split_with_late_object(tmp_path):
  video = make_split(tmp_path)
  dataset = youtube_vos.YouTubeVOSDataset(str(tmp_path), "train")
  assert dataset.videos == [video]
  sequence = dataset.sequence(video)
  assert len(sequence) == 16 and sequence.annotated_indices == [0, 5, 10, 15]
  assert sequence.first_appearance == {1: 0, 2: 10}
  assert dataset.categories(video) == {1: "cat", 2: "dog"}
  assert set(np.unique(sequence.mask(10))) == {0, 1, 2}


def test_meta_errors_name_meta_json(tmp_path):
  make_split(tmp_path)
  meta = tmp_path / "train" / "meta.json"
  meta.write_text("{not json")
  with pytest.raises(DataError, match=r"train/meta.json: not a YouTube-VOS meta.json"):
    youtube_vos.YouTubeVOSDataset(str(tmp_path), "train")
  meta.write_text(json.dumps({"videos": {"zzz": {"objects": {}}}}))
  with pytest.raises(DataError, match=r"meta.json: lists video zzz, which has no folder"):
    youtube_vos.YouTubeVOSDataset(str(tmp_path), "train")


def test_submission_layout_and_zip(tmp_path):
  masks = np.zeros((2, 24, 40), np.uint8)
  masks[1, 3:9, 3:9] = 2
  out = tmp_path / "submission"
  youtube_vos.write_submission_video(str(out), "a1b2c3", ["00000", "00005"], masks)
  read_back = image_io.read_mask(str(out / "Annotations" / "a1b2c3" / "00005.png"))
  np.testing.assert_array_equal(read_back, masks[1])
  with zipfile.ZipFile(youtube_vos.zip_submission(str(out), str(tmp_path / "a.zip"))) as archive:
    assert sorted(archive.namelist()) == ["Annotations/a1b2c3/00000.png", "Annotations/a1b2c3/00005.png"]
  with zipfile.ZipFile(youtube_vos.zip_submission(str(out), str(tmp_path / "b.zip"), videos_at_root=True)) as z:
    assert sorted(z.namelist()) == ["a1b2c3/00000.png", "a1b2c3/00005.png"]
