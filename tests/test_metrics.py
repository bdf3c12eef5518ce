"""The J&F metric against the official DAVIS functions (`segmetric`, unchanged copies of the official code).

The reference below re-runs the official semi-supervised flow (`davis2017/evaluation.py`: objects from the first
ground-truth frame, first and last frame dropped, predictions split into `1 .. max` objects and zero-padded) on
top of `segmetric.metrics.db_eval_iou`, `db_eval_boundary` and `segmetric.utils.db_statistics`.
"""

import warnings

import cv2
import jax
import numpy as np
import pytest

from jaxvos.metrics import davis, statistics
from jaxvos.ops import masks

segmetric_metrics = pytest.importorskip("segmetric.metrics")
segmetric_utils = pytest.importorskip("segmetric.utils")
skimage_morphology = pytest.importorskip("skimage.morphology")


def official_sequence(gt_ids: np.ndarray, pred_ids: np.ndarray):
  """Official per-frame J, F [o t] and (M, R, D) per object for full sequences [T h w] (pred: scored frames used)."""
  gt = np.where(gt_ids == 255, 0, gt_ids).astype(np.float64)
  num_objects = int(np.max(gt[0]))
  all_gt = (np.arange(1, num_objects + 1)[:, None, None, None] == gt[None])[:, 1:-1]
  pred = pred_ids[1:-1].astype(np.float64)
  num_pred = int(np.max(pred))
  assert num_pred <= num_objects  # the official code exits here
  all_res = np.arange(1, num_pred + 1)[:, None, None, None] == pred[None]
  all_res = np.concatenate([all_res, np.zeros((num_objects - num_pred, *all_res.shape[1:]), bool)])
  j, f = np.zeros(all_gt.shape[:2]), np.zeros(all_gt.shape[:2])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    for index in range(num_objects):
      j[index] = segmetric_metrics.db_eval_iou(all_gt[index], all_res[index])
      f[index] = segmetric_metrics.db_eval_boundary(all_gt[index], all_res[index])
  stats = [(segmetric_utils.db_statistics(j[i]), segmetric_utils.db_statistics(f[i])) for i in range(num_objects)]
  return j, f, stats


def assert_matches_official(gt_ids: np.ndarray, pred_ids: np.ndarray):
  """Per-frame J and F within 1e-9 and identical statistics; returns the reference (j, f)."""
  scores = davis.evaluate_sequence(gt_ids, pred_ids)
  j, f, stats = official_sequence(gt_ids, pred_ids)
  assert scores.j.shape == j.shape and scores.f.shape == f.shape
  np.testing.assert_allclose(scores.j, j, rtol=0, atol=1e-9)
  np.testing.assert_allclose(scores.f, f, rtol=0, atol=1e-9)
  for index, (j_stats, f_stats) in enumerate(stats):
    ours = statistics.object_statistics("s", index + 1, scores.j[index], scores.f[index])
    assert (ours.j_mean, ours.j_recall, ours.j_decay) == tuple(float(v) for v in j_stats)
    assert (ours.f_mean, ours.f_recall, ours.f_decay) == tuple(float(v) for v in f_stats)
  return j, f


def blobs(rng, num_frames, height, width, num_objects, count=3):
  """uint8 [t h w] random elliptic blobs drifting over time; later ids drawn over earlier ones."""
  yy, xx = np.mgrid[:height, :width]
  ids = np.zeros((num_frames, height, width), np.uint8)
  for obj in range(1, num_objects + 1):
    for _ in range(count):
      cy, cx = rng.uniform(0, height), rng.uniform(0, width)
      ry, rx = rng.uniform(0.03, 0.2) * height + 1, rng.uniform(0.03, 0.2) * width + 1
      vy, vx = rng.normal(0, 0.02 * height), rng.normal(0, 0.02 * width)
      for t in range(num_frames):
        inside = ((yy - cy - vy * t) / ry) ** 2 + ((xx - cx - vx * t) / rx) ** 2 <= 1
        ids[t][inside] = obj
  return ids


def perturb(rng, ids, num_objects):
  """A prediction: the ground truth shifted by a few pixels, some pixels flipped to other ids."""
  pred = np.roll(ids, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(1, 2)).copy()
  noise = rng.random(ids.shape) < 0.01
  pred[noise] = rng.integers(0, num_objects + 1, int(noise.sum()))
  return pred


