#!/bin/bash
# The GPU checks of issues 11-13 in one script, for a session that is lent a GPU (`run` of the device tool).
#
#   bash experiments/device/gpu_benchmarks.sh          # on the GPU: at most 7.5 minutes, logs under $OUT (or /tmp)
#   QUICK=1 bash experiments/device/gpu_benchmarks.sh  # on the CPU first: tiny sizes, same commands, ~2 minutes
#
# 1. issue 11: STCN against SwiftNet at 480p in bfloat16, batch-1 streaming, 1 and 2 objects (ms per frame -> FPS);
# 2. issue 12: GAM's Figure 1 by resolution (480p, 2K) in bfloat16, device peak memory per model;
# 3. issue 13: the sparse executor against the dense convolution at fixed active fractions.
# The device image has JAX with CUDA, Flax, optax and orbax but maybe not every package jaxvos imports; a missing
# pure-Python one travels as a wheel (../.library/device/README.md: `pip download` into .whl/, carry it, install
# with --target /tmp/site). Each step is bounded by `timeout`, so one that hangs does not take the others' time.
set -uo pipefail
out=${OUT:-/tmp/gpu-benchmarks}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if [ "${QUICK:-0}" = 1 ]; then
  size=64; sizes=96x160; frames=3; dtype=float32; shape=1,16,32,16; repeats=2
else
  size=480; sizes=480p,2K; frames=30; dtype=bfloat16; shape=1,120,216,64; repeats=20
fi
$python -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
timeout 120 $python -m jaxvos bench segment --model stcn --against swiftnet --size $size --object-counts 1,2 \
    --timed-frames $frames --entries-size 0 --dtype $dtype 2>&1 | tee "$out/segment-stcn-swiftnet.txt"
timeout 270 $python -m jaxvos bench memory --models gam,swiftnet,stcn --sizes $sizes --lengths '' --frames 6 \
    --timeout 80 --dtype $dtype --out "$out/figure1-resolution.json" --plot "$out/figure1-resolution.png" 2>&1 \
    | tee "$out/memory-resolution.txt"
timeout 60 $python -m jaxvos bench sparse --shape $shape --repeats $repeats 2>&1 | tee "$out/sparse.txt"
