"""Training clips: the batch contract, determinism, exact resume, host shards and the frame-gap schedule."""

import numpy as np
import pytest

from data_pipelines import davis, sampling, static_images, synthetic
from jaxvos.types import check_clip_batch

SPEC = sampling.ClipSpec(num_frames=3, crop_hw=(48, 64), max_objects=2,
                         gap_schedule=sampling.GapSchedule(gaps=(1, 4), boundaries=(3,)))
VIDEOS = [synthetic.SyntheticSequence(s, synthetic.SyntheticConfig(height=64, width=96, num_frames=12))
          for s in range(5)]


def dataset(batch=4, seed=0, shard_index=0, shard_count=1, items=VIDEOS, spec=SPEC):
  return sampling.clip_dataset(items, sampling.VideoClipSampler(spec, batch), seed=seed,
                               shard_index=shard_index, shard_count=shard_count)


def assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def test_contract_and_first_frame_objects():
  for step in range(4):
    batch = dataset()[step]
    check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)
    for b in range(4):
      count = int(batch["object_valid"][b].sum())
      assert set(np.unique(batch["labels"][b, 0])) - {0} == set(range(1, count + 1))


def test_check_clip_batch_catches_broken_batches():
  batch = dict(dataset()[0])
  batch["labels"] = batch["labels"].astype(np.int32)
  with pytest.raises(ValueError, match="labels"):
    check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)
  batch = dict(dataset()[0])
  batch["first_frame"] = np.zeros((4, 2), np.int32)
  check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)  # every object from frame 0
  batch["first_frame"][0, 0] = 1  # object 1 has pixels in frame 0
  with pytest.raises(ValueError, match="clip 0: object 1 is not first annotated at its first_frame 1"):
    check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)
  batch["first_frame"][0, 0] = 3
  with pytest.raises(ValueError, match="outside the clip"):
    check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)


def test_deterministic_given_the_seed():
  assert_same(dataset(seed=3)[2], dataset(seed=3)[2])
  assert not np.array_equal(dataset(seed=3)[2]["frames"], dataset(seed=4)[2]["frames"])


def test_restored_iterator_continues_exactly():
  iterator = sampling.clip_iterator(dataset(), num_threads=2)
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  restored = sampling.clip_iterator(dataset(), num_threads=2)
  restored.set_state(state)
  for batch in expected:
    assert_same(next(restored), batch)


def test_host_shards_are_disjoint_and_together_form_the_global_batch():
  whole = dataset(batch=4)[1]
  shards = [dataset(batch=4, shard_index=i, shard_count=2)[1] for i in range(2)]
  for shard_index, shard in enumerate(shards):
    assert shard["frames"].shape[0] == 2
    for j in range(2):  # Shard i holds global elements i, i + 2, ... of the global batch.
      np.testing.assert_array_equal(shard["frames"][j], whole["frames"][shard_index + 2 * j])
  with pytest.raises(ValueError, match="not divisible"):
    dataset(batch=4, shard_count=3)


def test_gap_schedule_grows_the_frame_gap():
  assert [sampling.GapSchedule((5, 10, 2), (100, 200))(s) for s in (0, 99, 100, 199, 200)] == [5, 5, 10, 10, 2]
  early = np.concatenate([np.diff(dataset()[s]["frame_indices"], axis=1) for s in range(3)])
  late = np.concatenate([np.diff(dataset()[s]["frame_indices"], axis=1) for s in range(3, 8)])
  assert early.min() == early.max() == 1
  assert late.min() >= 1 and late.max() <= 4 and late.max() > 1


@pytest.mark.parametrize("available, gap", [(list(range(0, 50, 5)), 3), (list(range(4)), 9), ([7], 2)])
def test_choose_frames_stays_inside_the_annotated_frames(available, gap):
  rng = np.random.default_rng(0)
  for _ in range(20):
    picked = sampling.choose_frames(rng, available, 3, gap)
    assert len(picked) == 3 and set(picked) <= set(available) and picked == sorted(picked)


def test_max_objects_keeps_a_random_subset_reindexed():
  labels = np.zeros((2, 8, 8), np.uint8)
  labels[0, 0, :5] = [1, 3, 4, 7, 255]
  labels[1, 1, :3] = [9, 3, 7]  # Object 9 is absent from the first frame: background.
  out = sampling.select_objects(np.random.default_rng(1), labels, SPEC)
  assert out["object_valid"].tolist() == [True, True]
  assert set(np.unique(out["labels"])) == {0, 1, 2}
  assert out["labels"][1, 1, 0] == 0 and out["labels"][0, 0, 4] == 0


def test_real_davis_and_static_images(shared_data):
  sequences = list(davis.DavisDataset(str(shared_data / "davis2016-240p"), "240p", "ImageSets/2016/val.txt"))
  batch = dataset(batch=2, items=sequences)[0]
  check_clip_batch(batch, num_frames=3, crop_hw=(48, 64), max_objects=2)
  pairs = static_images.list_static_images(str(shared_data / "static-images" / "DAVIS2017-first-frames"))
  clips = sampling.clip_dataset(pairs, sampling.PseudoClipSampler(SPEC, 2), seed=0)[0]
  check_clip_batch(clips, num_frames=3, crop_hw=(48, 64), max_objects=2)
  # The frames of a pseudo-clip are different warps of one image.
  assert not np.array_equal(clips["frames"][0, 0], clips["frames"][0, 1])


class _BriefObjectVideo:
  """12 frames; object 1 is visible only in frames 5 and 6 (it appears, then leaves)."""
  name = "brief"
  annotated_indices = list(range(12))
  first_appearance = {1: 5}

  def __len__(self):
    return 12

  def frame(self, index):
    return np.full((32, 32, 3), index * 10, np.uint8)

  def mask(self, index, frame_hw=None):
    del frame_hw
    ids = np.zeros((32, 32), np.uint8)
    if index in (5, 6):
      ids[8:24, 8:24] = 1
    return ids


def test_fallback_starts_where_the_object_appears():
  spec = sampling.ClipSpec(num_frames=3, crop_hw=(16, 16), max_objects=2, max_tries=0)
  clips = sampling.clip_dataset([_BriefObjectVideo()], sampling.VideoClipSampler(spec, 1), seed=0)
  for step in range(6):
    batch = clips[step]
    assert batch["frame_indices"][0].tolist() == [5, 6, 7]
    assert batch["object_valid"][0].tolist() == [True, False]
