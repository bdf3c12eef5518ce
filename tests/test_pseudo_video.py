"""Multi-object pseudo-videos: contract, determinism, labels that follow the paste order, late entries, cut-outs."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import image_io, pseudo_video, sampling, static_images
from data_pipelines.errors import DataError
from jaxvos.training import data as data_lib
from jaxvos.types import check_clip_batch
from tests.conftest import REPO

SPEC = sampling.ClipSpec(num_frames=4, crop_hw=(40, 48), max_objects=3)
SMALL = pseudo_video.PseudoVideoConfig(min_source_pixels=50, min_visible_pixels=8, cache_size=8)


def _texture(rng, hw):
  base = rng.uniform(0, 255, 3)
  return np.clip(base + rng.normal(0, 30, (*hw, 3)), 0, 255).astype(np.uint8)


def _ellipse(hw, centre, radii):
  y, x = np.mgrid[0:hw[0], 0:hw[1]]
  return ((y - centre[0]) / radii[0]) ** 2 + ((x - centre[1]) / radii[1]) ** 2 <= 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A tiny static-image root: 5 flat binary (0/255 grey) pairs and one DAVIS 2017-style multi-object image."""
  root = tmp_path_factory.mktemp("static")
  rng = np.random.default_rng(0)
  hw = (48, 64)
  (root / "images").mkdir()
  (root / "masks").mkdir()
  for i in range(5):
    inside = _ellipse(hw, rng.uniform(16, 32, 2), rng.uniform(8, 14, 2))
    frame = _texture(rng, hw)
    frame[inside] = rng.uniform(0, 255, 3)
    Image.fromarray(frame).save(root / "images" / f"{i:04d}.jpg", quality=95)
    Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), mode="L").save(root / "masks" / f"{i:04d}.png")
  (root / "images" / "multi").mkdir()
  ids = np.zeros(hw, np.uint8)
  ids[4:24, 4:24] = 1
  ids[10:18, 10:18] = 2            # inside object 1's box: must not be part of object 1's cut-out
  ids[26:44, 30:60] = 3
  ids[44:48, :] = image_io.VOID_ID
  Image.fromarray(_texture(rng, hw)).save(root / "images" / "multi" / "00000.jpg", quality=95)
  image_io.write_mask(str(root / "masks" / "multi" / "00000.png"), ids)
  return root


@pytest.fixture(scope="module")
def items(folder):
  return static_images.list_static_images(str(folder))


def dataset(items, seed=0, batch=4, spec=SPEC, config=SMALL):
  return sampling.clip_dataset(items, pseudo_video.PseudoVideoSampler(spec, batch, items, config), seed=seed)


def test_contract_ids_within_max_objects_and_first_frame_objects(items):
  seen = set()
  for step in range(3):
    batch = dataset(items)[step]
    check_clip_batch(batch, num_frames=4, crop_hw=(40, 48), max_objects=3)
    for b in range(4):
      count = int(batch["object_valid"][b].sum())
      assert 1 <= count <= 3
      assert set(np.unique(batch["labels"][b, 0])) - {0} == set(range(1, count + 1))
      np.testing.assert_array_equal(batch["frame_indices"][b], np.arange(4))
      seen.add(count)
  assert len(seen) > 1  # Several objects per clip, not always one.


def test_deterministic_and_random_access(items):
  later = dataset(items, seed=3)[2]             # element 2 first, on a fresh sampler (cold caches) ...
  warm = dataset(items, seed=3)
  _ = warm[0], warm[1]
  again = warm[2]                               # ... equals element 2 after others (warm caches)
  for key in later:
    np.testing.assert_array_equal(later[key], again[key])
  assert not np.array_equal(later["frames"], dataset(items, seed=4)[2]["frames"])


def test_objects_move(items):
  batch = dataset(items)[0]
  centres = [[np.argwhere(batch["labels"][b, t] == 1).mean(axis=0) for t in (0, 3)] for b in range(4)]
  assert max(np.abs(a - z).max() for a, z in centres) > 1.0


