"""Strict reading of frames and masks: each kind of bad input gets one line naming the file."""

import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import image_io
from data_pipelines.errors import DataError, DataWarning


def save(path, array, mode=None):
  image = Image.fromarray(np.asarray(array, np.uint8), mode=mode) if mode != "P" else None
  if mode == "P":
    image = Image.fromarray(np.asarray(array, np.uint8), mode="P")
    image.putpalette(image_io.DAVIS_PALETTE.reshape(-1).tolist())
  image.save(path)
  return str(path)


def one_line(error: pytest.ExceptionInfo, path) -> str:
  message = str(error.value)
  assert "\n" not in message and message.startswith(str(path))
  return message


def test_palette_is_the_davis_colour_map():
  assert image_io.DAVIS_PALETTE[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
  assert image_io.DAVIS_PALETTE[255].tolist() == [224, 224, 192]


def test_write_then_read_mask_round_trips(tmp_path):
  ids = np.random.default_rng(0).integers(0, 6, (17, 23)).astype(np.uint8)
  path = str(tmp_path / "out" / "00000.png")
  image_io.write_mask(path, ids)
  with Image.open(path) as image:
    assert image.mode == "P" and image.size == (23, 17)
    assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
  np.testing.assert_array_equal(image_io.read_mask(path), ids)


def test_corrupt_jpeg_names_the_file(tmp_path):
  good = tmp_path / "good.jpg"
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good)
  bad = tmp_path / "00001.jpg"
  bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
  with pytest.raises(DataError) as error:
    image_io.read_frame(str(bad))
  assert "corrupt or truncated" in one_line(error, bad)
  garbage = tmp_path / "00002.jpg"
  garbage.write_bytes(b"not an image at all")
  with pytest.raises(DataError, match="cannot be decoded"):
    image_io.read_frame(str(garbage))


def test_rgb_mask_is_refused(tmp_path):
  path = save(tmp_path / "m.png", np.zeros((8, 8, 3)), "RGB")
  with pytest.raises(DataError) as error:
    image_io.read_mask(path)
  assert "colour (RGB) image" in one_line(error, path)


def test_antialiased_masks(tmp_path):
  ramp = np.zeros((16, 16), np.uint8)
  ramp[4:12, 4:12] = 255
  ramp[4, 4:12] = 128  # A soft edge.
  ramp[11, 4:12] = 64
  path = save(tmp_path / "soft.png", ramp, "L")
  with pytest.warns(DataWarning, match="thresholded at 128"):
    binary = image_io.read_mask(path, binary=True)
  assert binary.sum() == 7 * 8 and set(np.unique(binary)) == {0, 1}
  with pytest.raises(DataError) as error:
    image_io.read_mask(path)  # As object ids, 64 and 128 are not objects.
  assert "not object ids" in one_line(error, path)
  many = np.arange(256, dtype=np.uint8).reshape(16, 16)
  path = save(tmp_path / "many.png", many, "P")
  with pytest.raises(DataError, match="not object ids"):
    image_io.read_mask(path)


def bilinear(ids: np.ndarray, scale: float) -> np.ndarray:
  """An id map resized with bilinear resampling, as image editors do."""
  h, w = ids.shape
  return np.asarray(Image.fromarray(ids).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))


def objects_0_3_6() -> np.ndarray:
  ids = np.zeros((60, 80), np.uint8)
  ids[10:40, 10:35], ids[20:50, 35:70] = 3, 6
  return ids


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.5, 2.0, 3.0])
def test_anti_aliased_multi_object_masks_are_repaired_with_a_warning(tmp_path, scale):
  soft = bilinear(objects_0_3_6(), scale)
  assert np.unique(soft).tolist() == [0, 1, 2, 3, 4, 5, 6]
  assert image_io.edge_only_values(soft).tolist() == [1, 2, 4, 5]
  path = save(tmp_path / "soft.png", soft, "P")
  with pytest.warns(DataWarning, match="values 1, 2, 4, 5 occur only on the edges between other ids"):
    repaired = image_io.read_mask(path)
  assert np.unique(repaired).tolist() == [0, 3, 6]
  keep = ~np.isin(soft, [1, 2, 4, 5])
  np.testing.assert_array_equal(repaired[keep], soft[keep])  # only edge pixels change
  assert (repaired[soft == 1] == 0).all()  # each to the nearer of the ids around it
  assert (repaired[soft == 5] == 6).all()