def with_first_frame(gt, num_objects):
  """Makes sure ids 1 .. num_objects all appear in the first frame (one pixel each, top row)."""
  gt = gt.copy()
  gt[0, 0, :num_objects] = np.arange(1, num_objects + 1)
  return gt


# ----------------------------------------------------------------------------------------------------------------
# Ops against OpenCV / scikit-image / the official seg2bmap.


@pytest.mark.parametrize("shape", [(17, 23), (1, 1), (2, 3), (31, 97), (64, 33), (5, 200)])
def test_boundary_maps_equal_official_seg2bmap(shape):
  rng = np.random.default_rng(sum(shape))
  for density in (0.02, 0.5, 0.98):
    mask = rng.random(shape) < density
    expected = segmetric_metrics._seg2bmap(mask.copy())  # pylint: disable=protected-access
    assert np.array_equal(np.asarray(masks.boundary_map(mask)), expected)
    packed = masks.packed_boundary_map(masks.pack_bits(mask), shape[1])
    assert np.array_equal(np.asarray(masks.unpack_bits(packed, shape[1])), expected)


def test_disk_is_a_disk_not_a_square():
  assert masks.disk_row_extents(2) == (0, 1, 2, 1, 0)
  assert masks.disk_row_extents(0) == (0,)
  point = np.zeros((9, 9), bool)
  point[4, 4] = True
  dilated = np.asarray(masks.dilate_disk(point, 3))
  assert dilated.sum() == 29 and not dilated[1, 1] and dilated[1, 4] and dilated[4, 7]


@pytest.mark.parametrize("radius", [0, 1, 3, 8, 21])
@pytest.mark.parametrize("shape", [(17, 23), (100, 3), (33, 70)])
def test_disk_dilation_equals_opencv_with_skimage_disk(shape, radius):
  rng = np.random.default_rng(radius + shape[1])
  mask = rng.random(shape) < 0.03
  kernel = skimage_morphology.disk(radius).astype(np.uint8)
  expected = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
  assert np.array_equal(np.asarray(jax.jit(masks.dilate_disk, static_argnums=1)(mask, radius)), expected)
  packed = jax.jit(masks.packed_dilate_disk, static_argnums=1)(masks.pack_bits(mask), radius)
  assert np.array_equal(np.asarray(masks.unpack_bits(packed, shape[1])), expected)


def test_pack_bits_round_trip_and_padding_is_zero():
  mask = np.random.default_rng(1).random((3, 5, 70)) < 0.5
  packed = masks.pack_bits(mask)
  assert packed.shape == (3, 5, 3) and packed.dtype == np.uint32
  assert np.array_equal(np.asarray(masks.unpack_bits(packed, 70)), mask)
  assert not np.asarray(masks.unpack_bits(packed, 96))[..., 70:].any()


# ----------------------------------------------------------------------------------------------------------------
# Radius and statistics.


@pytest.mark.parametrize("height,width,radius", [(480, 854, 8), (225, 300, 3), (210, 720, 6), (240, 427, 4),
                                                  (1080, 1920, 18), (17, 23, 1)])
def test_radius_is_float64(height, width, radius):
  assert davis.boundary_radius(height, width) == radius
  assert davis.boundary_radius(height, width) == int(np.ceil(0.008 * np.linalg.norm((height, width))))


def test_statistics_equal_official_for_every_length_up_to_255():
  rng = np.random.default_rng(0)
  for length in range(1, 256):
    values = rng.random(length)
    values[rng.random(length) < 0.2] = 0.5
    expected = segmetric_utils.db_statistics(values)
    assert statistics.mean_recall_decay(values) == tuple(float(v) for v in expected), length


