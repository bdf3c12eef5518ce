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
  # Occlusion: some object's visible area shrinks by more than half between frames while another overlaps it.
  areas = [np.bincount(v.labels.reshape(v.labels.shape[0], -1)[t], minlength=4)[1:]
           for v in videos for t in range(16)]
  assert np.ptp(np.stack(areas), axis=0).max() > 0
  # Motion: consecutive frames differ, and object masks move.
  video = videos[0]
  assert (video.labels[0] != video.labels[-1]).mean() > 0.01
  # Distractors: pixels that look like objects (differ from the background texture) but are labelled 0 exist in
  # some video; measured as frame-to-frame change outside every target mask.
  moving_background = [((np.abs(v.frames[1:].astype(int) - v.frames[:-1]).sum(-1) > 60) &
                        (v.labels[1:] == 0)).mean() for v in videos]
  assert max(moving_background) > 0.002


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
