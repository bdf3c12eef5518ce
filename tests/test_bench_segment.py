"""`bench segment` compares like with like: its PyTorch driver and jaxvos give the same masks."""

import argparse

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stcnbuf")

from jaxvos.bench import segment as bench  # noqa: E402
from jaxvos.convert.from_torch import import_torch  # noqa: E402
from jaxvos.inference import Segmenter  # noqa: E402
from tests.torch_reference import torchvision_standin  # noqa: E402


def test_torch_driver_and_jaxvos_agree_through_ring_wraps(tmp_path):
  """3 slots written every 2 frames: the ring wraps four times in 12 frames, on both sides alike."""
  args = argparse.Namespace(size=64, objects=2, slots=3, every=2)
  weights = str(tmp_path / "stcn.pth")
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    bench._write_reference_weights(weights, args)
    with torchvision_standin.installed():
      from stcnbuf.model import eval_network  # pylint: disable=g-import-not-at-top
      model = eval_network.STCN()
    model.load_state_dict(torch.load(weights, weights_only=True))
    reference = bench._TorchBoundedSTCN(model.eval(), args.objects, args.slots, args.every, "cpu")
    memory = {"slots": args.slots, "every": args.every, "max_pinned": 1, "temporary": False}
    family, variables, _ = import_torch("stcn", weights, memory=memory, top_k=20)
    stream = Segmenter(family, variables, size=-1).stream([1, 2])
    annotation = bench._first_mask(args.size, args.objects)
    with torch.inference_mode():
      for t, frame in enumerate(bench._frames(12, args.size)):
        ours, theirs = stream(frame, annotation if t == 0 else None), reference(frame, annotation if t == 0 else None)
        assert ours.shape == theirs.shape == (64, 114)
        assert (ours == theirs).mean() > 0.999, t  # a pixel at a near-tie may flip
        assert len(np.unique(ours)) > 1
  finally:
    torch.set_num_threads(threads)


def test_components_time_the_same_computation_on_both_sides():
  """`bench segment --components` pairs stages that compute the same thing from the same weights and inputs."""
  args = argparse.Namespace(size=64, objects=2, slots=3, every=5, dtype="float32")
  stages = bench._stages(args)
  assert len(stages) == 4
  with torch.inference_mode():
    outputs = {name: (ours(), theirs()) for name, (ours, theirs) in stages.items()}
  nchw = lambda x: np.moveaxis(np.asarray(x), -1, -3)  # noqa: E731  [... h w c] -> [... c h w]
  def close(ours, theirs, what):  # float32 sums in another order: the error grows with the tensor's scale
    theirs = theirs.numpy()
    atol = max(2e-4, 1e-5 * float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=2e-3, err_msg=f"{what} (atol {atol:.2g})")
  query, (k16, _, f16, f8, f4) = outputs["key encoder"]
  for name, theirs in (("key16", k16), ("feats16", f16), ("feats8", f8), ("feats4", f4)):
    close(nchw(query[name])[0], theirs[0], name)
  encoded, values_torch = outputs["value encoder (2 objects)"]
  close(nchw(encoded["values"])[0], values_torch[:, 0], "values")
  readout, readout_torch = outputs["read-out (3 slots, top-k)"]
  h, w = k16.shape[-2:]
  readout = np.asarray(readout).reshape(2, h, w, -1)
  close(np.moveaxis(readout, -1, 1), readout_torch.reshape(2, -1, h, w), "read-out")
  logits, probs = outputs["decoder (2 objects)"]
  close(1 / (1 + np.exp(-np.asarray(logits)))[0], probs[:, 0], "decoder")  # theirs ends in a sigmoid



def test_families_side_by_side(capsys, monkeypatch):
  """`--against` takes a list: every variant gets a column and its ratio to --model (timing itself stubbed: the
  interleaved loop is the same code for two families or more)."""
  from jaxvos.bench import families  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(families, "_latencies", lambda variants, args, objects: [10.0 * (i + 1)
                                                                                 for i in range(len(variants))])
  parser = argparse.ArgumentParser()
  bench.add_arguments(parser)
  args = parser.parse_args(["--model", "stcn-tiny", "--against", "gam-tiny,swiftnet-tiny", "--size", "32",
                            "--object-counts", "1", "--entries-size", "0"])
  assert families.run(args) == 0
  latency = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("1 "))
  assert latency.split()[1:6] == ["10.0", "20.0", "30.0", "40.0", "50.0"]
  assert latency.split("   ")[-1] == ("gam-tiny / stcn-tiny: 2.00x, gam-tiny every 5 / stcn-tiny: 3.00x, "
                                     "swiftnet-tiny / stcn-tiny: 4.00x, swiftnet-tiny match 0.25 / stcn-tiny: 5.00x")