@pytest.mark.parametrize("length,bounds", [
    # round_half_up(linspace(1, T, 5)) - 1: [0, 64, 128, 191, 255] and [0, 75, 150, 224, 299].
    (256, [(0, 65), (64, 129), (128, 192), (191, 256)]),
    (300, [(0, 76), (75, 151), (150, 225), (224, 300)]),
])
def test_decay_from_256_frames_is_the_intended_value(length, bounds):
  values = np.random.default_rng(3).random(length)
  assert statistics.decay_bin_bounds(length) == bounds
  _, _, decay = statistics.mean_recall_decay(values)
  assert decay == float(np.mean(values[slice(*bounds[0])]) - np.mean(values[slice(*bounds[-1])]))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    assert np.isnan(segmetric_utils.db_statistics(values)[2])  # the official uint8 bins break here


def test_recall_is_strictly_above_one_half():
  assert statistics.mean_recall_decay(np.array([0.5, 0.5000000000000001, 0.4, 1.0]))[1] == 0.5


# ----------------------------------------------------------------------------------------------------------------
# Per-frame parity on generated sequences.


def test_random_blobs_480x854():
  rng = np.random.default_rng(10)
  gt = with_first_frame(blobs(rng, 5, 480, 854, 3), 3)
  j, _ = assert_matches_official(gt, perturb(rng, gt, 3))
  assert 0.3 < j.mean() < 1.0


@pytest.mark.parametrize("shape,num_frames", [((481, 853), 4), ((17, 23), 7), ((225, 300), 4), ((210, 720), 3)])
def test_odd_sizes_and_float32_radius_sizes(shape, num_frames):
  rng = np.random.default_rng(shape[0])
  gt = with_first_frame(blobs(rng, num_frames, *shape, 2), 2)
  assert_matches_official(gt, perturb(rng, gt, 2))


def test_radius_sensitive_size_changes_f():
  """At 300x225 a boundary 4 px away is matched with radius 4 (float32) but not with the official 3."""
  gt = np.zeros((3, 225, 300), np.uint8)
  gt[:, 50:150, 50:150] = 1
  pred = np.zeros_like(gt)
  pred[:, 54:154, 50:150] = 1
  _, f = assert_matches_official(gt, pred)
  assert f[0, 0] < 1.0


def test_large_1080x1920():
  rng = np.random.default_rng(11)
  gt = with_first_frame(blobs(rng, 3, 1080, 1920, 2, count=2), 2)
  assert_matches_official(gt, perturb(rng, gt, 2))


def test_thin_structures_one_to_three_pixels():
  gt = np.zeros((4, 60, 80), np.uint8)
  gt[:, 10, 5:70] = 1
  gt[:, 20:22, 5:70] = 2
  gt[:, 30:60, 40:43] = 3
  gt[:, 5:55, 75] = 1
  pred = np.roll(gt, 1, axis=2)
  pred[2] = np.roll(gt[2], 2, axis=0)
  assert_matches_official(gt, pred)


def test_one_pixel_objects_in_corners_and_on_the_border():
  gt = np.zeros((5, 20, 30), np.uint8)
  for t, (y, x) in enumerate([(0, 0), (0, 29), (19, 0), (19, 29), (10, 29)]):
    gt[t, y, x] = 1
    gt[t, 19, 15] = 2
    gt[t, 0, 14 + t] = 3
  pred = np.zeros_like(gt)
  pred[:, 19, 29] = 1
  pred[:, 19, 14:16] = 2
  pred[:, 0, 15] = 3
  assert_matches_official(gt, pred)


def test_frame_filling_object_empty_and_full_predictions():
  gt = np.ones((4, 30, 40), np.uint8)
  pred = np.zeros_like(gt)
  pred[2] = 1
  j, f = assert_matches_official(gt, pred)
  assert j[0].tolist() == [0.0, 1.0] and f[0].tolist() == [1.0, 1.0]


def test_empty_predictions_and_empty_ground_truth_frames():
  rng = np.random.default_rng(12)
  gt = with_first_frame(blobs(rng, 6, 48, 64, 2), 2)
  gt[2] = 0
  gt[3][gt[3] == 2] = 0
  pred = perturb(rng, gt, 2)
  pred[1] = 0
  pred[2] = 0
  j, f = assert_matches_official(gt, pred)
  assert j[0, 1] == 1.0 and f[0, 1] == 1.0  # both empty


