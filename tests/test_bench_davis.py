"""`bench davis`: trained models side by side on DAVIS sequences, each row scored as validation scores it."""

import json
import os

import jax
import pytest
from PIL import Image

from jaxvos.bench import davis as bench_davis
from jaxvos.cli import main as cli
from jaxvos.convert import io
from jaxvos.models import registry
from jaxvos.training import data as data_lib, validation

DAVIS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "davis2016-240p")
pytestmark = pytest.mark.skipif(not os.path.isdir(DAVIS), reason="../shared/data/davis2016-240p not present")


def test_rows_score_as_validation_and_gated_models_count_their_macs(tmp_path, capsys):
  family = registry.build("spvos-tiny", force="reuse")  # gated frames reuse every tile: nothing computed
  sparse = str(tmp_path / "spvos")
  io.save_model(sparse, family, family.init(jax.random.key(0), (64, 64)))
  out, picture = str(tmp_path / "davis.json"), str(tmp_path / "davis.png")
  assert cli.main(["bench", "davis", "--checkpoints", f"default,{sparse}", "--dense-twins", "--davis-root",
                   DAVIS, "--sequences", "blackswan", "--max-frames", "5", "--size", "64", "--out", out,
                   "--plot", picture, "--variants", "top_k=20,memory.nothing=1"]) == 0
  rows = {" ".join(line.split()[:-8]).replace("forced dense", "forced"): line.split()
          for line in capsys.readouterr().out.splitlines()
          if line.startswith(("default ", "spvos ")) and "executes" not in line}
  assert set(rows) == {"default", "default top_k=20", "spvos", "spvos forced", "spvos top_k=20"}
  for label in ("default", "spvos"):  # the config's own value: the same weights rebuilt give the same row
    assert rows[f"{label} top_k=20"][-8:-5] == rows[label][-8:-5]
  with open(out) as f:
    saved = json.load(f)
  assert [r["model"] for r in saved["rows"]] == ["default", "default top_k=20", "spvos", "spvos forced dense",
                                                 "spvos top_k=20"]
  for r, printed in zip(saved["rows"], (rows["default"], rows["default top_k=20"], rows["spvos"],
                                        rows["spvos forced"], rows["spvos top_k=20"])):
    assert f"{r['j_and_f']:.3f}" == printed[-8] and r["fps"] == pytest.approx(1e3 / r["ms_per_frame"])
    assert r["per_object"] == {"blackswan_1": pytest.approx(r["j_and_f"])}  # one object: its J&F is the mean
  assert saved["rows"][2]["params"] > saved["rows"][0]["params"]  # the gates' own parameters
  assert Image.open(picture).size == (720, 520)
  os.remove(picture)
  assert cli.main(["bench", "davis", "--plot-only", "--out", out, "--plot", picture, "--checkpoints", "x",
                   "--davis-root", "x", "--sequences", "x"]) == 0 and os.path.exists(picture)

  videos = validation.load_videos([s for s in data_lib.davis_videos(DAVIS, "240p") if s.name == "blackswan"], 5)
  default_family, default_variables = io.load_model(io.DEFAULT_MODEL)
  expected = validation.validate(default_family, default_variables, videos, size=64)["j_and_f"]
  assert float(rows["default"][1]) == pytest.approx(expected, abs=5e-4)  # printed with 3 decimals

  def macs(row):  # (dense, executed) GMAC
    return float(row[-4]), float(row[-3])
  assert macs(rows["default"])[0] == macs(rows["default"])[1] > 0
  assert macs(rows["spvos forced"])[0] == macs(rows["spvos forced"])[1] == macs(rows["spvos"])[0]
  assert macs(rows["spvos"])[1] < 0.9 * macs(rows["spvos"])[0]  # frames 2-4 compute no gated layer


def test_variants_split_outside_brackets_and_a_bad_value_is_one_line(capsys):
  assert bench_davis.split_list('top_k=20,tile_pixels=[16,48],force="a,b",,x') == [
      "top_k=20", "tile_pixels=[16,48]", 'force="a,b"', "x"]
  assert cli.main(["bench", "davis", "--checkpoints", "default", "--davis-root", DAVIS, "--sequences",
                   "blackswan", "--variants", 'top_k=20,top_k="x"']) == 2
  assert capsys.readouterr().err == "error: --variants top_k=\"x\": STCNConfig.top_k must be int or None, not 'x'\n"


def test_a_sequence_not_annotated_throughout_is_one_line(tmp_path, capsys):
  """J&F scores every frame: a sequence with a frame but no mask (the judo example's style) is refused in one
  line naming its annotation folder, not a traceback."""
  sequence = next(s for s in data_lib.davis_videos(DAVIS, "240p") if s.name == "blackswan")
  for kind, paths in (("JPEGImages", sequence.frame_paths[:3]), ("Annotations", [sequence.mask_paths[0]])):
    os.makedirs(tmp_path / kind / "240p" / "blackswan")
    for path in paths:
      os.symlink(os.path.abspath(path), tmp_path / kind / "240p" / "blackswan" / os.path.basename(path))
  assert cli.main(["bench", "davis", "--checkpoints", "default", "--davis-root", str(tmp_path), "--sequences",
                   "blackswan", "--size", "64"]) == 2
  err = capsys.readouterr().err
  assert err == (f"error: {tmp_path / 'Annotations' / '240p' / 'blackswan'}: frame 1 of blackswan has no mask "
                 "(2 of 3 frames): scoring needs every frame annotated (`jaxvos segment` takes such videos)\n")


def test_the_dense_twin_of_a_guarded_checkpoint_drops_both_guards(tmp_path):
  """`--dense-twins` of a checkpoint with the change guard and the read guard: every gate computes and every
  position is read (either guard left on would reuse)."""
  family = registry.build("spvos-tiny", change_threshold=0.4, read_threshold=0.2)
  path = str(tmp_path / "guarded")
  io.save_model(path, family, family.init(jax.random.key(0), (64, 64)))
  model = bench_davis._Model("guarded", family, None)  # pylint: disable=protected-access
  twin = bench_davis._forced_dense(model, path).family  # pylint: disable=protected-access
  assert (twin.config.force, twin.config.change_threshold, twin.config.read_threshold) == ("compute", None, None)
  assert twin.memory.read_threshold is None


def test_bubble_labels_overlap_neither_each_other_nor_the_bubbles():
  # Five rows at nearly one point (a family's variants): every label finds a free box inside the frame.
  frame, taken = (4, 48, 716, 476), [(330, 230, 390, 290)]  # one large bubble already drawn
  for k in range(5):
    box = bench_davis._label_box(150, 360, 260 + k, 30, taken, frame)
    assert frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
    assert not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken), k
    taken.append(box)
