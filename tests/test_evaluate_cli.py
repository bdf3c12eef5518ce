"""`jaxvos evaluate`: the official CSV files byte for byte, the official frame order, and one-line errors."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines.image_io import write_mask
from jaxvos import metrics
from jaxvos.cli import main as cli_main
from tests.test_metrics import blobs, official_sequence, perturb, with_first_frame

pd = pytest.importorskip("pandas")


def official_csv_files(sequences):
  """The two official CSV texts, built as `evaluation_method.py` does, from the official per-frame functions."""
  j_stats, f_stats, names = {"M": [], "R": [], "D": []}, {"M": [], "R": [], "D": []}, []
  for name, gt, pred in sequences:
    _, _, stats = official_sequence(gt, pred)
    for index, (j, f) in enumerate(stats):
      names.append(f"{name}_{index + 1}")
      for key, value in zip("MRD", j):
        j_stats[key].append(value)
      for key, value in zip("MRD", f):
        f_stats[key].append(value)
  final_mean = (np.mean(j_stats["M"]) + np.mean(f_stats["M"])) / 2.
  g_res = np.array([final_mean, np.mean(j_stats["M"]), np.mean(j_stats["R"]), np.mean(j_stats["D"]),
                    np.mean(f_stats["M"]), np.mean(f_stats["R"]), np.mean(f_stats["D"])])
  table_g = pd.DataFrame(data=np.reshape(g_res, [1, len(g_res)]), columns=[
      "J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"])
  table_seq = pd.DataFrame(data=list(zip(names, j_stats["M"], f_stats["M"])),
                           columns=["Sequence", "J-Mean", "F-Mean"])
  texts = []
  for table in (table_g, table_seq):
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.3f")
    texts.append(buffer.getvalue())
  return texts


def write_sequence(root, name, ids, names=None, mode="P", skip=()):
  """Writes uint8 [T h w] ids as `<root>/<name>/<frame>.png` (`P` palette or `L` grey)."""
  names = names or [f"{t:05d}" for t in range(len(ids))]
  for frame, frame_ids in zip(names, ids):
    if frame in skip:
      continue
    path = os.path.join(root, name, f"{frame}.png")
    if mode == "P":
      write_mask(path, frame_ids)
    else:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(frame_ids, mode=mode).save(path)


def evaluate(*args):
  """Runs the command in-process; returns (exit status, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  saved = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = out, err
  try:
    status = cli_main.main(["evaluate", *map(str, args)])
  finally:
    sys.stdout, sys.stderr = saved
  return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """Three generated sequences in DAVIS layout (P ground truth; P and grey L predictions) and their arrays."""
  root = tmp_path_factory.mktemp("davis")
  rng = np.random.default_rng(7)
  sequences = []
  for name, frames, shape, objects, mode in [("bear", 6, (48, 64), 2, "P"), ("car", 9, (33, 47), 3, "L"),
                                             ("dog", 4, (40, 30), 1, "P")]:
    gt = with_first_frame(blobs(rng, frames, *shape, objects), objects)
    pred = perturb(rng, gt, objects)
    gt[1, :2, :] = 255  # void
    pred[0] = pred[-1] = 0
    write_sequence(root / "gt", name, gt)
    write_sequence(root / "pred", name, pred, mode=mode)
    sequences.append((name, gt, pred))
  return root, sequences


def test_csv_files_are_byte_identical_to_the_official_ones(dataset, tmp_path):
  root, sequences = dataset
  status, out, err = evaluate("--gt", root / "gt", "--pred", root / "pred", "--out-dir", tmp_path, "--set", "val")
  assert status == 0, err
  global_text, per_sequence_text = official_csv_files(sequences)
  assert (tmp_path / "global_results-val.csv").read_text() == global_text
  assert (tmp_path / "per-sequence_results-val.csv").read_text() == per_sequence_text
  assert per_sequence_text.splitlines()[1].startswith("bear_1,")
  assert "Global results for val" in out and "car_3" in out


def test_per_frame_csv_and_python_api_give_the_official_values(dataset, tmp_path):
  root, sequences = dataset
  assert evaluate("--gt", root / "gt", "--pred", root / "pred", "--out-dir", tmp_path, "--set", "x")[0] == 0
  rows = (tmp_path / "per-frame_results-x.csv").read_text().splitlines()
  assert rows[0] == "Sequence,Object,Frame,J,F"
  by_key = {tuple(r.split(",")[:3]): tuple(map(float, r.split(",")[3:])) for r in rows[1:]}
  api = metrics.evaluate_arrays({name: (gt, pred) for name, gt, pred in sequences})
  for (name, gt, pred), result in zip(sequences, api.sequences):
    j, f, _ = official_sequence(gt, pred)
    np.testing.assert_allclose(result.scores.j, j, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.scores.f, f, rtol=0, atol=1e-9)
    for obj in range(j.shape[0]):
      for t in range(j.shape[1]):
        assert by_key[(name, str(obj + 1), f"{t + 1:05d}")] == (result.scores.j[obj, t], result.scores.f[obj, t])
  assert len(by_key) == sum(int(gt[0].max()) * (len(gt) - 2) for _, gt, _ in sequences)
  global_row = (tmp_path / "global_results-x.csv").read_text().splitlines()[1]
  assert global_row == ",".join("%.3f" % api.global_results()[c] for c in metrics.statistics.GLOBAL_COLUMNS)


def test_unpadded_frame_names_use_the_official_lexicographic_order(tmp_path):
  rng = np.random.default_rng(8)
  gt = with_first_frame(blobs(rng, 12, 30, 40, 2), 2)
  pred = perturb(rng, gt, 2)
  names = [str(t) for t in range(12)]  # 0.png .. 11.png
  order = sorted(range(12), key=lambda t: names[t])  # 0, 1, 10, 11, 2, ..., 9
  write_sequence(tmp_path / "gt", "seq", gt, names)
  write_sequence(tmp_path / "pred", "seq", pred, names, skip=("0", "9"))  # 9.png is the last frame: not scored
  status, _, err = evaluate("--gt", tmp_path / "gt", "--pred", tmp_path / "pred")
  assert status == 0, err
  # Without --out-dir the CSV files go beside the predictions, never among them.
  assert sorted(os.listdir(tmp_path / "pred")) == ["seq"]
  assert sorted(os.listdir(tmp_path / "pred-evaluation")) == [
      "global_results-val.csv", "per-frame_results-val.csv", "per-sequence_results-val.csv"]
  rows = (tmp_path / "pred-evaluation" / "per-frame_results-val.csv").read_text().splitlines()[1:]
  assert [r.split(",")[2] for r in rows[:10]] == ["1", "10", "11", "2", "3", "4", "5", "6", "7", "8"]
  j, f, _ = official_sequence(gt[order], pred[order])
  assert [float(r.split(",")[3]) for r in rows] == pytest.approx(j.reshape(-1).tolist(), abs=1e-9)
  assert [float(r.split(",")[4]) for r in rows] == pytest.approx(f.reshape(-1).tolist(), abs=1e-9)


def test_davis_root_form_with_imageset_and_single_object(shared_data, tmp_path):
  root = shared_data / "davis2016-240p"
  arrays = []
  for name in ("blackswan", "bmx-trees"):
    files = sorted((root / "Annotations" / "240p" / name).glob("*.png"))
    gt = np.stack([np.asarray(Image.open(f)) for f in files])
    pred = np.roll(gt, (3, -2), axis=(1, 2))
    write_sequence(tmp_path / "pred", name, pred, [f.stem for f in files], mode="L")
    arrays.append((name, (gt > 0).astype(np.uint8), (pred > 0).astype(np.uint8)))
  status, _, err = evaluate("--gt", root, "--resolution", "240p", "--imageset", "ImageSets/2016/val.txt",
                            "--single-object", "--pred", tmp_path / "pred", "--out-dir", tmp_path / "out")
  assert status == 0, err
  global_text, per_sequence_text = official_csv_files(arrays)
  assert (tmp_path / "out" / "global_results-val.csv").read_text() == global_text
  assert (tmp_path / "out" / "per-sequence_results-val.csv").read_text() == per_sequence_text


# ----------------------------------------------------------------------------------------------------------------
# Invalid input: exit status 2 and one line naming the sequence and the file.


def _broken_dataset(tmp_path, case):
  """A one-sequence dataset `seq` with one defect; returns (gt dir, pred dir, path the error must name)."""
  gt = np.zeros((5, 20, 30), np.uint8)
  gt[:, 5:10, 5:10] = 1
  gt[:, 12:16, 20:25] = 2
  pred = gt.copy()
  gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
  write_sequence(gt_dir, "seq", gt)
  write_sequence(pred_dir, "seq", pred)
  frame = pred_dir / "seq" / "00002.png"
  if case == "id-too-high":
    write_mask(str(frame), np.full((20, 30), 3, np.uint8))
  elif case == "missing-frame":
    os.remove(frame)
  elif case == "rgb":
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(frame)
  elif case == "size":
    write_mask(str(frame), np.zeros((20, 31), np.uint8))
  elif case == "corrupt":
    frame.write_bytes(b"\x89PNG\r\n\x1a\n broken")
  elif case == "two-frames":
    for name in ("00002.png", "00003.png", "00004.png"):
      os.remove(gt_dir / "seq" / name)
    frame = gt_dir / "seq"
  elif case == "empty-gt":
    for name in os.listdir(gt_dir / "seq"):
      os.remove(gt_dir / "seq" / name)
    frame = gt_dir / "seq"
  elif case == "no-pred-folder":
    for name in os.listdir(pred_dir / "seq"):
      os.remove(pred_dir / "seq" / name)
    os.rmdir(pred_dir / "seq")
    frame = pred_dir / "seq"
  elif case == "gt-0-255":
    write_sequence(gt_dir, "seq", np.where(gt > 0, 255, 0).astype(np.uint8), mode="L")
    frame = gt_dir / "seq" / "00000.png"
  return gt_dir, pred_dir, frame


@pytest.mark.parametrize("case,message", [
    ("id-too-high", "predicted id 3 but the sequence has 2 object(s)"),
    ("missing-frame", "missing prediction for ground-truth frame 00002.png"),
    ("rgb", "is a RGB image"),
    ("size", "prediction is 31x20 but the ground truth is 30x20"),
    ("corrupt", "cannot be decoded"),
    ("two-frames", "needs at least 3"),
    ("empty-gt", "no .png ground-truth masks"),
    ("no-pred-folder", "prediction folder for sequence seq not found"),
    ("gt-0-255", "pass --single-object"),
])
def test_invalid_input_is_one_line_naming_the_file(tmp_path, case, message):
  gt_dir, pred_dir, path = _broken_dataset(tmp_path, case)
  status, out, err = evaluate("--gt", gt_dir, "--pred", pred_dir)
  assert status == 2 and out == ""
  assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and "seq" in err, err
  assert message in err
  assert not (pred_dir / "global_results-val.csv").exists()
  assert not os.path.exists(f"{pred_dir}-evaluation")


def test_judo_ground_truth_of_two_sizes_is_refused(shared_data, tmp_path):
  root = shared_data / "davis-examples-480p"
  (tmp_path / "judo").mkdir()
  status, _, err = evaluate("--gt", root, "--resolution", "480p", "--sequences", "judo", "--pred", tmp_path)
  assert status == 2
  assert err.strip() == (f"error: {root}/Annotations/480p/judo/00005.png: ground-truth mask is 853x480 but the "
                         "sequence's first mask is 854x480")


def test_command_line_exit_status(tmp_path):
  gt_dir, pred_dir, path = _broken_dataset(tmp_path, "id-too-high")
  result = subprocess.run([sys.executable, "-m", "jaxvos", "evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir)],
                          capture_output=True, text=True, timeout=300,
                          cwd=cli_main.__file__.rsplit("/jaxvos/", 1)[0])
  assert result.returncode == 2 and result.stderr.startswith(f"error: {path}: ")
  assert "Traceback" not in result.stderr