def test_objects_vanish_and_reappear_and_ids_never_predicted():
  rng = np.random.default_rng(13)
  gt = with_first_frame(blobs(rng, 7, 50, 70, 3), 3)
  gt[2:4][gt[2:4] == 1] = 0
  pred = perturb(rng, gt, 3)
  pred[pred == 3] = 0
  pred[3][pred[3] == 1] = 0
  assert_matches_official(gt, pred)


def test_non_contiguous_ids_and_late_ids_above_first_frame_max():
  gt = np.zeros((5, 40, 50), np.uint8)
  gt[:, 5:15, 5:15] = 1
  gt[:, 20:30, 20:35] = 3
  gt[2:, 30:38, 40:48] = 4  # above max(first frame) = 3: ignored
  pred = np.roll(gt, 1, axis=1)
  pred[pred == 4] = 2
  j, _ = assert_matches_official(gt, pred)
  assert j.shape == (3, 3)


def test_void_in_ground_truth_is_background():
  gt = np.zeros((4, 40, 50), np.uint8)
  gt[:, 10:30, 10:30] = 1
  gt[:, 9, 5:35] = 255
  gt[:, 10:30, 30:32] = 255
  pred = np.zeros_like(gt)
  pred[:, 9:30, 10:32] = 1
  j, _ = assert_matches_official(gt, pred)
  assert j[0, 0] == 400 / (21 * 22)


def test_swapped_ids():
  rng = np.random.default_rng(14)
  gt = with_first_frame(blobs(rng, 5, 40, 60, 2), 2)
  pred = np.choose(gt, np.array([0, 2, 1], np.uint8))
  assert_matches_official(gt, pred)


@pytest.mark.parametrize("num_frames", [3, 4, 5, 6, 7, 120])
def test_sequence_lengths_and_decay_bins(num_frames):
  rng = np.random.default_rng(num_frames)
  gt = with_first_frame(blobs(rng, num_frames, 24, 32, 2 if num_frames < 100 else 1), 1)
  pred = perturb(rng, gt, int(gt[0].max()))
  assert_matches_official(gt, pred)


def test_j_exactly_one_half_is_not_recalled():
  gt = np.zeros((4, 30, 40), np.uint8)
  gt[:, 5:15, 5:25] = 1
  pred = gt.copy()
  pred[:, 5:15, 15:25] = 0
  j, _ = assert_matches_official(gt, pred)
  assert j[0].tolist() == [0.5, 0.5]
  assert statistics.mean_recall_decay(j[0])[1] == 0.0


def test_f_of_exactly_one_half():
  """P = 40/50, R = 40/110: F is 1/2 exactly, 0.5000000000000001 in float64 (recalled, as officially); float32
  would give 0.5 (not recalled)."""
  gt = np.zeros((3, 80, 120), np.uint8)
  gt[:, 10:20, 10:20] = 1  # a square matched by both: 40 boundary pixels
  pred = gt.copy()
  gt[:, 50:60, 40:65] = 1  # 70 unmatched ground-truth boundary pixels
  pred[:, 30:32, 90:93] = 1  # 10 unmatched predicted boundary pixels
  counts = davis.frame_counts(gt[1:2], pred[1:2], np.array([1], np.uint8), radius=davis.boundary_radius(80, 120))
  assert [int(counts[name][0, 0]) for name in ("pred_matched", "pred_boundary", "gt_matched", "gt_boundary")] == [
      40, 50, 40, 110]
  _, f = assert_matches_official(gt, pred)
  assert f[0, 0] == 0.5000000000000001
  assert statistics.mean_recall_decay(f[0])[1] == 1.0
  p32, r32 = np.float32(40) / np.float32(50), np.float32(40) / np.float32(110)
  assert np.float32(2) * p32 * r32 / (p32 + r32) == np.float32(0.5)


def test_predicted_id_above_the_objects_is_refused():
  gt = np.zeros((3, 10, 10), np.uint8)
  gt[:, 2:5, 2:5] = 1
  pred = gt.copy()
  pred[1, 0, 0] = 2
  with pytest.raises(ValueError, match="predicted id 2"):
    davis.evaluate_sequence(gt, pred)
  pred[1, 0, 0] = 0
  pred[0, 0, 0] = 7  # first frame: not scored, not read (as officially)
  assert davis.evaluate_sequence(gt, pred).j.shape == (1, 1)
