"""The synthetic video generator: deterministic, and it has the difficulties it promises."""

import hashlib

import numpy as np

from data_pipelines import davis, synthetic

SMALL = synthetic.SyntheticConfig(height=64, width=96, num_frames=12)


def digest(video: synthetic.SyntheticVideo) -> str:
  return hashlib.sha256(video.frames.tobytes() + video.labels.tobytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_video():
  assert digest(synthetic.generate_video(7, SMALL)) == digest(synthetic.generate_video(7, SMALL))
  assert digest(synthetic.generate_video(7, SMALL)) != digest(synthetic.generate_video(8, SMALL))


def test_videos_have_late_objects_occlusions_distractors_and_motion():
  config = synthetic.SyntheticConfig(height=96, width=160, num_frames=16)
  videos = [synthetic.generate_video(seed, config) for seed in range(12)]
  late = [v for v in videos if max(v.first_appearance.values()) > 0]
  assert late, "no video has an object entering after frame 0"
  for video in videos:
    assert video.frames.shape == (16, 96, 160, 3) and video.labels.shape == (16, 96, 160)
    assert video.first_appearance[1] == 0  # The first object is always there from the start.
    for object_id, first in video.first_appearance.items():
      assert not (video.labels[:first] == object_id).any() and (video.labels[first] == object_id).any()
  # Occlusion: two different targets touch (opaque sprites drawn in depth order) in some frame.
  touching = [((v.labels[:, :, 1:] != v.labels[:, :, :-1]) & (v.labels[:, :, 1:] > 0) &
               (v.labels[:, :, :-1] > 0)).any() for v in videos]
  assert any(touching)
  # Motion: the masks move.
  assert (videos[0].labels[0] != videos[0].labels[-1]).mean() > 0.01


def test_distractors_are_unannotated_look_alikes():
  config = synthetic.SyntheticConfig(height=96, width=160, num_frames=4, max_distractors=2)
  found = 0
  for seed in range(8):
    video = synthetic.generate_video(seed, config)
    for target in np.unique(video.distractors[0]).tolist():
      pixels = video.distractors[0] == target
      if target == 0 or pixels.sum() < 50 or (video.labels[0] == target).sum() < 50:
        continue
      found += 1
      assert (video.labels[0][pixels] == 0).all()  # Never annotated.
      colour = video.frames[0][pixels].mean(0)
      target_colour = video.frames[0][video.labels[0] == target].mean(0)
      background = video.frames[0][(video.labels[0] == 0) & (video.distractors[0] == 0)].mean(0)
      assert np.linalg.norm(colour - target_colour) < np.linalg.norm(colour - background)
  assert found >= 2


def test_write_davis_reads_back_identically(tmp_path):
  names = synthetic.write_davis(str(tmp_path), 3, seed=5, config=SMALL)
  dataset = davis.DavisDataset(str(tmp_path), "480p", "ImageSets/2017/train.txt")
  assert dataset.sequences == names[:2]
  assert davis.read_imageset(str(tmp_path / "ImageSets/2017/val.txt")) == names[2:]
  for i, name in enumerate(names):
    sequence = davis.DavisDataset(str(tmp_path)).sequence(name)
    video = synthetic.generate_video(5 + i, SMALL)
    assert not sequence.binary and sequence.first_appearance == video.first_appearance
    for t in (0, SMALL.num_frames - 1):
      np.testing.assert_array_equal(sequence.mask(t), video.labels[t])
      error = np.abs(sequence.frame(t).astype(int) - video.frames[t]).mean()  # JPEG q95.
      assert error < 8 and error < np.abs(sequence.frame(t).astype(int) - video.frames[6]).mean() / 2


def test_in_memory_sequence_matches_the_generator():
  sequence = synthetic.SyntheticSequence(3, SMALL)
  video = synthetic.generate_video(3, SMALL)
  assert len(sequence) == 12 and sequence.annotated_indices == list(range(12))
  np.testing.assert_array_equal(sequence.frame(4), video.frames[4])
  np.testing.assert_array_equal(sequence.mask(4), video.labels[4])
