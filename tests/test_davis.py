"""DAVIS reading on every sequence of ../shared/data, the prediction writer, and bad DAVIS folders."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from data_pipelines import davis, image_io, static_images
from data_pipelines.errors import DataError, DataWarning

EXAMPLES_480P = {"blackswan": 50, "bmx-trees": 80, "judo": 16}


def test_davis2016_240p_every_sequence(shared_data):
  root = shared_data / "davis2016-240p"
  train = davis.DavisDataset(str(root), "240p", "ImageSets/2016/train.txt")
  val = davis.DavisDataset(str(root), "240p", "ImageSets/2016/val.txt")
  assert len(train) == 30 and val.sequences == ["blackswan", "bmx-trees"]
  total = 0
  for sequence in [*train, *val]:
    assert sequence.binary and sequence.annotated_indices == list(range(len(sequence)))
    frame, mask = sequence.frame(len(sequence) - 1), sequence.mask(len(sequence) - 1)
    assert frame.shape == (240, 427, 3) and frame.dtype == np.uint8
    assert mask.shape == (240, 427) and set(np.unique(mask)) <= {0, 1}
    total += len(sequence)
  assert total == 2209


def test_davis_examples_480p(shared_data):
  dataset = davis.DavisDataset(str(shared_data / "davis-examples-480p"), "480p")
  assert {s.name: len(s) for s in dataset} == EXAMPLES_480P
  blackswan = dataset.sequence("blackswan")
  assert blackswan.binary and blackswan.object_ids == [1]
  assert blackswan.frame(0).shape == (480, 854, 3) and blackswan.mask(49).max() == 1


def test_judo_late_objects_and_the_853_pixel_mask(shared_data):
  judo = davis.DavisDataset(str(shared_data / "davis-examples-480p")).sequence("judo")
  assert not judo.binary
  assert judo.annotated_indices == [0, 5, 8, 13]
  assert judo.first_appearance == {1: 0, 2: 5, 3: 8, 4: 13}
  with Image.open(judo.mask_paths[5]) as raw:
    assert raw.size == (853, 480) and raw.mode == "P"
  with pytest.warns(DataWarning, match=r"judo/00005.png: mask is 853x480 but its frame is 854x480"):
    mask = judo.mask(5)
  # Each annotation holds only the object it introduces; the others are left to propagation.
  assert mask.shape == (480, 854) and set(np.unique(mask)) == {0, 2}
  assert [set(np.unique(judo.mask(t))) for t in (0, 8, 13)] == [{0, 1}, {0, 3}, {0, 4}]


def test_static_image_sets(shared_data):
  root = shared_data / "static-images"
  assert len(static_images.list_static_images(str(root / "ECSSD"))) == 1000
  assert len(static_images.list_static_images(str(root / "PASCAL-S"))) == 845
  first_frames = static_images.list_static_images(str(root / "DAVIS2017-first-frames"))
  assert len(first_frames) == 30
  counts = []
  for pair in first_frames:
    frame, ids = pair.load()
    assert ids.shape == frame.shape[:2]
    counts.append(len(set(np.unique(ids)) - {0}))
  assert min(counts) == 1 and max(counts) == 7
  frame, ids = static_images.list_static_images(str(root / "ECSSD"))[0].load()
  assert max(frame.shape[:2]) <= 320 and set(np.unique(ids)) == {0, 1}


def test_write_sequence_round_trips_through_the_reader(tmp_path, shared_data):
  source = davis.DavisDataset(str(shared_data / "davis-examples-480p")).sequence("bmx-trees")
  masks = [source.mask(i) for i in range(3)]
  masks[1] = masks[1] * 3  # Object ids are preserved as written, not renumbered.
  paths = davis.write_sequence(str(tmp_path / "bmx-trees"), source.frame_names[:3], masks)
  assert [os.path.basename(p) for p in paths] == ["00000.png", "00001.png", "00002.png"]
  for path, expected in zip(paths, masks):
    with Image.open(path) as image:
      assert image.mode == "P" and image.size == (854, 480)
    np.testing.assert_array_equal(image_io.read_mask(path), expected)


def make_root(tmp_path, num_frames=4, annotate=(0,)):
  """A small DAVIS root: one sequence `seq` with JPEG frames and indexed masks."""
  frames = tmp_path / "JPEGImages" / "480p" / "seq"
  masks = tmp_path / "Annotations" / "480p" / "seq"
  frames.mkdir(parents=True)
  for t in range(num_frames):
    Image.fromarray(np.full((32, 48, 3), 40 * t, np.uint8)).save(frames / f"{t:05d}.jpg")
  for t in annotate:
    ids = np.zeros((32, 48), np.uint8)
    ids[4:12, 4:12] = 1
    image_io.write_mask(str(masks / f"{t:05d}.png"), ids)
  return tmp_path, frames, masks


def test_a_missing_frame_is_named(tmp_path):
  root, frames, _ = make_root(tmp_path)
  os.remove(frames / "00002.jpg")
  with pytest.raises(DataError, match=r"00003.jpg: missing frame: the numbering jumps from 00001.jpg to 00003"):
    davis.DavisDataset(str(root)).sequence("seq")


def test_an_annotation_without_its_frame_is_named(tmp_path):
  root, frames, _ = make_root(tmp_path, num_frames=4, annotate=(0, 3))
  os.remove(frames / "00003.jpg")
  with pytest.raises(DataError, match=r"Annotations/480p/seq/00003.png: annotation has no frame"):
    davis.DavisDataset(str(root)).sequence("seq")


def test_empty_sequence_folder_and_missing_root(tmp_path):
  root, frames, _ = make_root(tmp_path)
  shutil.rmtree(frames)
  frames.mkdir()
  with pytest.raises(DataError, match=r"JPEGImages/480p/seq: no jpg"):
    davis.DavisDataset(str(root)).sequence("seq")
  with pytest.raises(DataError, match="is .* a DAVIS root with resolution 1080p"):
    davis.DavisDataset(str(root), "1080p")


def test_rgb_annotation_is_refused_when_read(tmp_path):
  root, _, masks = make_root(tmp_path)
  Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(masks / "00000.png")
  sequence = davis.DavisDataset(str(root)).sequence("seq")
  with pytest.raises(DataError, match=r"seq/00000.png: is a colour \(RGB\) image"):
    sequence.mask(0)


def test_imageset_forms(tmp_path):
  path = tmp_path / "val.txt"
  path.write_text("blackswan\n\nbmx-trees\n")
  assert davis.read_imageset(str(path)) == ["blackswan", "bmx-trees"]
  path.write_text("/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n"
                  "/JPEGImages/480p/bear/00001.jpg /Annotations/480p/bear/00001.png\n")
  assert davis.read_imageset(str(path)) == ["bear"]
  with pytest.raises(DataError, match="image set file not found"):
    davis.read_imageset(str(tmp_path / "absent.txt"))
