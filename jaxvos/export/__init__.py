"""Deployment exports of jaxvos families.

- `to_onnx`: the first-frame memory initialisation and the per-frame step of a family as two ONNX graphs
  (state in, state out) at a fixed model size and object count, with the pinned exporter `jax2onnx` (needs JAX).
- `onnx_runner`: segments a video with those graphs through onnxruntime and NumPy only (no JAX import).
- `torch_runner`: segments a video with a family's PyTorch twin (`jaxvos.torch`, a `.pth` of `convert to-torch`)
  through the same contract (torch and NumPy only); `segment --backend torch|onnx` runs these two.
- `geometry`: NumPy copies of jaxvos's frame geometry (resize, normalise, pad, and back), shared by runners that
  must not import JAX.

Nothing is imported here, so `jaxvos.export.onnx_runner` stays free of JAX.
"""