def test_pickled_sampler_gives_the_same_clips(items):
  sampler = pseudo_video.PseudoVideoSampler(SPEC, 2, items, SMALL)
  copy = pickle.loads(pickle.dumps(sampler))
  a = sampler.random_map((5, items[1]), np.random.default_rng(7))
  b = copy.random_map((5, items[1]), np.random.default_rng(7))
  np.testing.assert_array_equal(a["labels"], b["labels"])
  np.testing.assert_array_equal(a["frames"], b["frames"])


def test_multi_object_masks_are_split_per_object(items):
  multi = next(i for i in items if "multi" in i.image_path)
  cutouts = pseudo_video.PseudoVideoSampler(SPEC, 1, items, SMALL).cutouts(multi)
  areas = sorted(c.area for c in cutouts)
  assert areas == sorted([20 * 20 - 8 * 8, 8 * 8, 18 * 30])  # void is no object
  for cutout in cutouts:
    assert (cutout.rgba[..., 3] == 255).sum() == cutout.area
    assert set(np.unique(cutout.rgba[..., 3])) <= {0, 255}
  ring = next(c for c in cutouts if c.area == 20 * 20 - 8 * 8)
  assert (ring.rgba[..., 3] == 0).sum() >= 8 * 8   # object 2's pixels are holes in object 1


def test_davis2017_first_frame_split(shared_data):
  root = shared_data / "static-images" / "DAVIS2017-first-frames"
  pairs = static_images.list_static_images(str(root))
  item = next(p for p in pairs if "/boxing/" in p.image_path)
  _, ids = item.load()
  values, counts = np.unique(ids, return_counts=True)
  expected = sorted(c for v, c in zip(values, counts) if v not in (0, image_io.VOID_ID))
  cutouts = pseudo_video.cut_objects(*item.load(), source=item.image_path)
  assert len(expected) > 1
  assert sorted(c.area for c in cutouts) == expected


def _square(colour, side=10):
  rgba = np.zeros((side, side, 4), np.uint8)
  rgba[..., :3], rgba[..., 3] = colour, 255
  return pseudo_video.Cutout(rgba, side * side, "square")


def _still(cutout, x, y, label, t=3, enter=0):
  forward = np.array([[1.0, 0, x], [0, 1, y], [0, 0, 1]])
  return pseudo_video.Layer(cutout, np.stack([forward] * t), label, enter)


def _scene(*layers, hw=(24, 24), t=3):
  return pseudo_video.Scene(np.full((*hw, 3), 50, np.uint8), np.stack([np.eye(3)] * t), tuple(layers), hw)


def _relabelled(layer, label):
  return pseudo_video.Layer(layer.cutout, layer.forwards, label, layer.enter)


def _coverage(layer, hw=(24, 24)):
  """The pixels a layer labels when it is drawn alone."""
  return pseudo_video.render(_scene(_relabelled(layer, 1), hw=hw))[1] == 1


def test_occluded_object_loses_the_covered_pixels():
  below, above = _still(_square((255, 0, 0)), 2, 2, 1), _still(_square((0, 255, 0)), 7, 7, 2)
  frames, labels = pseudo_video.render(_scene(below, above))
  cover_below, cover_above = _coverage(below), _coverage(above)
  assert (cover_below & cover_above).sum() > 10                  # they overlap ...
  np.testing.assert_array_equal(labels == 2, cover_above)         # ... the upper one keeps all its pixels,
  np.testing.assert_array_equal(labels == 1, cover_below & ~cover_above)  # the lower one loses the overlap
  np.testing.assert_array_equal(frames[cover_above], np.broadcast_to([0, 255, 0], frames[cover_above].shape))
  _, swapped = pseudo_video.render(_scene(above, below))
  np.testing.assert_array_equal(swapped == 1, cover_below)
  distractor = _still(_square((0, 0, 255)), 7, 7, 0)              # an unannotated object on top hides it too
  _, hidden = pseudo_video.render(_scene(below, distractor))
  np.testing.assert_array_equal(hidden == 1, cover_below & ~cover_above)


