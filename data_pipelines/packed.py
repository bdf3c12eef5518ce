"""Optional extra: pack a DAVIS or YouTube-VOS folder into ArrayRecord files with tensorflow-datasets, and read
them back as videos for the clip sampler. Needs `pip install jaxvos[tfds]` (tensorflow-datasets and array-record;
no TensorFlow).

One record per video holds the original JPEG and PNG bytes (nothing is re-encoded, so packing is lossless), the
frame names, the annotated frame indices and each object's first appearance. Large runs read a few big files
instead of hundreds of thousands of small ones; `PackedSequence` has the interface of `VideoSequence`, so
`sampling.VideoClipSampler` samples clips from packed data unchanged.
"""

import dataclasses
import functools
import os

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import davis, image_io, youtube_vos

_BYTES = tfds.features.Tensor(shape=(None,), dtype=np.object_)
_INTS = tfds.features.Tensor(shape=(None,), dtype=np.int32)


class VosFolder(tfds.core.GeneratorBasedBuilder):
  """A tfds builder over one DAVIS root (one split per ImageSets file) or one YouTube-VOS split."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, splits: dict[str, list], **kwargs):
    """`splits`: split name -> sequences (`VideoSequence`) to pack, in order."""
    self._splits = splits
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "name": tfds.features.Text(),
        "binary": tfds.features.Tensor(shape=(), dtype=np.bool_),
        "frame_names": tfds.features.Tensor(shape=(None,), dtype=np.object_),
        "frames": _BYTES,               # encoded frame files, in frame order
        "annotated": _INTS,             # indices of the annotated frames
        "masks": _BYTES,                # encoded mask files of the annotated frames
        "object_ids": _INTS,
        "first_appearance": _INTS,      # first annotated frame of each object id
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {name: self._generate_examples(sequences) for name, sequences in self._splits.items()}

  def _generate_examples(self, sequences):
    for sequence in sequences:
      annotated = sequence.annotated_indices
      first = sequence.first_appearance
      yield sequence.name, {
          "name": sequence.name,
          "binary": sequence.binary,
          "frame_names": np.array(sequence.frame_names, dtype=object),
          "frames": np.array([_read_bytes(p) for p in sequence.frame_paths], dtype=object),
          "annotated": np.array(annotated, np.int32),
          "masks": np.array([_read_bytes(sequence.mask_paths[i]) for i in annotated], dtype=object),
          "object_ids": np.array(sorted(first), np.int32),
          "first_appearance": np.array([first[k] for k in sorted(first)], np.int32),
      }


def _read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def pack_davis(root: str, resolution: str, imagesets: dict[str, str], data_dir: str) -> VosFolder:
  """Packs a DAVIS root: `imagesets` maps split names to ImageSets files
  (e.g. {"train": "ImageSets/2017/train.txt"})."""
  splits = {name: list(davis.DavisDataset(root, resolution, path)) for name, path in imagesets.items()}
  return _prepare(splits, data_dir)


def pack_youtube_vos(root: str, splits: tuple[str, ...], data_dir: str) -> VosFolder:
  """Packs YouTube-VOS splits (e.g. ("train",)) as they are on disk."""
  return _prepare({name: list(youtube_vos.YouTubeVOSDataset(root, name)) for name in splits}, data_dir)


def _prepare(splits: dict[str, list], data_dir: str) -> VosFolder:
  builder = VosFolder(splits=splits, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder


@functools.lru_cache(maxsize=4)
def _data_source(data_dir: str, split: str):
  builder = tfds.builder_from_directory(data_dir)
  return builder.as_data_source(split=split)


@dataclasses.dataclass(frozen=True)
class PackedSequence:
  """One packed video, decoded lazily; the interface of `VideoSequence` (what the clip sampler needs)."""
  data_dir: str   # the prepared dataset's version folder (`<data_dir>/vos_folder/1.0.0`)
  split: str
  index: int

  @functools.cached_property
  def _record(self) -> dict:
    return _data_source(self.data_dir, self.split)[self.index]

  @property
  def name(self) -> str:
    name = self._record["name"]
    return name.decode() if isinstance(name, bytes) else str(name)

  def __len__(self) -> int:
    return len(self._record["frames"])

  @property
  def frame_names(self) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in self._record["frame_names"]]

  @property
  def annotated_indices(self) -> list[int]:
    return self._record["annotated"].tolist()

  @property
  def first_appearance(self) -> dict[int, int]:
    return dict(zip(self._record["object_ids"].tolist(), self._record["first_appearance"].tolist()))

  def frame(self, index: int) -> np.ndarray:
    return image_io.read_frame(self._where(index), data=self._record["frames"][index])

  def mask(self, index: int, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    data = self._record["masks"][self.annotated_indices.index(index)]
    ids = image_io.read_mask(self._where(index), binary=bool(self._record["binary"]), data=data)
    return image_io.fit_mask_to_frame(ids, frame_hw or self.frame(index).shape[:2], self._where(index))

  def _where(self, index: int) -> str:
    return os.path.join(self.data_dir, self.split, self.name, self.frame_names[index])


def packed_sequences(data_dir: str, split: str) -> list[PackedSequence]:
  """The videos of one split of a prepared dataset (`<data_dir>/vos_folder/1.0.0`)."""
  return [PackedSequence(data_dir, split, i) for i in range(len(_data_source(data_dir, split)))]
