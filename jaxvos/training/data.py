"""What a training stage reads: lists of videos or images, and the per-process clip dataset built from them.

- video stage: annotated videos (DAVIS folders, synthetic videos) -> `VideoClipSampler` (frame-gap schedule);
- static stage: image + mask pairs (salient-object folders, and single frames of annotated videos) ->
  `PseudoClipSampler` (a pseudo-clip of random affine transforms of one image);
- pseudo-video stage: the same image + mask pairs -> `pseudo_video.PseudoVideoSampler` (objects cut out of them,
  pasted over other images with independent motion, occlusion and unannotated look-alikes).

Each process builds the same item list and reads only its own shard (`data_pipelines.sampling.clip_dataset`).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from data_pipelines import davis, pseudo_video, sampling, static_images, synthetic


@dataclasses.dataclass(frozen=True)
class VideoFrame:
  """One annotated frame of a video used as a static image (`PseudoClipSampler` calls `load`)."""
  video: Any      # a `VideoSequence` or `SyntheticSequence`
  index: int

  @property
  def name(self) -> str:
    return f"{self.video.name}/{self.index:05d}"

  def load(self) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8 [h w 3], object ids uint8 [h w])."""
    frame = self.video.frame(self.index)
    return frame, self.video.mask(self.index, frame.shape[:2])


def davis_videos(root: str, resolution: str, imageset: str | None = None,
                 exclude: Sequence[str] = ()) -> list[Any]:
  """The sequences of a DAVIS root (optionally an ImageSets file), without the names in `exclude`."""
  dataset = davis.DavisDataset(root, resolution, imageset)
  return [dataset.sequence(name) for name in dataset.sequences if name not in set(exclude)]


def video_frames(videos: Sequence[Any], every: int = 1) -> list[VideoFrame]:
  """Every `every`-th annotated frame of each video, as static images; frames whose mask holds no object (before
  the first appearance, or while the object is out of view or occluded) are left out."""
  frames = []
  for video in videos:
    for i in video.annotated_indices[::every]:
      ids = video.mask(i)
      if np.any((ids != 0) & (ids != sampling.VOID_ID)):
        frames.append(VideoFrame(video, i))
  return frames


def static_pairs(roots: Sequence[str]) -> list[static_images.StaticImage]:
  """Image/mask pairs of several static-image roots, root by root."""
  return [pair for root in roots for pair in static_images.list_static_images(root)]


def synthetic_videos(first_seed: int, count: int, *, height: int, width: int, num_frames: int,
                     max_objects: int = 3, late_entry_probability: float = 0.3
                     ) -> list[synthetic.SyntheticSequence]:
  """`count` generated videos with seeds `first_seed ..` (disjoint seed ranges give disjoint videos)."""
  config = synthetic.SyntheticConfig(height=height, width=width, num_frames=num_frames, max_objects=max_objects,
                                     late_entry_probability=late_entry_probability)
  return [synthetic.SyntheticSequence(first_seed + i, config) for i in range(count)]


def clip_dataset(items: Sequence[Any], spec: sampling.ClipSpec, *, static: bool, global_batch_size: int,
                 seed: int, shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
  """Batches of this process's shard: pseudo-clips of `items` if `static`, else clips of videos; repeats forever."""
  sampler_class = sampling.PseudoClipSampler if static else sampling.VideoClipSampler
  return sampling.clip_dataset(items, sampler_class(spec, global_batch_size), seed=seed, shard_index=shard_index,
                               shard_count=shard_count)


def pseudo_video_dataset(items: Sequence[Any], spec: sampling.ClipSpec, config: pseudo_video.PseudoVideoConfig, *,
                         global_batch_size: int, seed: int, shard_index: int = 0, shard_count: int = 1,
                         backgrounds: Sequence[Any] | None = None) -> grain.MapDataset:
  """Batches of this process's shard of multi-object pseudo-videos made of the objects of `items` (image + mask
  pairs, as for the static stage) over backgrounds drawn from `backgrounds` (default `items`); repeats forever."""
  sampler = pseudo_video.PseudoVideoSampler(spec, global_batch_size, items, config, backgrounds)
  return sampling.clip_dataset(items, sampler, seed=seed, shard_index=shard_index, shard_count=shard_count)