def test_soft_edged_0_255_masks_are_binary(tmp_path):
  mask = np.zeros((60, 80), np.uint8)
  mask[10:40, 10:50] = 255
  soft = bilinear(mask, 1.5)
  assert len(np.unique(soft)) > 2
  path = save(tmp_path / "soft.png", soft, "L")
  assert image_io.binary_mask_values(path)
  with pytest.warns(DataWarning, match="thresholded at 128"):
    np.testing.assert_array_equal(image_io.read_mask(path, binary=True), soft >= 128)
  ids = np.zeros((60, 80), np.uint8)
  ids[10:40, 10:50], ids[45:55, 5:15] = 255, 2  # 255 (void) and an object: DAVIS 2017 style, not binary
  assert not image_io.binary_mask_values(save(tmp_path / "void.png", ids, "L"))


def test_real_masks_and_thin_objects_are_not_anti_aliasing(shared_data):
  ids = np.zeros((40, 40), np.uint8)
  ids[5:7, :] = 2        # a two-pixel-wide rope on the background: no interior, but not between two ids
  ids[20:30, 20:30] = 1  # and a solid object
  assert image_io.edge_only_values(ids).size == 0
  paths = sorted((shared_data / "static-images" / "DAVIS2017-first-frames" / "masks").glob("*/*.png"))
  paths += sorted((shared_data / "davis-examples-480p" / "Annotations" / "480p" / "judo").glob("*.png"))
  assert len(paths) >= 30
  for path in paths:
    with Image.open(path) as image:
      assert image_io.edge_only_values(np.asarray(image).astype(np.uint8)).size == 0, path


def test_indexed_mask_with_void_is_accepted(tmp_path):
  ids = np.zeros((8, 8), np.uint8)
  ids[1:3, 1:3], ids[5:7, 5:7], ids[0, :] = 1, 3, 255
  np.testing.assert_array_equal(image_io.read_mask(save(tmp_path / "v.png", ids, "P")), ids)


def test_mask_size_repair_and_refusal(tmp_path):
  mask = np.zeros((480, 853), np.uint8)
  mask[:, 852] = 2
  with pytest.warns(DataWarning, match="853x480 but its frame is 854x480; resized"):
    fitted = image_io.fit_mask_to_frame(mask, (480, 854), "judo/00005.png")
  assert fitted.shape == (480, 854) and set(np.unique(fitted)) == {0, 2}
  with pytest.warns(DataWarning, match="resized"):  # Same aspect ratio, another resolution.
    assert image_io.fit_mask_to_frame(np.ones((240, 427), np.uint8), (480, 854), "m.png").shape == (480, 854)
  with pytest.raises(DataError, match="different aspect ratio"):
    image_io.fit_mask_to_frame(np.ones((480, 640), np.uint8), (480, 854), "m.png")


@pytest.mark.parametrize("names, expected", [
    (["00010.jpg", "00002.jpg", "00001.jpg"], ["00001.jpg", "00002.jpg", "00010.jpg"]),
    (["10.jpg", "2.jpg", "1.jpg", "0.jpg"], ["0.jpg", "1.jpg", "2.jpg", "10.jpg"]),
    (["c2_f10.png", "c2_f9.png", "c1_f99.png"], ["c1_f99.png", "c2_f9.png", "c2_f10.png"]),
    (["only.jpg"], ["only.jpg"]),
])
def test_frames_are_ordered_by_number(names, expected):
  assert image_io.order_frame_names(names, "seq") == expected


@pytest.mark.parametrize("names, message", [
    (["00001.jpg", "00001.png"], "duplicate frame: 00001.jpg"),
    (["1.jpg", "01.jpg"], "same frame number"),
    (["frame_1.jpg", "img_2.jpg"], "different patterns"),
    (["cat.jpg", "dog.jpg"], "carry no frame number"),
])
def test_unorderable_frame_names_are_refused(names, message):
  with pytest.raises(DataError, match=message):
    image_io.order_frame_names(names, "seq")


def test_empty_and_missing_folders(tmp_path):
  with pytest.raises(DataError) as error:
    image_io.list_frame_files(str(tmp_path))
  assert "no jpg" in one_line(error, tmp_path)
  with pytest.raises(DataError, match="folder not found"):
    image_io.list_frame_files(os.path.join(tmp_path, "absent"))
