"""The optional tensorflow-datasets extra: pack folders into ArrayRecord losslessly and sample clips from them.

Runs where the extra is installed (`pip install -e .[tfds]`); skipped otherwise.
"""

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from data_pipelines import davis, packed, sampling, synthetic, youtube_vos  # noqa: E402
from jaxvos.types import check_clip_batch  # noqa: E402
from tests.test_youtube_vos import make_split  # noqa: E402

SMALL = synthetic.SyntheticConfig(height=48, width=64, num_frames=6)


def test_davis_round_trip_is_lossless(tmp_path):
  root = tmp_path / "davis"
  synthetic.write_davis(str(root), 3, seed=1, config=SMALL)
  builder = packed.pack_davis(str(root), "480p", {"train": "ImageSets/2017/train.txt",
                                                   "val": "ImageSets/2017/val.txt"}, str(tmp_path / "packed"))
  videos = packed.packed_sequences(builder.data_dir, "train")
  assert [v.name for v in videos] == ["synth-0000", "synth-0001"]
  for video in videos:
    original = davis.DavisDataset(str(root)).sequence(video.name)
    assert len(video) == len(original) and video.frame_names == original.frame_names
    assert video.first_appearance == original.first_appearance
    for t in (0, len(original) - 1):
      np.testing.assert_array_equal(video.frame(t), original.frame(t))
      np.testing.assert_array_equal(video.mask(t), original.mask(t))
  batch = sampling.clip_dataset(videos, sampling.VideoClipSampler(sampling.ClipSpec(crop_hw=(32, 32)), 2),
                                seed=0)[0]
  check_clip_batch(batch, num_frames=3, crop_hw=(32, 32), max_objects=3)


def test_youtube_vos_keeps_sparse_annotations_and_late_objects(tmp_path):
  make_split(tmp_path / "ytvos")
  builder = packed.pack_youtube_vos(str(tmp_path / "ytvos"), ("train",), str(tmp_path / "packed"))
  (video,) = packed.packed_sequences(builder.data_dir, "train")
  original = youtube_vos.YouTubeVOSDataset(str(tmp_path / "ytvos")).sequence(video.name)
  assert video.annotated_indices == [0, 5, 10, 15] and video.first_appearance == {1: 0, 2: 10}
  np.testing.assert_array_equal(video.mask(10), original.mask(10))