def test_labels_follow_the_depth_order_of_random_scenes(items):
  sampler = pseudo_video.PseudoVideoSampler(SPEC, 1, items, SMALL)
  occluded = 0
  for seed in range(4):
    scene = sampler.plan(items[seed], np.random.default_rng(seed))
    _, labels = pseudo_video.render(scene)
    expected = np.zeros_like(labels)
    for layer in scene.layers:  # back to front: each layer takes the pixels it covers
      single = pseudo_video.Scene(scene.background, scene.camera, (_relabelled(layer, 1),), scene.out_hw)
      covered = pseudo_video.render(single)[1] == 1
      expected[covered] = layer.label
      occluded += int((covered & (labels != layer.label)).sum())
    np.testing.assert_array_equal(labels, expected)
  assert occluded > 0


def test_a_layer_is_not_drawn_before_it_enters():
  _, labels = pseudo_video.render(_scene(_still(_square((9, 9, 9)), 5, 5, 1, t=4, enter=2), t=4))
  assert not labels[:2].any() and (labels[2:] == 1).all(axis=0).sum() == 100


def test_annotate_keeps_visible_targets_reindexed():
  labels = np.zeros((3, 10, 10), np.uint8)
  labels[:, :5, :5] = 4               # visible from frame 0 (25 px)
  labels[0, 9, 9] = 7                 # 1 px in frame 0, then 20 px: enters at frame 1
  labels[1:, 8:, :] = 7
  labels[2, 5:7, 5:7] = 9             # only in frame 2
  kept, valid, first = pseudo_video.annotate(labels, 3, 4, late_entries=False)
  assert valid.tolist() == [True, False, False] and set(np.unique(kept)) == {0, 1}
  np.testing.assert_array_equal(kept == 1, labels == 4)
  kept, valid, first = pseudo_video.annotate(labels, 3, 4, late_entries=True)
  assert valid.tolist() == [True, True, True] and first.tolist() == [0, 1, 2]
  assert kept[0, 9, 9] == 0 and (kept[1:][labels[1:] == 7] == 2).all()
  _, valid, _ = pseudo_video.annotate(labels, 2, 4, late_entries=True)
  assert valid.tolist() == [True, True]


def test_late_entries_have_no_pixels_before_their_first_frame(items):
  spec = sampling.ClipSpec(num_frames=6, crop_hw=(40, 48), max_objects=3)
  config = pseudo_video.PseudoVideoConfig(min_source_pixels=50, min_visible_pixels=8, min_objects=3,
                                          max_distractors=0, late_entry_probability=1.0,
                                          annotate_late_entries=True)
  firsts = []
  for step in range(3):
    batch = dataset(items, spec=spec, config=config)[step]
    check_clip_batch(batch, num_frames=6, crop_hw=(40, 48), max_objects=3)
    for b in range(4):
      assert batch["first_frame"][b][batch["object_valid"][b]].min() == 0
      for k in np.flatnonzero(batch["object_valid"][b]) + 1:
        first = batch["first_frame"][b, k - 1]
        firsts.append(first)
        assert not (batch["labels"][b, :first] == k).any()
        assert (batch["labels"][b, first] == k).sum() >= 8
  assert max(firsts) > 0
  # Not annotated (the default): entering objects are background and every object is in frame 0.
  config = pseudo_video.PseudoVideoConfig(min_source_pixels=50, late_entry_probability=1.0)
  batch = dataset(items, spec=spec, config=config)[0]
  assert "first_frame" not in batch
  check_clip_batch(batch, num_frames=6, crop_hw=(40, 48), max_objects=3)


