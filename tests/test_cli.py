"""The command-line contract: every command is listed, and misuse ends in a usage error, not a traceback."""

import subprocess
import sys

from jaxvos.cli import main as cli_main

CONTRACT = ("segment", "evaluate", "train", "convert", "bench")


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jaxvos", *args], capture_output=True, text=True,
                        cwd=cli_main.__file__.rsplit("/jaxvos/", 1)[0], timeout=300)


def test_help_lists_the_contract_commands():
  result = run_cli("--help")
  assert result.returncode == 0
  for command in CONTRACT:
    assert f"    {command} " in result.stdout


def test_missing_arguments_end_in_a_usage_error():
  result = run_cli("convert", "from-torch", "--family", "stcn")
  assert result.returncode == 2
  assert "the following arguments are required: --checkpoint" in result.stderr
  assert "Traceback" not in result.stderr


def test_data_synth_inspect_and_preview(tmp_path):
  root = tmp_path / "synth"
  assert run_cli("data", "synth", "--out", str(root), "--videos", "2", "--frames", "6", "--height", "48",
                 "--width", "64").returncode == 0
  result = run_cli("data", "inspect", "--davis-root", str(root))
  assert result.returncode == 0 and "synth-0001" in result.stdout and "2 sequences, 12 frames" in result.stdout
  picture = tmp_path / "preview.png"
  result = run_cli("data", "preview", "--davis-root", str(root), "--out", str(picture), "--batch", "2",
                   "--crop", "32")
  assert result.returncode == 0, result.stderr
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(picture) as image:
    assert image.size == (3 * 32, 2 * 32)


def test_bad_input_is_one_line_naming_the_file(tmp_path):
  root = tmp_path / "synth"
  run_cli("data", "synth", "--out", str(root), "--videos", "1", "--frames", "4", "--height", "32", "--width", "48")
  frame = root / "JPEGImages" / "480p" / "synth-0000" / "00002.jpg"
  frame.write_bytes(b"\xff\xd8 broken")
  result = run_cli("data", "preview", "--davis-root", str(root), "--out", str(tmp_path / "p.png"), "--batch", "1",
                   "--max-gap", "1", "--frames", "4")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip() == f"error: {frame}: " + result.stderr.strip().split(f"{frame}: ", 1)[1]
  assert "cannot be decoded" in result.stderr
  result = run_cli("data", "synth", "--out", str(root))
  assert result.returncode == 2 and "nothing is overwritten" in result.stderr


def test_judo_size_repair_is_a_one_line_warning(shared_data, tmp_path):
  result = run_cli("data", "preview", "--davis-root", str(shared_data / "davis-examples-480p"), "--out",
                   str(tmp_path / "p.png"), "--batch", "8", "--crop", "32")
  assert result.returncode == 0, result.stderr
  assert "warning: " in result.stderr and "judo/00005.png: mask is 853x480" in result.stderr
  assert "Traceback" not in result.stderr