def test_degrades_gracefully(folder, items, tmp_path):
  # An image whose only object is too small to cut out still yields clips (objects from the pool).
  tiny = tmp_path / "tiny"
  (tiny / "images").mkdir(parents=True)
  (tiny / "masks").mkdir()
  Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tiny / "images" / "a.jpg")
  mask = np.zeros((48, 64), np.uint8)
  mask[:3, :3] = 255
  Image.fromarray(mask, mode="L").save(tiny / "masks" / "a.png")
  tiny_items = static_images.list_static_images(str(tiny))
  clip = pseudo_video.PseudoVideoSampler(SPEC, 1, items + tiny_items, SMALL).random_map(
      (0, tiny_items[0]), np.random.default_rng(0))
  assert clip["object_valid"][0] and (clip["labels"][0] == 1).any()
  with pytest.raises(DataError, match="min_source_pixels"):
    pseudo_video.PseudoVideoSampler(SPEC, 1, tiny_items, SMALL).random_map((0, tiny_items[0]),
                                                                            np.random.default_rng(0))
  # Nothing is ever visible enough: the fallback (one still object in the middle) still gives a clip.
  strict = pseudo_video.PseudoVideoConfig(min_source_pixels=50, min_visible_pixels=10**6)
  clip = pseudo_video.PseudoVideoSampler(SPEC, 1, items, strict).random_map((0, items[0]), np.random.default_rng(0))
  assert clip["object_valid"].tolist() == [True, False, False]
  assert (clip["labels"][:, 20, 24] == 1).all()


def test_training_data_builds_pseudo_video_batches(items):
  batches = data_lib.pseudo_video_dataset(items, SPEC, SMALL, global_batch_size=4, seed=0, shard_index=1,
                                          shard_count=2)
  check_clip_batch(batches[0], num_frames=4, crop_hw=(40, 48), max_objects=3)
  assert batches[0]["frames"].shape[0] == 2


def test_frames_of_videos_are_sources_too():
  videos = data_lib.synthetic_videos(0, 2, height=48, width=64, num_frames=4)
  frames = data_lib.video_frames(videos, every=2)
  batch = data_lib.pseudo_video_dataset(frames, SPEC, SMALL, global_batch_size=2, seed=0)[0]
  check_clip_batch(batch, num_frames=4, crop_hw=(40, 48), max_objects=3)


def test_frames_without_an_object_are_not_sources():
  """An object that leaves the view (DAVIS bmx-bumps) leaves frames with empty masks: not static images."""

  class Video:
    name = "leaves-the-view"
    annotated_indices = [0, 1, 2, 3, 4]
    visible = {1: 1, 2: 255, 4: 2}  # frame -> the id painted there (255: void only)

    def mask(self, index, frame_hw=None):
      del frame_hw
      ids = np.zeros((8, 8), np.uint8)
      ids[2:5, 2:5] = self.visible.get(index, 0)
      return ids

  assert [f.index for f in data_lib.video_frames([Video()])] == [1, 4]
  assert [f.index for f in data_lib.video_frames([Video()], every=2)] == [4]


def test_data_preview_command(folder, tmp_path):
  picture = tmp_path / "preview.png"
  result = subprocess.run([sys.executable, "-m", "jaxvos", "data", "preview", "--pseudo-video", f"{folder},{folder}",
                           "--out", str(picture), "--batch", "2", "--crop", "32"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr
  with Image.open(picture) as image:
    assert image.size == (3 * 32, 2 * 32)
  assert "first annotated frame" not in result.stdout
  late = subprocess.run([sys.executable, "-m", "jaxvos", "data", "preview", "--pseudo-video", f"{folder},{folder}",
                         "--out", str(picture), "--batch", "2", "--crop", "32", "--late-entries", "1"],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
  assert late.returncode == 0, late.stderr
  firsts = late.stdout.split("first annotated frame of each object, per clip: ")[1].splitlines()[0]
  assert all(first[0] == 0 for first in json.loads(firsts))
